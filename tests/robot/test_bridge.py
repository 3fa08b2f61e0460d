"""The link end to end on loopback: a CURVE-secured bridge on a MuJoCo Panda and real client sockets/processes."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict

import numpy as np
import pytest
import zmq

from vjepa_ac.sim.backend import MujocoBackend
from vjepa_ac.robot.bridge import Bridge
from vjepa_ac.robot.client import BridgeClient, BridgeError
from vjepa_ac.robot.config import BridgeConfig
from vjepa_ac.robot.interface import ActionStatus
from vjepa_ac.robot.keys import make_curve_client
from vjepa_ac.robot.protocol import Command, CommandMode, MessageKind, encode_command
from vjepa_ac.robot.watchdog import WatchdogConfig


def wait_for(predicate, timeout=3.0, period=0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period)
    return False


def raw_pusher(link, keys) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.PUSH)
    sock.linger = 0
    make_curve_client(sock, keys["client_secret"], keys["bridge_public"])
    sock.connect(f"tcp://127.0.0.1:{link.cmd_port}")
    return sock


def test_round_trip_moves_the_arm_by_the_commanded_deltas(keys, make_link, make_client_config):
    # Tracking accuracy only: a relaxed heartbeat timeout keeps an overloaded test machine's scheduling delays from
    # interrupting the stream with a HOLD (the watchdog has its own tests below).
    link = make_link(keys)
    config = BridgeConfig(link=link, camera_hz=0, watchdog=WatchdogConfig(hold_after_s=0.6, stop_after_s=2.0))
    bridge = Bridge(config, MujocoBackend(cameras=()))
    bridge.start()
    bridge.start_thread()
    client = BridgeClient(make_client_config(link, keys))
    try:
        _check_round_trip(bridge, client)
    finally:
        client.close()
        bridge.close()


def _check_round_trip(bridge, client):
    client.connect()
    assert bridge.watchdog.state.value == "ARMED"
    start = client.get_observation()
    assert start.state.shape == (7,) and start.joint_positions.shape == (7,)
    step = np.array([0.0, 0.01, -0.005, 0.0, 0.0, 0.0, 0.0])
    for _ in range(6):
        result = client.send_action(step)
        assert result.status is ActionStatus.ACCEPTED, result.reason
    assert bridge.watchdog.state.value in ("TRACKING", "HOLD")
    # Consecutive deltas compose on the previous target while tracking; wait for the arm to settle.
    wait_for(lambda: bridge.watchdog.state.value == "HOLD", timeout=2.0)
    time.sleep(0.5)
    moved = client.get_observation().state[:3] - start.state[:3]
    np.testing.assert_allclose(moved, 6 * step[:3], atol=0.012)
    big = client.send_action(np.array([0.3, 0, 0, 0, 0, 0, 0]))
    assert big.status is ActionStatus.CLAMPED and np.isclose(np.linalg.norm(big.applied[:3]), 0.075)
    assert client.send_action(np.array([np.nan] * 7)).status is ActionStatus.REJECTED


def test_seq_and_ttl_rejections_are_reported(running_bridge, client, keys):
    bridge, link = running_bridge
    client.connect()
    push = raw_pusher(link, keys)
    assert wait_for(lambda: bridge._last_seq >= 1)  # the client's heartbeats have used seq 0 and 1
    base = {"session": client.session, "ttl_ms": 200, "mode": CommandMode.EE_DELTA, "target": np.zeros(6),
            "duration_s": 0.1}
    push.send(encode_command(Command(MessageKind.CMD, seq=0, t_send_ns=time.monotonic_ns(), **base)))
    state = client.wait_state(lambda s: any("not greater" in e for e in s.errors), timeout_s=2.0)
    assert state.last_rejected_seq == 0 and state.last_cmd_seq is None
    stale = Command(MessageKind.CMD, seq=10**9, t_send_ns=time.monotonic_ns() - 600_000_000, **base)
    push.send(encode_command(stale))
    client.wait_state(lambda s: any(e.startswith(f"seq {10**9}: stale") for e in s.errors), timeout_s=2.0)
    other = Command(MessageKind.CMD, seq=10**9 + 1, t_send_ns=time.monotonic_ns(), **{**base, "session": "intruder"})
    push.send(encode_command(other))
    client.wait_state(lambda s: any("not the armed session" in e for e in s.errors), timeout_s=2.0)
    push.send(b"\x93garbage")
    client.wait_state(lambda s: any("malformed" in e for e in s.errors), timeout_s=2.0)
    push.close()
    assert bridge.counters["accepted"] == 0 and bridge.watchdog.state.value in ("ARMED", "HOLD")
    # The client's own stream continues: a rejected message does not consume its seq (1e9), so later ones still count.
    assert client.send_action(np.zeros(7)).status is ActionStatus.ACCEPTED


_CLIENT_SCRIPT = """
import json, sys, time
import numpy as np
from vjepa_ac.robot.client import BridgeClient, ClientConfig
client = BridgeClient(ClientConfig(**json.loads(sys.argv[1])))
client.connect()
print("armed", flush=True)
sign = 1.0
while True:
    client.send_action(np.array([0.0, 0.003 * sign, 0.0, 0.0, 0.0, 0.0, 0.0]))
    sign = -sign
"""


@pytest.mark.parametrize("activity", ["tracking", "idle"])
def test_watchdog_holds_then_stops_when_the_client_process_dies(running_bridge, keys, make_client_config, activity):
    """SIGKILL a client process; HOLD must follow within 250 ms and STOPPED within 1 s of the kill.

    While tracking, the end of the last command (ttl 100 ms at 15 Hz) may trigger the HOLD first; an idle armed
    client proves its liveness with heartbeats only, so there the HOLD comes from heartbeat silence."""
    bridge, link = running_bridge
    cfg = asdict(make_client_config(link, keys))
    script = _CLIENT_SCRIPT if activity == "tracking" else _CLIENT_SCRIPT.split("sign = 1.0")[0] + "time.sleep(60)\n"
    proc = subprocess.Popen([sys.executable, "-c", script, json.dumps(cfg)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "armed"
        expected = "TRACKING" if activity == "tracking" else "ARMED"
        assert wait_for(lambda: bridge.watchdog.state.value == expected, timeout=5.0), list(bridge.transitions)
        time.sleep(0.3)
        t_kill = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        assert wait_for(lambda: bridge.watchdog.state.value == "STOPPED", timeout=3.0)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = [(state, reason) for t, state, reason in bridge.transitions if t < t_kill]
    after = [(t - t_kill, state, reason) for t, state, reason in bridge.transitions if t >= t_kill]
    if before[-1][0] == "HOLD":  # already holding when the client died (its last command had run out)
        hold, hold_reason = 0.0, before[-1][1]
    else:
        hold, hold_reason = next((t, reason) for t, state, reason in after if state == "HOLD")
    stop = next(t for t, state, _ in after if state == "STOPPED")
    print(f"{activity}: kill -> HOLD {hold * 1e3:.0f} ms ({hold_reason}), kill -> STOPPED {stop * 1e3:.0f} ms")
    assert hold <= 0.25 and stop <= 1.0
    if activity == "idle":
        assert "heartbeat" in hold_reason
    assert [s for _, s, _ in after][-1] == "STOPPED" and all(s in ("HOLD", "STOPPED") for _, s, _ in after)
    session = bridge.watchdog.session
    with pytest.raises(Exception, match="already used"):
        bridge.watchdog.arm(session, time.monotonic())


def test_unauthenticated_clients_are_refused(running_bridge, keys, make_client_config):
    bridge, link = running_bridge
    for cfg in (make_client_config(link, keys, secret="stranger_secret", rpc_timeout_s=0.5),
                make_client_config(link, None, rpc_timeout_s=0.5)):
        stranger = BridgeClient(cfg)
        with pytest.raises(BridgeError, match="did not answer"):
            stranger.connect()
        stranger.close()
    assert bridge.watchdog.state.value == "IDLE" and bridge.counters["messages"] == 0


def test_stop_rearm_home_fault_and_recover(running_bridge, client):
    bridge, _ = running_bridge
    client.connect()
    first = client.session
    client.stop()
    assert wait_for(lambda: bridge.watchdog.state.value == "STOPPED")
    assert client.send_action(np.zeros(7)).status is ActionStatus.REJECTED
    client.connect()
    assert client.session != first and bridge.watchdog.state.value in ("ARMED", "HOLD")
    duration = client.home()
    assert duration > 0 and client.call("config")["robot"] == "panda"
    bridge.backend.trigger_reflex("cartesian_reflex")
    state = client.wait_state(lambda s: s.watchdog == "FAULT", timeout_s=2.0)
    assert state.robot_mode == "reflex"
    assert client.send_action(np.zeros(7)).status is ActionStatus.REJECTED
    with pytest.raises(BridgeError, match="recover"):
        client.call("arm", session="fresh")
    client.call("recover")
    assert bridge.watchdog.state.value == "IDLE"
    client.stop()
    client.connect()
    result = client.send_action(np.array([0, 0, 0.005, 0, 0, 0, 0]))
    assert result.ok, (result.reason, list(bridge.transitions)[-6:])


def test_refuses_to_bind_a_network_address_without_keys():
    from vjepa_ac.robot.config import LinkConfig

    with pytest.raises(ValueError, match="CurveZMQ"):
        Bridge(BridgeConfig(link=LinkConfig(host="0.0.0.0")), MujocoBackend(cameras=()))


def test_camera_frames_arrive_on_their_own_socket(keys, make_link, make_client_config):
    """JPEG frames rendered by the simulator's cameras reach `get_observation` next to the state."""
    link = make_link(keys)
    bridge = Bridge(BridgeConfig(link=link, camera_hz=10), MujocoBackend(cameras=("left", "wrist"), image_size=(90, 160)))
    bridge.start()
    bridge.start_thread()
    client = BridgeClient(dataclasses.replace(make_client_config(link, keys), camera_roles=("left", "wrist")))
    try:
        client.connect()
        obs = client.get_observation()
        assert set(obs.images) == {"left", "wrist"}
        assert obs.images["left"].shape == (90, 160, 3) and obs.images["left"].dtype == np.uint8
        assert obs.images["left"].std() > 5  # a rendered scene, not a blank frame
        assert obs.image_timestamps["left"] > 0
    finally:
        client.close()
        bridge.close()


def test_a_failing_backend_ends_in_fault_not_in_a_dead_loop(running_bridge, client):
    bridge, _ = running_bridge
    client.connect()
    stops = []
    original_stop = bridge.backend.stop
    bridge.backend.stop = lambda q: stops.append(q) or original_stop(q)

    def broken():
        raise ConnectionError("arm connection lost")

    bridge.backend.read_state = broken
    assert wait_for(lambda: bridge.watchdog.state.value == "FAULT")
    assert "arm connection lost" in bridge.watchdog.reason and len(stops) == 1
    assert bridge._run_thread.is_alive()


def test_cartesian_mode_streams_equilibrium_poses(keys, make_link, make_client_config):
    link = make_link(keys)
    bridge = Bridge(BridgeConfig(link=link, camera_hz=0, control_mode="cartesian"), MujocoBackend(cameras=()))
    bridge.start()
    bridge.start_thread()
    client = BridgeClient(make_client_config(link, keys))
    try:
        client.connect()
        start = client.get_observation().state
        step = np.array([0.01, 0.0, -0.01, 0.0, 0.0, 0.05, 0.0])
        for _ in range(4):
            assert client.send_action(step).status is ActionStatus.ACCEPTED
        wait_for(lambda: bridge.watchdog.state.value == "HOLD", timeout=2.0)
        time.sleep(0.5)
        end = client.get_observation().state
        np.testing.assert_allclose(end[:3] - start[:3], 4 * step[:3], atol=0.012)
        assert abs((end[5] - start[5]) - 4 * step[5]) < 0.05
    finally:
        client.close()
        bridge.close()


def test_gripper_deltas_integrate_on_the_command_not_the_measured_closure(running_bridge, client, monkeypatch):
    """A zero Δgripper keeps the commanded closure: feeding back the measured closure (which lags a command and
    drifts while the arm moves) used to close a free hand over a few dozen actions."""
    client.connect()
    sent = []
    send = client._send_new

    def spy(kind, **fields):
        if kind is MessageKind.CMD:
            sent.append(fields["gripper"])
        return send(kind, **fields)

    monkeypatch.setattr(client, "_send_new", spy)
    for action in ([0, 0, 0, 0, 0, 0, 0.5], [0.01, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, -0.2], [0, 0, 0, 0, 0, 0, -1]):
        assert client.send_action(np.array(action, dtype=float)).ok
    assert sent == pytest.approx([0.5, 0.5, 0.3, 0.0])
