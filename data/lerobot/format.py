"""The LeRobot dataset layout (codebase versions v2.0, v2.1 and v3.0), in one place.

Every version keeps `meta/info.json`: `codebase_version`, `fps`, `chunks_size`, the `data_path` / `video_path`
templates and `features` (name -> {dtype, shape, names, info}); `dtype` "video" features are MP4s per camera key,
the others are parquet columns (a shape-(1,) feature is a scalar column, a longer vector a list column).

- v2.0 / v2.1: one parquet and one MP4 per camera per episode, grouped in chunks of `chunks_size` episodes:
  `data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet`,
  `videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4`; episodes are listed in
  `meta/episodes.jsonl` ({episode_index, tasks, length}) and tasks in `meta/tasks.jsonl` ({task_index, task}).
- v3.0: many episodes per file. `data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet` holds the rows of
  several episodes (column `episode_index`, global row `index`); `videos/{video_key}/chunk-.../file-....mp4`
  concatenates their frames. `meta/episodes/chunk-.../file-....parquet` has one row per episode with `length`,
  `tasks`, `data/chunk_index`, `data/file_index`, `dataset_from_index`, `dataset_to_index` and per camera
  `videos/{key}/chunk_index|file_index|from_timestamp|to_timestamp` (the episode's span inside the shared MP4).
  Tasks are `meta/tasks.parquet` (task string as the index, column `task_index`).

Rows carry `timestamp` (s, = frame_index / fps), `frame_index`, `episode_index`, `index` and `task_index`.

The DROID port (`lerobot/droid_1.0.1`) names its features after DROID's RLDS ones; this project writes the same
names, so its exports and the port read alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

INFO_FILE = Path("meta") / "info.json"
SUPPORTED_VERSIONS = ("v2.0", "v2.1", "v3.0")
WRITE_VERSIONS = ("v2.1", "v3.0")
DEFAULT_CHUNKS_SIZE = 1000
DEFAULT_DATA_FILE_SIZE_MB = 100
DEFAULT_VIDEO_FILE_SIZE_MB = 500

V2_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V2_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
V2_EPISODES_FILE = Path("meta") / "episodes.jsonl"
V2_TASKS_FILE = Path("meta") / "tasks.jsonl"
V3_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V3_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
V3_EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V3_EPISODES_DIR = Path("meta") / "episodes"
V3_TASKS_FILE = Path("meta") / "tasks.parquet"

# Feature names of the DROID port.
CARTESIAN_POSITION = "observation.state.cartesian_position"
GRIPPER_POSITION = "observation.state.gripper_position"
JOINT_POSITION = "observation.state.joint_position"
STATE = "observation.state"
ACTION_CARTESIAN_POSITION = "action.cartesian_position"
ACTION_GRIPPER_POSITION = "action.gripper_position"
ACTION = "action"
IS_EPISODE_SUCCESSFUL = "is_episode_successful"
IMAGE_PREFIX = "observation.images."
EXTRINSICS_PREFIX = "camera_extrinsics."
CAMERA_NAMES = {"ext1": "exterior_1_left", "ext2": "exterior_2_left", "wrist": "wrist_left"}
"""Camera role -> the DROID port's camera name (`observation.images.<name>`, `camera_extrinsics.<name>`)."""
POSE_AXES = ["x", "y", "z", "roll", "pitch", "yaw"]
INDEX_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")


class LeRobotFormatError(ValueError):
    """A LeRobot dataset whose metadata is missing, unreadable, of an unsupported version or inconsistent."""


def is_lerobot_root(path: str | Path) -> bool:
    """Whether `path` is a folder holding `meta/info.json`."""
    return (Path(path) / INFO_FILE).is_file()


@dataclass(frozen=True)
class LeRobotInfo:
    """What `meta/info.json` says about a dataset."""

    root: Path
    version: str
    fps: float
    features: dict
    data_path: str
    video_path: str | None
    chunks_size: int
    total_episodes: int
    robot_type: str | None = None

    @property
    def video_keys(self) -> list[str]:
        return [key for key, spec in self.features.items() if spec.get("dtype") == "video"]

    @property
    def is_v3(self) -> bool:
        return self.version == "v3.0"

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(int(n) for n in self.features[key].get("shape", (1,)))


def read_info(root: str | Path) -> LeRobotInfo:
    """Parse and check `meta/info.json`; LeRobotFormatError naming the file and the problem."""
    root = Path(root)
    path = root / INFO_FILE
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise LeRobotFormatError(f"{root}: not a LeRobot dataset (no {INFO_FILE})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LeRobotFormatError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(info, dict):
        raise LeRobotFormatError(f"{path}: expected a JSON object")
    version = str(info.get("codebase_version", ""))
    if version not in SUPPORTED_VERSIONS:
        if _version_tuple(version) > _version_tuple(SUPPORTED_VERSIONS[-1]):
            hint = (f"newer than this reader supports ({', '.join(SUPPORTED_VERSIONS)}); convert it to v3.0 with "
                    "lerobot's converter or update vjepa-ac")
        elif version:
            hint = (f"older than this reader supports ({', '.join(SUPPORTED_VERSIONS)}); convert it with lerobot's "
                    "v2.1/v3.0 converter")
        else:
            hint = "missing; expected one of " + ", ".join(SUPPORTED_VERSIONS)
        raise LeRobotFormatError(f"{path}: codebase_version {version!r} is {hint}")
    missing = [key for key in ("fps", "features", "data_path") if key not in info]
    if missing:
        raise LeRobotFormatError(f"{path}: {version} info lacks {missing}")
    features = info["features"]
    if not isinstance(features, dict) or not all(isinstance(v, dict) for v in features.values()):
        raise LeRobotFormatError(f"{path}: features must map names to {{dtype, shape, ...}}")
    try:
        fps = float(info["fps"])
    except (TypeError, ValueError):
        fps = 0.0
    if not fps > 0:
        raise LeRobotFormatError(f"{path}: fps must be a positive number, got {info['fps']!r}")
    video_keys = [k for k, spec in features.items() if spec.get("dtype") == "video"]
    if video_keys and not info.get("video_path"):
        raise LeRobotFormatError(f"{path}: video features {video_keys} but no video_path template")
    return LeRobotInfo(
        root=root,
        version=version,
        fps=fps,
        features=features,
        data_path=str(info["data_path"]),
        video_path=info.get("video_path"),
        chunks_size=int(info.get("chunks_size") or DEFAULT_CHUNKS_SIZE),
        total_episodes=int(info.get("total_episodes") or 0),
        robot_type=info.get("robot_type"),
    )


def _version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.lstrip("v").split("."))
    except ValueError:
        return (0,)


def camera_role(video_key: str) -> str:
    """Camera role of a video key: the DROID port's names map to DROID roles (ext1, ext2, wrist), any other
    `observation.images.<name>` to `<name>`."""
    name = video_key.removeprefix(IMAGE_PREFIX)
    for role, droid_name in CAMERA_NAMES.items():
        if name == droid_name:
            return role
    return name
