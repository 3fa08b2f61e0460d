"""Record what a robot does, real or simulated, as raw DROID episodes, so users grow a dataset while they work.

`RecordingRobot` wraps any `Robot`: every control period it executes becomes one DROID step (the observation at which
the command was issued, the commanded next pose). Steps go to a journal on disk as they happen, so a run killed at
any point loses nothing: the next `RecordingRobot` on the same folder (or `recover_interrupted`) closes an orphaned
journal as a failed episode marked `interrupted`. Finished episodes are written by `data.droid.write_episode`, which
renames a complete folder into place, so readers never see half an episode and earlier episodes are never touched.

Wrap the robot that runs at the control rate, below `ActionRepeatRobot`, so the recording has DROID's 15 Hz steps:

    with ActionRepeatRobot(RecordingRobot(robot, "my_data", task="put the cube on the mat"), periods) as arm:
        ...
        arm.robot.finish(success=True)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from vjepa_ac.data.droid.poses import apply_actions
from vjepa_ac.robot.interface import ActionResult, Observation, Robot

log = logging.getLogger(__name__)

JOURNAL_PREFIX = ".recording-"
"""Journal folders are hidden (DROID readers skip dot-folders) and named `<prefix><pid>-<start time>`."""
DEFAULT_CAMERA_SERIALS = {"left": "20000001", "right": "20000002", "wrist": "10000001"}
"""Serials written for camera roles (DROID tells cameras apart by serial): exterior cameras 2xxxxxxx, wrist 1xxxxxxx."""


@dataclass(frozen=True)
class RecordingConfig:
    """What each recorded episode says about itself (DROID metadata)."""

    task: str = ""
    """The language instruction, e.g. "put the cube on the mat"."""
    lab: str = "VJEPAAC"
    user: str = "vjepa-ac"
    robot_serial: str = "franka"
    scene_id: str = ""
    camera_serials: Mapping[str, str] | None = None
    """Camera role -> serial; default `DEFAULT_CAMERA_SERIALS`."""


def _write_atomic(path: Path, writer: Callable[[Path], None]) -> None:
    partial = path.with_name(path.name + ".partial")
    writer(partial)
    os.replace(partial, path)


class _Journal:
    """One episode's steps on disk: `episode.json` (what the episode is) and one `NNNNNN.npz` per step, each written
    whole and renamed into place, so a kill leaves only complete steps."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def create(cls, root: Path, meta: dict) -> "_Journal":
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        folder = root / f"{JOURNAL_PREFIX}{os.getpid()}-{stamp}"
        folder.mkdir(parents=True)
        _write_atomic(folder / "episode.json", lambda p: p.write_text(json.dumps(meta)))
        return cls(folder)

    @property
    def pid(self) -> int | None:
        try:
            return int(self.folder.name[len(JOURNAL_PREFIX):].split("-", 1)[0])
        except ValueError:
            return None

    def meta(self) -> dict:
        return json.loads((self.folder / "episode.json").read_text())

    def append(self, index: int, arrays: dict[str, np.ndarray]) -> None:
        def save(path: Path) -> None:
            with path.open("wb") as f:
                np.savez(f, **arrays)

        _write_atomic(self.folder / f"{index:06d}.npz", save)

    def steps(self) -> list[dict[str, np.ndarray]]:
        steps = []
        for path in sorted(self.folder.glob("[0-9]*.npz")):
            try:
                with np.load(path) as data:
                    steps.append({key: data[key] for key in data.files})
            except (OSError, ValueError, EOFError) as exc:  # a step damaged outside our writes: keep what precedes it
                log.warning("recording %s: step %s unreadable (%s); keeping the %d steps before it",
                            self.folder, path.name, exc, len(steps))
                break
        return steps

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _episode_from_journal(journal: _Journal, *, success: bool, extra: dict):
    """The `EpisodeRecording` of a journal, or None when it holds no step."""
    from vjepa_ac.data.droid.writer import CameraRecording, EpisodeRecording

    meta = journal.meta()
    steps = journal.steps()
    if not steps:
        return None
    stack = {key: np.stack([s[key] for s in steps]) for key in ("state", "joint_positions", "target", "time_ns")}
    cameras = {}
    for role, serial in meta["camera_serials"].items():
        first = next((i for i, s in enumerate(steps) if f"image_{role}" in s), None)
        if first is None:
            log.warning("recording %s: camera %r sent no frame; it is left out", journal.folder, role)
            continue
        # A step without a frame (a dropped camera message) repeats the camera's previous frame.
        frames, poses, held = [], [], 0
        frame, pose = steps[first][f"image_{role}"], steps[first][f"extrinsics_{role}"]
        for step in steps:
            if f"image_{role}" in step:
                frame, pose = step[f"image_{role}"], step[f"extrinsics_{role}"]
            else:
                held += 1
            frames.append(frame)
            poses.append(pose)
        if held:
            log.warning("recording %s: camera %r missed %d of %d frames; each repeats the frame before",
                        journal.folder, role, held, len(steps))
        cameras[serial] = CameraRecording(frames=np.stack(frames), extrinsics=np.stack(poses),
                                          kind="wrist" if role == "wrist" else "exterior")
    attrs = {"recorded_by": "vjepa-ac run --record", **meta.get("extra_attrs", {}), **extra}
    return EpisodeRecording(
        cartesian_position=stack["state"][:, :6],
        gripper_position=stack["state"][:, 6],
        joint_positions=stack["joint_positions"],
        cameras=cameras,
        action_cartesian_position=stack["target"][:, :6],
        action_gripper_position=stack["target"][:, 6],
        timestamps_ns=stack["time_ns"],
        task=meta["task"],
        success=success,
        lab=meta["lab"],
        user=meta["user"],
        robot_serial=meta["robot_serial"],
        scene_id=meta["scene_id"],
        control_hz=meta["control_hz"],
        extra_attrs={k: v if isinstance(v, (str, int, float, bool)) else json.dumps(v) for k, v in attrs.items()},
    )


def _pid_alive(pid: int | None) -> bool:
    """Whether the process that owns a journal still runs (a reused pid keeps a journal until that process ends)."""
    if pid is None:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_interrupted(root: str | Path) -> list[Path]:
    """Close every journal under `root` whose process has died as a failed, `interrupted` episode; return the
    episode folders written. Journals of live processes are left alone; an empty journal is removed."""
    from vjepa_ac.data.droid.writer import write_episode

    written = []
    for folder in sorted(Path(root).glob(f"{JOURNAL_PREFIX}*")):
        journal = _Journal(folder)
        if not folder.is_dir() or _pid_alive(journal.pid):
            continue
        try:
            recording = _episode_from_journal(journal, success=False, extra={"interrupted": True})
        except (OSError, ValueError, KeyError) as exc:
            log.error("recording %s cannot be recovered (%s); left in place for inspection", folder, exc)
            continue
        if recording is not None:
            written.append(write_episode(root, recording))
            log.warning("closed the interrupted recording %s as failed episode %s", folder.name, written[-1])
        journal.remove()
    return written


class RecordingRobot(Robot):
    """A `Robot` that journals every executed control period and writes one DROID episode per `finish`.

    A step is recorded for each `send_action`: the observation the command was issued from (reusing the last
    `get_observation` when nothing moved since) and the commanded next pose `apply_actions(state, applied)`, where
    `applied` is what the robot reports it applied (zero when refused). `finish` adds the final observation with a hold
    action (DROID's last step) and writes the episode; `close` without `finish` closes it as failed, so a run that ends
    in an exception is still kept.

    Camera extrinsics come from the wrapped robot's `camera_extrinsics(role)` when it has one (the sim), else from
    `extrinsics`, else they are written as zeros; two exterior cameras need real extrinsics, since DROID tells its
    left camera from its right by them.
    """

    def __init__(
        self,
        robot: Robot,
        root: str | Path,
        config: RecordingConfig = RecordingConfig(),
        *,
        extrinsics: Mapping[str, np.ndarray] | None = None,
        extra_attrs: Mapping[str, object] | None = None,
    ) -> None:
        self.robot = robot
        self.root = Path(root)
        self.config = config
        self.camera_roles = robot.camera_roles
        self.control_hz = robot.control_hz
        serials = dict(config.camera_serials or DEFAULT_CAMERA_SERIALS)
        missing = [role for role in self.camera_roles if role not in serials]
        if missing:
            raise ValueError(f"no camera serial for role(s) {missing}; give camera_serials for every camera role")
        self._serials = {role: serials[role] for role in self.camera_roles}
        self._extrinsics = {k: np.asarray(v, dtype=np.float64) for k, v in (extrinsics or {}).items()}
        exterior = [r for r in self.camera_roles if r != "wrist"]
        if len(exterior) > 1 and not hasattr(robot, "camera_extrinsics") and \
                not all(r in self._extrinsics for r in exterior):
            raise ValueError(f"recording exterior cameras {exterior} needs their extrinsics (DROID tells left from "
                             "right by them)")
        for role, value in self._extrinsics.items():
            if value.shape != (6,) or not np.all(np.isfinite(value)):
                raise ValueError(f"extrinsics of {role!r} must be 6 finite numbers (xyz + Euler xyz), got {value}")
        self._extra_attrs = dict(extra_attrs or {})
        self._journal: _Journal | None = None
        self._steps = 0
        self._last_observation: Observation | None = None
        self.episodes: list[Path] = []
        """Episode folders written so far (finished or closed as failed)."""

    # -- Robot ------------------------------------------------------------------------------------------------------
    def connect(self) -> None:
        self.robot.connect()
        self.root.mkdir(parents=True, exist_ok=True)
        recovered = recover_interrupted(self.root)
        self.episodes.extend(recovered)

    def get_observation(self) -> Observation:
        self._last_observation = self.robot.get_observation()
        return self._last_observation

    def send_action(self, action: np.ndarray) -> ActionResult:
        observation = self._last_observation or self.robot.get_observation()
        self._last_observation = None
        result = self.robot.send_action(action)
        applied = np.asarray(result.applied, dtype=np.float64) if result.ok else np.zeros(7)
        self._record(observation, apply_actions(observation.state, applied))
        return result

    def hold(self) -> None:
        self._last_observation = None
        self.robot.hold()

    def stop(self) -> None:
        self._last_observation = None
        self.robot.stop()

    def close(self) -> None:
        try:
            if self._journal is not None:
                log.warning("recording closed before the episode finished: keeping it as a failed episode")
                self.finish(success=False, final_observation=False, interrupted=True)
        finally:
            self.robot.close()

    # -- recording --------------------------------------------------------------------------------------------------
    def finish(self, success: bool, *, final_observation: bool = True, interrupted: bool = False) -> Path | None:
        """Write the episode recorded since the last `finish` with its success label; returns its folder (None if no
        step was recorded). `final_observation` adds DROID's last step (the final pose with a hold action)."""
        from vjepa_ac.data.droid.writer import write_episode

        if self._journal is None:
            return None
        if final_observation:
            try:
                observation = self.robot.get_observation()
                self._record(observation, observation.state.copy())
            except Exception as exc:  # the link may be gone: keep what was recorded
                log.warning("no final observation for the recording (%s)", exc)
        journal, self._journal, self._steps = self._journal, None, 0
        extra = {"interrupted": True} if interrupted else {}
        recording = _episode_from_journal(journal, success=success, extra=extra)
        path = write_episode(self.root, recording) if recording is not None else None
        journal.remove()
        if path is not None:
            self.episodes.append(path)
        return path

    def _camera_extrinsics(self, role: str) -> np.ndarray:
        if role in self._extrinsics:
            return self._extrinsics[role]
        source = getattr(self.robot, "camera_extrinsics", None)
        return np.asarray(source(role), dtype=np.float64) if source is not None else np.zeros(6)

    def _record(self, observation: Observation, target: np.ndarray) -> None:
        if self._journal is None:
            meta = {"task": self.config.task, "lab": self.config.lab, "user": self.config.user,
                    "robot_serial": self.config.robot_serial, "scene_id": self.config.scene_id,
                    "control_hz": float(self.control_hz), "camera_serials": self._serials,
                    "extra_attrs": self._extra_attrs}
            self._journal = _Journal.create(self.root, meta)
        arrays = {
            "state": observation.state,
            "joint_positions": observation.joint_positions,
            "target": np.asarray(target, dtype=np.float64),
            "time_ns": np.int64(time.time_ns()),
        }
        for role in self.camera_roles:
            image = observation.images.get(role)
            if image is not None:
                arrays[f"image_{role}"] = image
                arrays[f"extrinsics_{role}"] = self._camera_extrinsics(role)
        self._journal.append(self._steps, arrays)
        self._steps += 1
