"""Several cameras as one: built from the `cameras:` section of a bridge config, read by the bridge's camera thread
or, on the planner's side, merged into a `Robot`'s observations by `WithCameras`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from vjepa_ac.robot.cameras.base import CameraConfig, CameraError, CameraSource, Frame
from vjepa_ac.robot.interface import Observation, Robot

log = logging.getLogger(__name__)


def cameras_from_mapping(data: Mapping[str, Any] | None, where: str = "cameras") -> tuple[CameraConfig, ...]:
    """`CameraConfig`s of a YAML `cameras:` mapping {role: {source: ..., topic: ..., ...}}; unknown keys are an error
    (`data.config.ConfigError` naming `where`.role.key)."""
    import dataclasses

    from vjepa_ac.data.config import ConfigError, from_dict, unknown_key_error

    if not data:
        return ()
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping of role -> camera settings, got {type(data).__name__}")
    names = [f.name for f in dataclasses.fields(CameraConfig) if f.name != "role"]
    configs = []
    for role, values in data.items():
        if not isinstance(values, Mapping):
            raise ConfigError(f"{where}.{role} must be a mapping (source, topic / device / serial, ...)")
        if "role" in values:
            raise unknown_key_error("role", names, f"{where}.{role}")
        configs.append(from_dict(CameraConfig, {**values, "role": str(role)}, f"{where}.{role}"))
    return tuple(configs)


def cameras_to_mapping(cameras: Iterable[CameraConfig]) -> dict[str, dict[str, Any]]:
    """The YAML `cameras:` mapping of `cameras` (what `cameras_from_mapping` reads)."""
    from vjepa_ac.data.config import to_dict

    return {camera.role: {k: v for k, v in to_dict(camera).items() if k != "role"} for camera in cameras}


def make_camera(config: CameraConfig, **collaborators: Any) -> CameraSource:
    """The camera source for `config`; `collaborators` go to its constructor (e.g. `capture_factory=` for opencv,
    `sl=` for zed, `rs=` for realsense, `rospy=` for ros1, `clock=` for all)."""
    if config.source == "opencv":
        from vjepa_ac.robot.cameras.opencv import OpenCVCamera

        return OpenCVCamera(config, **collaborators)
    if config.source == "ros1":
        from vjepa_ac.robot.cameras.ros1 import Ros1Camera

        return Ros1Camera(config, **collaborators)
    if config.source == "zed":
        from vjepa_ac.robot.cameras.sdk import ZedCamera

        return ZedCamera(config, **collaborators)
    if config.source == "realsense":
        from vjepa_ac.robot.cameras.sdk import RealSenseCamera

        return RealSenseCamera(config, **collaborators)
    raise ValueError(f"unknown camera source {config.source!r}")


class CameraRig:
    """The cameras of one robot, one per role. `read()` gives each role's newest frame; a camera that fails is
    logged once per failure and left out, so one broken camera never silences the others."""

    def __init__(self, cameras: Iterable[CameraSource]) -> None:
        self.cameras = list(cameras)
        roles = [c.role for c in self.cameras]
        duplicates = sorted({r for r in roles if roles.count(r) > 1})
        if duplicates:
            raise ValueError(f"more than one camera for role(s) {duplicates}")
        self._failing: dict[str, str] = {}

    @classmethod
    def from_configs(cls, configs: Iterable[CameraConfig], **collaborators: Any) -> CameraRig:
        return cls(make_camera(c, **collaborators) for c in configs)

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(c.role for c in self.cameras)

    def start(self) -> None:
        """Start every camera; if one cannot start, the ones already started are closed again."""
        started = []
        try:
            for camera in self.cameras:
                camera.start()
                started.append(camera)
        except BaseException:
            for camera in started:
                camera.close()
            raise

    def read(self) -> dict[str, Frame]:
        frames = {}
        for camera in self.cameras:
            try:
                frame = camera.read()
            except CameraError as exc:
                if self._failing.get(camera.role) != str(exc):
                    log.error("camera %r: %s", camera.role, exc)
                    self._failing[camera.role] = str(exc)
                continue
            self._failing.pop(camera.role, None)
            if frame is not None:
                frames[camera.role] = frame
        return frames

    def wait_first(self, timeout_s: float, *, sleep: Callable[[float], None] = time.sleep) -> dict[str, Frame]:
        """Every camera's first frame, or `CameraError` naming the cameras that sent none within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            frames = self.read()
            missing = [c.config.description for c in self.cameras if c.role not in frames]
            if not missing:
                return frames
            if time.monotonic() > deadline:
                raise CameraError(f"no frame within {timeout_s:.1f} s from {', '.join(missing)}")
            sleep(0.02)

    def close(self) -> None:
        for camera in self.cameras:
            try:
                camera.close()
            except Exception:  # closing the others matters more
                log.exception("closing camera %r failed", camera.role)

    def __enter__(self) -> CameraRig:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class WithCameras(Robot):
    """A `Robot` whose observations carry frames of cameras read in this process (e.g. a webcam on the workstation
    beside a bridged arm); they replace the wrapped robot's frames of the same role.

    Observation times are re-expressed on this process's monotonic clock: the wrapped observation is taken as read
    now, and its own image stamps keep their age relative to its state stamp."""

    def __init__(self, robot: Robot, rig: CameraRig, *, clock: Callable[[], float] = time.monotonic,
                 first_frame_timeout_s: float = 5.0) -> None:
        self.robot = robot
        self.rig = rig
        self.clock = clock
        self.first_frame_timeout_s = first_frame_timeout_s
        self.camera_roles = tuple(dict.fromkeys((*robot.camera_roles, *rig.roles)))
        self.control_hz = robot.control_hz
        self._started = False

    def connect(self) -> None:
        if not self._started:
            self.rig.start()
            self._started = True
            self.rig.wait_first(self.first_frame_timeout_s)
        self.robot.connect()

    def get_observation(self) -> Observation:
        if not self._started:
            raise CameraError("cameras not started (call connect first)")
        inner = self.robot.get_observation()
        now = self.clock()
        images = dict(inner.images)
        stamps = {role: now - (inner.timestamp - t) for role, t in inner.image_timestamps.items() if role in images}
        for role, frame in self.rig.read().items():
            images[role] = frame.image
            stamps[role] = frame.capture_time
        return Observation(images=images, state=inner.state, joint_positions=inner.joint_positions,
                           gripper_position=inner.gripper_position, timestamp=now, image_timestamps=stamps)

    def send_action(self, action: np.ndarray):
        return self.robot.send_action(action)

    def hold(self) -> None:
        self.robot.hold()

    def stop(self) -> None:
        self.robot.stop()

    def close(self) -> None:
        try:
            self.robot.close()
        finally:
            self.rig.close()
            self._started = False
