"""Read one raw DROID episode folder (`trajectory.h5` + metadata JSON + `recordings/MP4/<serial>.mp4`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from vjepa_ac.data.droid import layout
from vjepa_ac.data.droid.episode import DroidEpisode, EpisodeError
from vjepa_ac.data.droid.video import VideoError, VideoReader, open_video


def find_metadata_file(folder: Path) -> Path | None:
    """`metadata_<uuid>.json`, else the first other JSON that is not a per-camera timestamp list (like Meta's loader)."""
    candidates = sorted(folder.glob(layout.METADATA_GLOB)) or sorted(
        p for p in folder.glob("*.json") if not p.name.endswith("_timestamps.json")
    )
    return candidates[0] if candidates else None


class RawEpisode(DroidEpisode):
    """A raw-format episode. The h5 file and the videos are opened on first use and never pickled, so episodes can
    be handed to DataLoader worker processes."""

    def __init__(self, path: str | Path, *, video_backend: str | None = None):
        path = Path(path)
        self.folder = path.parent if path.name == layout.TRAJECTORY_FILE else path
        if not self.folder.is_dir():
            raise EpisodeError(f"{self.folder}: not an episode folder (does not exist)")
        self.h5_path = self.folder / layout.TRAJECTORY_FILE
        if not self.h5_path.is_file():
            raise EpisodeError(f"{self.folder}: missing {layout.TRAJECTORY_FILE}")
        self.video_backend = video_backend
        self.fps = layout.DROID_CONTROL_HZ
        self.metadata_path = find_metadata_file(self.folder)
        self._metadata: dict = {}
        if self.metadata_path is not None:
            try:
                self._metadata = json.loads(self.metadata_path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise EpisodeError(f"{self.metadata_path}: unreadable metadata JSON ({exc})") from exc
            if not isinstance(self._metadata, dict):
                raise EpisodeError(f"{self.metadata_path}: metadata JSON is not an object")
        self.path_info = layout.parse_episode_path(self.folder)
        self.episode_id = str(self._metadata.get("uuid") or self._relative_id())
        self._h5: h5py.File | None = None
        self._videos: dict[str, VideoReader] = {}
        self._roles: dict[str, str] | None = None

    def _relative_id(self) -> str:
        parts = self.folder.resolve().parts
        return "/".join(parts[-4:]) if self.path_info.lab else self.folder.name

    # -- pickling: only the location travels to worker processes.
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_h5"] = None
        state["_videos"] = {}
        return state

    def h5(self) -> h5py.File:
        """The open `trajectory.h5` (opened read-only on first use)."""
        if self._h5 is None:
            try:
                self._h5 = h5py.File(self.h5_path, "r")
            except OSError as exc:
                raise EpisodeError(f"{self.h5_path}: unreadable or truncated HDF5 file ({exc})") from exc
        return self._h5

    def _dataset(self, key: str) -> h5py.Dataset:
        try:
            node = self.h5()[key]
        except KeyError:
            raise EpisodeError(f"{self.h5_path}: missing dataset {key}") from None
        except OSError as exc:
            raise EpisodeError(f"{self.h5_path}: cannot read {key} ({exc})") from exc
        if not isinstance(node, h5py.Dataset):
            raise EpisodeError(f"{self.h5_path}: {key} is a group, expected a dataset")
        return node

    def read_array(self, key: str, dtype=np.float64) -> np.ndarray:
        """A whole h5 dataset as an array; EpisodeError if absent or unreadable."""
        dataset = self._dataset(key)
        try:
            return np.asarray(dataset[()], dtype=dtype)
        except (OSError, ValueError) as exc:
            raise EpisodeError(f"{self.h5_path}: cannot read {key} ({exc})") from exc

    def has_key(self, key: str) -> bool:
        try:
            return key in self.h5()
        except OSError:
            return False

    @property
    def num_steps(self) -> int:
        return int(self._dataset(layout.CARTESIAN_POSITION).shape[0])

    def states(self) -> np.ndarray:
        cartesian = self.read_array(layout.CARTESIAN_POSITION)
        gripper = self.read_array(layout.GRIPPER_POSITION).reshape(-1)
        if cartesian.ndim != 2 or cartesian.shape[1] != 6:
            raise EpisodeError(
                f"{self.h5_path}: {layout.CARTESIAN_POSITION} has shape {cartesian.shape}, expected [T, 6]"
            )
        if gripper.shape[0] != cartesian.shape[0]:
            raise EpisodeError(
                f"{self.h5_path}: {layout.GRIPPER_POSITION} has {gripper.shape[0]} values for {cartesian.shape[0]} steps"
            )
        return np.concatenate([cartesian, gripper[:, None]], axis=1)

    def joint_positions(self) -> np.ndarray:
        return self.read_array(layout.JOINT_POSITIONS)

    @property
    def camera_roles(self) -> dict[str, str]:
        if self._roles is None:
            roles: dict[str, str] = {}
            # Metadata paths are what Meta's loader follows, so they win; the h5 camera-type rules fill the rest.
            for role, key in layout.ROLE_METADATA_KEYS.items():
                value = self._metadata.get(key)
                if isinstance(value, str) and value:
                    roles[role] = layout.serial_from_mp4_path(value)
            types = self.camera_types()
            first_extrinsics = {}
            for serial in types:
                key = layout.extrinsics_key(serial)
                if self.has_key(key) and self._dataset(key).shape[0] > 0:
                    first_extrinsics[serial] = np.asarray(self._dataset(key)[0], dtype=np.float64)
            for role, serial in layout.resolve_camera_roles(types, first_extrinsics).items():
                roles.setdefault(role, serial)
            self._roles = roles
        return dict(self._roles)

    def camera_types(self) -> dict[str, int]:
        """Serial -> DROID camera type (0 wrist, 1 exterior) from `observation/camera_type`."""
        if not self.has_key(layout.CAMERA_TYPE_GROUP):
            return {}
        group = self.h5()[layout.CAMERA_TYPE_GROUP]
        return {serial: int(group[serial][0]) for serial in group if group[serial].shape[0] > 0}

    def serial(self, role: str) -> str:
        """The camera serial for a role, or `role` itself if it is a serial of this episode."""
        roles = self.camera_roles
        if role in roles:
            return roles[role]
        if role in roles.values() or role in self.camera_types() or self.video_path(role).is_file():
            return role
        raise EpisodeError(
            f"{self.folder}: no camera {role!r}; available: {sorted(roles)} = {sorted(set(roles.values()))}"
        )

    def video_path(self, role_or_serial: str) -> Path:
        serial = self.camera_roles.get(role_or_serial, role_or_serial)
        return self.folder / layout.mp4_relpath(serial)

    def video(self, role: str) -> VideoReader:
        serial = self.serial(role)
        if serial not in self._videos:
            path = self.video_path(serial)
            if not path.is_file():
                raise EpisodeError(f"{self.folder}: missing video {layout.mp4_relpath(serial)} for camera {role!r}")
            try:
                self._videos[serial] = open_video(path, backend=self.video_backend)
            except VideoError as exc:
                raise EpisodeError(str(exc)) from exc
        return self._videos[serial]

    def read_frames(self, role: str, indices: Sequence[int]) -> np.ndarray:
        try:
            return self.video(role).read(indices)
        except VideoError as exc:
            raise EpisodeError(str(exc)) from exc

    def num_frames(self, role: str) -> int:
        return self.video(role).num_frames

    def video_fps(self, role: str) -> float:
        return self.video(role).average_fps

    def extrinsics(self, role: str) -> np.ndarray:
        return self.read_array(layout.extrinsics_key(self.serial(role)))

    def frame_timestamps_ms(self, role: str) -> np.ndarray | None:
        key = layout.frame_received_key(self.serial(role))
        return self.read_array(key, np.int64) if self.has_key(key) else None

    @property
    def metadata(self) -> dict:
        return dict(self._metadata)

    @property
    def attrs(self) -> dict:
        """Root attributes of `trajectory.h5` (operator, task, robot serial, version, outcome)."""
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in self.h5().attrs.items()}

    @property
    def success(self) -> bool | None:
        if self.path_info.success is not None:
            return self.path_info.success
        if "success" in self._metadata:
            return bool(self._metadata["success"])
        attrs = self.attrs
        return bool(attrs["success"]) if "success" in attrs else None

    @property
    def task(self) -> str:
        text = self._metadata.get("current_task")
        if text is None:
            text = self.attrs.get("current_task", "")
        return str(text or "")

    @property
    def version(self) -> str | None:
        value = self._metadata.get("droid_version") or self.attrs.get("version_number")
        return str(value) if value is not None else None

    @property
    def lab(self) -> str | None:
        return self._metadata.get("lab") or self.path_info.lab

    def close(self) -> None:
        for reader in self._videos.values():
            reader.close()
        self._videos.clear()
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None
