"""The camera interface's conventions, the rig, its configuration, its use in the planner process (`WithCameras`) and
on the bridge's camera stream. The cameras here are in-memory `CameraSource`s whose frames the tests set."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest

from vjepa_ac.sim.backend import MujocoBackend
from vjepa_ac.robot.bridge import Bridge
from vjepa_ac.robot.cameras import (
    CameraConfig,
    CameraError,
    CameraRig,
    CameraSource,
    Frame,
    WithCameras,
    cameras_from_mapping,
    stamp_to_clock,
)
from vjepa_ac.robot.client import BridgeClient
from vjepa_ac.robot.config import BridgeConfig, load_bridge_config
from vjepa_ac.robot.interface import Observation

LAUNCH = Path(__file__).resolve().parents[3] / "launch"


class MemoryCamera(CameraSource):
    """Frames set by the test; `fail` makes `read` raise like a broken device."""

    def __init__(self, role: str, image: np.ndarray | None = None):
        super().__init__(CameraConfig(role=role, source="opencv", device=0))
        self.frame = None if image is None else Frame(role, image, time.monotonic(), 1)
        self.fail = False
        self.started = self.closed = False

    def start(self):
        self.started = True

    def read(self):
        if self.fail:
            raise CameraError(f"{self.config.description}: unplugged")
        return self.frame

    def close(self):
        self.closed = True


def test_frame_and_config_validation():
    with pytest.raises(ValueError, match="uint8 \\[H, W, 3\\]"):
        Frame("left", np.zeros((4, 4), np.uint8), 0.0)
    with pytest.raises(ValueError, match="finite"):
        Frame("left", np.zeros((4, 4, 3), np.uint8), float("nan"))
    with pytest.raises(ValueError, match="not one of DROID's roles"):
        CameraConfig(role="ext1", source="opencv", device=0)
    with pytest.raises(ValueError, match="unknown source"):
        CameraConfig(role="left", source="gige")
    with pytest.raises(ValueError, match="needs a topic"):
        CameraConfig(role="left", source="ros1")
    with pytest.raises(ValueError, match="width must be positive"):
        CameraConfig(role="left", source="zed", width=0)


def test_stamps_convert_to_the_local_clock():
    assert stamp_to_clock(99.5, 100.0, 10.0) == pytest.approx(9.5)  # half a second old on both clocks
    assert stamp_to_clock(101.0, 100.0, 10.0) == 10.0  # from the future (skew): captured now
    assert stamp_to_clock(0.0, 100.0, 10.0) == 10.0  # driver left the stamp empty


def test_cameras_from_yaml_mapping():
    configs = cameras_from_mapping({"left": {"source": "ros1", "topic": "/zed/left/image_rect_color"},
                                    "wrist": {"source": "opencv", "device": "/dev/video0", "width": 640}})
    assert [(c.role, c.source) for c in configs] == [("left", "ros1"), ("wrist", "opencv")]
    with pytest.raises(ValueError, match=r"unknown config key 'cameras.left.topik' \(did you mean 'topic'\?\)"):
        cameras_from_mapping({"left": {"source": "ros1", "topik": "/x"}})
    with pytest.raises(ValueError, match="must be a mapping"):
        cameras_from_mapping({"left": "/dev/video0"})


def test_launch_files_declare_cameras_per_role():
    panda = load_bridge_config(LAUNCH / "panda.yaml")
    assert {c.role for c in panda.cameras} == {"left", "right", "wrist"}
    assert all(c.source == "ros1" for c in panda.cameras)
    fr3 = load_bridge_config(LAUNCH / "fr3.yaml")
    assert fr3.camera_hz > 0 and {c.role for c in fr3.cameras} == {"left", "right", "wrist"}
    with pytest.raises(ValueError, match="camera_hz is 0"):
        BridgeConfig(camera_hz=0, cameras=cameras_from_mapping({"left": {"source": "opencv", "device": 0}}))


def test_rig_reads_every_role_and_survives_a_broken_camera(caplog):
    image = np.full((8, 8, 3), 7, np.uint8)
    left, wrist = MemoryCamera("left", image), MemoryCamera("wrist", image)
    with pytest.raises(ValueError, match="more than one camera for role"):
        CameraRig([left, MemoryCamera("left")])
    rig = CameraRig([left, wrist])
    with rig:
        assert left.started and wrist.started
        assert set(rig.read()) == {"left", "wrist"}
        wrist.fail = True
        with caplog.at_level(logging.ERROR):
            assert set(rig.read()) == {"left"}
            rig.read()
        assert sum("unplugged" in r.message for r in caplog.records) == 1  # logged once, not at the camera rate
        wrist.fail = False
        assert set(rig.read()) == {"left", "wrist"}
        wrist.frame = None
        with pytest.raises(CameraError, match=r"no frame within 0\.1 s from opencv camera 'wrist'"):
            rig.wait_first(0.1)
    assert left.closed and wrist.closed


class FixedRobot:
    """A robot whose observation (with images stamped on its own clock) the test sets."""

    camera_roles = ("left",)
    control_hz = 15.0

    def __init__(self):
        self.closed = False

    def connect(self):
        pass

    def get_observation(self):
        return Observation(images={"left": np.zeros((8, 8, 3), np.uint8)}, state=np.zeros(7),
                           joint_positions=np.zeros(7), gripper_position=0.0, timestamp=1000.0,
                           image_timestamps={"left": 999.7})

    def send_action(self, action):
        raise AssertionError("not used")

    def hold(self):
        pass

    def stop(self):
        pass

    def close(self):
        self.closed = True


def test_planner_side_cameras_merge_into_observations_on_one_clock():
    wrist_image = np.full((6, 6, 3), 99, np.uint8)
    wrist = MemoryCamera("wrist", wrist_image)
    wrist.frame = Frame("wrist", wrist_image, 50.0 - 0.05, 1)
    robot = WithCameras(FixedRobot(), CameraRig([wrist]), clock=lambda: 50.0)
    with pytest.raises(CameraError, match="not started"):
        robot.get_observation()
    robot.connect()
    assert robot.camera_roles == ("left", "wrist")
    observation = robot.get_observation()
    assert observation.timestamp == 50.0
    assert observation.images["wrist"] is wrist_image
    # The robot's frame keeps its age (0.3 s before its state), the local one its own (0.05 s).
    assert observation.image_timestamps["left"] == pytest.approx(49.7)
    assert observation.image_timestamps["wrist"] == pytest.approx(49.95)
    robot.close()
    assert wrist.closed and robot.robot.closed


def test_bridge_publishes_rig_frames_once_each(make_link, make_client_config):
    import dataclasses

    image = np.zeros((24, 32, 3), np.uint8)
    image[:, :16] = (200, 20, 20)
    wrist = MemoryCamera("wrist", image)
    captured = time.monotonic() - 0.2
    wrist.frame = Frame("wrist", image, captured, 1)
    link = make_link(None)
    bridge = Bridge(BridgeConfig(link=link, camera_hz=30.0), MujocoBackend(cameras=()), cameras=CameraRig([wrist]))
    bridge.start()
    bridge.start_thread()
    client = BridgeClient(dataclasses.replace(make_client_config(link), camera_roles=("wrist",), rpc_timeout_s=10.0))
    try:
        observation = client.get_observation()
        assert observation.images["wrist"].shape == (24, 32, 3)
        assert np.abs(observation.images["wrist"].astype(int) - image).mean() < 4
        assert observation.image_timestamps["wrist"] == pytest.approx(captured, abs=1e-6)  # the capture time travels
        assert wrist.started
        # Not re-sent while the camera has no new frame: nothing more arrives on the socket.
        time.sleep(0.3)
        sock = client._sockets["camera"]
        assert not sock.poll(100)
        wrist.frame = Frame("wrist", image, time.monotonic(), 2)
        assert sock.poll(2000)
    finally:
        client.close()
        bridge.close()
    assert wrist.closed
    with pytest.raises(ValueError, match="camera_hz is 0"):
        Bridge(BridgeConfig(link=make_link(None), camera_hz=0), MujocoBackend(cameras=()),
               cameras=CameraRig([MemoryCamera("left")]))


def test_a_launch_config_runs_in_sim_without_its_cameras(make_port_base, processes, tmp_path):
    """`bridge run --config launch/panda.yaml --backend mujoco --no-cameras`: the ROS cameras of the config are not
    opened (no ROS needed); the simulator's own frames are published."""
    import dataclasses
    import os
    import sys

    from vjepa_ac.robot.client import ClientConfig

    base = make_port_base()
    bridge = processes.start(
        [sys.executable, "-m", "vjepa_ac.cli", "bridge", "run", "--config", str(LAUNCH / "panda.yaml"), "--backend",
         "mujoco", "--no-cameras", "--port-base", str(base)],
        dict(os.environ, OMP_NUM_THREADS="1", ROS_MASTER_URI="http://127.0.0.1:9"), "bridge running", timeout=60)
    client = BridgeClient(dataclasses.replace(ClientConfig(), cmd_port=base, state_port=base + 1, rpc_port=base + 2,
                                              camera_port=base + 3, camera_roles=("left",), rpc_timeout_s=20.0))
    try:
        assert client.get_observation().images["left"].shape == (180, 320, 3)
        assert client.call("config")["cameras"]  # still declared in the config, just not opened
    finally:
        client.close()
        processes.stop(bridge)
