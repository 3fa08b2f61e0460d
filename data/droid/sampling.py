"""Which frames make up a training clip.

`reference_clip_indices` is V-JEPA 2-AC's rule (`app/vjepa_droid/droid.py`): stride `ceil(video_fps / fps)`, a window
of `frames_per_clip * stride` frames ending at `ef ~ U[window, num_frames)`, frame numbers used directly as h5 rows.
`timestamp_clip_indices` instead picks the steps whose recorded image timestamps are closest to an evenly spaced
grid at `fps`, which stays correct when a video's declared frame rate is not its acquisition rate.
"""

from __future__ import annotations

import math

import numpy as np


class ClipTooShortError(ValueError):
    """An episode with fewer frames than one clip spans."""


def reference_stride(video_fps: float, fps: float) -> int:
    """Frames between consecutive clip frames: `ceil(video_fps / fps)`, at least 1."""
    if fps <= 0 or video_fps <= 0:
        raise ValueError(f"frame rates must be positive, got video_fps={video_fps}, fps={fps}")
    return max(1, math.ceil(video_fps / fps))


def reference_clip_indices(
    num_frames: int, video_fps: float, *, frames_per_clip: int, fps: float, rng: np.random.Generator
) -> np.ndarray:
    """Frame numbers [frames_per_clip] of a random clip by the reference rule.

    The reference draws `ef` from `[window, num_frames)`; when the video is exactly one window long that range is
    empty (the reference then fails and draws another video), and here the single possible window is returned.
    """
    stride = reference_stride(video_fps, fps)
    window = frames_per_clip * stride
    if num_frames < window:
        raise ClipTooShortError(f"{num_frames} frames, a clip of {frames_per_clip} at stride {stride} needs {window}")
    end = int(rng.integers(window, num_frames)) if num_frames > window else window
    start = end - window
    return np.arange(start, start + window, stride, dtype=np.int64)


def timestamp_clip_indices(
    timestamps_ms: np.ndarray, *, frames_per_clip: int, fps: float, rng: np.random.Generator
) -> np.ndarray:
    """Step indices [frames_per_clip] whose timestamps are nearest to `t0 + k * 1000 / fps` for a random start step.

    Timestamps must not decrease (they are per-step image times in ms, e.g. `<serial>_frame_received`).
    """
    t = np.asarray(timestamps_ms, dtype=np.float64).reshape(-1)
    if t.size == 0 or np.any(np.diff(t) < 0) or not np.all(np.isfinite(t)):
        raise ValueError("timestamps must be a non-empty, finite, non-decreasing sequence")
    span_ms = (frames_per_clip - 1) * 1000.0 / fps
    # Start steps from which the whole clip fits before the last timestamp (half a period of slack for jitter).
    last_start = int(np.searchsorted(t, t[-1] - span_ms + 500.0 / fps, side="right")) - 1
    if last_start < 0 or t[-1] - t[0] < span_ms - 500.0 / fps:
        raise ClipTooShortError(
            f"episode spans {t[-1] - t[0]:.0f} ms, a clip of {frames_per_clip} at {fps} fps needs {span_ms:.0f} ms"
        )
    start = int(rng.integers(0, last_start + 1))
    targets = t[start] + np.arange(frames_per_clip) * 1000.0 / fps
    right = np.clip(np.searchsorted(t, targets), 1, t.size - 1)
    left = right - 1
    nearest = np.where(np.abs(t[left] - targets) <= np.abs(t[right] - targets), left, right)
    return nearest.astype(np.int64)
