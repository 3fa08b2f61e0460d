"""V4L2 / UVC cameras through OpenCV's `cv2.VideoCapture` (any webcam, or a ZED / RealSense seen as a UVC device)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from vjepa_ac.robot.cameras.base import CameraConfig, CameraError
from vjepa_ac.robot.cameras.threaded import ThreadedCamera


class OpenCVCamera(ThreadedCamera):
    """`capture_factory(device)` returns an object with `cv2.VideoCapture`'s `isOpened`, `set`, `read` and `release`
    (default: `cv2.VideoCapture` with the V4L2 backend for device paths). Capture time is the time `read` returned:
    V4L2 timestamps are not exposed by OpenCV, so frames are at most one frame period older than stated."""

    def __init__(self, config: CameraConfig, *, capture_factory: Callable[[Any], Any] | None = None, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self._factory = capture_factory
        self._capture = None

    def _open(self) -> None:
        import cv2

        cfg = self.config
        device = int(cfg.device) if isinstance(cfg.device, str) and cfg.device.isdigit() else cfg.device
        if self._factory is not None:
            capture = self._factory(device)
        elif isinstance(device, str):
            capture = cv2.VideoCapture(device, cv2.CAP_V4L2)
        else:
            capture = cv2.VideoCapture(device)
        if not capture.isOpened():
            raise CameraError(f"{cfg.description}: cannot open the device (is it plugged in and readable?)")
        fourcc = cfg.options.get("fourcc")
        if fourcc:
            capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*str(fourcc)))
        for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, cfg.width), (cv2.CAP_PROP_FRAME_HEIGHT, cfg.height),
                            (cv2.CAP_PROP_FPS, cfg.fps)):
            if value is not None:
                capture.set(prop, float(value))
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1.0)  # the newest frame, not one queued in the driver
        self._capture = capture

    def _grab(self) -> tuple[np.ndarray, float] | None:
        ok, bgr = self._capture.read()
        now = self.clock()
        if not ok or bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
            return None
        return bgr[..., ::-1], now

    def _release(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
