"""The episode interface shared by raw DROID folders and RLDS records."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from vjepa_ac.data.conventions import camera_views, join_views
from vjepa_ac.data.droid.poses import states_to_actions


class EpisodeError(ValueError):
    """An episode that is missing, unreadable or inconsistent; the message names the episode and the problem."""


class DroidEpisode(ABC):
    """One DROID trajectory: robot states at every control step and the camera frames recorded with them.

    Step i of every array is video frame i. Cameras are asked for by role ("left", "right", "ext1", "ext2", "wrist")
    or by serial number. Arrays are read lazily, so opening an episode is cheap.
    """

    episode_id: str
    fps: float  # control rate of the recording (steps per second)

    @property
    @abstractmethod
    def num_steps(self) -> int:
        """Number of control steps L."""

    @abstractmethod
    def states(self) -> np.ndarray:
        """[L, 7] float64: flange xyz + Euler "xyz" (base frame) ++ gripper (0 open, 1 closed)."""

    def actions(self) -> np.ndarray:
        """[L-1, 7] float64 V-JEPA 2-AC actions between consecutive states (Δxyz, Euler "xyz" of R_{t+1} R_tᵀ, Δg)."""
        return states_to_actions(self.states())

    @abstractmethod
    def joint_positions(self) -> np.ndarray:
        """[L, 7] float64 arm joint angles."""

    @property
    @abstractmethod
    def camera_roles(self) -> dict[str, str]:
        """Role -> camera serial (or feature name for RLDS) for every role this episode can serve."""

    @abstractmethod
    def read_frames(self, role: str, indices: Sequence[int]) -> np.ndarray:
        """Frames [k, H, W, 3] uint8 RGB of one camera at the given step indices."""

    @abstractmethod
    def num_frames(self, role: str) -> int:
        """Number of video frames of a camera (may be one fewer than `num_steps`)."""

    @abstractmethod
    def video_fps(self, role: str) -> float:
        """Frame rate the video declares (what the reference clip rule divides by)."""

    @abstractmethod
    def extrinsics(self, role: str) -> np.ndarray:
        """[L, 6] float64 camera pose in the robot base frame (xyz + Euler "xyz"); EpisodeError if not recorded."""

    def frame_timestamps_ms(self, role: str) -> np.ndarray | None:
        """[L] per-step image timestamps in ms, or None when the format does not record them."""
        return None

    @property
    @abstractmethod
    def metadata(self) -> dict:
        """Free-form episode metadata (raw: the metadata JSON; RLDS: `episode_metadata/*`)."""

    @property
    @abstractmethod
    def success(self) -> bool | None:
        """Whether the operator marked the episode a success (None if unknown)."""

    @property
    def task(self) -> str:
        """Language description of the task ("" if none)."""
        return str(self.metadata.get("current_task", "") or "")

    @property
    def version(self) -> str | None:
        """DROID version the episode was recorded with, if known."""
        return None

    @property
    def lab(self) -> str | None:
        return None

    def usable_steps(self, role: str) -> int:
        """Steps that have both a state and a frame of `role` (DROID MP4s can be one frame short); for a multi-view
        camera ("left+wrist"), a frame of every view."""
        return min(self.num_steps, *(self.num_frames(view) for view in camera_views(role)))

    def read_camera(self, camera: str, indices: Sequence[int]) -> np.ndarray:
        """Frames [k, H, W, 3] of a camera role, or of a multi-view camera ("left+wrist": the views' frames side by
        side, [k, H, views x W, 3]; `data.conventions.join_views`)."""
        return join_views([self.read_frames(view, indices) for view in camera_views(camera)], camera)

    def close(self) -> None:
        """Release open files; the episode reopens them if used again."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.episode_id!r})"
