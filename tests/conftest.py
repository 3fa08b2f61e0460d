"""Suite-wide settings and helpers (free loopback port blocks, helper processes). Package-specific fixtures live in
the conftest.py of each test folder."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from vjepa_ac.pytest_plugin import free_port_base

# Offscreen MuJoCo rendering on machines without a display; EGL works on a plain CPU-only Debian machine.
os.environ.setdefault("MUJOCO_GL", "egl")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def make_port_base():
    """free_port_base(count=4) -> first of `count` consecutive free loopback ports."""
    return free_port_base


class Processes:
    """Start a helper process and wait for its ready line; stop it (terminate, then kill)."""

    @staticmethod
    def start(cmd: list[str], env: dict[str, str], ready: str, timeout: float = 30.0) -> subprocess.Popen:
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

    @staticmethod
    def stop(proc: subprocess.Popen, signum: int = signal.SIGTERM, timeout: float = 5.0) -> None:
        """Send `signum` (SIGINT for a Ctrl-C-style shutdown), wait up to `timeout` s, then kill."""
        if proc.poll() is None:
            proc.send_signal(signum)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def processes() -> type[Processes]:
    return Processes
