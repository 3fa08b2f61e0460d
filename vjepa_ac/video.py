"""Demo videos: the camera view, the current goal image and the planner's energy curve side by side, as H.264 MP4."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from vjepa_ac.data.droid.video import write_video

_WHITE = (255, 255, 255)
_CURVE = (40, 110, 220)
_MARK = (220, 60, 40)


@dataclass
class DemoFrame:
    """What the camera saw and which (sub-)goal image the planner was aiming at."""

    camera: np.ndarray
    """uint8 [H, W, 3] RGB."""
    goal: np.ndarray
    """uint8 [H, W, 3] RGB, the sub-goal being pursued."""
    caption: str = ""


@dataclass
class EpisodeVideo:
    """Frames of one episode and an energy per control step (the demo plots the observed frame's energy to its goal)."""

    title: str
    frames: list[DemoFrame] = field(default_factory=list)
    energies: list[float] = field(default_factory=list)
    energy_at_frame: list[int] = field(default_factory=list)
    """For each frame, how many entries of `energies` existed when it was shown."""

    def add(self, camera: np.ndarray, goal: np.ndarray, caption: str = "") -> None:
        self.frames.append(DemoFrame(camera=camera, goal=goal, caption=caption))
        self.energy_at_frame.append(len(self.energies))


def _fit(image: np.ndarray, height: int, width: int) -> np.ndarray:
    image = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
    if image.shape[:2] == (height, width):
        return image
    shrinking = image.shape[0] > height
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def panel_width(image: np.ndarray, height: int) -> int:
    """Width (even, as H.264 needs) that keeps the image's aspect ratio at `height`."""
    return max(2, round(image.shape[1] * height / image.shape[0] / 2.0) * 2)


def _label(panel: np.ndarray, text: str) -> None:
    """White text on a dark box in the top-left corner, readable over any background."""
    if text:
        (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        cv2.rectangle(panel, (2, 2), (10 + width, 8 + height + baseline), (30, 30, 30), -1)
        cv2.putText(panel, text, (6, 5 + height), cv2.FONT_HERSHEY_SIMPLEX, 0.45, _WHITE, 1, cv2.LINE_AA)


def energy_panel(energies: Sequence[float], shown: int, size: int, y_range: tuple[float, float] | None = None) -> np.ndarray:
    """A [size, size, 3] plot of energies[:shown] (latent L1 to the goal) against planning step."""
    panel = np.full((size, size, 3), 250, dtype=np.uint8)
    margin = 24
    cv2.rectangle(panel, (margin, margin), (size - 8, size - margin), (200, 200, 200), 1)
    cv2.putText(panel, "energy", (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
    values = np.asarray(energies[:shown], dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return panel
    total = max(len(energies), 2)
    lo, hi = y_range if y_range is not None else (float(values[finite].min()), float(values[finite].max()))
    span = hi - lo if hi > lo else 1.0
    xs = margin + (np.flatnonzero(finite) / (total - 1)) * (size - 8 - margin)
    values = values[finite]
    ys = (size - margin) - (values - lo) / span * (size - 2 * margin)
    points = np.stack([xs, ys], axis=1).round().astype(np.int32)
    cv2.polylines(panel, [points.reshape(-1, 1, 2)], False, _CURVE, 2, cv2.LINE_AA)
    cv2.circle(panel, tuple(int(v) for v in points[-1]), 3, _MARK, -1, cv2.LINE_AA)
    cv2.putText(panel, f"{values[-1]:.3f}", (margin + 4, size - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (60, 60, 60), 1)
    return panel


def compose(video: EpisodeVideo, index: int, height: int = 256) -> np.ndarray:
    """Frame `index` of the episode as one RGB image of `height` rows: camera | goal | energy plot.

    The camera and goal panels keep the camera's aspect ratio; the energy plot is square.
    """
    frame = video.frames[index]
    width = panel_width(frame.camera, height)
    camera = _fit(frame.camera, height, width).copy()
    goal = _fit(frame.goal, height, width).copy()
    _label(camera, frame.caption or video.title)
    _label(goal, "goal")
    energies = [e for e in video.energies if np.isfinite(e)]
    y_range = (min(energies), max(energies)) if energies else None
    plot = energy_panel(video.energies, video.energy_at_frame[index], height, y_range)
    return np.concatenate([camera, goal, plot], axis=1)


def write_episode_videos(path: str | Path, videos: Sequence[EpisodeVideo], fps: float = 10.0, height: int = 256) -> Path:
    """All episodes one after another in a single MP4 (every camera view must share one aspect ratio)."""
    images = [compose(video, i, height) for video in videos for i in range(len(video.frames))]
    return write_video(path, images, fps, crf=23, keyframe_interval=None, preset="veryfast")
