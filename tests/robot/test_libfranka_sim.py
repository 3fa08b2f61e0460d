"""The libfranka backend over libfranka's real wire protocol: pylibfranka (in this project's environment) against a
franka-sim server (in its own virtual environment, since it pins numpy 1.26.4) on 127.0.0.1, with `vjepa-ac bridge
run` in between and a workstation client streaming planner commands through the bridge.

franka-sim serves libfranka's robot protocol (server version 10) on the fixed ports 1337 (arm) and 1338 (gripper);
its FR3 physics model is built offline from the `fr3.urdf` its wheel ships (no meshes, so no collision geometry),
with the joint armature that keeps its position servo stable, and passed through `FR3_MJCF`. Motion-limit and
communication-constraint enforcement are on, as on a real arm.

The server's Python is found through VJEPA_AC_FRANKA_SIM_PYTHON or at `.venv-franka-sim/bin/python` in the
repository (`.ci/run` creates it). Without it the test skips with the install command; in CI
(VJEPA_AC_REQUIRE_FRANKA_SIM=1) a missing server is a failure instead.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from vjepa_ac.robot.client import BridgeClient, ClientConfig
from vjepa_ac.robot.interface import ActionStatus

pytestmark = pytest.mark.franka

REPO = Path(__file__).resolve().parents[2]
SIM_PORTS = (1337, 1338)
INSTALL_HINT = (
    "create it with `python3 -m venv .venv-franka-sim && .venv-franka-sim/bin/pip install franka-sim==1.1.7` "
    "(or point VJEPA_AC_FRANKA_SIM_PYTHON at a Python that has franka-sim), and `pip install pylibfranka==0.21.3` "
    "into this environment"
)
ARMATURE = 0.195


def _sim_python() -> Path:
    return Path(os.environ.get("VJEPA_AC_FRANKA_SIM_PYTHON") or REPO / ".venv-franka-sim" / "bin" / "python")


def _missing() -> str | None:
    python = _sim_python()
    if not python.is_file():
        return f"no franka-sim Python at {python}"
    try:
        import pylibfranka  # noqa: F401
    except ImportError:
        return "pylibfranka is not installed in this environment"
    return None


@pytest.fixture(scope="module", autouse=True)
def require_franka_sim():
    missing = _missing()
    if missing:
        if os.environ.get("VJEPA_AC_REQUIRE_FRANKA_SIM") == "1":
            pytest.fail(f"VJEPA_AC_REQUIRE_FRANKA_SIM=1 but franka-sim is unavailable: {missing}; {INSTALL_HINT}")
        pytest.skip(f"{missing}; {INSTALL_HINT}")


def _port_busy(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def build_fr3_mjcf(urdf: Path, out: Path) -> Path:
    """A collision-free MJCF of the FR3 arm from franka-sim's own URDF: visual and collision elements (mesh files
    that are not shipped) dropped, static links kept so the names match, armature on every joint."""
    import mujoco

    root = ET.parse(urdf).getroot()
    for link in root.iter("link"):
        for tag in ("visual", "collision"):
            for element in link.findall(tag):
                link.remove(element)
    extension = ET.SubElement(root, "mujoco")
    ET.SubElement(extension, "compiler", {"discardvisual": "true", "fusestatic": "false"})
    model = mujoco.MjModel.from_xml_string(ET.tostring(root, encoding="unicode"))
    raw = out.with_suffix(".raw.xml")
    mujoco.mj_saveLastXML(str(raw), model)
    spec = mujoco.MjSpec.from_file(str(raw))
    for joint in spec.joints:
        joint.armature = ARMATURE
    out.write_text(spec.to_xml())
    return out


def _start(cmd: list[str], env: dict[str, str], ready: str, log: Path, timeout: float = 90.0) -> subprocess.Popen:
    handle = log.open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready in log.read_text(errors="replace"):
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{cmd[:3]} did not become ready:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="module")
def franka_sim(tmp_path_factory, processes):
    """A franka-sim server on 127.0.0.1:1337/1338 (one at a time: the ports are fixed)."""
    deadline = time.monotonic() + 60
    while any(_port_busy(p) for p in SIM_PORTS):
        if time.monotonic() > deadline:
            pytest.fail(f"ports {SIM_PORTS} stay busy: another libfranka server is running on this machine")
        time.sleep(1)
    work = tmp_path_factory.mktemp("franka_sim")
    python = _sim_python()
    package = subprocess.run([str(python), "-c", "import franka_sim, os; print(os.path.dirname(franka_sim.__file__))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    mjcf = build_fr3_mjcf(Path(package) / "models" / "fr3.urdf", work / "fr3.xml")
    env = dict(os.environ, FR3_MJCF=str(mjcf), FRANKA_SIM_ENFORCE_MOTION_LIMITS="1",
               FRANKA_SIM_ENFORCE_COMM_CONSTRAINTS="1", MUJOCO_GL="egl", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    log = work / "server.log"
    server = _start([str(python), "-m", "franka_sim.run_server"], env, "Server ready", log)
    yield log
    processes.stop(server, signal.SIGINT, timeout=20)  # Ctrl-C, as a user stops it


def _client(base: int) -> BridgeClient:
    # libfranka and the link are under test here, not the ttl and heartbeat timing (tested on their own): a loaded
    # test machine deschedules processes for a few hundred ms, so commands live longer and the watchdog waits longer.
    return BridgeClient(ClientConfig(cmd_port=base, state_port=base + 1, rpc_port=base + 2, camera_port=base + 3,
                                     camera_roles=(), rpc_timeout_s=5.0, ack_timeout_s=2.0, ttl_factor=9.0))


def test_bridge_drives_franka_sim_over_libfranka(franka_sim, make_port_base, processes, tmp_path):
    base = make_port_base()
    config = tmp_path / "bridge.yaml"
    config.write_text(
        "robot: fr3\nbackend: libfranka\ncamera_hz: 0\nwatchdog: {hold_after_s: 0.6, stop_after_s: 2.0}\n"
        "backend_options:\n  libfranka: {robot_ip: 127.0.0.1, realtime_ignore: true}\n"
    )
    bridge_log = tmp_path / "bridge.log"
    bridge = _start([sys.executable, "-m", "vjepa_ac.cli", "bridge", "run", "--config", str(config), "--port-base",
                     str(base)], dict(os.environ, PYTHONUNBUFFERED="1"), "bridge running", bridge_log)
    client = _client(base)
    modes: list[str] = []
    try:
        # State read-back before arming: libfranka's idle arm at franka-sim's start pose.
        idle = client.wait_state(timeout_s=5.0)
        assert idle.backend == "libfranka" and idle.robot_mode == "idle", idle
        np.testing.assert_allclose(idle.q, [0, 0, 0, -1.57, 0, 1.57, 0.785], atol=0.02)

        # Planner commands through the bridge: the arm follows the set-points, no discontinuity reflex.
        client.connect()
        start = client.get_observation()
        step = np.array([0.01, 0.0, -0.01, 0.0, 0.0, 0.0, 0.0])
        for _ in range(6):
            result = client.send_action(step)
            modes.append(client.state.robot_mode)
            assert result.status is ActionStatus.ACCEPTED, (result.reason, client.state.errors)
        time.sleep(1.5)
        state = client.wait_state(lambda s: s.robot_mode == "move", timeout_s=2.0)
        assert not state.errors, state.errors
        np.testing.assert_allclose(state.q, state.setpoint_q, atol=0.01)
        moved = client.get_observation().state[:3] - start.state[:3]
        np.testing.assert_allclose(moved, 6 * step[:3], atol=0.01)

        # Gripper: close (grasp), then open again, read back through the gripper protocol.
        assert client.send_action(np.array([0, 0, 0, 0, 0, 0, 1.0])).ok
        client.wait_state(lambda s: s.gripper > 0.9, timeout_s=10.0)
        assert client.send_action(np.array([0, 0, 0, 0, 0, 0, -1.0])).ok
        client.wait_state(lambda s: s.gripper < 0.1, timeout_s=10.0)
        assert "discontinuity" not in franka_sim.read_text(errors="replace")
        assert all(mode == "move" for mode in modes), modes

        # A reflex: the bridge process stalls (as on an overloaded host), libfranka misses its cycles and the arm
        # stops with communication_constraints_violation; the bridge reports FAULT, `recover` clears it.
        os.kill(bridge.pid, signal.SIGSTOP)
        time.sleep(0.4)
        os.kill(bridge.pid, signal.SIGCONT)
        fault = client.wait_state(lambda s: s.watchdog == "FAULT", timeout_s=5.0)
        assert fault.robot_mode == "reflex" and any("communication_constraints" in e for e in fault.errors), fault
        client.stop()
        client.call("recover")
        recovered = client.wait_state(lambda s: s.watchdog == "IDLE" and s.robot_mode == "idle", timeout_s=5.0)
        assert not recovered.errors or recovered.robot_mode == "idle"
        client.connect()
        assert client.send_action(np.array([0.0, 0.0, 0.01, 0.0, 0.0, 0.0, 0.0])).ok
        client.wait_state(lambda s: s.robot_mode == "move", timeout_s=2.0)

        # The watchdog's STOP reaches libfranka: the heartbeat dies, the bridge stops and libfranka's motion ends.
        client._hb_stop.set()
        client._heartbeat.join()
        stopped = client.wait_state(lambda s: s.watchdog == "STOPPED" and s.robot_mode == "idle", timeout_s=5.0)
        assert stopped.watchdog == "STOPPED"
    except Exception:
        print(bridge_log.read_text(errors="replace")[-4000:])
        print(franka_sim.read_text(errors="replace")[-4000:])
        raise
    finally:
        client.close()
        processes.stop(bridge, signal.SIGINT, timeout=20)  # libfranka ends its motion cleanly on Ctrl-C
