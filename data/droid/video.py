"""MP4 reading and writing; the one place that knows which decoder we use.

Clips need a handful of frames from 1280x720 videos, so readers seek to the keyframe before the first wanted frame and
decode forward only as far as the last one. Frame numbers are stream positions (frame i of the MP4 is h5 step i);
container frame rates are not trusted for indexing. `bench/droid_loader.py` measures the backends against each other
and against decoding the whole video; PyAV won there (exact, pts-based seeking), so it is the default.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import numpy as np

DEFAULT_BACKEND = "pyav"
BACKENDS = ("pyav", "opencv")


class VideoError(RuntimeError):
    """A video that cannot be opened or does not have the frames asked for."""


class VideoReader(Protocol):
    """Random access to the frames of one video, as RGB uint8 arrays."""

    path: Path
    num_frames: int
    average_fps: float
    width: int
    height: int

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Frames [k, H, W, 3] uint8 RGB at the given frame numbers, in the order given."""
        ...

    def close(self) -> None: ...


def open_video(path: str | Path, *, backend: str | None = None) -> VideoReader:
    """A reader for `path` using `backend` ("pyav" or "opencv"; default `DEFAULT_BACKEND`)."""
    backend = backend or DEFAULT_BACKEND
    if backend == "pyav":
        return PyAVReader(path)
    if backend == "opencv":
        return OpenCVReader(path)
    raise ValueError(f"unknown video backend {backend!r}; choose one of {BACKENDS}")


def _check_indices(indices: Sequence[int], num_frames: int, path: Path) -> np.ndarray:
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= num_frames):
        raise VideoError(f"{path}: frame indices {idx.min()}..{idx.max()} outside 0..{num_frames - 1}")
    return idx


def _in_request_order(frames: dict[int, np.ndarray], idx: np.ndarray, height: int, width: int) -> np.ndarray:
    if not idx.size:
        return np.zeros((0, height, width, 3), np.uint8)
    return np.stack([frames[i] for i in idx.tolist()])


class PyAVReader:
    """Exact random access with PyAV: a packet scan (no decoding) maps frame numbers to timestamps and keyframes."""

    def __init__(self, path: str | Path):
        import av

        self.path = Path(path)
        try:
            self._container = av.open(str(self.path))
            self._stream = self._container.streams.video[0]
        except (av.error.FFmpegError, IndexError, OSError) as exc:
            raise VideoError(f"{self.path}: cannot open video ({exc})") from exc
        # No decoder threads at all: DataLoader workers give the parallelism, and a forked worker that frees a
        # decoder inherited with live threads deadlocks in libavcodec.
        self._stream.thread_count = 1
        pts, keyframe = [], []
        try:
            for packet in self._container.demux(self._stream):
                if packet.pts is not None and packet.size > 0:
                    pts.append(packet.pts)
                    keyframe.append(packet.is_keyframe)
        except av.error.FFmpegError as exc:
            raise VideoError(f"{self.path}: unreadable video stream ({exc})") from exc
        order = np.argsort(pts, kind="stable")
        self._pts = np.asarray(pts, dtype=np.int64)[order]
        self._pts_to_index = {int(p): i for i, p in enumerate(self._pts)}
        self._keyframe_indices = [i for i, k in enumerate(np.asarray(keyframe, dtype=bool)[order]) if k] or [0]
        self.num_frames = len(self._pts)
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.average_fps = float(rate) if rate else 0.0
        self.width = self._stream.codec_context.width
        self.height = self._stream.codec_context.height

    def _keyframe_before(self, index: int) -> int:
        return self._keyframe_indices[max(bisect.bisect_right(self._keyframe_indices, index) - 1, 0)]

    def read(self, indices: Sequence[int]) -> np.ndarray:
        import av

        idx = _check_indices(indices, self.num_frames, self.path)
        wanted = sorted(set(idx.tolist()))
        wanted_lookup = set(wanted)
        got: dict[int, np.ndarray] = {}
        frames = None
        position = -1  # index of the last decoded frame
        try:
            for target in wanted:
                keyframe = self._keyframe_before(target)
                # Seek only when the keyframe before the target lies past where the decoder already is.
                if frames is None or keyframe > position + 1:
                    self._container.seek(int(self._pts[keyframe]), stream=self._stream, backward=True)
                    frames = self._container.decode(self._stream)
                    position = keyframe - 1
                while position < target:
                    frame = next(frames)
                    position = (
                        position + 1 if frame.pts is None else self._pts_to_index.get(int(frame.pts), position + 1)
                    )
                    if position in wanted_lookup:
                        got[position] = frame.to_ndarray(format="rgb24")
        except (StopIteration, av.error.FFmpegError) as exc:
            raise VideoError(f"{self.path}: decoding stopped before frame {max(wanted)} ({exc!r})") from exc
        missing = [i for i in wanted if i not in got]
        if missing:
            raise VideoError(f"{self.path}: could not decode frames {missing}")
        return _in_request_order(got, idx, self.height, self.width)

    def close(self) -> None:
        self._container.close()


class OpenCVReader:
    """OpenCV's `VideoCapture` (frame-number seeking, BGR converted to RGB); kept to measure against PyAV."""

    def __init__(self, path: str | Path):
        import cv2

        self.path = Path(path)
        if not self.path.is_file():
            raise VideoError(f"{self.path}: no such video file")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise VideoError(f"{self.path}: cannot open video")
        self.num_frames = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.average_fps = float(self._cap.get(cv2.CAP_PROP_FPS))
        self.width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self._position = -1  # index of the last grabbed frame

    def read(self, indices: Sequence[int]) -> np.ndarray:
        import cv2

        idx = _check_indices(indices, self.num_frames, self.path)
        got: dict[int, np.ndarray] = {}
        for target in sorted(set(idx.tolist())):
            # Seek when going backwards or far ahead; otherwise grabbing forward is cheaper than a seek.
            if target <= self._position or target - self._position > 32:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, target)
                self._position = target - 1
            while self._position < target:
                if not self._cap.grab():
                    raise VideoError(f"{self.path}: could not decode frame {target}")
                self._position += 1
            ok, bgr = self._cap.retrieve()
            if not ok:
                raise VideoError(f"{self.path}: could not decode frame {target}")
            got[target] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return _in_request_order(got, idx, self.height, self.width)

    def close(self) -> None:
        self._cap.release()


def decode_all_frames(path: str | Path) -> np.ndarray:
    """Every frame [N, H, W, 3] RGB uint8, decoded in order (what naive loaders do; used for short videos and as a
    baseline)."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_count = 1
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    except (av.error.FFmpegError, IndexError, OSError) as exc:
        raise VideoError(f"{path}: cannot decode video ({exc})") from exc
    if not frames:
        raise VideoError(f"{path}: video has no frames")
    return np.stack(frames)


def _checked_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    return frames


class VideoWriter:
    """Encode RGB uint8 frames to an MP4 (H.264, yuv420p) a batch at a time; `frames_written` counts them.

    A short keyframe interval keeps clip reads cheap: seeking never has to decode more than `keyframe_interval` frames
    to reach a wanted one (None: the encoder's choice; `preset` trades encoding speed for size). Odd frame sizes are padded by one pixel row/column (H.264 4:2:0 needs even sizes); every
    batch must have the size of the first.
    """

    def __init__(self, path: str | Path, fps: float, *, codec: str = "libx264", crf: int = 18,
                 keyframe_interval: int | None = 15, preset: str | None = None) -> None:
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.path), mode="w")
        self._stream = self._container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        self._stream.pix_fmt = "yuv420p"
        options = {"crf": str(crf)}
        if keyframe_interval is not None:
            options.update(g=str(keyframe_interval), bf="0")
        if preset is not None:
            options["preset"] = preset
        self._stream.options = options if codec == "libx264" else {}
        self._size: tuple[int, int] | None = None
        self.frames_written = 0

    def write(self, frames: np.ndarray) -> None:
        import av

        frames = _checked_frames(frames)
        if self._size is None:
            self._size = frames.shape[1:3]
            self._stream.width, self._stream.height = frames.shape[2] + frames.shape[2] % 2, \
                frames.shape[1] + frames.shape[1] % 2
        elif frames.shape[1:3] != self._size:
            raise ValueError(f"{self.path}: frames of {frames.shape[1:3]} after frames of {self._size}; a video has "
                             "one size")
        pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
        if pad_h or pad_w:
            frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        for image in frames:
            for packet in self._stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                self._container.mux(packet)
        self.frames_written += len(frames)

    def close(self) -> None:
        if self._size is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_video(
    path: str | Path,
    frames: np.ndarray | Sequence[np.ndarray],
    fps: float,
    *,
    codec: str = "libx264",
    crf: int = 18,
    keyframe_interval: int | None = 15,
    preset: str | None = None,
) -> Path:
    """Encode RGB uint8 frames [T, H, W, 3] (an array, or a sequence of [H, W, 3] frames of one size, encoded one at a
    time) to an MP4 (H.264, yuv420p) through `VideoWriter`; the project's one video writer (DROID recordings, replays,
    run and demo videos, LeRobot exports). `keyframe_interval` None leaves keyframes to the encoder, for videos that
    are only watched; `preset` trades encoding speed for size."""
    if isinstance(frames, np.ndarray):
        frames = _checked_frames(frames)
    if len(frames) == 0:
        raise ValueError("cannot write a video with no frames")
    with VideoWriter(path, fps, codec=codec, crf=crf, keyframe_interval=keyframe_interval, preset=preset) as writer:
        if isinstance(frames, np.ndarray):
            writer.write(frames)
        else:
            for image in frames:
                writer.write(np.asarray(image)[None])
    return Path(path)
