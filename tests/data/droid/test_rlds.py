"""RLDS without TensorFlow: TFRecord framing, tf.train.Example wire format, and DROID episodes from shards."""

import struct

import numpy as np
import pytest

from vjepa_ac.data.droid import DroidClipDataset, EpisodeError, iter_episode_references, open_episode
from vjepa_ac.data.droid.rlds import (
    TFRecordError,
    count_records,
    crc32c,
    decode_example,
    encode_example,
    episode_to_example,
    masked_crc32c,
    read_record,
    scan_shard,
    write_tfrecord,
)

SHARD_NAME = "r2d2_faceblur-train.tfrecord-00000-of-00001"


def test_crc32c_known_values():
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert crc32c(b"") == 0
    assert masked_crc32c(b"") == 0xA282EAD8


def test_tfrecord_framing_byte_exact(tmp_path):
    path = tmp_path / "x.tfrecord"
    write_tfrecord(path, [b"abc", b""])
    raw = path.read_bytes()
    header = struct.pack("<Q", 3)
    assert raw[:8] == header and raw[8:12] == struct.pack("<I", masked_crc32c(header))
    assert raw[12:15] == b"abc" and raw[15:19] == struct.pack("<I", masked_crc32c(b"abc"))
    assert len(raw) == (16 + 3) + (16 + 0)
    assert count_records(path) == 2 and read_record(path, 0, verify=True) == b"abc" and read_record(path, 1) == b""


def test_example_wire_format_golden_bytes():
    # Example{features{feature{key:"a" value{int64_list{value:[1, 300]}}}}}, written out by hand from the .proto:
    # int64_list = Feature field 3, packed values field 1; the map entry has key = 1, value = 2.
    int64_list = b"\x0a\x03" + b"\x01\xac\x02"
    feature = b"\x1a" + bytes([len(int64_list)]) + int64_list
    entry = b"\x0a\x01a" + b"\x12" + bytes([len(feature)]) + feature
    features = b"\x0a" + bytes([len(entry)]) + entry
    golden = b"\x0a" + bytes([len(features)]) + features
    assert encode_example({"a": np.array([1, 300], np.int64)}) == golden
    decoded = decode_example(golden)
    np.testing.assert_array_equal(decoded["a"], [1, 300])


def test_example_round_trip_and_unpacked_values():
    values = {
        "f": np.array([1.5, -2.25, 3.0], np.float64),  # stored as float32, as TFDS does
        "i": np.array([-1, 0, 2**40], np.int64),
        "b": [b"\xff\xd8jpeg", b""],
        "s": "text",
    }
    out = decode_example(encode_example(values))
    assert out["f"].dtype == np.float32 and out["f"].tolist() == [1.5, -2.25, 3.0]
    assert out["i"].tolist() == [-1, 0, 2**40] and out["b"] == [b"\xff\xd8jpeg", b""] and out["s"] == [b"text"]
    # Parsers must also accept non-packed repeated scalars: float_list{value: 1.0 value: 2.0} with wire type 5.
    unpacked = b"\x0d" + struct.pack("<f", 1.0) + b"\x0d" + struct.pack("<f", 2.0)
    feature = b"\x12" + bytes([len(unpacked)]) + unpacked
    entry = b"\x0a\x01u\x12" + bytes([len(feature)]) + feature
    example = b"\x0a" + bytes([len(entry) + 2]) + b"\x0a" + bytes([len(entry)]) + entry
    assert decode_example(example)["u"].tolist() == [1.0, 2.0]


@pytest.fixture(scope="module")
def shard(tmp_path_factory, droid_root):
    references = list(iter_episode_references(droid_root))
    path = tmp_path_factory.mktemp("rlds") / SHARD_NAME
    examples = []
    for reference in references:
        with open_episode(reference) as episode:
            examples.append(episode_to_example(episode))
    write_tfrecord(path, examples)
    return path, references


def test_rlds_episode_matches_raw(shard):
    path, references = shard
    assert count_records(path) == 3
    index = next(i for i, r in enumerate(references) if r.endswith("Sun_Aug__6_22:13:04_2023"))
    rlds = open_episode(f"{path}#{index}")
    raw = open_episode(references[index])
    assert rlds.num_steps == raw.num_steps and rlds.success is True and rlds.task == raw.task
    assert rlds.episode_id.endswith("/success/2023-08-06/Sun_Aug__6_22:13:04_2023") and rlds.lab == "TEST"
    np.testing.assert_allclose(rlds.states(), raw.states(), atol=1e-6)  # float32 on disk
    np.testing.assert_allclose(rlds.joint_positions(), raw.joint_positions(), atol=1e-6)
    assert set(rlds.camera_roles) == {"ext1", "ext2", "wrist"}
    frames = rlds.read_frames("ext1", [0, 10, 20])
    assert frames.shape == (3, 180, 320, 3) and frames.dtype == np.uint8
    np.testing.assert_allclose(frames[:, 90, 160].mean(axis=1), [0, 70, 140], atol=4)
    failed = next(i for i, r in enumerate(references) if "/failure/" in r)
    assert open_episode(f"{path}#{failed}").success is False
    with pytest.raises(EpisodeError, match="no left/right roles"):
        rlds.read_frames("left", [0])
    with pytest.raises(EpisodeError, match="extrinsics"):
        rlds.extrinsics("ext1")


def test_rlds_step_features(shard):
    path, references = shard
    index = next(i for i, r in enumerate(references) if "/success/" in r)
    features = decode_example(read_record(path, index, verify=True))
    steps = len(features["steps/is_first"])
    assert features["steps/is_first"].tolist() == [1] + [0] * (steps - 1)
    assert features["steps/is_last"][-1] == 1 and features["steps/reward"][-1] == 1.0
    assert features["steps/action"].size == steps * 7
    assert features["episode_metadata/file_path"][0].endswith(b"trajectory.h5")


def test_dataset_and_index_over_shards(shard):
    path, _ = shard
    references = list(iter_episode_references(path.parent))
    assert references == [f"{path}#{i}" for i in range(3)]
    item = DroidClipDataset(references, camera="ext1", seed=0)[0]
    assert item["frames"].shape == (8, 180, 320, 3) and item["actions"].shape == (7, 7)
    np.testing.assert_array_equal(item["extrinsics"].numpy(), 0)  # not recorded in RLDS


def test_corrupt_shards(tmp_path, shard):
    path, _ = shard
    data = path.read_bytes()
    cut = tmp_path / SHARD_NAME
    cut.write_bytes(data[: len(data) - 100])
    # The records before the damage stay readable; the scan says what is wrong after them.
    scan = scan_shard(cut)
    assert len(scan.offsets) == 2 and "runs past the end" in scan.problem and str(cut) in scan.problem
    assert count_records(cut) == 2 and read_record(cut, 1, verify=True) == read_record(path, 1)
    with pytest.raises(TFRecordError, match="no record 2 .*runs past the end"):
        read_record(cut, 2)
    flipped = bytearray(data)
    flipped[3] ^= 0xFF
    bad = tmp_path / ("bad-" + SHARD_NAME)
    bad.write_bytes(bytes(flipped))
    assert scan_shard(bad).offsets == () and "corrupt record length" in scan_shard(bad).problem
    assert scan_shard(path).problem is None
    with pytest.raises(TFRecordError, match="no record 7"):
        read_record(path, 7)


def test_rlds_action_is_the_commanded_pose(shard):
    path, references = shard
    raw = open_episode(references[0])
    features = decode_example(read_record(path, 0))
    expected = np.concatenate(
        [raw.read_array("action/cartesian_position"), raw.read_array("action/gripper_position")[:, None]], axis=1
    )
    np.testing.assert_allclose(features["steps/action"].reshape(-1, 7), expected, atol=1e-6)


def test_validate_rlds_records(shard):
    from vjepa_ac.data.droid import validate_episode

    path, _ = shard
    report = validate_episode(f"{path}#1")
    assert report.ok, report.problems
    assert report.frames == {"ext1": report.num_steps, "ext2": report.num_steps, "wrist": report.num_steps}
