"""Cameras whose driver call blocks until the next image (V4L2 through OpenCV, ZED, RealSense): a grab thread keeps
the newest frame so that `read()` returns at once."""

from __future__ import annotations

import abc
import logging
import threading

import numpy as np

from vjepa_ac.robot.cameras.base import CameraError, CameraSource, Frame

log = logging.getLogger(__name__)


class ThreadedCamera(CameraSource):
    """Subclasses open the device in `_open()` and return one (RGB image, capture time) per `_grab()`."""

    max_failures: int = 30
    """Consecutive failed grabs after which the camera is reported broken (about 1 s at 30 fps)."""

    def __init__(self, config, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self._lock = threading.Lock()
        self._frame: Frame | None = None
        self._error: str | None = None
        self._seq = 0
        self._running = threading.Event()
        self._thread: threading.Thread | None = None

    @abc.abstractmethod
    def _open(self) -> None:
        """Open the device; raise `CameraError` naming it if that fails."""

    @abc.abstractmethod
    def _grab(self) -> tuple[np.ndarray, float] | None:
        """Wait for the next image: (RGB uint8 [H, W, 3], capture time on `self.clock`), or None if none came."""

    def _release(self) -> None:
        """Close the device (called on the grab thread after its last grab)."""

    def start(self) -> None:
        if self._thread is not None:
            return
        self._open()
        self._running.set()
        self._thread = threading.Thread(target=self._loop, name=f"camera-{self.role}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        failures = 0
        try:
            while self._running.is_set():
                try:
                    grabbed = self._grab()
                except Exception as exc:  # noqa: BLE001 (a driver error ends in a reported camera fault, not a dead thread)
                    log.warning("%s: grab failed: %s", self.config.description, exc)
                    grabbed = None
                if grabbed is None:
                    failures += 1
                    if failures >= self.max_failures:
                        with self._lock:
                            self._error = f"{self.config.description}: {failures} grabs in a row failed"
                    continue
                image, capture_time = grabbed
                frame = Frame(self.role, np.ascontiguousarray(image), float(capture_time), self._seq + 1)
                failures = 0
                with self._lock:
                    self._seq += 1
                    self._frame, self._error = frame, None
        finally:
            self._release()

    def read(self) -> Frame | None:
        with self._lock:
            if self._error is not None:
                raise CameraError(self._error)
            return self._frame

    def close(self) -> None:
        self._running.clear()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
