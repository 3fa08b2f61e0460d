"""Export DROID-format episodes (raw folders, RLDS records, other LeRobot datasets) as a LeRobot dataset.

The features are the DROID port's names (`observation.state.cartesian_position`, `observation.images.exterior_1_left`,
`camera_extrinsics.exterior_1_left`, `is_episode_successful`, ...) plus LeRobot's standard `observation.state` (joints
++ gripper) and `action` (commanded pose ++ gripper), so LeRobot tools and this project's reader both understand the
result. Videos are H.264 MP4s (one per camera per episode in v2.1, shared per file in v3.0). The dataset is built in a
hidden folder beside `out` and renamed into place only when complete; an episode that cannot be read or holds NaNs is
reported and left out, never half written.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from vjepa_ac.data.droid.episode import DroidEpisode, EpisodeError
from vjepa_ac.data.droid.index import open_episode
from vjepa_ac.data.droid.rlds import commanded_poses
from vjepa_ac.data.droid.video import VideoWriter
from vjepa_ac.data.lerobot import format as fmt

log = logging.getLogger(__name__)


@dataclass
class ExportSummary:
    out: Path
    episodes: list[str] = field(default_factory=list)
    """Episode ids written, in episode_index order."""
    failed: dict[str, str] = field(default_factory=dict)
    """reference -> why it was left out."""
    frames: int = 0


@dataclass
class _EpisodeRows:
    """One episode converted: per-feature arrays [L, ...] and frames per video key."""

    episode_id: str
    task: str
    success: bool | None
    arrays: dict[str, np.ndarray]
    frames: dict[str, np.ndarray]

    @property
    def length(self) -> int:
        return len(next(iter(self.arrays.values())))


def convert_episode(episode: DroidEpisode, roles: Sequence[str] | None = None) -> _EpisodeRows:
    """The rows and frames of one episode; EpisodeError for missing cameras, wrong shapes or non-finite values."""
    available = episode.camera_roles
    wanted = [r for r in (roles or fmt.CAMERA_NAMES) if r in available]
    if roles and len(wanted) < len(roles):
        raise EpisodeError(f"{episode.episode_id}: no camera {sorted(set(roles) - set(wanted))}; available: "
                           f"{sorted(available)}")
    if not wanted:
        raise EpisodeError(f"{episode.episode_id}: none of the cameras {list(roles or fmt.CAMERA_NAMES)}; "
                           f"available: {sorted(available)}")
    length = min([episode.num_steps] + [episode.num_frames(role) for role in wanted])
    if length < 2:
        raise EpisodeError(f"{episode.episode_id}: {length} usable steps; an episode needs at least 2")
    states = episode.states()[:length]
    joints = episode.joint_positions()[:length]
    recorded = commanded_poses(episode)  # a raw episode's action/*; else the next observed state
    all_states = episode.states()
    commanded = (recorded if recorded is not None else np.concatenate([all_states[1:], all_states[-1:]]))[:length]
    arrays = {
        fmt.CARTESIAN_POSITION: states[:, :6],
        fmt.GRIPPER_POSITION: states[:, 6:],
        fmt.JOINT_POSITION: joints,
        fmt.STATE: np.concatenate([joints, states[:, 6:]], axis=1),
        fmt.ACTION_CARTESIAN_POSITION: commanded[:, :6],
        fmt.ACTION_GRIPPER_POSITION: commanded[:, 6:],
        fmt.ACTION: commanded,
    }
    frames = {}
    for role in wanted:
        name = fmt.CAMERA_NAMES.get(role, role)
        try:
            arrays[fmt.EXTRINSICS_PREFIX + name] = episode.extrinsics(role)[:length]
        except EpisodeError:
            pass  # RLDS records carry none
        frames[fmt.IMAGE_PREFIX + name] = np.asarray(episode.read_frames(role, range(length)))
    for key, values in arrays.items():
        if values.shape[0] != length:
            raise EpisodeError(f"{episode.episode_id}: {key} has {values.shape[0]} rows, expected {length}")
        if not np.all(np.isfinite(values)):
            bad = int(np.argmin(np.isfinite(values).reshape(length, -1).all(axis=1)))
            raise EpisodeError(f"{episode.episode_id}: {key} contains NaN or inf (step {bad}); not exported")
    return _EpisodeRows(episode.episode_id, episode.task, episode.success, arrays, frames)


def _feature(shape: Sequence[int], names, dtype: str = "float32") -> dict:
    return {"dtype": dtype, "shape": list(shape), "names": names}


def _features(first: _EpisodeRows, fps: float) -> dict:
    gripper = {"axes": ["gripper"]}
    pose = {"axes": fmt.POSE_AXES}
    joints = [f"joint_{i}" for i in range(7)]
    features = {
        fmt.CARTESIAN_POSITION: _feature([6], pose),
        fmt.GRIPPER_POSITION: _feature([1], gripper),
        fmt.JOINT_POSITION: _feature([7], {"axes": joints}),
        fmt.STATE: _feature([8], {"axes": [*joints, "gripper"]}),
        fmt.ACTION_CARTESIAN_POSITION: _feature([6], pose),
        fmt.ACTION_GRIPPER_POSITION: _feature([1], gripper),
        fmt.ACTION: _feature([7], {"axes": [*fmt.POSE_AXES, "gripper"]}),
    }
    for key in first.arrays:
        if key.startswith(fmt.EXTRINSICS_PREFIX):
            features[key] = _feature([6], pose)
    features[fmt.IS_EPISODE_SUCCESSFUL] = _feature([1], None, "bool")
    for key, video in first.frames.items():
        height, width = video.shape[1:3]
        features[key] = {
            "dtype": "video", "shape": [height, width, 3], "names": ["height", "width", "channels"],
            "info": {"video.height": height, "video.width": width, "video.codec": "h264", "video.pix_fmt": "yuv420p",
                     "video.is_depth_map": False, "video.fps": fps, "video.channels": 3, "has_audio": False},
        }
    for key, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                       ("index", "int64"), ("task_index", "int64")):
        features[key] = _feature([1], None, dtype)
    return features


def _episode_table(rows: _EpisodeRows, features: dict, *, episode_index: int, start_index: int, task_index: int,
                   fps: float):
    import pyarrow as pa

    length = rows.length
    columns = {}
    for key, values in rows.arrays.items():
        if key not in features:
            raise EpisodeError(f"{rows.episode_id}: has {key} that the first episode lacks; export cameras present "
                               "in every episode (--camera)")
        values = values.astype(np.float32)
        if values.shape[1] == 1:
            columns[key] = pa.array(values[:, 0])
        else:
            columns[key] = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
    missing = [k for k in features if k.startswith(fmt.EXTRINSICS_PREFIX) and k not in rows.arrays]
    if missing:
        raise EpisodeError(f"{rows.episode_id}: lacks {missing} that the first episode has")
    columns[fmt.IS_EPISODE_SUCCESSFUL] = pa.array(np.full(length, bool(rows.success)))
    columns["timestamp"] = pa.array((np.arange(length) / fps).astype(np.float32))
    columns["frame_index"] = pa.array(np.arange(length, dtype=np.int64))
    columns["episode_index"] = pa.array(np.full(length, episode_index, np.int64))
    columns["index"] = pa.array(np.arange(start_index, start_index + length, dtype=np.int64))
    columns["task_index"] = pa.array(np.full(length, task_index, np.int64))
    return pa.table(columns)


def _stats(values: np.ndarray) -> dict:
    values = np.asarray(values, dtype=np.float64)
    return {"min": values.min(0).tolist(), "max": values.max(0).tolist(), "mean": values.mean(0).tolist(),
            "std": values.std(0).tolist(), "count": [len(values)]}


def _image_stats(frames: np.ndarray) -> dict:
    """Per-channel stats of frames scaled to [0, 1], shaped (3, 1, 1) as LeRobot stores image stats."""
    sample = frames[:: max(1, len(frames) // 32)].astype(np.float64) / 255.0
    per_channel = sample.reshape(-1, 3)
    stats = _stats(per_channel)
    return {k: (v if k == "count" else [[[x]] for x in v]) for k, v in stats.items()}


def _episode_stats(rows: _EpisodeRows) -> dict:
    stats = {key: _stats(values) for key, values in rows.arrays.items()}
    stats.update({key: _image_stats(frames) for key, frames in rows.frames.items()})
    return stats


def _merge_stats(per_episode: list[dict]) -> dict:
    """Dataset stats from episode stats (count-weighted means and pooled variances)."""
    merged = {}
    for key in per_episode[0]:
        parts = [s[key] for s in per_episode if key in s]
        counts = np.array([p["count"][0] for p in parts], dtype=np.float64)
        means = np.array([p["mean"] for p in parts], dtype=np.float64)
        stds = np.array([p["std"] for p in parts], dtype=np.float64)
        weights = (counts / counts.sum()).reshape(-1, *[1] * (means.ndim - 1))
        mean = (means * weights).sum(0)
        var = ((stds**2 + (means - mean) ** 2) * weights).sum(0)
        merged[key] = {"min": np.min([p["min"] for p in parts], 0).tolist(),
                       "max": np.max([p["max"] for p in parts], 0).tolist(),
                       "mean": mean.tolist(), "std": np.sqrt(var).tolist(), "count": [int(counts.sum())]}
    return merged


def _flat_stats(stats: dict) -> dict:
    """`stats/<feature>/<metric>` columns of v3.0's episode metadata."""
    return {f"stats/{key}/{metric}": value for key, metrics in stats.items() for metric, value in metrics.items()}


class _Layout:
    """Where episode rows and frames go, per version; v3.0 rolls to the next file when one exceeds its size."""

    def __init__(self, root: Path, version: str, fps: float, data_mb: float, video_mb: float) -> None:
        self.root, self.version, self.fps = root, version, fps
        self.data_limit, self.video_limit = data_mb * 2**20, video_mb * 2**20
        self.tables: list = []
        self.data_file = (0, 0)
        self.videos: dict[str, tuple[VideoWriter, tuple[int, int]]] = {}

    def add(self, episode_index: int, table, frames: dict[str, np.ndarray]) -> dict:
        """Write one episode; returns its v3.0 location columns (empty for v2.1)."""
        import pyarrow.parquet as pq

        if self.version != "v3.0":
            chunk = episode_index // fmt.DEFAULT_CHUNKS_SIZE
            path = self.root / fmt.V2_DATA_PATH.format(episode_chunk=chunk, episode_index=episode_index)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path)
            for key, video in frames.items():
                with VideoWriter(self.root / fmt.V2_VIDEO_PATH.format(episode_chunk=chunk, video_key=key,
                                                                      episode_index=episode_index), self.fps) as w:
                    w.write(video)
            return {}
        if self.tables and sum(t.nbytes for t in self.tables) + table.nbytes > self.data_limit:
            self._flush_data()
            chunk, file = self.data_file
            self.data_file = (chunk + (file + 1) // fmt.DEFAULT_CHUNKS_SIZE, (file + 1) % fmt.DEFAULT_CHUNKS_SIZE)
        self.tables.append(table)
        location = {"data/chunk_index": self.data_file[0], "data/file_index": self.data_file[1]}
        for key, video in frames.items():
            writer, (chunk, file) = self.videos.get(key, (None, (0, -1)))
            if writer is None or writer.path.stat().st_size > self.video_limit:
                if writer is not None:
                    writer.close()
                chunk, file = chunk + (file + 1) // fmt.DEFAULT_CHUNKS_SIZE, (file + 1) % fmt.DEFAULT_CHUNKS_SIZE
                writer = VideoWriter(self.root / fmt.V3_VIDEO_PATH.format(video_key=key, chunk_index=chunk,
                                                                          file_index=file), self.fps)
                self.videos[key] = (writer, (chunk, file))
            start = writer.frames_written / self.fps
            writer.write(video)
            location.update({f"videos/{key}/chunk_index": chunk, f"videos/{key}/file_index": file,
                             f"videos/{key}/from_timestamp": start,
                             f"videos/{key}/to_timestamp": writer.frames_written / self.fps})
        return location

    def _flush_data(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.tables:
            return
        chunk, file = self.data_file
        path = self.root / fmt.V3_DATA_PATH.format(chunk_index=chunk, file_index=file)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.concat_tables(self.tables), path)
        self.tables = []

    def close(self) -> None:
        if self.version == "v3.0":
            self._flush_data()
        for writer, _ in self.videos.values():
            writer.close()
        self.videos.clear()


def export_lerobot(
    references: Iterable[str],
    out: str | Path,
    *,
    version: str = "v3.0",
    cameras: Sequence[str] | None = None,
    image_size: tuple[int, int] | None = None,
    robot_type: str = "Franka",
    on_episode: Callable[[str], None] | None = None,
    data_file_size_mb: float = fmt.DEFAULT_DATA_FILE_SIZE_MB,
    video_file_size_mb: float = fmt.DEFAULT_VIDEO_FILE_SIZE_MB,
) -> ExportSummary:
    """Write the episodes behind `references` as a LeRobot dataset at `out` (which must not exist yet).

    `cameras` are DROID roles (default: ext1, ext2, wrist, as far as each episode has them); frames keep the first
    episode's size unless `image_size` (H, W) is given, later episodes are resized to it. `on_episode` is called
    with each reference after it was handled (a progress bar). Episodes that fail are in `summary.failed`; if none
    succeeds, nothing is written and EpisodeError is raised.
    """
    if version not in fmt.WRITE_VERSIONS:
        raise ValueError(f"cannot write LeRobot codebase_version {version!r}; choose one of {fmt.WRITE_VERSIONS}")
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; export into a new folder")
    staging = out.parent / f".{out.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    (staging / "meta").mkdir(parents=True)
    summary = ExportSummary(out=out)
    try:
        _export_into(staging, references, summary, version=version, cameras=cameras, image_size=image_size,
                     robot_type=robot_type, on_episode=on_episode, data_mb=data_file_size_mb,
                     video_mb=video_file_size_mb)
        if not summary.episodes:
            problems = "; ".join(f"{ref}: {why}" for ref, why in list(summary.failed.items())[:3])
            raise EpisodeError(f"no episode could be exported ({len(summary.failed)} failed: {problems})")
        os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def _export_into(root: Path, references: Iterable[str], summary: ExportSummary, *, version: str,
                 cameras: Sequence[str] | None, image_size: tuple[int, int] | None, robot_type: str,
                 on_episode: Callable[[str], None] | None, data_mb: float, video_mb: float) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    features: dict | None = None
    fps: float | None = None
    layout: _Layout | None = None
    tasks: dict[str, int] = {}
    episodes_meta: list[dict] = []
    stats: list[dict] = []
    seen_ids: set[str] = set()
    try:
        for reference in references:
            try:
                with open_episode(reference) as episode:
                    rows = convert_episode(episode, cameras)
                    episode_fps = float(episode.fps)
                if rows.episode_id in seen_ids:
                    raise EpisodeError(f"episode id {rows.episode_id!r} appears twice")
                if fps is None:
                    fps = episode_fps
                    image_size = image_size or next(iter(rows.frames.values())).shape[1:3]
                    if any(v.shape[1:3] != image_size for v in rows.frames.values()):
                        rows = _resized(rows, image_size)
                    features = _features(rows, fps)
                    layout = _Layout(root, version, fps, data_mb, video_mb)
                elif abs(episode_fps - fps) > 1e-6:
                    raise EpisodeError(f"{rows.episode_id}: recorded at {episode_fps} Hz, the dataset at {fps} Hz")
                else:
                    rows = _resized(rows, image_size)
                if set(rows.frames) != {k for k, v in features.items() if v["dtype"] == "video"}:
                    raise EpisodeError(f"{rows.episode_id}: cameras {sorted(rows.frames)} differ from the first "
                                       "episode's; choose cameras every episode has (--camera)")
                index = len(summary.episodes)
                task_index = tasks.setdefault(rows.task, len(tasks))
                table = _episode_table(rows, features, episode_index=index, start_index=summary.frames,
                                       task_index=task_index, fps=fps)
                location = layout.add(index, table, rows.frames)
                episode_stats = _episode_stats(rows)
                stats.append(episode_stats)
                entry = {"episode_index": index, "tasks": [rows.task], "length": rows.length,
                         "droid_episode_id": rows.episode_id, "success": rows.success, "source": str(reference)}
                if version == "v3.0":
                    entry.update(location)
                    entry.update({"dataset_from_index": summary.frames,
                                  "dataset_to_index": summary.frames + rows.length,
                                  "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
                    entry.update(_flat_stats(episode_stats))
                else:
                    entry["stats"] = episode_stats
                episodes_meta.append(entry)
                seen_ids.add(rows.episode_id)
                summary.episodes.append(rows.episode_id)
                summary.frames += rows.length
            except (EpisodeError, ValueError, OSError) as exc:
                log.warning("not exported: %s: %s", reference, exc)
                summary.failed[str(reference)] = str(exc)
            if on_episode is not None:
                on_episode(str(reference))
    finally:
        if layout is not None:
            layout.close()
    if not episodes_meta:
        return
    meta = root / "meta"
    if version == "v3.0":
        pq.write_table(pa.Table.from_pylist(episodes_meta), _mkparent(root / fmt.V3_EPISODES_PATH.format(
            chunk_index=0, file_index=0)))
        pq.write_table(_tasks_table(tasks), root / fmt.V3_TASKS_FILE)
    else:
        _write_jsonl(meta / "episodes.jsonl", [{k: e[k] for k in e if k != "stats"} for e in episodes_meta])
        _write_jsonl(meta / "episodes_stats.jsonl", [{"episode_index": e["episode_index"], "stats": e["stats"]}
                                                     for e in episodes_meta])
        _write_jsonl(meta / "tasks.jsonl", [{"task_index": i, "task": t} for t, i in tasks.items()])
    (meta / "stats.json").write_text(json.dumps(_merge_stats(stats)))
    video_keys = [k for k, v in features.items() if v["dtype"] == "video"]
    info = {
        "codebase_version": version,
        "robot_type": robot_type,
        "total_episodes": len(episodes_meta),
        "total_frames": summary.frames,
        "total_tasks": len(tasks),
        "chunks_size": fmt.DEFAULT_CHUNKS_SIZE,
        "fps": fps,
        "splits": {"train": f"0:{len(episodes_meta)}"},
        "features": features,
    }
    if version == "v3.0":
        info.update({"data_files_size_in_mb": data_mb, "video_files_size_in_mb": video_mb,
                     "data_path": fmt.V3_DATA_PATH, "video_path": fmt.V3_VIDEO_PATH if video_keys else None})
    else:
        info.update({"total_chunks": 1 + (len(episodes_meta) - 1) // fmt.DEFAULT_CHUNKS_SIZE,
                     "total_videos": len(episodes_meta) * len(video_keys),
                     "data_path": fmt.V2_DATA_PATH, "video_path": fmt.V2_VIDEO_PATH if video_keys else None})
    (meta / "info.json").write_text(json.dumps(info, indent=4))


def _tasks_table(tasks: dict[str, int]):
    """v3.0's meta/tasks.parquet as pandas writes it: `task_index` with the task strings as the frame's index (what
    LeRobot reads back with `pd.read_parquet`)."""
    import pyarrow as pa

    index = "__index_level_0__"
    pandas_meta = {
        "index_columns": [index],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
                     "metadata": None},
                    {"name": None, "field_name": index, "pandas_type": "unicode", "numpy_type": "object",
                     "metadata": None}],
        "attributes": {}, "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.0.0",
    }
    table = pa.table({"task_index": pa.array(list(tasks.values()), pa.int64()), index: pa.array(list(tasks))})
    return table.replace_schema_metadata({"pandas": json.dumps(pandas_meta)})


def _resized(rows: _EpisodeRows, image_size: tuple[int, int]) -> _EpisodeRows:
    for key, video in rows.frames.items():
        if video.shape[1:3] != tuple(image_size):
            rows.frames[key] = np.stack([cv2.resize(f, tuple(image_size)[::-1], interpolation=cv2.INTER_AREA)
                                         for f in video])
    return rows


def _mkparent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _write_jsonl(path: Path, entries: list[dict]) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
