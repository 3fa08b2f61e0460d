"""DROID RLDS (TFDS `r2d2_faceblur`) shards without TensorFlow.

A shard is a TFRecord file: records framed as `uint64 length | uint32 masked crc32c(length) | data | uint32 masked
crc32c(data)` (little endian). Each record is one episode serialized as a `tf.train.Example` whose features are the
`/`-joined TFDS paths with every step concatenated: `steps/observation/cartesian_position` is a float list of T*6
values, `steps/observation/exterior_image_1_left` a bytes list of T JPEGs, `steps/is_first` an int64 list of T.
TFDS stores every float, float64 included, as float32. The Example protobuf is encoded and decoded here with a small
wire-format codec (Example{features=1: Features{feature=1: map<string, Feature>}}, Feature{bytes_list=1,
float_list=2, int64_list=3}, each list holding `repeated value = 1`).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from vjepa_ac.data.droid.episode import DroidEpisode, EpisodeError
from vjepa_ac.data.droid.layout import (
    ACTION_CARTESIAN_POSITION,
    ACTION_GRIPPER_POSITION,
    DROID_CONTROL_HZ,
    MP4_DIR,
    TRAJECTORY_FILE,
)
from vjepa_ac.data.droid.raw import RawEpisode

# Feature names of the DROID RLDS release.
FILE_PATH = "episode_metadata/file_path"
RECORDING_FOLDERPATH = "episode_metadata/recording_folderpath"
IMAGE_FEATURES = {
    "ext1": "steps/observation/exterior_image_1_left",
    "ext2": "steps/observation/exterior_image_2_left",
    "wrist": "steps/observation/wrist_image_left",
}
CARTESIAN_POSITION = "steps/observation/cartesian_position"
GRIPPER_POSITION = "steps/observation/gripper_position"
JOINT_POSITION = "steps/observation/joint_position"
LANGUAGE_INSTRUCTIONS = ("steps/language_instruction", "steps/language_instruction_2", "steps/language_instruction_3")
RLDS_IMAGE_SIZE = (180, 320)  # (H, W)


class TFRecordError(EpisodeError):
    """A TFRecord shard or Example record that does not parse."""


# -- CRC32C (Castagnoli), as TFRecord framing uses it.
def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# -- TFRecord framing.
def write_tfrecord(path: str | Path, records: Iterable[bytes]) -> int:
    """Write records to a TFRecord file; returns how many were written."""
    count = 0
    with open(path, "wb") as f:
        for data in records:
            header = struct.pack("<Q", len(data))
            f.write(header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data)))
            count += 1
    return count


def _read_header(f, path: Path, offset: int) -> int | None:
    header = f.read(12)
    if not header:
        return None
    if len(header) < 12:
        raise TFRecordError(f"{path}: truncated: record header at byte {offset} is cut short")
    length, length_crc = struct.unpack("<QI", header)
    if masked_crc32c(header[:8]) != length_crc:
        raise TFRecordError(f"{path}: corrupt record length at byte {offset}")
    return length


@dataclass(frozen=True)
class ShardScan:
    """The complete records of a shard and, if the file ends early or is damaged, why reading stopped."""

    offsets: tuple[int, ...]
    """Byte offset of every readable record, in order (all records before a truncation or corruption)."""
    problem: str | None = None
    """What is wrong after the last readable record (truncated / corrupt record), None for a sound shard."""


def scan_shard(path: str | Path) -> ShardScan:
    """Index a shard by reading only the 12-byte record headers (cached while the file is unchanged). A damaged tail
    does not hide the records before it; an unreadable file raises TFRecordError."""
    try:
        stat = Path(path).stat()
    except OSError as exc:
        raise TFRecordError(f"{path}: cannot read shard ({exc})") from exc
    return _scan_shard(str(path), stat.st_mtime_ns, stat.st_size)


def record_offsets(path: str | Path) -> tuple[int, ...]:
    """Byte offsets of every readable record of a shard (see `scan_shard`)."""
    return scan_shard(path).offsets


@lru_cache(maxsize=64)
def _scan_shard(path_str: str, mtime_ns: int, size: int) -> ShardScan:
    path = Path(path_str)
    offsets: list[int] = []
    try:
        with open(path, "rb") as f:
            offset = 0
            while (length := _read_header(f, path, offset)) is not None:
                if offset + 16 + length > size:
                    raise TFRecordError(f"{path}: truncated: record {len(offsets)} at byte {offset} runs past the "
                                        f"end of the file ({size} bytes)")
                offsets.append(offset)
                offset += 16 + length
                f.seek(offset)
    except TFRecordError as exc:
        return ShardScan(tuple(offsets), str(exc))
    except OSError as exc:
        raise TFRecordError(f"{path}: cannot read shard ({exc})") from exc
    return ShardScan(tuple(offsets))


def count_records(path: str | Path) -> int:
    return len(record_offsets(Path(path)))


def read_record(path: str | Path, index: int, *, verify: bool = False) -> bytes:
    """The data of record `index`; `verify` also checks the data CRC (pure Python, a few MB/s)."""
    path = Path(path)
    scan = scan_shard(path)
    offsets = scan.offsets
    if not 0 <= index < len(offsets):
        damaged = f"; {scan.problem}" if scan.problem else ""
        raise TFRecordError(f"{path}: no record {index} (shard holds {len(offsets)} readable records{damaged})")
    with open(path, "rb") as f:
        f.seek(offsets[index])
        length = _read_header(f, path, offsets[index])
        data = f.read(length)
        (data_crc,) = struct.unpack("<I", f.read(4))
    if verify and masked_crc32c(data) != data_crc:
        raise TFRecordError(f"{path}: record {index} fails its CRC check")
    return data


def iter_tfrecord(path: str | Path, *, verify: bool = False) -> Iterator[bytes]:
    for index in range(count_records(path)):
        yield read_record(path, index, verify=verify)


# -- tf.train.Example wire format.
def _varint(value: int) -> bytes:
    value &= 0xFFFFFFFFFFFFFFFF  # negative int64 -> two's complement, 10 bytes
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise TFRecordError("truncated varint in Example")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


FeatureValue = np.ndarray | Sequence[bytes] | bytes | str


def _encode_feature(value: FeatureValue) -> bytes:
    if isinstance(value, (bytes, str)):
        value = [value]
    if isinstance(value, np.ndarray) and value.dtype.kind in "fc":
        packed = np.ascontiguousarray(value, dtype="<f4").tobytes()
        return _field(2, _field(1, packed))
    if isinstance(value, np.ndarray) and value.dtype.kind in "iub":
        packed = b"".join(_varint(int(v)) for v in value.reshape(-1))
        return _field(3, _field(1, packed))
    items = [v.encode() if isinstance(v, str) else bytes(v) for v in value]
    return _field(1, b"".join(_field(1, item) for item in items))


def encode_example(features: Mapping[str, FeatureValue]) -> bytes:
    """Serialize a `tf.train.Example`: float arrays -> float_list, int/bool arrays -> int64_list, bytes/str -> bytes_list."""
    entries = b"".join(
        _field(1, _field(1, key.encode()) + _field(2, _encode_feature(v))) for key, v in features.items()
    )
    return _field(1, entries)


def _iter_fields(buf: bytes) -> Iterator[tuple[int, int, bytes | int]]:
    """(field number, wire type, payload) of each field of a message."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 2:
            length, pos = _read_varint(buf, pos)
            if pos + length > len(buf):
                raise TFRecordError("truncated field in Example")
            yield number, wire, buf[pos : pos + length]
            pos += length
        elif wire == 0:
            value, pos = _read_varint(buf, pos)
            yield number, wire, value
        elif wire == 5:
            yield number, wire, buf[pos : pos + 4]
            pos += 4
        elif wire == 1:
            yield number, wire, buf[pos : pos + 8]
            pos += 8
        else:
            raise TFRecordError(f"unsupported protobuf wire type {wire}")


def _decode_list(kind: int, payload: bytes) -> np.ndarray | list[bytes]:
    if kind == 1:
        return [v for n, _, v in _iter_fields(payload) if n == 1]
    values: list = []
    chunks: list[np.ndarray] = []
    for number, wire, value in _iter_fields(payload):
        if number != 1:
            continue
        if kind == 2:  # float_list: packed (wire 2) or one float per field (wire 5)
            chunks.append(np.frombuffer(value, dtype="<f4"))
        elif wire == 2:  # packed int64 varints
            pos = 0
            while pos < len(value):
                v, pos = _read_varint(value, pos)
                values.append(v)
        else:
            values.append(value)
    if kind == 2:
        return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    ints = np.array(values, dtype=np.uint64).view(np.int64) if values else np.zeros(0, np.int64)
    return ints


def decode_example(data: bytes) -> dict[str, np.ndarray | list[bytes]]:
    """Parse a serialized `tf.train.Example` into {name: float32 array | int64 array | list of bytes}."""
    features: dict[str, np.ndarray | list[bytes]] = {}
    for number, _, features_msg in _iter_fields(data):
        if number != 1:
            continue
        for entry_number, _, entry in _iter_fields(features_msg):
            if entry_number != 1:
                continue
            key, value = "", None
            for n, _, payload in _iter_fields(entry):
                if n == 1:
                    key = payload.decode()
                elif n == 2:
                    for kind, _, list_msg in _iter_fields(payload):
                        value = _decode_list(kind, list_msg)
            features[key] = value if value is not None else np.zeros(0, np.float32)
    return features


# -- Episodes.
_RAW_PATH_RE = re.compile(
    r"(?:^|/)(?P<lab>[^/]+)/(?P<outcome>success|failure)/(?P<day>\d{4}-\d{2}-\d{2})/(?P<time>[^/]+)/"
)


class RldsEpisode(DroidEpisode):
    """One episode of a DROID RLDS shard; JPEG frames are decoded only when asked for."""

    def __init__(self, features: Mapping[str, np.ndarray | list[bytes]], *, source: str = ""):
        self._features = dict(features)
        self.source = source
        self.fps = DROID_CONTROL_HZ
        file_path = self._text(FILE_PATH)
        match = _RAW_PATH_RE.search(file_path)
        self._path_match = match
        if match:
            self.episode_id = f"{match['lab']}/{match['outcome']}/{match['day']}/{match['time']}"
        else:
            self.episode_id = source or file_path or "rlds-episode"
        if CARTESIAN_POSITION not in self._features:
            raise EpisodeError(f"{self.episode_id}: RLDS record has no {CARTESIAN_POSITION}")
        self._steps = len(self._features[CARTESIAN_POSITION]) // 6

    def _text(self, key: str) -> str:
        value = self._features.get(key)
        return value[0].decode("utf-8", "replace") if isinstance(value, list) and value else ""

    def _array(self, key: str, width: int) -> np.ndarray:
        value = self._features.get(key)
        if not isinstance(value, np.ndarray):
            raise EpisodeError(f"{self.episode_id}: RLDS record has no numeric feature {key}")
        if value.size != self._steps * width:
            raise EpisodeError(f"{self.episode_id}: {key} holds {value.size} values, expected {self._steps} x {width}")
        return value.reshape(self._steps, width).astype(np.float64)

    @property
    def num_steps(self) -> int:
        return self._steps

    def states(self) -> np.ndarray:
        return np.concatenate([self._array(CARTESIAN_POSITION, 6), self._array(GRIPPER_POSITION, 1)], axis=1)

    def joint_positions(self) -> np.ndarray:
        return self._array(JOINT_POSITION, 7)

    @property
    def camera_roles(self) -> dict[str, str]:
        return {role: key for role, key in IMAGE_FEATURES.items() if key in self._features}

    def _images(self, role: str) -> list[bytes]:
        roles = self.camera_roles
        key = roles.get(role, role)
        images = self._features.get(key)
        if not isinstance(images, list):
            hint = " (RLDS has no extrinsics, so no left/right roles)" if role in ("left", "right") else ""
            raise EpisodeError(f"{self.episode_id}: no camera {role!r}{hint}; available: {sorted(roles)}")
        return images

    def read_frames(self, role: str, indices: Sequence[int]) -> np.ndarray:
        images = self._images(role)
        frames = []
        for i in np.asarray(indices, dtype=np.int64).reshape(-1):
            if not 0 <= i < len(images):
                raise EpisodeError(f"{self.episode_id}: frame {i} outside 0..{len(images) - 1} of camera {role!r}")
            bgr = cv2.imdecode(np.frombuffer(images[i], np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                raise EpisodeError(f"{self.episode_id}: camera {role!r} frame {i} is not a decodable JPEG")
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        return np.stack(frames) if frames else np.zeros((0, *RLDS_IMAGE_SIZE, 3), np.uint8)

    def num_frames(self, role: str) -> int:
        return len(self._images(role))

    def video_fps(self, role: str) -> float:
        return self.fps  # one image per control step

    def extrinsics(self, role: str) -> np.ndarray:
        raise EpisodeError(f"{self.episode_id}: DROID RLDS records carry no camera extrinsics")

    @property
    def metadata(self) -> dict:
        meta = {"file_path": self._text(FILE_PATH), "recording_folderpath": self._text(RECORDING_FOLDERPATH)}
        meta["current_task"] = self.task
        return meta

    @property
    def task(self) -> str:
        for key in LANGUAGE_INSTRUCTIONS:
            text = self._text(key)
            if text:
                return text
        return ""

    @property
    def success(self) -> bool | None:
        return self._path_match["outcome"] == "success" if self._path_match else None

    @property
    def lab(self) -> str | None:
        return self._path_match["lab"] if self._path_match else None


def open_rlds_episode(shard: str | Path, index: int) -> RldsEpisode:
    """Episode number `index` of a shard."""
    shard = Path(shard)
    features = decode_example(read_record(shard, index))
    return RldsEpisode(features, source=f"{shard}#{index}")


def iter_rlds_episodes(shard: str | Path) -> Iterator[RldsEpisode]:
    for index in range(count_records(shard)):
        yield open_rlds_episode(shard, index)


def commanded_poses(episode: DroidEpisode) -> np.ndarray | None:
    """[L, 7] commanded pose ++ gripper from a raw episode's `action/*` datasets, if it recorded them."""
    if not isinstance(episode, RawEpisode):
        return None
    if not (episode.has_key(ACTION_CARTESIAN_POSITION) and episode.has_key(ACTION_GRIPPER_POSITION)):
        return None
    pose = episode.read_array(ACTION_CARTESIAN_POSITION)
    gripper = episode.read_array(ACTION_GRIPPER_POSITION).reshape(-1, 1)
    return np.concatenate([pose, gripper], axis=1)


def episode_to_example(
    episode: DroidEpisode, *, image_size: tuple[int, int] = RLDS_IMAGE_SIZE, file_path: str = ""
) -> bytes:
    """Serialize any episode as a DROID RLDS Example (what the release's builder stores per episode).

    Images are resized (bicubic) to `image_size` and JPEG-encoded; `steps/action` is the commanded pose ++ gripper
    (a raw episode's `action/cartesian_position` and `action/gripper_position`; otherwise the next observed state, the
    last step repeating its own); reward is 1 on the last step of successful episodes.
    """
    steps = episode.num_steps
    states = episode.states()
    if not file_path:
        folder = episode.folder if isinstance(episode, RawEpisode) else Path(episode.episode_id)
        file_path = str(folder / TRAJECTORY_FILE)
    features: dict[str, FeatureValue] = {
        FILE_PATH: file_path,
        RECORDING_FOLDERPATH: str(Path(file_path).parent / MP4_DIR),
    }
    height, width = image_size
    for role, key in IMAGE_FEATURES.items():
        if role not in episode.camera_roles:
            continue
        frames = episode.read_frames(role, range(min(steps, episode.num_frames(role))))
        if len(frames) < steps:  # a one-frame-short video: repeat the last frame, RLDS needs one image per step
            frames = np.concatenate([frames, np.repeat(frames[-1:], steps - len(frames), axis=0)])
        jpegs = []
        for rgb in frames:
            small = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_CUBIC)
            ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
            if not ok:
                raise EpisodeError(f"{episode.episode_id}: JPEG encoding failed")
            jpegs.append(encoded.tobytes())
        features[key] = jpegs
    commanded = commanded_poses(episode)
    next_states = commanded if commanded is not None else np.concatenate([states[1:], states[-1:]])
    features[CARTESIAN_POSITION] = states[:, :6].reshape(-1)
    features[GRIPPER_POSITION] = states[:, 6:].reshape(-1)
    features[JOINT_POSITION] = episode.joint_positions().reshape(-1)
    features["steps/action"] = next_states.reshape(-1)
    features["steps/action_dict/cartesian_position"] = next_states[:, :6].reshape(-1)
    features["steps/action_dict/gripper_position"] = next_states[:, 6:].reshape(-1)
    for i, key in enumerate(LANGUAGE_INSTRUCTIONS):
        features[key] = [(episode.task if i == 0 else "").encode()] * steps
    last = np.zeros(steps, bool)
    last[-1] = True
    features["steps/is_first"] = np.eye(1, steps, 0, dtype=bool).reshape(-1)
    features["steps/is_last"] = last
    features["steps/is_terminal"] = last
    features["steps/discount"] = np.ones(steps, np.float32)
    features["steps/reward"] = (last & bool(episode.success)).astype(np.float32)
    return encode_example(features)
