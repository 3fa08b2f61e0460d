"""Robot link timing over loopback: command-to-set-point latency, state and set-point rates, watchdog reaction.

Our link: a workstation `BridgeClient` -> CurveZMQ -> bridge (decode, session/seq/ttl checks, safety filter with IK,
jerk-limited interpolation) -> the first set-point handed to the MuJoCo backend that reflects the new command.
Baseline, same run: the transport floor, one msgpack message over a plain pyzmq PUSH/PULL pair on loopback with a
busy-polling receiver (no security, no checks, no IK). The ratio says what the bridge's safety work costs.

    python -m bench.link [--commands 200]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import closing
from pathlib import Path

import msgpack
import numpy as np
import zmq
from tqdm import tqdm

from robot.backends.mujoco import MujocoBackend
from robot.bridge import Bridge
from robot.client import BridgeClient, ClientConfig
from robot.config import BridgeConfig, LinkConfig
from robot.keys import generate_keypair
from robot.protocol import CommandMode


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TimedMujoco(MujocoBackend):
    """Notes when each set-point is handed over and which accepted command it belongs to."""

    bridge: Bridge | None = None

    def __init__(self) -> None:
        super().__init__(cameras=())
        self.first_setpoint: dict[int, float] = {}

    def command_joints(self, q, dq) -> None:
        seq = self.bridge._last_cmd_seq if self.bridge is not None else None
        if seq is not None and seq not in self.first_setpoint:
            self.first_setpoint[seq] = time.monotonic()
        super().command_joints(q, dq)


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


def measure_link(n: int, keys: dict[str, Path]) -> dict[str, float | list[float]]:
    link = LinkConfig(cmd_port=free_port(), state_port=free_port(), rpc_port=free_port(), camera_port=free_port(),
                      secret_key=str(keys["bridge_secret"]), authorized_keys=str(keys["authorized"]))
    backend = TimedMujoco()
    bridge = Bridge(BridgeConfig(link=link, camera_hz=0), backend)
    backend.bridge = bridge
    bridge.start()
    bridge.start_thread()
    client = BridgeClient(ClientConfig(cmd_port=link.cmd_port, state_port=link.state_port, rpc_port=link.rpc_port,
                                       camera_port=link.camera_port, client_secret_key=str(keys["client_secret"]),
                                       bridge_public_key=str(keys["bridge_public"]), camera_roles=()))
    try:
        client.connect()
        latencies, sign = [], 1.0
        for _ in tqdm(range(n), desc="commands", leave=False):
            t_send = time.monotonic()
            seq = client.send_target(CommandMode.EE_DELTA, [0.0, 0.002 * sign, 0.0, 0.0, 0.0, 0.0], duration_s=0.05,
                                     ttl_ms=200)
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
                "lost": n - len(latencies)}
    finally:
        client.close()
        bridge.close()


_CLIENT = """
import json, sys, time
from robot.client import BridgeClient, ClientConfig
client = BridgeClient(ClientConfig(**json.loads(sys.argv[1])))
client.connect()
print("armed", flush=True)
time.sleep(60)
"""


def measure_watchdog(trials: int, keys: dict[str, Path]) -> tuple[list[float], list[float]]:
    """SIGKILL an armed client process; time from the kill to HOLD and to STOPPED in the bridge."""
    holds, stops = [], []
    for _ in tqdm(range(trials), desc="watchdog", leave=False):
        link = LinkConfig(cmd_port=free_port(), state_port=free_port(), rpc_port=free_port(),
                          camera_port=free_port(), secret_key=str(keys["bridge_secret"]),
                          authorized_keys=str(keys["authorized"]))
        bridge = Bridge(BridgeConfig(link=link, camera_hz=0), MujocoBackend(cameras=()))
        bridge.start()
        bridge.start_thread()
        cfg = ClientConfig(cmd_port=link.cmd_port, state_port=link.state_port, rpc_port=link.rpc_port,
                           camera_port=link.camera_port, client_secret_key=str(keys["client_secret"]),
                           bridge_public_key=str(keys["bridge_public"]), camera_roles=())
        proc = subprocess.Popen([sys.executable, "-c", _CLIENT, json.dumps(dataclasses.asdict(cfg))],
                                stdout=subprocess.PIPE, text=True)
        try:
            proc.stdout.readline()
            time.sleep(0.5)
            t_kill = time.monotonic()
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            while bridge.watchdog.state.value != "STOPPED" and time.monotonic() - t_kill < 3:
                time.sleep(0.005)
            after = [(t - t_kill, s) for t, s, _ in bridge.transitions if t >= t_kill]
            holds.append(next(t for t, s in after if s == "HOLD") * 1e3)
            stops.append(next(t for t, s in after if s == "STOPPED") * 1e3)
        finally:
            if proc.poll() is None:
                proc.kill()
            bridge.close()
    return holds, stops


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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
