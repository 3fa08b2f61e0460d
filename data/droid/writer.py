"""Write an episode in the raw DROID layout, so simulated and self-recorded data read like the real release.

The folder gets `trajectory.h5` (DROID's key names, dtypes, resizable (T, ...) datasets and root attributes),
`metadata_<uuid>.json` (the postprocessing schema, including the `*_mp4_path` keys Meta's loader reads) and
`recordings/MP4/<serial>.mp4` (H.264). The episode is assembled in a hidden folder and renamed into place, so readers
never see a half-written episode.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

import h5py
import numpy as np

from vjepa_ac.data.droid import layout
from vjepa_ac.data.droid.video import write_video

CameraKind = Literal["exterior", "wrist"]
_CAMERA_TYPE = {"wrist": layout.CAMERA_TYPE_WRIST, "exterior": layout.CAMERA_TYPE_EXTERIOR}


@dataclass
class CameraRecording:
    """One camera's left-eye frames and its pose in the robot base frame at every step."""

    frames: np.ndarray  # uint8 [T, H, W, 3] RGB
    extrinsics: np.ndarray  # [T, 6] xyz + Euler "xyz"
    kind: CameraKind = "exterior"


@dataclass
class EpisodeRecording:
    """Everything `write_episode` needs for one episode of T control steps (arrays in DROID units: m, rad)."""

    cartesian_position: np.ndarray  # [T, 6] flange xyz + Euler "xyz", base frame
    gripper_position: np.ndarray  # [T] 0 = open, 1 = closed
    joint_positions: np.ndarray  # [T, 7]
    cameras: dict[str, CameraRecording]  # serial -> recording
    joint_velocities: np.ndarray | None = None  # [T, 7]
    action_cartesian_position: np.ndarray | None = None  # [T, 6] commanded next pose
    action_gripper_position: np.ndarray | None = None  # [T]
    action_joint_position: np.ndarray | None = None  # [T, 7]
    timestamps_ns: np.ndarray | None = None  # [T] wall-clock step times; default: `when` + i / control_hz
    task: str = ""
    success: bool = True
    lab: str = "SIM"
    control_hz: float = layout.DROID_CONTROL_HZ
    user: str = "sim"
    building: str = ""
    scene_id: str = ""
    robot_serial: str = "panda-sim"
    droid_version: str = layout.DEFAULT_DROID_VERSION
    extra_attrs: dict[str, str | float | int | bool] = field(default_factory=dict)
    extra_datasets: dict[str, np.ndarray] = field(default_factory=dict)
    """Further per-step arrays [T, ...] by h5 key (e.g. a simulator's object poses); DROID readers ignore them."""

    @property
    def num_steps(self) -> int:
        return int(np.asarray(self.cartesian_position).shape[0])

    def check(self) -> None:
        """Raise ValueError naming the first field whose shape, dtype or values are wrong."""
        steps = self.num_steps
        if steps < 1:
            raise ValueError("episode has no steps")
        expected = {
            "cartesian_position": (self.cartesian_position, (steps, 6)),
            "gripper_position": (self.gripper_position, (steps,)),
            "joint_positions": (self.joint_positions, (steps, 7)),
            "joint_velocities": (self.joint_velocities, (steps, 7)),
            "action_cartesian_position": (self.action_cartesian_position, (steps, 6)),
            "action_gripper_position": (self.action_gripper_position, (steps,)),
            "action_joint_position": (self.action_joint_position, (steps, 7)),
            "timestamps_ns": (self.timestamps_ns, (steps,)),
        }
        for name, (value, shape) in expected.items():
            if value is None:
                continue
            arr = np.asarray(value)
            if arr.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
            if not np.all(np.isfinite(arr.astype(np.float64))):
                raise ValueError(f"{name} contains NaN or inf")
        for key, value in self.extra_datasets.items():
            arr = np.asarray(value)
            if not key or key.startswith("/") or arr.ndim < 1 or arr.shape[0] != steps:
                raise ValueError(f"extra dataset {key!r} must be a relative h5 key with {steps} rows, got {arr.shape}")
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise ValueError(f"extra dataset {key!r} contains NaN or inf")
        if not self.cameras:
            raise ValueError("an episode needs at least one camera")
        wrists = [s for s, cam in self.cameras.items() if cam.kind == "wrist"]
        if len(wrists) > 1:
            raise ValueError(f"at most one wrist camera, got {wrists}")
        for serial, cam in self.cameras.items():
            if not serial or "/" in serial or serial != serial.strip():
                raise ValueError(f"camera serial {serial!r} is not a valid file name")
            if cam.kind not in _CAMERA_TYPE:
                raise ValueError(f"camera {serial}: kind must be 'exterior' or 'wrist', got {cam.kind!r}")
            frames = np.asarray(cam.frames)
            if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[0] != steps or frames.shape[-1] != 3:
                raise ValueError(
                    f"camera {serial}: frames must be uint8 [{steps}, H, W, 3], got {frames.dtype} {frames.shape}"
                )
            extrinsics = np.asarray(cam.extrinsics)
            if extrinsics.shape != (steps, 6) or not np.all(np.isfinite(extrinsics)):
                raise ValueError(f"camera {serial}: extrinsics must be finite [{steps}, 6], got {extrinsics.shape}")


def _write_dataset(h5: h5py.File, key: str, data: np.ndarray) -> None:
    # Like DROID's TrajectoryWriter: one resizable dataset per leaf, first axis = time.
    data = np.ascontiguousarray(data)
    h5.create_dataset(key, data=data, maxshape=(None, *data.shape[1:]), chunks=True)


def _step_times_ns(recording: EpisodeRecording, when: datetime) -> np.ndarray:
    if recording.timestamps_ns is not None:
        return np.asarray(recording.timestamps_ns, dtype=np.int64)
    start_ns = int(when.timestamp() * 1e9)
    return start_ns + np.round(np.arange(recording.num_steps) * 1e9 / recording.control_hz).astype(np.int64)


def _write_trajectory(path: Path, recording: EpisodeRecording, when: datetime) -> None:
    steps = recording.num_steps
    f64 = np.float64
    times_ms = _step_times_ns(recording, when) // 1_000_000
    with h5py.File(path, "w") as h5:
        _write_dataset(h5, layout.CARTESIAN_POSITION, np.asarray(recording.cartesian_position, f64))
        _write_dataset(h5, layout.GRIPPER_POSITION, np.asarray(recording.gripper_position, f64))
        _write_dataset(h5, layout.JOINT_POSITIONS, np.asarray(recording.joint_positions, f64))
        if recording.joint_velocities is not None:
            _write_dataset(h5, layout.JOINT_VELOCITIES, np.asarray(recording.joint_velocities, f64))
        for key, value in (
            (layout.ACTION_CARTESIAN_POSITION, recording.action_cartesian_position),
            (layout.ACTION_GRIPPER_POSITION, recording.action_gripper_position),
            (layout.ACTION_JOINT_POSITION, recording.action_joint_position),
        ):
            if value is not None:
                _write_dataset(h5, key, np.asarray(value, f64))
        for name in ("read_start", "read_end"):
            _write_dataset(h5, f"{layout.ROBOT_TIMESTAMPS_GROUP}/{name}", times_ms)
        for name in ("step_start", "step_end"):
            _write_dataset(h5, f"{layout.CONTROL_TIMESTAMPS_GROUP}/{name}", times_ms)
        _write_dataset(h5, layout.SKIP_ACTION, np.zeros(steps, bool))
        for key, value in recording.extra_datasets.items():
            _write_dataset(h5, key, np.asarray(value))
        for name, value in (
            ("success", False),
            ("failure", False),
            ("movement_enabled", True),
            ("controller_on", True),
        ):
            _write_dataset(h5, f"{layout.CONTROLLER_INFO_GROUP}/{name}", np.full(steps, value, bool))
        frame_period_ms = round(1000.0 / 60.0)  # ZED capture rate; matches DROID's 2.5-period estimate
        for serial, cam in recording.cameras.items():
            _write_dataset(h5, f"{layout.CAMERA_TYPE_GROUP}/{serial}", np.full(steps, _CAMERA_TYPE[cam.kind], np.int64))
            _write_dataset(h5, layout.extrinsics_key(serial), np.asarray(cam.extrinsics, f64))
            _write_dataset(h5, layout.frame_received_key(serial), times_ms)
            _write_dataset(
                h5,
                f"{layout.CAMERA_TIMESTAMPS_GROUP}/{serial}_estimated_capture",
                times_ms - int(2.5 * frame_period_ms),
            )
        attrs = {
            "user": recording.user,
            "fixed_tasks": "",
            "new_tasks": "",
            "current_task": recording.task,
            "building": recording.building,
            "scene_id": recording.scene_id,
            "time": layout.episode_folder_name(when),
            "robot_serial_number": recording.robot_serial,
            "version_number": recording.droid_version,
            "success": bool(recording.success),
            "failure": not recording.success,
            "movement_enabled": True,
            "controller_on": True,
            **recording.extra_attrs,
        }
        h5.attrs.update(attrs)


def _metadata(recording: EpisodeRecording, when: datetime, relative_folder: Path) -> dict:
    user_id = hashlib.sha1(recording.user.encode()).hexdigest()[:8]
    uuid = f"{recording.lab}+{user_id}+{when.strftime('%Y-%m-%d-%Hh-%Mm-%Ss')}"
    roles = layout.resolve_camera_roles(
        {s: _CAMERA_TYPE[c.kind] for s, c in recording.cameras.items()},
        {s: np.asarray(c.extrinsics)[0] for s, c in recording.cameras.items()},
    )
    meta: dict = {
        "uuid": uuid,
        "lab": recording.lab,
        "user": recording.user,
        "user_id": user_id,
        "date": when.strftime("%Y-%m-%d"),
        "timestamp": when.strftime("%Y-%m-%d-%Hh-%Mm-%Ss"),
        "hdf5_path": str(relative_folder / layout.TRAJECTORY_FILE),
        "building": recording.building,
        "scene_id": recording.scene_id,
        "success": bool(recording.success),
        "robot_serial": recording.robot_serial,
        "droid_version": recording.droid_version,
        "current_task": recording.task,
        "trajectory_length": recording.num_steps,
    }
    for role in ("wrist", "ext1", "ext2"):
        serial = roles.get(role)
        cam = recording.cameras.get(serial) if serial else None
        meta[f"{role}_cam_serial"] = serial
        meta[f"{role}_cam_extrinsics"] = np.asarray(cam.extrinsics)[0].tolist() if cam else None
        meta[f"{role}_svo_path"] = None
    for role, key in layout.ROLE_METADATA_KEYS.items():
        serial = roles.get(role)
        meta[key] = str(relative_folder / layout.mp4_relpath(serial)) if serial else None
    return meta


def write_episode(root: str | Path, recording: EpisodeRecording, *, when: datetime | None = None) -> Path:
    """Write `recording` under `root` and return `<root>/<lab>/success|failure/<YYYY-MM-DD>/<asctime>/`.

    `when` defaults to now (UTC). If an episode of this lab with the same second already exists, successful or not,
    the next free second is used: fast simulated runs never overwrite each other, and since the episode id is made of
    lab and time, no two episodes share an id.
    """
    recording.check()
    when = when or datetime.now(timezone.utc)
    outcome = "success" if recording.success else "failure"
    lab_dir = Path(root) / recording.lab

    def taken(moment: datetime) -> bool:
        relative_day = Path(moment.strftime("%Y-%m-%d")) / layout.episode_folder_name(moment)
        return any((lab_dir / kind / relative_day).exists() for kind in ("success", "failure"))

    while taken(when):
        when = when + timedelta(seconds=1)
    relative = Path(outcome) / when.strftime("%Y-%m-%d") / layout.episode_folder_name(when)
    final = lab_dir / relative
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".{final.name}.{os.getpid()}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        _write_trajectory(staging / layout.TRAJECTORY_FILE, recording, when)
        meta = _metadata(recording, when, relative)
        (staging / f"metadata_{meta['uuid']}.json").write_text(json.dumps(meta, indent=2))
        for serial, cam in recording.cameras.items():
            write_video(staging / layout.mp4_relpath(serial), np.asarray(cam.frames), recording.control_hz)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final
