"""ZED (pyzed) and RealSense (pyrealsense2) cameras. Neither SDK nor camera is installed on the test machine: the
SDK modules are replaced by stubs with the calls these sources make (injected as `sl=` / `rs=`), so what is tested
is the sources' use of the SDK (settings, colour order, timestamp conversion, failures), not the SDKs."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

from vjepa_ac.robot.cameras import CameraConfig, CameraError, make_camera
from vjepa_ac.robot.cameras.sdk import RealSenseCamera, ZedCamera


class _ZedSdk:
    """Stub of `pyzed.sl`: images are BGRA with blue = 200; stamps are wall-clock ns 0.25 s in the past."""

    class ERROR_CODE:
        SUCCESS = "SUCCESS"
        CAMERA_NOT_DETECTED = "CAMERA NOT DETECTED"

    RESOLUTION = SimpleNamespace(HD720="HD720", HD1080="HD1080", HD2K="HD2K", VGA="VGA")
    DEPTH_MODE = SimpleNamespace(NONE="NONE")
    VIEW = SimpleNamespace(LEFT="LEFT", RIGHT="RIGHT")
    TIME_REFERENCE = SimpleNamespace(IMAGE="IMAGE")

    def __init__(self, open_status="SUCCESS", lag_s=0.25):
        sdk = self
        self.opened_with = None
        self.views = []

        class InitParameters:
            def __init__(self):
                self.serial = None

            def set_from_serial_number(self, serial):
                self.serial = serial

        class Mat:
            def __init__(self):
                self.data = None

            def get_data(self):
                return self.data

        class Camera:
            def open(self, init):
                sdk.opened_with = init
                return open_status

            def grab(self, runtime):
                time.sleep(0.005)
                return sdk.ERROR_CODE.SUCCESS

            def retrieve_image(self, mat, view):
                sdk.views.append(view)
                h, w = (720, 1280) if sdk.opened_with.camera_resolution == "HD720" else (376, 672)
                mat.data = np.zeros((h, w, 4), np.uint8)
                mat.data[..., 0] = 200

            def get_timestamp(self, reference):
                assert reference == "IMAGE"
                return SimpleNamespace(get_nanoseconds=lambda: int((time.time() - lag_s) * 1e9))

            def close(self):
                sdk.closed = True

        self.InitParameters, self.Mat, self.Camera = InitParameters, Mat, Camera
        self.RuntimeParameters = lambda: None
        self.closed = False


def _frame(camera, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = camera.read()
        if frame is not None:
            return frame
        time.sleep(0.005)
    raise AssertionError("no frame")


def test_zed_left_eye_hd720_like_droid_with_sdk_capture_times():
    sl = _ZedSdk(lag_s=0.25)
    camera = make_camera(CameraConfig(role="left", source="zed", serial="24259877"), sl=sl)
    assert isinstance(camera, ZedCamera)
    with camera:
        frame = _frame(camera)
    init = sl.opened_with
    assert init.camera_resolution == "HD720" and init.camera_fps == 60 and init.serial == 24259877
    assert init.depth_mode == "NONE" and sl.views[0] == "LEFT" and sl.closed
    assert frame.image.shape == (720, 1280, 3) and frame.image[0, 0].tolist() == [0, 0, 200]
    assert 0.2 < frame.age() < 1.0  # the SDK's image stamp, not the time the grab returned


def test_zed_right_eye_vga_and_refusals():
    sl = _ZedSdk()
    with ZedCamera(CameraConfig(role="wrist", source="zed", width=672, height=376, eye="right"), sl=sl) as camera:
        assert _frame(camera).image.shape == (376, 672, 3)
    assert sl.views[0] == "RIGHT"
    with pytest.raises(CameraError, match=r"a ZED delivers"):
        ZedCamera(CameraConfig(role="left", source="zed", width=640, height=480), sl=_ZedSdk()).start()
    with pytest.raises(CameraError, match="could not open it: CAMERA NOT DETECTED"):
        ZedCamera(CameraConfig(role="left", source="zed"), sl=_ZedSdk(open_status="CAMERA NOT DETECTED")).start()


def test_zed_without_the_sdk_says_how_to_install_it(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pyzed(name, *args, **kwargs):
        if name.startswith("pyzed"):
            raise ImportError("No module named 'pyzed'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyzed)
    with pytest.raises(CameraError, match="ZED SDK"):
        ZedCamera(CameraConfig(role="left", source="zed")).start()


class _RealSenseSdk:
    """Stub of `pyrealsense2`: RGB8 colour frames stamped on the host clock (global_time) 0.1 s in the past, or on
    the device clock (hardware_clock)."""

    stream = SimpleNamespace(color="color")
    format = SimpleNamespace(rgb8="rgb8")
    timestamp_domain = SimpleNamespace(global_time="global", system_time="system", hardware_clock="hardware")

    def __init__(self, domain="global", fail_start=False):
        sdk = self
        self.enabled, self.device, self.stopped = [], None, False

        class Config:
            def enable_device(self, serial):
                sdk.device = serial

            def enable_stream(self, *args):
                sdk.enabled.append(args)

        class ColorFrame:
            def __bool__(self):
                return True

            def get_data(self):
                image = np.zeros((480, 640, 3), np.uint8)
                image[..., 1] = 150
                return image

            def get_timestamp(self):
                return (time.time() - 0.1) * 1e3 if domain != "hardware" else 12345.0

            def get_frame_timestamp_domain(self):
                return domain

        class Pipeline:
            def start(self, config):
                if fail_start:
                    raise RuntimeError("No device connected")

            def wait_for_frames(self, timeout_ms):
                time.sleep(0.005)
                return SimpleNamespace(get_color_frame=ColorFrame)

            def stop(self):
                sdk.stopped = True

        self.config, self.pipeline = Config, Pipeline


@pytest.mark.parametrize(("domain", "low", "high"), [("global", 0.08, 1.0), ("hardware", 0.0, 0.08)])
def test_realsense_colour_stream_and_capture_times(domain, low, high):
    rs = _RealSenseSdk(domain)
    camera = make_camera(CameraConfig(role="right", source="realsense", serial="f1230450", fps=15), rs=rs)
    assert isinstance(camera, RealSenseCamera)
    with camera:
        frame = _frame(camera)
    assert rs.device == "f1230450" and rs.enabled == [("color", 640, 480, "rgb8", 15)] and rs.stopped
    assert frame.image.shape == (480, 640, 3) and frame.image[0, 0].tolist() == [0, 150, 0]
    assert low <= frame.age() < high


def test_realsense_that_does_not_start_is_named():
    with pytest.raises(CameraError, match=r"realsense camera 'left' \(first device\): librealsense could not start"):
        RealSenseCamera(CameraConfig(role="left", source="realsense"), rs=_RealSenseSdk(fail_start=True)).start()
