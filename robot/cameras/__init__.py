"""Camera sources behind one interface (`CameraSource` -> `Frame`): ROS 1 image topics, V4L2/UVC through OpenCV,
ZED and RealSense through their SDKs. See `robot.cameras.base` for the conventions (roles, RGB, capture times)."""

from __future__ import annotations

from vjepa_ac.data.lazy_exports import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    ".base": (
        "CAMERA_ROLES", "CAMERA_SOURCES", "CameraConfig", "CameraError", "CameraSource", "Frame", "stamp_to_clock",
    ),
    ".rig": ("CameraRig", "WithCameras", "cameras_from_mapping", "cameras_to_mapping", "make_camera"),
})
