"""Camera sources behind one interface (`CameraSource` -> `Frame`): ROS 1 image topics, V4L2/UVC through OpenCV,
ZED and RealSense through their SDKs. See `robot.cameras.base` for the conventions (roles, RGB, capture times)."""

from robot.cameras.base import (
    CAMERA_ROLES,
    CAMERA_SOURCES,
    CameraConfig,
    CameraError,
    CameraSource,
    Frame,
    stamp_to_clock,
)
from robot.cameras.rig import CameraRig, WithCameras, cameras_from_mapping, make_camera

__all__ = [
    "CAMERA_ROLES",
    "CAMERA_SOURCES",
    "CameraConfig",
    "CameraError",
    "CameraRig",
    "CameraSource",
    "Frame",
    "WithCameras",
    "cameras_from_mapping",
    "make_camera",
    "stamp_to_clock",
]
