"""ROS 1 image topics: `sensor_msgs/Image` (raw, e.g. `/camera/color/image_raw`) and `sensor_msgs/CompressedImage`
(any topic ending in "/compressed", JPEG or PNG), as published by the ZED, RealSense, usb_cam or any other ROS driver.

The subscriber lives in this process's rospy node: inside the bridge that is the ros1 backend's node (started
first), elsewhere a node of its own is started. Messages are decoded in rospy's callback thread; a malformed message
is dropped and logged, never raised into the caller. The capture time is the message's `header.stamp` (the driver's
capture stamp on the ROS clock), converted to the local monotonic clock; a zero stamp counts as the receive time.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from vjepa_ac.robot.cameras.base import (
    CameraConfig,
    CameraError,
    CameraSource,
    Frame,
    stamp_to_clock,
)

log = logging.getLogger(__name__)

MAX_IMAGE_PIXELS = 4096 * 4096
"""Larger images are refused before decoding (bounded cost per message)."""
_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8uc1": 1, "8uc3": 3}


def image_message_to_rgb(encoding: str, height: int, width: int, step: int, data: bytes) -> np.ndarray:
    """The RGB uint8 [H, W, 3] image of a `sensor_msgs/Image`, or ValueError naming what is wrong with it.

    Encodings: rgb8, bgr8 (and 8UC3, which drivers use for BGR), rgba8, bgra8, mono8 (8UC1)."""
    encoding = encoding.lower()
    if encoding not in _CHANNELS:
        raise ValueError(f"unsupported image encoding {encoding!r}; publish one of {sorted(_CHANNELS)}")
    channels = _CHANNELS[encoding]
    if not (0 < height and 0 < width and height * width <= MAX_IMAGE_PIXELS):
        raise ValueError(f"image size {width}x{height} is empty or larger than {MAX_IMAGE_PIXELS} pixels")
    if step < width * channels:
        raise ValueError(f"row step {step} is shorter than {width} pixels of {channels} bytes")
    if len(data) < step * height:
        raise ValueError(f"image data has {len(data)} bytes, {step * height} expected ({height} rows of {step})")
    rows = np.frombuffer(data, dtype=np.uint8, count=step * height).reshape(height, step)
    pixels = rows[:, : width * channels].reshape(height, width, channels)
    if channels == 1:
        return np.repeat(pixels, 3, axis=2)
    if encoding in ("bgr8", "bgra8", "8uc3"):
        return np.ascontiguousarray(pixels[..., 2::-1])
    return np.ascontiguousarray(pixels[..., :3])


def compressed_message_to_rgb(data: bytes) -> np.ndarray:
    """The RGB uint8 image of a `sensor_msgs/CompressedImage` (JPEG or PNG), or ValueError."""
    import cv2

    buffer = np.frombuffer(data, dtype=np.uint8)
    if buffer.size == 0:
        raise ValueError("compressed image is empty")
    bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("compressed image is not a decodable JPEG/PNG")
    if bgr.shape[0] * bgr.shape[1] > MAX_IMAGE_PIXELS:
        raise ValueError(f"image size {bgr.shape[1]}x{bgr.shape[0]} is larger than {MAX_IMAGE_PIXELS} pixels")
    return np.ascontiguousarray(bgr[..., ::-1])


class Ros1Camera(CameraSource):
    """`rospy` is the rospy module (default: Debian's, through `robot.backends.ros1_msgs.import_rospy`)."""

    def __init__(self, config: CameraConfig, *, rospy: Any = None, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self._rospy = rospy
        self._lock = threading.Lock()
        self._frame: Frame | None = None
        self._seq = 0
        self._last_problem: str | None = None
        self._subscriber = None

    @property
    def compressed(self) -> bool:
        return self.config.topic.rstrip("/").endswith("/compressed")

    def start(self) -> None:
        if self._subscriber is not None:
            return
        if self._rospy is None:
            from vjepa_ac.robot.backends.ros1_msgs import import_rospy

            try:
                self._rospy = import_rospy()
            except ImportError as exc:
                raise CameraError(f"{self.config.description}: {exc}") from None
        rospy = self._rospy
        from sensor_msgs.msg import CompressedImage, Image

        if not rospy.core.is_initialized():
            rospy.init_node("vjepa_ac_cameras", anonymous=True, disable_signals=True)
        kind = CompressedImage if self.compressed else Image
        # A large receive buffer: rospy's default (64 KB) splits every raw frame and delivers stale ones.
        self._subscriber = rospy.Subscriber(self.config.topic, kind, self._on_image, queue_size=1, buff_size=1 << 24)

    def _on_image(self, msg: Any) -> None:
        received = self.clock()
        try:
            if self.compressed:
                image = compressed_message_to_rgb(bytes(msg.data))
            else:
                image = image_message_to_rgb(msg.encoding, msg.height, msg.width, msg.step, bytes(msg.data))
            stamp = msg.header.stamp.to_sec()
            capture = stamp_to_clock(stamp, self._rospy.get_time(), received)
        except ValueError as exc:
            problem = f"{self.config.description}: dropped a message: {exc}"
            if problem != self._last_problem:  # once per distinct problem, not at the camera rate
                log.warning(problem)
                self._last_problem = problem
            return
        with self._lock:
            self._seq += 1
            self._frame = Frame(self.role, image, capture, self._seq)
        self._last_problem = None

    def read(self) -> Frame | None:
        if self._subscriber is None:
            raise CameraError(f"{self.config.description}: not started")
        with self._lock:
            return self._frame

    def close(self) -> None:
        if self._subscriber is not None:
            self._subscriber.unregister()
            self._subscriber = None
