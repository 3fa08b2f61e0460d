"""ROS 1 path with a real master: rosmaster on a free loopback port, the franka_ros stand-in node (MuJoCo), the
bridge's ros1 backend in its own process, and a workstation client over ZMQ.

Needs Debian's ROS 1 packages; without them the tests skip with the install command. In CI (`.ci/run` exports
VJEPA_AC_REQUIRE_ROS=1) a missing ROS installation is a failure instead.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from robot.backends.ros1_msgs import DEBIAN_DIST_PACKAGES, ROS_ENABLE_HINT
from robot.client import BridgeClient, ClientConfig
from robot.interface import ActionStatus

pytestmark = pytest.mark.ros


def _ros_available() -> str | None:
    """None if ROS 1 can run here, else why not."""
    if shutil.which("rosmaster") is None:
        return "rosmaster not found"
    if not (Path(DEBIAN_DIST_PACKAGES) / "rospy").is_dir():
        return f"rospy not found in {DEBIAN_DIST_PACKAGES}"
    return None


@pytest.fixture(scope="module", autouse=True)
def require_ros():
    missing = _ros_available()
    if missing:
        message = f"{missing}. {ROS_ENABLE_HINT}"
        if os.environ.get("VJEPA_AC_REQUIRE_ROS") == "1":
            pytest.fail(f"VJEPA_AC_REQUIRE_ROS=1 but ROS 1 is unavailable: {message}")
        pytest.skip(message)


def _start(cmd: list[str], env: dict[str, str], ready: str, timeout: float = 30.0) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        if ready in line:
            return proc
    proc.kill()
    raise RuntimeError(f"{cmd[:4]} did not become ready:\n{''.join(lines[-30:])}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def ros_master(tmp_path_factory, make_link):
    """rosmaster --core on a free 127.0.0.1 port; yields the environment for ROS processes."""
    port = make_link(None).cmd_port
    home = tmp_path_factory.mktemp("ros_home")
    env = dict(os.environ, ROS_MASTER_URI=f"http://127.0.0.1:{port}", ROS_IP="127.0.0.1", ROS_HOSTNAME="127.0.0.1",
               ROS_HOME=str(home), ROS_LOG_DIR=str(home / "log"))
    master = subprocess.Popen(["rosmaster", "--core", "-p", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    import socket

    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    else:
        master.kill()
        pytest.fail("rosmaster did not start")
    yield env
    _stop(master)


@pytest.fixture(scope="module")
def franka_standin(ros_master):
    proc = _start([sys.executable, "-m", "vjepa_ac.cli", "bridge", "fake-franka-ros"], ros_master,
                  "stand-in running")
    yield proc
    _stop(proc)


def test_franka_state_message_matches_franka_ros():
    """The generated FrankaState has franka_ros 0.10's md5 and wire size, so a real franka_control interoperates."""
    from robot.backends.ros1_msgs import message_classes

    classes = message_classes()
    state = classes["franka_msgs/FrankaState"]
    assert state._md5sum == "431567d5df6caf4e4dd7385f25cb71ee"
    buffer = io.BytesIO()
    state().serialize(buffer)
    assert len(buffer.getvalue()) == 2491
    assert len(classes["franka_msgs/Errors"].__slots__) == 41
    for name in ("Goal", "Result", "Feedback", "ActionGoal", "ActionResult", "ActionFeedback", "Action"):
        assert f"franka_gripper/Move{name}" in classes and f"franka_gripper/Grasp{name}" in classes


@pytest.mark.parametrize("mode", ["joint", "cartesian"])
def test_bridge_drives_franka_ros_through_a_real_master(ros_master, franka_standin, make_port_base, mode, tmp_path):
    base = make_port_base()
    # Tracking through ROS is under test here, not the watchdog: a relaxed heartbeat timeout keeps scheduling
    # delays on a loaded test machine from interrupting the stream with a HOLD.
    config = tmp_path / "bridge.yaml"
    config.write_text("watchdog: {hold_after_s: 0.6, stop_after_s: 2.0}\n")
    bridge = _start(
        [sys.executable, "-m", "vjepa_ac.cli", "bridge", "run", "--config", str(config), "--backend", "ros1",
         "--mode", mode, "--port-base", str(base)],
        ros_master,
        "bridge running",
    )
    client = BridgeClient(ClientConfig(cmd_port=base, state_port=base + 1, rpc_port=base + 2, camera_port=base + 3,
                                       camera_roles=()))
    try:
        client.connect()
        start = client.get_observation()
        assert client.state.backend == "ros1" and client.state.robot_mode == "move"
        step = np.array([0.0, -0.01, 0.01, 0.0, 0.0, 0.0, 0.0])
        for _ in range(5):
            result = client.send_action(step)
            assert result.status is ActionStatus.ACCEPTED, result.reason
        closing = client.send_action(np.array([0, 0, 0, 0, 0, 0, 0.5]))
        assert closing.ok
        time.sleep(1.5)
        end = client.get_observation()
        # Cartesian mode: the stand-in's impedance stand-in moves the arm through its own IK; allow more slack.
        np.testing.assert_allclose(end.state[:3] - start.state[:3], 5 * step[:3], atol=0.012 if mode == "joint" else 0.02)
        assert end.gripper_position > 0.3
        assert client.state.robot_mode == "move" and not client.state.errors
    finally:
        client.close()
        _stop(bridge)
