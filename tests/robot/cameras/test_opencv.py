"""V4L2/UVC cameras through OpenCV. No camera is attached to the test machine: `cv2.VideoCapture` is replaced by a
stub capture object (injected through `capture_factory`) that yields BGR frames the way OpenCV does."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from vjepa_ac.robot.cameras import CameraConfig, CameraError, make_camera
from vjepa_ac.robot.cameras.opencv import OpenCVCamera


class StubCapture:
    """Mimics `cv2.VideoCapture`: `read()` blocks for one frame period and returns (ok, BGR frame)."""

    def __init__(self, device, *, opened=True, fail_after=None, size=(48, 64)):
        self.device, self.opened, self.fail_after, self.size = device, opened, fail_after, size
        self.props: dict[int, float] = {}
        self.reads = 0
        self.released = threading.Event()

    def isOpened(self):
        return self.opened

    def set(self, prop, value):
        self.props[prop] = value
        return True

    def read(self):
        time.sleep(0.005)
        self.reads += 1
        if self.fail_after is not None and self.reads > self.fail_after:
            return False, None
        bgr = np.zeros((*self.size, 3), np.uint8)
        bgr[..., 0] = 200  # blue in BGR
        bgr[0, 0, 2] = self.reads % 256  # frame counter in the red channel
        return True, bgr

    def release(self):
        self.released.set()


def _wait_frame(camera, min_seq=1, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = camera.read()
        if frame is not None and frame.seq >= min_seq:
            return frame
        time.sleep(0.005)
    raise AssertionError("no frame")


def test_frames_are_rgb_with_capture_times_and_settings_applied():
    stubs = []
    config = CameraConfig(role="wrist", source="opencv", device="/dev/video4", width=64, height=48, fps=30,
                          options={"fourcc": "MJPG"})
    camera = make_camera(config, capture_factory=lambda device: stubs.append(StubCapture(device)) or stubs[-1])
    assert isinstance(camera, OpenCVCamera)
    with camera:
        before = time.monotonic()
        frame = _wait_frame(camera, min_seq=3)
        assert frame.role == "wrist" and frame.image.shape == (48, 64, 3)
        assert frame.image[5, 5].tolist() == [0, 0, 200]  # BGR blue became RGB blue
        assert 0 <= frame.age() < 1.0 and frame.capture_time >= before - 0.1
        later = _wait_frame(camera, min_seq=frame.seq + 2)
        assert later.capture_time > frame.capture_time
    stub = stubs[0]
    assert stub.device == "/dev/video4" and stub.released.is_set()
    assert stub.props[cv2.CAP_PROP_FRAME_WIDTH] == 64 and stub.props[cv2.CAP_PROP_FRAME_HEIGHT] == 48
    assert stub.props[cv2.CAP_PROP_FPS] == 30 and stub.props[cv2.CAP_PROP_FOURCC] == cv2.VideoWriter_fourcc(*"MJPG")


def test_numeric_device_is_an_index():
    seen = []
    camera = OpenCVCamera(CameraConfig(role="left", source="opencv", device="2"),
                          capture_factory=lambda device: seen.append(device) or StubCapture(device))
    with camera:
        _wait_frame(camera)
    assert seen == [2]


def test_a_device_that_does_not_open_is_named():
    camera = OpenCVCamera(CameraConfig(role="left", source="opencv", device="/dev/video9"),
                          capture_factory=lambda device: StubCapture(device, opened=False))
    with pytest.raises(CameraError, match=r"opencv camera 'left' \(/dev/video9\): cannot open"):
        camera.start()


def test_a_camera_that_stops_delivering_is_reported():
    camera = OpenCVCamera(CameraConfig(role="right", source="opencv", device=0),
                          capture_factory=lambda device: StubCapture(device, fail_after=3))
    camera.max_failures = 5
    with camera:
        _wait_frame(camera)
        deadline = time.monotonic() + 5
        with pytest.raises(CameraError, match=r"opencv camera .right. \(0\): \d+ grabs in a row failed"):
            while time.monotonic() < deadline:
                camera.read()
                time.sleep(0.01)
