"""Fixtures for the robot link tests: free loopback ports, CurveZMQ keys and a bridge running in a thread."""

from __future__ import annotations

import socket
from contextlib import closing
from pathlib import Path

import pytest

from robot.backends.mujoco import MujocoBackend
from robot.bridge import Bridge
from robot.client import BridgeClient, ClientConfig
from robot.config import BridgeConfig, LinkConfig
from robot.keys import generate_keypair


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


def free_port_base(count: int = 4) -> int:
    """A port P with P..P+count-1 all free on 127.0.0.1 (for `--port-base`)."""
    for _ in range(100):
        base = free_port()
        try:
            socks = []
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError(f"no block of {count} free ports found")


@pytest.fixture(scope="session")
def make_port_base():
    """free_port_base(count=4) -> first of `count` consecutive free loopback ports."""
    return free_port_base


@pytest.fixture(scope="session")
def make_link():
    """link_config(keys | None) -> LinkConfig on free loopback ports."""
    return link_config


@pytest.fixture(scope="session")
def make_client_config():
    """client_config(link, keys | None, secret="client_secret", **overrides) -> ClientConfig."""
    return client_config
