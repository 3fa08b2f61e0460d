"""Robot link timing over loopback: command-to-set-point latency, state and set-point rates, watchdog reaction.

Our link: a workstation `BridgeClient` -> CurveZMQ -> bridge (decode, session/seq/ttl checks, safety filter with IK,
jerk-limited interpolation) -> the first set-point handed to the MuJoCo backend that reflects the new command.
Baseline, same run: the transport floor, one msgpack message over a plain pyzmq PUSH/PULL pair on loopback with a
busy-polling receiver (no security, no checks, no IK). The ratio says what the bridge's safety work costs.

Also under a concurrent flood (four sockets pushing decoding-heavy junk at the command port as fast as they can): the
same latency and watchdog figures, which must still meet HOLD <= 250 ms and STOP <= 1 s. And an attack replay against a
live bridge (malformed, nested, oversized, multipart, future-stamped, hijacked session, re-arm while moving, `home`
outside the workspace box) that reports whether the bridge stayed up, whether any input FAULTed the arm, how many
set-points left the limits and the largest state message.

    python -m bench.link [--commands 200] [--watchdog-trials 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import closing, contextmanager
from pathlib import Path

import msgpack
import numpy as np
import zmq
from tqdm import tqdm

from vjepa_ac.sim.backend import MujocoBackend
from vjepa_ac.robot.bridge import Bridge
from vjepa_ac.robot.client import BridgeClient, ClientConfig
from vjepa_ac.robot.config import BridgeConfig, LinkConfig
from vjepa_ac.robot.keys import generate_keypair, make_curve_client
from vjepa_ac.robot.limits import DEFAULT_ACTION_LIMITS, PANDA
from vjepa_ac.robot.protocol import Command, CommandMode, MessageKind, encode_command, encode_request
from vjepa_ac.robot.safety import SETPOINT_TOLERANCE


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TimedMujoco(MujocoBackend):
    """Notes when each set-point is handed over, which accepted command it belongs to, and the set-point itself."""

    bridge: Bridge | None = None

    def __init__(self) -> None:
        super().__init__(cameras=())
        self.first_setpoint: dict[int, float] = {}
        self.setpoints: list[tuple[float, np.ndarray, np.ndarray]] = []

    def command_joints(self, q, dq) -> None:
        seq = self.bridge._last_cmd_seq if self.bridge is not None else None
        if seq is not None and seq not in self.first_setpoint:
            self.first_setpoint[seq] = time.monotonic()
        self.setpoints.append((getattr(self, "sample_time", time.monotonic()), np.array(q), np.array(dq)))
        super().command_joints(q, dq)

    def stop(self, q_hold) -> None:
        self.setpoints.append((time.monotonic(), None, None))  # a stop ends a set-point stream
        super().stop(q_hold)


def _pusher(port: int, keys: dict[str, Path], secret: str = "client_secret") -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.PUSH)
    sock.linger = 0
    make_curve_client(sock, keys[secret], keys["bridge_public"])
    sock.connect(f"tcp://127.0.0.1:{port}")
    return sock


_FLOODER = """
import sys, time
import msgpack, zmq
from vjepa_ac.robot.keys import make_curve_client
sock = zmq.Context.instance().socket(zmq.PUSH)
sock.linger = 0
sock.sndhwm = 1000
make_curve_client(sock, sys.argv[2], sys.argv[3])
sock.connect(f"tcp://127.0.0.1:{sys.argv[1]}")
junk = msgpack.packb({"v": 1, "kind": "hb", "session": "flood", "seq": 1, "t_send_ns": 0, "pad": list(range(6000))})
sent = 0
try:
    while True:
        try:
            sock.send(junk, zmq.NOBLOCK)
            sent += 1
        except zmq.Again:
            time.sleep(0.0005)
except KeyboardInterrupt:
    print(sent, flush=True)
"""


@contextmanager
def flood(port: int | None, keys: dict[str, Path], senders: int = 4):
    """`senders` processes pushing decoding-heavy junk (foreign-session heartbeats padded with 6000 values) at the
    command port as fast as ZMQ takes it; yields a list that holds the number sent afterwards. `port=None`: no flood."""
    procs = [subprocess.Popen([sys.executable, "-c", _FLOODER, str(port), str(keys["client_secret"]),
                               str(keys["bridge_public"])], stdout=subprocess.PIPE, text=True)
             for _ in range(senders if port is not None else 0)]
    sent = [0]
    try:
        time.sleep(1.0 if procs else 0.0)  # interpreter start-up
        yield sent
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                sent[0] += int(proc.communicate(timeout=5)[0].strip() or 0)
            except (subprocess.TimeoutExpired, ValueError):
                proc.kill()


def _link(keys: dict[str, Path]) -> LinkConfig:
    return LinkConfig(cmd_port=free_port(), state_port=free_port(), rpc_port=free_port(), camera_port=free_port(),
                      secret_key=str(keys["bridge_secret"]), authorized_keys=str(keys["authorized"]))


def _client_config(link: LinkConfig, keys: dict[str, Path]) -> ClientConfig:
    return ClientConfig(cmd_port=link.cmd_port, state_port=link.state_port, rpc_port=link.rpc_port,
                        camera_port=link.camera_port, client_secret_key=str(keys["client_secret"]),
                        bridge_public_key=str(keys["bridge_public"]), camera_roles=())


def percentiles(values_ms: list[float]) -> str:
    arr = np.asarray(values_ms)
    return f"median {np.median(arr):.2f} ms, p90 {np.percentile(arr, 90):.2f} ms, max {arr.max():.2f} ms"


def transport_floor(n: int) -> list[float]:
    """One-way PUSH/PULL latency of a command-sized msgpack message, busy-polling receiver."""
    ctx = zmq.Context.instance()
    port = free_port()
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    pull.bind(f"tcp://127.0.0.1:{port}")
    push.connect(f"tcp://127.0.0.1:{port}")
    latencies: list[float] = []
    done = threading.Event()

    def receive() -> None:
        while len(latencies) < n:
            if pull.poll(100):
                msg = msgpack.unpackb(pull.recv())
                latencies.append((time.monotonic_ns() - msg["t_send_ns"]) / 1e6)
        done.set()

    threading.Thread(target=receive, daemon=True).start()
    time.sleep(0.2)
    payload = {"v": 1, "kind": "cmd", "session": "x" * 32, "ee_delta": {"dpos": [0.0] * 3, "drot": [0.0] * 3}}
    for seq in range(n):
        push.send(msgpack.packb({**payload, "seq": seq, "t_send_ns": time.monotonic_ns()}))
        time.sleep(0.01)
    done.wait(10)
    push.close(0)
    pull.close(0)
    return latencies


def measure_link(n: int, keys: dict[str, Path], flooded: bool = False) -> dict[str, float | list[float]]:
    link = _link(keys)
    backend = TimedMujoco()
    bridge = Bridge(BridgeConfig(link=link, camera_hz=0), backend)
    backend.bridge = bridge
    bridge.start()
    bridge.start_thread()
    client = BridgeClient(_client_config(link, keys))
    try:
        with flood(link.cmd_port if flooded else None, keys) as sent:
            client.connect()
            latencies, sign = [], 1.0
            for _ in tqdm(range(n), desc="commands" + (" (flood)" if flooded else ""), leave=False):
                t_send = time.monotonic()
                seq = client.send_target(CommandMode.EE_DELTA, [0.0, 0.002 * sign, 0.0, 0.0, 0.0, 0.0],
                                         duration_s=0.05, ttl_ms=200)
                sign = -sign
                deadline = t_send + 1.0
                while seq not in backend.first_setpoint and time.monotonic() < deadline:
                    time.sleep(0.0002)
                if seq in backend.first_setpoint:
                    latencies.append((backend.first_setpoint[seq] - t_send) * 1e3)
                time.sleep(0.03)
            # State rate seen by the workstation and set-point rate at the arm, over the same window.
            window = 3.0
            state_sock = client._sockets["state"]
            setpoints0, received, t0 = bridge.counters["setpoints"], 0, time.monotonic()
            while time.monotonic() - t0 < window:
                if state_sock.poll(50):
                    state_sock.recv()
                    received += 1
            setpoint_rate = (bridge.counters["setpoints"] - setpoints0) / window
        return {"latencies": latencies, "state_hz": received / window, "setpoint_hz": setpoint_rate,
                "lost": n - len(latencies), "flood_messages": bridge.counters["messages"], "flood_sent": sent[0]}
    finally:
        client.close()
        bridge.close()


_CLIENT = """
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


def measure_watchdog(trials: int, keys: dict[str, Path], flooded: bool = False) -> tuple[list[float], list[float]]:
    """SIGKILL a client process streaming 15 Hz actions; time from the kill to HOLD and to STOPPED in the bridge (a
    trial where the bridge was already holding at the kill, after a late command on a loaded machine, counts 0 ms)."""
    holds, stops = [], []
    for _ in tqdm(range(trials), desc="watchdog" + (" (flood)" if flooded else ""), leave=False):
        link = _link(keys)
        bridge = Bridge(BridgeConfig(link=link, camera_hz=0), MujocoBackend(cameras=()))
        bridge.start()
        bridge.start_thread()
        cfg = _client_config(link, keys)
        proc = subprocess.Popen([sys.executable, "-c", _CLIENT, json.dumps(dataclasses.asdict(cfg))],
                                stdout=subprocess.PIPE, text=True)
        try:
            with flood(link.cmd_port if flooded else None, keys):
                proc.stdout.readline()
                time.sleep(0.5)
                t_kill = time.monotonic()
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                while bridge.watchdog.state.value != "STOPPED" and time.monotonic() - t_kill < 3:
                    time.sleep(0.005)
            after = [(t - t_kill, s) for t, s, _ in bridge.transitions if t >= t_kill]
            before = [s for t, s, _ in bridge.transitions if t < t_kill]
            # Already holding at the kill (a late heartbeat under load): the HOLD came at 0 ms.
            holds.append(0.0 if before[-1] == "HOLD" else next(t for t, s in after if s == "HOLD") * 1e3)
            stops.append(next(t for t, s in after if s == "STOPPED") * 1e3)
        finally:
            if proc.poll() is None:
                proc.kill()
            bridge.close()
    return holds, stops


def replay_attacks(keys: dict[str, Path]) -> dict[str, float | int | bool]:
    """Every attack class against one live bridge with an honest client streaming alongside."""
    root = keys["authorized"].parent
    generate_keypair(root / "intruder", "intruder")
    (keys["authorized"] / "intruder.key").write_bytes((root / "intruder" / "intruder.key").read_bytes())
    intruder_secret = root / "intruder" / "intruder.key_secret"
    link = _link(keys)
    backend = TimedMujoco()
    bridge = Bridge(BridgeConfig(link=link, camera_hz=0, state_hz=100), backend)
    backend.bridge = bridge
    # Judge each set-point at the bridge time it was sampled for (delivery adds scheduling jitter of its own).
    emit = bridge._tracker.emit
    bridge._tracker.emit = lambda now: (setattr(backend, "sample_time", now), emit(now))[1]
    bridge.start()
    bridge.start_thread()
    client = BridgeClient(_client_config(link, keys))
    state_sizes: list[int] = []
    sub = zmq.Context.instance().socket(zmq.SUB)
    make_curve_client(sub, keys["client_secret"], keys["bridge_public"])
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"tcp://127.0.0.1:{link.state_port}")
    own, stranger = _pusher(link.cmd_port, keys), _pusher(link.cmd_port, {**keys, "x": intruder_secret}, "x")
    rpc = zmq.Context.instance().socket(zmq.DEALER)
    rpc.linger = 0
    make_curve_client(rpc, intruder_secret, keys["bridge_public"])
    rpc.connect(f"tcp://127.0.0.1:{link.rpc_port}")
    rng = np.random.default_rng(0)
    sent = 0

    def collect() -> None:
        while sub.poll(0):
            state_sizes.append(len(sub.recv()))

    def nested(levels: int) -> bytes:
        return b"\x82" + msgpack.packb("v") + msgpack.packb(1) + msgpack.packb("kind") + b"\x91" * levels + b"\xc0"

    try:
        client.connect()
        seqs = iter(range(10**9, 2 * 10**9))
        for round_ in tqdm(range(40), desc="attacks", leave=False):
            # The honest client keeps streaming small deltas between the attacks.
            client.send_action(np.array([0.0, 0.004 * (-1) ** round_, 0.0, 0.0, 0.0, 0.0, 0.0]))
            batch = [
                rng.bytes(int(rng.integers(1, 200))),                                        # malformed
                nested(int(rng.integers(5, 4000))),                                           # nested
                msgpack.packb({"v": 1, "kind": "k" * 60_000, "session": "s", "seq": 1, "t_send_ns": 1}),  # oversized
                msgpack.packb({"v": 1.0, "kind": "stop", "session": client.session, "seq": next(seqs),
                               "t_send_ns": time.monotonic_ns()}),                           # version 1.0
                encode_command(Command(MessageKind.CMD, client.session, next(seqs),           # future-stamped
                                       time.monotonic_ns() + int(rng.choice([10 * 10**9, 2**62])), 500,
                                       CommandMode.EE_DELTA, np.zeros(6), None, 0.1)),
            ]
            for message in batch:
                own.send(message)
            own.send_multipart([encode_command(Command(MessageKind.STOP, client.session, next(seqs),
                                                       time.monotonic_ns())), b"x"])          # multipart
            for session in (client.session_id, client.session):                               # hijack
                stranger.send(encode_command(Command(MessageKind.CMD, session, next(seqs), time.monotonic_ns(), 500,
                                                     CommandMode.EE_DELTA, np.array([0.3, 0, 0, 0, 0, 0.0]), None,
                                                     0.1)))
                stranger.send(encode_command(Command(MessageKind.STOP, session, next(seqs), time.monotonic_ns())))
            rpc.send(nested(3000))
            rpc.send(encode_request(round_, "home", {"session": client.session}))
            sent += len(batch) + 1 + 4 + 2
            if round_ % 10 == 5:  # re-arm while moving, and `home` to a pose outside the box
                q = np.asarray(client.state.q)
                client.send_target(CommandMode.JOINT_ABS, q + np.eye(7)[0] * 0.1, duration_s=0.2)
                time.sleep(0.1)
                client.call("arm", session=secrets.token_hex(16), t_send_ns=time.monotonic_ns())
                time.sleep(0.1)
                client.stop()
                client.connect()
                try:
                    client.home([1.57, 0.2, 0.0, -1.5, 0.0, 1.885, 0.0])
                except Exception:  # noqa: BLE001 (the refusal is the expected outcome)
                    pass
            collect()
            time.sleep(0.05)
        while rpc.poll(200):
            rpc.recv()
        time.sleep(0.5)
        collect()
        alive = bridge._run_thread.is_alive() and client.call("status")["watchdog"] in ("ARMED", "TRACKING", "HOLD")
        faults = [r for _, s, r in bridge.transitions if s == "FAULT"]
        bad = 0
        previous = None
        for t, q, dq in backend.setpoints:
            if q is None:
                previous = None
                continue
            pos, _ = bridge.kinematics.fk(q)
            outside = (not PANDA.within(q) or np.any(np.abs(dq) > PANDA.dq_max)
                       or np.any(pos < DEFAULT_ACTION_LIMITS.workspace_min - SETPOINT_TOLERANCE)
                       or np.any(pos > DEFAULT_ACTION_LIMITS.workspace_max + SETPOINT_TOLERANCE))
            if previous is not None and t - previous[0] > 0:
                outside = outside or np.any(np.abs(dq - previous[1]) > PANDA.ddq_max * (t - previous[0]) + 1e-9)
            bad += bool(outside)
            previous = (t, dq)
        streamed = sum(q is not None for _, q, _ in backend.setpoints)
        return {"alive": alive, "faults": len(faults), "setpoints": streamed, "beyond": bad,
                "max_state_bytes": max(state_sizes), "states": len(state_sizes), "attack_messages": sent,
                "accepted": bridge.counters["accepted"]}
    finally:
        for sock in (sub, own, stranger, rpc):
            sock.close(0)
        client.close()
        bridge.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=200, help="commands timed through the bridge")
    parser.add_argument("--watchdog-trials", type=int, default=5, help="client processes killed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_keypair(root / "bridge", "bridge")
        generate_keypair(root / "authorized", "workstation")
        keys = {"bridge_secret": root / "bridge/bridge.key_secret", "bridge_public": root / "bridge/bridge.key",
                "authorized": root / "authorized", "client_secret": root / "authorized/workstation.key_secret"}
        floor = transport_floor(args.commands)
        link = measure_link(args.commands, keys)
        holds, stops = measure_watchdog(args.watchdog_trials, keys)
        link_f = measure_link(args.commands, keys, flooded=True)
        holds_f, stops_f = measure_watchdog(args.watchdog_trials, keys, flooded=True)
        attacks = replay_attacks(keys)
    ours = statistics.median(link["latencies"])
    base = statistics.median(floor)
    print(f"command -> first set-point (CurveZMQ, checks, IK, interpolation): {percentiles(link['latencies'])}"
          f" ({link['lost']} of {args.commands} not seen within 1 s)")
    print(f"baseline plain PUSH/PULL msgpack one-way:                      {percentiles(floor)}")
    print(f"ratio (median): {ours / base:.1f}x the transport floor; +{ours - base:.2f} ms")
    print(f"state messages at the workstation: {link['state_hz']:.1f} Hz (configured 100 Hz)")
    print(f"set-points to the arm: {link['setpoint_hz']:.1f} Hz (configured tick 250 Hz)")
    print(f"watchdog, client process killed ({len(holds)} trials): HOLD after {percentiles(holds)}; "
          f"STOPPED after {percentiles(stops)} (limits 250 ms / 1000 ms)")
    print(f"under a flood ({link_f['flood_sent']} junk messages sent, "
          f"{link_f['flood_messages']} handled by the bridge):")
    print(f"  command -> first set-point: {percentiles(link_f['latencies'])} ({link_f['lost']} of {args.commands} "
          f"not seen within 1 s); ratio to the calm median {statistics.median(link_f['latencies']) / ours:.2f}x")
    print(f"  state {link_f['state_hz']:.1f} Hz, set-points {link_f['setpoint_hz']:.1f} Hz")
    print(f"  watchdog ({len(holds_f)} trials): HOLD after {percentiles(holds_f)}; STOPPED after {percentiles(stops_f)}"
          f" (limits 250 ms / 1000 ms)")
    print(f"attack replay ({attacks['attack_messages']} hostile messages, honest stream alongside: "
          f"{attacks['accepted']} commands accepted): bridge up {attacks['alive']}, FAULTs caused by input "
          f"{attacks['faults']}, set-points beyond limits {attacks['beyond']} of {attacks['setpoints']}, largest "
          f"state message {attacks['max_state_bytes']} bytes over {attacks['states']} messages")
    ok = (max(holds + holds_f) <= 250 and max(stops + stops_f) <= 1000 and attacks["alive"] and not attacks["faults"]
          and not attacks["beyond"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
