"""The stereo cameras DROID records with (Stereolabs ZED, through `pyzed.sl`) and Intel RealSense (through
`pyrealsense2`). The SDKs are imported only when such a camera is built; each class takes the SDK module as an
injected collaborator, so a machine without the SDK can still run the rest."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from vjepa_ac.robot.cameras.base import CameraConfig, CameraError, stamp_to_clock
from vjepa_ac.robot.cameras.threaded import ThreadedCamera

ZED_INSTALL_HINT = "ZED cameras need the ZED SDK and its Python API (pyzed), see stereolabs.com/docs/app-development/python"
REALSENSE_INSTALL_HINT = "RealSense cameras need pyrealsense2 (pip install pyrealsense2)"
_ZED_RESOLUTIONS = {(720, 1280): "HD720", (1080, 1920): "HD1080", (1242, 2208): "HD2K", (376, 672): "VGA"}
"""(height, width) per eye -> `sl.RESOLUTION` name."""


def _import(module: str, hint: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise CameraError(f"{hint} ({exc})") from None


class ZedCamera(ThreadedCamera):
    """A ZED / ZED 2 / ZED Mini: one eye's image (DROID: the left eye at HD720, 60 fps, its `standard_params`).

    `sl` is the `pyzed.sl` module (default: imported on `start`). The capture time is the SDK's image timestamp
    (`TIME_REFERENCE.IMAGE`, wall-clock nanoseconds) converted to the local monotonic clock."""

    def __init__(self, config: CameraConfig, *, sl: Any = None, wall_clock=time.time, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self._sl = sl
        self._wall = wall_clock
        self._camera = None

    def _open(self) -> None:
        sl = self._sl = self._sl or _import("pyzed.sl", ZED_INSTALL_HINT)
        cfg = self.config
        size = (cfg.height or 720, cfg.width or 1280)
        if size not in _ZED_RESOLUTIONS:
            raise CameraError(f"{cfg.description}: a ZED delivers (height, width) {sorted(_ZED_RESOLUTIONS)}, "
                              f"not {size}")
        init = sl.InitParameters()
        init.camera_resolution = getattr(sl.RESOLUTION, _ZED_RESOLUTIONS[size])
        init.camera_fps = int(cfg.fps or 60)
        init.depth_mode = sl.DEPTH_MODE.NONE  # images only; depth would cost GPU time for nothing
        if cfg.serial is not None:
            init.set_from_serial_number(int(cfg.serial))
        camera = sl.Camera()
        status = camera.open(init)
        if status != sl.ERROR_CODE.SUCCESS:
            raise CameraError(f"{cfg.description}: the ZED SDK could not open it: {status}")
        self._camera, self._runtime, self._mat = camera, sl.RuntimeParameters(), sl.Mat()
        self._view = sl.VIEW.LEFT if cfg.eye == "left" else sl.VIEW.RIGHT

    def _grab(self) -> tuple[np.ndarray, float] | None:
        sl = self._sl
        if self._camera.grab(self._runtime) != sl.ERROR_CODE.SUCCESS:
            return None
        self._camera.retrieve_image(self._mat, self._view)
        bgra = np.asarray(self._mat.get_data())
        stamp_ns = self._camera.get_timestamp(sl.TIME_REFERENCE.IMAGE).get_nanoseconds()
        capture = stamp_to_clock(stamp_ns / 1e9, self._wall(), self.clock())
        if bgra.ndim != 3 or bgra.shape[2] < 3:
            return None
        return bgra[..., 2::-1], capture

    def _release(self) -> None:
        if self._camera is not None:
            self._camera.close()
            self._camera = None


class RealSenseCamera(ThreadedCamera):
    """An Intel RealSense's colour stream (RGB8). `rs` is the `pyrealsense2` module (default: imported on `start`).

    The capture time is the frame's timestamp where it is on the host clock (`global_time` / `system_time` domains,
    milliseconds of wall time), else the time the frame arrived."""

    def __init__(self, config: CameraConfig, *, rs: Any = None, wall_clock=time.time, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self._rs = rs
        self._wall = wall_clock
        self._pipeline = None

    def _open(self) -> None:
        rs = self._rs = self._rs or _import("pyrealsense2", REALSENSE_INSTALL_HINT)
        cfg = self.config
        config = rs.config()
        if cfg.serial is not None:
            config.enable_device(str(cfg.serial))
        config.enable_stream(rs.stream.color, int(cfg.width or 640), int(cfg.height or 480), rs.format.rgb8,
                             int(cfg.fps or 30))
        pipeline = rs.pipeline()
        try:
            pipeline.start(config)
        except RuntimeError as exc:
            raise CameraError(f"{cfg.description}: librealsense could not start it: {exc}") from None
        self._pipeline = pipeline

    def _grab(self) -> tuple[np.ndarray, float] | None:
        rs = self._rs
        frames = self._pipeline.wait_for_frames(1000)
        color = frames.get_color_frame()
        now = self.clock()
        if not color:
            return None
        image = np.asanyarray(color.get_data())
        if color.get_frame_timestamp_domain() in (rs.timestamp_domain.global_time, rs.timestamp_domain.system_time):
            now = stamp_to_clock(color.get_timestamp() / 1e3, self._wall(), now)
        if image.ndim != 3 or image.shape[2] != 3:
            return None
        return image, now

    def _release(self) -> None:
        if self._pipeline is not None:
            self._pipeline.stop()
            self._pipeline = None
