"""Fixtures for the robot link tests: free loopback ports, CurveZMQ keys, a bridge running in a thread, and a real
ROS 1 master with the franka_ros stand-in (helper processes and port blocks: tests/conftest.py).

ROS 1 tests need Debian's ROS 1 packages; without them they skip with the install command. In CI (`.ci/run` exports
VJEPA_AC_REQUIRE_ROS=1) a missing ROS installation is a failure instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from vjepa_ac.sim.backend import MujocoBackend
from vjepa_ac.robot.backends.ros1_msgs import DEBIAN_DIST_PACKAGES, ROS_ENABLE_HINT
from vjepa_ac.robot.bridge import Bridge
from vjepa_ac.robot.client import BridgeClient, ClientConfig
from vjepa_ac.robot.config import BridgeConfig, LinkConfig
from vjepa_ac.robot.keys import generate_keypair


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """A bridge key pair, one authorized client key pair and one stranger key pair."""
    generate_keypair(tmp_path / "bridge", "bridge")
    generate_keypair(tmp_path / "authorized", "workstation")
    generate_keypair(tmp_path / "stranger", "stranger")
    return {
        "bridge_secret": tmp_path / "bridge" / "bridge.key_secret",
        "bridge_public": tmp_path / "bridge" / "bridge.key",
        "authorized_dir": tmp_path / "authorized",
        "client_secret": tmp_path / "authorized" / "workstation.key_secret",
        "stranger_secret": tmp_path / "stranger" / "stranger.key_secret",
    }


def link_config(keys: dict[str, Path] | None = None) -> LinkConfig:
    return LinkConfig(
        cmd_port=free_port(),
        state_port=free_port(),
        rpc_port=free_port(),
        camera_port=free_port(),
        secret_key=str(keys["bridge_secret"]) if keys else None,
        authorized_keys=str(keys["authorized_dir"]) if keys else None,
    )


def client_config(link: LinkConfig, keys: dict[str, Path] | None = None, secret: str = "client_secret", **kw) -> ClientConfig:
    return ClientConfig(
        cmd_port=link.cmd_port,
        state_port=link.state_port,
        rpc_port=link.rpc_port,
        camera_port=link.camera_port,
        client_secret_key=str(keys[secret]) if keys else None,
        bridge_public_key=str(keys["bridge_public"]) if keys else None,
        camera_roles=(),
        **kw,
    )


@pytest.fixture
def running_bridge(keys):
    """A CURVE-secured bridge on a MuJoCo Panda, looping in a background thread; yields (bridge, link config)."""
    link = link_config(keys)
    bridge = Bridge(BridgeConfig(link=link, camera_hz=0), MujocoBackend(cameras=()))
    bridge.start()
    bridge.start_thread()
    yield bridge, link
    bridge.close()


@pytest.fixture
def client(running_bridge, keys):
    _, link = running_bridge
    robot = BridgeClient(client_config(link, keys))
    yield robot
    robot.close()


@pytest.fixture(scope="session")
def make_link():
    """link_config(keys | None) -> LinkConfig on free loopback ports."""
    return link_config


@pytest.fixture(scope="session")
def make_client_config():
    """client_config(link, keys | None, secret="client_secret", **overrides) -> ClientConfig."""
    return client_config


def _ros_available() -> str | None:
    """None if ROS 1 can run here, else why not."""
    if shutil.which("rosmaster") is None:
        return "rosmaster not found"
    if not (Path(DEBIAN_DIST_PACKAGES) / "rospy").is_dir():
        return f"rospy not found in {DEBIAN_DIST_PACKAGES}"
    return None


@pytest.fixture(scope="module")
def require_ros():
    """Skips (fails with VJEPA_AC_REQUIRE_ROS=1) where ROS 1 cannot run; use with `pytest.mark.usefixtures`."""
    missing = _ros_available()
    if missing:
        message = f"{missing}. {ROS_ENABLE_HINT}"
        if os.environ.get("VJEPA_AC_REQUIRE_ROS") == "1":
            pytest.fail(f"VJEPA_AC_REQUIRE_ROS=1 but ROS 1 is unavailable: {message}")
        pytest.skip(message)


@pytest.fixture(scope="module")
def ros_master(require_ros, tmp_path_factory, processes):
    """rosmaster --core on a free 127.0.0.1 port; yields the environment for ROS processes."""
    port = free_port()
    home = tmp_path_factory.mktemp("ros_home")
    env = dict(os.environ, ROS_MASTER_URI=f"http://127.0.0.1:{port}", ROS_IP="127.0.0.1", ROS_HOSTNAME="127.0.0.1",
               ROS_HOME=str(home), ROS_LOG_DIR=str(home / "log"))
    master = subprocess.Popen(["rosmaster", "--core", "-p", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    else:
        master.kill()
        pytest.fail("rosmaster did not start")
    yield env
    processes.stop(master)


@pytest.fixture(scope="module")
def franka_standin(ros_master, processes):
    proc = processes.start([sys.executable, "-m", "vjepa_ac.cli", "bridge", "fake-franka-ros"], ros_master,
                           "stand-in running")
    yield proc
    processes.stop(proc)
