"""Camera sources: one small interface for every way a frame reaches the stack (ROS image topics, V4L2/UVC through
OpenCV, ZED and RealSense SDKs, the simulator), usable inside the bridge process (frames go out on the bridge's
camera stream) or directly in the planner process (`robot.cameras.WithCameras`).

Conventions:
* a camera has a role, one of `CAMERA_ROLES`, named as DROID names its views: "left" / "right" are the exterior
  cameras on the robot's left (larger base-frame y) and right, "wrist" is the hand camera;
* `Frame.image` is RGB uint8 [H, W, 3] (never BGR); a source may hand the same array to several readers, so
  readers treat it as read-only;
* `Frame.capture_time` is seconds on this process's `time.monotonic()` clock when the sensor captured the image
  (the device's own stamp converted to that clock where it has one, else the receive time), so a frame's age is
  `time.monotonic() - capture_time` wherever it is consumed in this process;
* `read()` never blocks for long: it returns the newest frame, or None before the first one; an old frame is
  returned again until a newer one arrives (consumers judge staleness from `capture_time`).

Implementations take their device handle / middleware as an injected collaborator (a capture factory, an SDK
module), so each can be exercised without its hardware.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CAMERA_ROLES = ("left", "right", "wrist")
"""DROID's camera views: exterior left, exterior right, wrist (hand) camera."""
CAMERA_SOURCES = ("ros1", "opencv", "zed", "realsense")
"""Kinds of camera source `make_camera` builds."""


class CameraError(RuntimeError):
    """A camera could not be opened or stopped delivering frames; the message names the role and the device."""


@dataclass(frozen=True)
class Frame:
    """One image of one camera."""

    role: str
    image: np.ndarray
    """RGB uint8 [H, W, 3]."""
    capture_time: float
    """Seconds on this process's monotonic clock when the image was captured."""
    seq: int = 0
    """Counts frames delivered by the source (a repeated seq is the same frame read again)."""

    def __post_init__(self) -> None:
        image = self.image
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            shape = getattr(image, "shape", None)
            raise ValueError(f"camera {self.role!r}: a frame must be uint8 [H, W, 3] RGB, got "
                             f"{getattr(image, 'dtype', type(image).__name__)} {shape}")
        if not np.isfinite(self.capture_time):
            raise ValueError(f"camera {self.role!r}: capture time must be finite, got {self.capture_time}")

    def age(self, now: float | None = None) -> float:
        """Seconds since capture on the monotonic clock."""
        return (time.monotonic() if now is None else now) - self.capture_time


@dataclass(frozen=True)
class CameraConfig:
    """One camera for one role, as declared in a bridge config's `cameras:` section (see `launch/panda.yaml`)."""

    role: str
    source: str
    """One of `CAMERA_SOURCES`."""
    topic: str | None = None
    """ros1: image topic; a topic ending in "/compressed" carries `sensor_msgs/CompressedImage`, any other
    `sensor_msgs/Image`."""
    device: str | int | None = None
    """opencv: V4L2 device path ("/dev/video0") or index."""
    serial: str | None = None
    """zed / realsense: the camera's serial number (None: the first one found)."""
    width: int | None = None
    height: int | None = None
    """Requested capture size (None: the device default; ZED: HD720 as DROID)."""
    fps: float | None = None
    eye: str = "left"
    """zed: which eye's image (DROID trains on the left eye)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Source-specific extras, e.g. opencv {"fourcc": "MJPG"}."""

    def __post_init__(self) -> None:
        if self.role not in CAMERA_ROLES:
            raise ValueError(f"camera role {self.role!r} is not one of DROID's roles {CAMERA_ROLES}")
        if self.source not in CAMERA_SOURCES:
            raise ValueError(f"camera {self.role!r}: unknown source {self.source!r}; choose one of {CAMERA_SOURCES}")
        if self.source == "ros1" and not self.topic:
            raise ValueError(f"camera {self.role!r}: a ros1 camera needs a topic")
        if self.source == "opencv" and self.device is None:
            raise ValueError(f"camera {self.role!r}: an opencv camera needs a device (path or index)")
        if self.eye not in ("left", "right"):
            raise ValueError(f"camera {self.role!r}: eye must be 'left' or 'right', got {self.eye!r}")
        for name in ("width", "height", "fps"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"camera {self.role!r}: {name} must be positive, got {value}")

    @property
    def description(self) -> str:
        """Where the frames come from, for messages."""
        where = next((v for v in (self.topic, self.device, self.serial) if v is not None), "first device")
        return f"{self.source} camera {self.role!r} ({where})"


class CameraSource(abc.ABC):
    """One camera delivering frames for one role; `start()`, then `read()` as often as wanted, `close()` at the end."""

    def __init__(self, config: CameraConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock

    @property
    def role(self) -> str:
        return self.config.role

    @abc.abstractmethod
    def start(self) -> None:
        """Open the device or subscription; raises `CameraError` naming the device if it cannot."""

    @abc.abstractmethod
    def read(self) -> Frame | None:
        """The newest frame (None before the first); must not block for longer than a bridge camera period."""

    def close(self) -> None:
        """Release the device; idempotent."""

    def __enter__(self) -> CameraSource:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def stamp_to_clock(stamp_s: float, stamp_now_s: float, clock_now: float) -> float:
    """A device or ROS stamp (seconds on a clock whose current reading is `stamp_now_s`, e.g. wall time) converted
    to the local clock reading `clock_now`: the image is as old on both clocks. A stamp from the future (clock skew)
    counts as captured now; a zero stamp (not set by the driver) as well."""
    if not stamp_s > 0 or not np.isfinite(stamp_s):
        return clock_now
    return clock_now - max(0.0, stamp_now_s - stamp_s)
