"""Names and rules of the raw DROID on-disk layout, in one place.

An episode folder is `<root>/<LAB>/success|failure/<YYYY-MM-DD>/<time.asctime() with ' ' -> '_'>/` holding
`trajectory.h5`, `metadata_<uuid>.json` and `recordings/MP4/<serial>.mp4` (left eye of each camera). Every h5 leaf is a
dataset of T rows; the h5 holds no pixels. The reader, the writer and the validator all take their names from here.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

TRAJECTORY_FILE = "trajectory.h5"
METADATA_GLOB = "metadata_*.json"
MP4_DIR = Path("recordings") / "MP4"
DROID_CONTROL_HZ = 15.0
DEFAULT_DROID_VERSION = "1.3"

# h5 dataset paths.
CARTESIAN_POSITION = "observation/robot_state/cartesian_position"
GRIPPER_POSITION = "observation/robot_state/gripper_position"
JOINT_POSITIONS = "observation/robot_state/joint_positions"
JOINT_VELOCITIES = "observation/robot_state/joint_velocities"
CAMERA_TYPE_GROUP = "observation/camera_type"
CAMERA_EXTRINSICS_GROUP = "observation/camera_extrinsics"
CAMERA_TIMESTAMPS_GROUP = "observation/timestamp/cameras"
ROBOT_TIMESTAMPS_GROUP = "observation/timestamp/robot_state"
CONTROL_TIMESTAMPS_GROUP = "observation/timestamp/control"
CONTROLLER_INFO_GROUP = "observation/controller_info"
SKIP_ACTION = "observation/timestamp/skip_action"
ACTION_CARTESIAN_POSITION = "action/cartesian_position"
ACTION_GRIPPER_POSITION = "action/gripper_position"
ACTION_JOINT_POSITION = "action/joint_position"
OBJECT_POSES_GROUP = "observation/object_poses"
"""Not in DROID (real episodes do not track objects): simulated episodes record each free object's pose here, one
[T, 7] dataset per object (position xyz in m, orientation quaternion w, x, y, z, base frame)."""

# `observation/camera_type/<serial>` values.
CAMERA_TYPE_WRIST = 0
CAMERA_TYPE_EXTERIOR = 1

# Metadata keys holding each role's MP4 path (what Meta's V-JEPA 2-AC loader reads, e.g. `left_mp4_path`).
ROLE_METADATA_KEYS = {
    "left": "left_mp4_path",
    "right": "right_mp4_path",
    "ext1": "ext1_mp4_path",
    "ext2": "ext2_mp4_path",
    "wrist": "wrist_mp4_path",
}

_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def extrinsics_key(serial: str) -> str:
    """h5 path of a camera's left-eye extrinsics [T,6] (xyz + Euler "xyz" in the robot base frame)."""
    return f"{CAMERA_EXTRINSICS_GROUP}/{serial}_left"


def frame_received_key(serial: str) -> str:
    """h5 path of a camera's per-step image timestamps in ms."""
    return f"{CAMERA_TIMESTAMPS_GROUP}/{serial}_frame_received"


def mp4_relpath(serial: str) -> Path:
    return MP4_DIR / f"{serial}.mp4"


def serial_from_mp4_path(path: str) -> str:
    """`.../recordings/MP4/<serial>.mp4` -> `<serial>` (how the reference loader names cameras)."""
    return Path(path.split("recordings/MP4/")[-1]).stem


def episode_folder_name(when: datetime) -> str:
    """DROID's episode folder name: `time.asctime()` with spaces replaced (single-digit days give a double '_')."""
    return time.asctime(when.timetuple()).replace(" ", "_")


@dataclass(frozen=True)
class EpisodePathInfo:
    """What an episode's location says about it; fields are None when the path does not follow the layout."""

    lab: str | None
    success: bool | None
    day: str | None


def parse_episode_path(folder: Path) -> EpisodePathInfo:
    """Lab, outcome and day from `<LAB>/success|failure/<YYYY-MM-DD>/<time>/`."""
    parts = Path(folder).resolve().parts
    if len(parts) >= 4 and parts[-3] in ("success", "failure") and _DAY_RE.match(parts[-2]):
        return EpisodePathInfo(lab=parts[-4], success=parts[-3] == "success", day=parts[-2])
    return EpisodePathInfo(lab=None, success=None, day=None)


def resolve_camera_roles(camera_types: Mapping[str, int], first_extrinsics: Mapping[str, np.ndarray]) -> dict[str, str]:
    """DROID's camera-role rules (postprocessing `parse_trajectory`).

    wrist = the serial of camera type 0; ext1/ext2 = the exterior (type 1) serials in sorted string order;
    left = whichever of ext1/ext2 has the larger base-frame y in its first extrinsics row (the robot's left), right =
    the other. With a single exterior camera it is ext1 and left. Serials without extrinsics fall back to ext1 = left.
    """
    roles: dict[str, str] = {}
    wrist = [s for s, kind in camera_types.items() if int(kind) == CAMERA_TYPE_WRIST]
    if wrist:
        roles["wrist"] = min(wrist)
    exterior = sorted(s for s, kind in camera_types.items() if int(kind) == CAMERA_TYPE_EXTERIOR)
    for role, serial in zip(("ext1", "ext2"), exterior):
        roles[role] = serial
    if len(exterior) == 1:
        roles["left"] = exterior[0]
    elif len(exterior) >= 2:
        ext1, ext2 = exterior[0], exterior[1]
        if ext1 in first_extrinsics and ext2 in first_extrinsics:
            left_is_ext1 = float(first_extrinsics[ext1][1]) > float(first_extrinsics[ext2][1])
        else:
            left_is_ext1 = True
        roles["left"], roles["right"] = (ext1, ext2) if left_is_ext1 else (ext2, ext1)
    return roles
