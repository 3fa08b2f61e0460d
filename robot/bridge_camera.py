"""The bridge's camera stream: its own thread reads the backend's frames and those of the bridge's cameras, encodes
them as JPEG and publishes them, so that encoding never delays commands."""

from __future__ import annotations

import logging
import threading

import numpy as np
import zmq

from vjepa_ac.robot.backends.base import Backend
from vjepa_ac.robot.cameras import CameraRig
from vjepa_ac.robot.protocol import encode_frame

log = logging.getLogger(__name__)


class CameraStreamer:
    """Publishes camera frames at `camera_hz` on a PUB socket until `stop` is set; a camera and the backend serving
    one role: the camera wins. A camera failure never takes the bridge down."""

    def __init__(self, backend: Backend, cameras: CameraRig | None, camera_hz: float, jpeg_quality: int,
                 stop: threading.Event) -> None:
        self.backend = backend
        self.cameras = cameras
        self.camera_hz = camera_hz
        self.jpeg_quality = jpeg_quality
        self._stop = stop
        self.thread: threading.Thread | None = None

    def start(self, sock: zmq.Socket) -> None:
        """Publish on `sock` from a thread of its own (which closes the cameras when it ends)."""
        self.thread = threading.Thread(target=self._loop, args=(sock,), daemon=True)
        self.thread.start()

    def _loop(self, sock: zmq.Socket) -> None:
        import cv2

        period = 1.0 / self.camera_hz
        params = [int(cv2.IMWRITE_JPEG_QUALITY), int(self.jpeg_quality)]
        seq = 0
        published: dict[str, int] = {}
        """Role -> seq of the last camera frame published, so a camera slower than camera_hz is not re-sent."""
        try:
            while not self._stop.wait(period):
                try:
                    images = self.backend.read_images()
                except Exception:  # a camera failure must never take the bridge down
                    log.exception("camera read failed")
                    images = {}
                if self.cameras is not None:
                    for role, frame in self.cameras.read().items():
                        images.pop(role, None)
                        if published.get(role) != frame.seq:
                            published[role] = frame.seq
                            images[role] = (frame.image, frame.capture_time)
                for role, (image, t_capture) in images.items():
                    ok, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), params)
                    if ok:
                        try:
                            sock.send(encode_frame(role, seq, int(t_capture * 1e9), jpeg.tobytes()), zmq.NOBLOCK)
                        except zmq.Again:
                            pass
                seq += 1
        finally:
            self.backend.close_cameras()
            if self.cameras is not None:
                self.cameras.close()
