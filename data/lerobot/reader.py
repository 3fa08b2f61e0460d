"""Read LeRobot datasets (v2.0, v2.1, v3.0) as DROID episodes, so training, pretraining and encoding take them like
raw DROID folders and RLDS shards.

An episode reference is `<dataset root>#<episode_index>`. States are the DROID port's
`observation.state.cartesian_position` ++ `observation.state.gripper_position` (or a 7-wide `observation.state` whose
names are x, y, z, roll, pitch, yaw, gripper); frames come from the MP4 of each camera key, at the episode's own
frame offset in v3.0's shared files. Nothing is decoded until asked for.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from vjepa_ac.data.droid.episode import DroidEpisode, EpisodeError
from vjepa_ac.data.droid.index import RLDS_SEPARATOR as LEROBOT_SEPARATOR
from vjepa_ac.data.droid.layout import CAMERA_TYPE_EXTERIOR, resolve_camera_roles
from vjepa_ac.data.droid.video import VideoError, open_video
from vjepa_ac.data.lerobot import format as fmt

_POSE_NAMES = [*fmt.POSE_AXES, "gripper"]


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow is a dependency; a broken install names itself
        raise ImportError("reading LeRobot datasets needs pyarrow (pip install pyarrow)") from exc
    return pa, pq


def read_table(path: Path, *, columns: Sequence[str] | None = None, filters=None):
    """A parquet file as an arrow table (only `columns` that exist); EpisodeError naming a missing/corrupt file."""
    _, pq = _pyarrow()
    try:
        if columns is not None:
            present = set(pq.ParquetFile(path).schema_arrow.names)
            columns = [c for c in columns if c in present]
        return pq.read_table(path, columns=columns, filters=filters)
    except FileNotFoundError:
        raise EpisodeError(f"{path}: missing parquet file") from None
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for damaged files
        raise EpisodeError(f"{path}: unreadable parquet file ({exc})") from exc


def column_array(table, key: str, width: int, *, where: str) -> np.ndarray:
    """Column `key` as float64 [rows, width] (scalar and list columns alike); EpisodeError on a wrong shape."""
    pa, _ = _pyarrow()
    if key not in table.column_names:
        raise EpisodeError(f"{where}: no column {key!r}")
    column = table.column(key).combine_chunks()
    rows = len(column)
    values = column
    while pa.types.is_list(values.type) or pa.types.is_large_list(values.type) or \
            pa.types.is_fixed_size_list(values.type):
        values = values.flatten()
    try:
        flat = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise EpisodeError(f"{where}: column {key!r} is not numeric ({column.type})") from exc
    if flat.size != rows * width:
        raise EpisodeError(f"{where}: column {key!r} holds {flat.size} values for {rows} rows, expected {rows} x "
                           f"{width} (wrong shape)")
    return flat.reshape(rows, width)


class LeRobotDataset:
    """The metadata of one LeRobot dataset: info, tasks and the episode list (with v3.0's per-episode offsets)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.info = fmt.read_info(self.root)
        self.tasks: dict[int, str] = {}
        self.episodes: dict[int, dict] = {}
        if self.info.is_v3:
            self._read_v3_meta()
        else:
            self._read_v2_meta()
        if not self.episodes:
            raise fmt.LeRobotFormatError(f"{self.root}: the dataset lists no episodes")

    def _jsonl(self, relative: Path) -> list[dict]:
        path = self.root / relative
        try:
            lines = path.read_text().splitlines()
            return [json.loads(line) for line in lines if line.strip()]
        except FileNotFoundError:
            raise fmt.LeRobotFormatError(f"{path}: missing ({self.info.version} lists its episodes there)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise fmt.LeRobotFormatError(f"{path}: unreadable ({exc})") from exc

    def _read_v2_meta(self) -> None:
        if (self.root / fmt.V2_TASKS_FILE).exists():
            self.tasks = {int(t["task_index"]): str(t["task"]) for t in self._jsonl(fmt.V2_TASKS_FILE)}
        for entry in self._jsonl(fmt.V2_EPISODES_FILE):
            try:
                self.episodes[int(entry["episode_index"])] = entry
            except (KeyError, TypeError, ValueError):
                raise fmt.LeRobotFormatError(f"{self.root / fmt.V2_EPISODES_FILE}: entry without a valid "
                                             f"episode_index: {str(entry)[:200]}") from None

    def _read_v3_meta(self) -> None:
        folder = self.root / fmt.V3_EPISODES_DIR
        files = sorted(folder.glob("chunk-*/file-*.parquet"))
        if not files:
            raise fmt.LeRobotFormatError(f"{folder}: no episode metadata files (chunk-*/file-*.parquet)")
        wanted = ["episode_index", "tasks", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
                  "dataset_to_index", "success", "droid_episode_id"]
        for key in self.info.video_keys:
            wanted += [f"videos/{key}/{part}" for part in ("chunk_index", "file_index", "from_timestamp",
                                                           "to_timestamp")]
        for path in files:
            for entry in read_table(path, columns=wanted).to_pylist():
                self.episodes[int(entry["episode_index"])] = entry
        tasks_path = self.root / fmt.V3_TASKS_FILE
        if tasks_path.exists():
            table = read_table(tasks_path)
            names = table.column_names
            text_column = "task" if "task" in names else next((n for n in names if n.startswith("__index_level")),
                                                                None)
            if text_column and "task_index" in names:
                for task, index in zip(table.column(text_column).to_pylist(), table.column("task_index").to_pylist()):
                    self.tasks[int(index)] = str(task)

    def references(self) -> list[str]:
        return [f"{self.root}{LEROBOT_SEPARATOR}{i}" for i in sorted(self.episodes)]

    def episode(self, index: int, *, video_backend: str | None = None) -> LeRobotEpisode:
        if index not in self.episodes:
            raise EpisodeError(f"{self.root}: no episode {index} (the dataset has {len(self.episodes)}: "
                               f"{min(self.episodes)}..{max(self.episodes)})")
        return LeRobotEpisode(self, index, video_backend=video_backend)


@lru_cache(maxsize=16)
def _dataset(root: str, info_mtime_ns: int) -> LeRobotDataset:
    return LeRobotDataset(root)


def open_dataset(root: str | Path) -> LeRobotDataset:
    """The dataset at `root`, cached while its meta/info.json is unchanged."""
    info = Path(root) / fmt.INFO_FILE
    try:
        mtime = info.stat().st_mtime_ns
    except OSError:
        raise fmt.LeRobotFormatError(f"{root}: not a LeRobot dataset (no {fmt.INFO_FILE})") from None
    return _dataset(str(Path(root)), mtime)


def open_lerobot_episode(root: str | Path, index: int, *, video_backend: str | None = None) -> LeRobotEpisode:
    try:
        dataset = open_dataset(root)
    except fmt.LeRobotFormatError as exc:
        raise EpisodeError(str(exc)) from exc
    return dataset.episode(index, video_backend=video_backend)


class LeRobotEpisode(DroidEpisode):
    """One episode of a LeRobot dataset; rows are read on first use, videos opened per camera when asked for."""

    def __init__(self, dataset: LeRobotDataset, index: int, *, video_backend: str | None = None) -> None:
        self.dataset = dataset
        self.index = index
        self.entry = dataset.episodes[index]
        self.info = dataset.info
        self.fps = self.info.fps
        self.source = f"{dataset.root}{LEROBOT_SEPARATOR}{index}"
        self.episode_id = str(self.entry.get("droid_episode_id") or f"{dataset.root.name}/episode_{index:06d}")
        self.video_backend = video_backend
        self._table = None
        self._readers: dict[str, object] = {}

    # -- rows --------------------------------------------------------------------------------------------------------
    def _data_path(self) -> Path:
        info = self.info
        if info.is_v3:
            try:
                chunk, file = int(self.entry["data/chunk_index"]), int(self.entry["data/file_index"])
            except (KeyError, TypeError, ValueError):
                raise EpisodeError(f"{self.source}: episode metadata lacks data/chunk_index, data/file_index") from None
            return self.dataset.root / info.data_path.format(chunk_index=chunk, file_index=file)
        chunk = self.index // info.chunks_size
        return self.dataset.root / info.data_path.format(episode_chunk=chunk, episode_index=self.index)

    def table(self):
        if self._table is None:
            filters = [("episode_index", "=", self.index)] if self.info.is_v3 else None
            table = read_table(self._data_path(), filters=filters)
            if "frame_index" in table.column_names:
                table = table.sort_by("frame_index")
            expected = self.entry.get("length")
            if expected is not None and table.num_rows != int(expected):
                raise EpisodeError(f"{self.source}: {table.num_rows} rows in {self._data_path()}, but the episode "
                                   f"metadata says length {expected}")
            if table.num_rows == 0:
                raise EpisodeError(f"{self.source}: no rows in {self._data_path()}")
            self._table = table
        return self._table

    def _array(self, key: str, width: int) -> np.ndarray:
        declared = self.info.features.get(key, {}).get("shape")
        if declared is not None and int(np.prod(declared)) != width:
            raise EpisodeError(f"{self.source}: feature {key!r} has shape {declared}, expected ({width},)")
        return column_array(self.table(), key, width, where=self.source)

    @property
    def num_steps(self) -> int:
        length = self.entry.get("length")
        return int(length) if length is not None else self.table().num_rows

    def states(self) -> np.ndarray:
        features = self.info.features
        if fmt.CARTESIAN_POSITION in features and fmt.GRIPPER_POSITION in features:
            return np.concatenate([self._array(fmt.CARTESIAN_POSITION, 6), self._array(fmt.GRIPPER_POSITION, 1)], 1)
        state = features.get(fmt.STATE, {})
        if _axis_names(state) == _POSE_NAMES:
            return self._array(fmt.STATE, 7)
        raise EpisodeError(f"{self.source}: no end-effector pose: expected {fmt.CARTESIAN_POSITION} (6) and "
                           f"{fmt.GRIPPER_POSITION} (1) as in the DROID port, or a 7-wide {fmt.STATE} named "
                           f"{_POSE_NAMES}; the dataset has {sorted(k for k in features if 'video' != features[k].get('dtype'))}")

    def joint_positions(self) -> np.ndarray:
        if fmt.JOINT_POSITION in self.info.features:
            return self._array(fmt.JOINT_POSITION, 7)
        raise EpisodeError(f"{self.source}: no joint positions ({fmt.JOINT_POSITION})")

    # -- cameras -----------------------------------------------------------------------------------------------------
    @property
    def camera_roles(self) -> dict[str, str]:
        roles = {fmt.camera_role(key): key for key in self.info.video_keys}
        exterior = {key: CAMERA_TYPE_EXTERIOR for role, key in roles.items() if role in ("ext1", "ext2")}
        if exterior:
            firsts = {}
            for key in exterior:
                column = fmt.EXTRINSICS_PREFIX + key[len(fmt.IMAGE_PREFIX):]
                if column in self.info.features:
                    try:
                        firsts[key] = self._array(column, 6)[0]
                    except EpisodeError:
                        pass
            # left/right need extrinsics for two exterior cameras (DROID's rule); one camera is the left one.
            if len(exterior) == 1 or len(firsts) == len(exterior):
                for role, key in resolve_camera_roles(exterior, firsts).items():
                    if role in ("left", "right"):
                        roles[role] = key
        return roles

    def _video_key(self, role: str) -> str:
        roles = self.camera_roles
        if role in roles:
            return roles[role]
        if role in self.info.video_keys:
            return role
        hint = " (left/right need the camera_extrinsics.* features)" if role in ("left", "right") else ""
        raise EpisodeError(f"{self.source}: no camera {role!r}{hint}; available: {sorted(roles)}")

    def _video(self, key: str) -> tuple[object, int]:
        """(reader, frame offset of this episode in the file)."""
        info = self.info
        if info.is_v3:
            try:
                chunk = int(self.entry[f"videos/{key}/chunk_index"])
                file = int(self.entry[f"videos/{key}/file_index"])
                start = float(self.entry[f"videos/{key}/from_timestamp"])
            except (KeyError, TypeError, ValueError):
                raise EpisodeError(f"{self.source}: episode metadata lacks the videos/{key}/* span") from None
            path = self.dataset.root / info.video_path.format(video_key=key, chunk_index=chunk, file_index=file)
            offset = round(start * self.video_fps(key))
        else:
            chunk = self.index // info.chunks_size
            path = self.dataset.root / info.video_path.format(episode_chunk=chunk, video_key=key,
                                                              episode_index=self.index)
            offset = 0
        if key not in self._readers:
            if not path.is_file():
                raise EpisodeError(f"{self.source}: missing video {path} (camera {key})")
            try:
                self._readers[key] = open_video(path, backend=self.video_backend)
            except VideoError as exc:
                raise EpisodeError(f"{self.source}: {exc}") from exc
        return self._readers[key], offset

    def read_frames(self, role: str, indices: Sequence[int]) -> np.ndarray:
        reader, offset = self._video(self._video_key(role))
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        available = self.num_frames(role)
        if idx.size and (idx.min() < 0 or idx.max() >= available):
            raise EpisodeError(f"{self.source}: frames {idx.min()}..{idx.max()} outside 0..{available - 1} of "
                               f"camera {role!r}")
        try:
            return reader.read((idx + offset).tolist())
        except VideoError as exc:
            raise EpisodeError(f"{self.source}: {exc}") from exc

    def num_frames(self, role: str) -> int:
        reader, offset = self._video(self._video_key(role))
        return max(0, min(self.num_steps, reader.num_frames - offset))

    def video_fps(self, role: str) -> float:
        key = role if role in self.info.features else self.camera_roles.get(role, role)
        declared = self.info.features.get(key, {}).get("info", {}) or {}
        return float(declared.get("video.fps") or self.fps)

    def extrinsics(self, role: str) -> np.ndarray:
        key = self._video_key(role)
        column = fmt.EXTRINSICS_PREFIX + key[len(fmt.IMAGE_PREFIX):]
        if column not in self.info.features:
            raise EpisodeError(f"{self.source}: no camera extrinsics for {role!r} ({column})")
        return self._array(column, 6)

    def frame_timestamps_ms(self, role: str) -> np.ndarray | None:
        table = self.table()
        if "timestamp" not in table.column_names:
            return None
        return column_array(table, "timestamp", 1, where=self.source)[:, 0] * 1000.0

    # -- labels ------------------------------------------------------------------------------------------------------
    @property
    def metadata(self) -> dict:
        return {"current_task": self.task, "lerobot_dataset": str(self.dataset.root), "episode_index": self.index,
                "codebase_version": self.info.version, "robot_type": self.info.robot_type}

    @property
    def task(self) -> str:
        tasks = self.entry.get("tasks")
        if isinstance(tasks, (list, tuple)) and tasks:
            return str(tasks[0])
        if isinstance(tasks, str):
            return tasks
        table = self.table()
        if "task_index" in table.column_names and len(table):
            return self.dataset.tasks.get(int(table.column("task_index")[0].as_py()), "")
        return ""

    @property
    def success(self) -> bool | None:
        if self.entry.get("success") is not None:
            return bool(self.entry["success"])
        if fmt.IS_EPISODE_SUCCESSFUL in self.info.features:
            values = self.table().column(fmt.IS_EPISODE_SUCCESSFUL).combine_chunks()
            flat = values.flatten() if hasattr(values, "flatten") else values
            return bool(flat[0].as_py()) if len(flat) else None
        return None

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()


def _axis_names(feature: dict) -> list[str] | None:
    names = feature.get("names")
    if isinstance(names, dict):
        names = next(iter(names.values()), None)
    return [str(n) for n in names] if isinstance(names, list) else None
