"""Workstation side of the link: `BridgeClient` implements the `Robot` interface on top of a remote bridge.

It arms the bridge with a fresh session, proves liveness with a 50 Hz heartbeat thread (independent of how slowly
the planner runs), sends each DROID delta action as an `ee_delta` command, and reads state and camera frames from
the bridge's PUB sockets. The bridge re-checks everything; the client clamps per-step deltas first so that the
planner gets an honest `ActionResult` (CLAMPED / REJECTED with the bridge's reason).
"""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

# Imported here, not on the first camera frame: importing OpenCV holds the interpreter for ~0.1 s, long enough to
# delay the heartbeat thread past the bridge's hold timeout right after arming.
import cv2
import numpy as np
import zmq

from vjepa_ac.data.droid.poses import euler_xyz_to_matrix, matrix_to_euler_xyz
from vjepa_ac.robot.interface import (
    ActionResult,
    ActionStatus,
    Observation,
    Robot,
    validate_action,
)
from vjepa_ac.robot.keys import make_curve_client
from vjepa_ac.robot.limits import DEFAULT_ACTION_LIMITS, ActionLimits
from vjepa_ac.robot.protocol import (
    MAX_STATE_BYTES,
    Command,
    CommandMode,
    LinkAddress,
    MessageKind,
    StateMessage,
    decode_frame,
    decode_reply,
    encode_command,
    encode_request,
)

log = logging.getLogger(__name__)


class BridgeError(RuntimeError):
    """The bridge refused a request or did not answer in time."""


@dataclass(frozen=True)
class ClientConfig(LinkAddress):
    """The bridge's address (`LinkAddress`: host and ports), this workstation's keys and the client's timing."""

    client_secret_key: str | None = None
    """This workstation's CurveZMQ secret key file; None talks to an unencrypted loopback bridge."""
    bridge_public_key: str | None = None
    control_hz: float = 15.0
    """Planner step rate; one action moves for 1 / control_hz seconds."""
    heartbeat_hz: float = 50.0
    """Liveness beats, independent of the planner rate; the bridge holds after 6 missed beats (0.12 s)."""
    ttl_factor: float = 1.5
    """Command validity as a multiple of the step period (capped at 1 s)."""
    rpc_timeout_s: float = 2.0
    ack_timeout_s: float = 0.5
    """How long `send_action` waits for the bridge to report the command accepted or rejected."""
    camera_roles: tuple[str, ...] = ("left",)
    pace: bool = True
    """`send_action` returns no earlier than one step period after the previous one (the arm's step rate)."""


class BridgeClient(Robot):
    def __init__(self, config: ClientConfig | None = None, *, action_limits: ActionLimits = DEFAULT_ACTION_LIMITS,
                 context: zmq.Context | None = None) -> None:
        self.config = config or ClientConfig()
        if (self.config.client_secret_key is None) != (self.config.bridge_public_key is None):
            raise ValueError("CurveZMQ needs both client_secret_key and bridge_public_key (or neither)")
        self.camera_roles = self.config.camera_roles
        self.control_hz = self.config.control_hz
        self.action_limits = action_limits
        self._context = context or zmq.Context.instance()
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._request_ids = itertools.count(1)
        self._session: str | None = None
        """This connection's session secret (never published; the bridge's state carries `_session_id`)."""
        self._session_id: str | None = None
        self._heartbeat: threading.Thread | None = None
        self._hb_stop = threading.Event()
        self._state: StateMessage | None = None
        self._images: dict[str, tuple[np.ndarray, float]] = {}
        self._absent_roles: set[str] = set()
        self._last_send = 0.0
        self._gripper_command = 0.0
        """Closure (0 open .. 1 closed) of the last accepted command; Δgripper actions integrate on it."""
        self._sockets: dict[str, zmq.Socket] = {}

    # -- sockets -----------------------------------------------------------------------------------------------

    def _socket(self, kind: int, port: int) -> zmq.Socket:
        cfg = self.config
        sock = self._context.socket(kind)
        sock.linger = 0
        if cfg.client_secret_key is not None:
            make_curve_client(sock, cfg.client_secret_key, cfg.bridge_public_key)
        sock.connect(cfg.endpoint(port))
        return sock

    def _open(self) -> None:
        if self._sockets:
            return
        cfg = self.config
        cmd = self._socket(zmq.PUSH, cfg.cmd_port)
        cmd.sndhwm = 10
        state = self._context.socket(zmq.SUB)
        state.conflate = True  # only the newest state matters; must be set before connecting
        state.linger = 0
        if cfg.client_secret_key is not None:
            make_curve_client(state, cfg.client_secret_key, cfg.bridge_public_key)
        state.maxmsgsize = MAX_STATE_BYTES + 1024
        state.setsockopt(zmq.SUBSCRIBE, b"")
        state.connect(cfg.endpoint(cfg.state_port))
        camera = self._socket(zmq.SUB, cfg.camera_port)
        camera.setsockopt(zmq.SUBSCRIBE, b"")
        camera.rcvhwm = 8
        self._sockets = {"cmd": cmd, "state": state, "camera": camera, "rpc": self._socket(zmq.DEALER, cfg.rpc_port)}

    def _close_sockets(self) -> None:
        for sock in self._sockets.values():
            sock.close(linger=0)
        self._sockets = {}

    # -- rpc ---------------------------------------------------------------------------------------------------

    def call(self, op: str, timeout_s: float | None = None, **args: Any) -> Any:
        """One RPC to the bridge (arm, disarm, hold, home, recover, config, status); raises `BridgeError`."""
        self._open()
        request_id = next(self._request_ids)
        rpc = self._sockets["rpc"]
        with self._lock:
            rpc.send(encode_request(request_id, op, args))
        deadline = time.monotonic() + (timeout_s or self.config.rpc_timeout_s)
        while (remaining := deadline - time.monotonic()) > 0:
            if not rpc.poll(remaining * 1e3):
                break
            reply_id, ok, result = decode_reply(rpc.recv())
            if reply_id != request_id:
                continue  # a late reply to an earlier, timed-out request
            if not ok:
                raise BridgeError(result)
            return result
        # The DEALER may still hold the unanswered request; a fresh socket keeps later replies unambiguous.
        rpc.close(linger=0)
        self._sockets["rpc"] = self._socket(zmq.DEALER, self.config.rpc_port)
        raise BridgeError(
            f"bridge did not answer {op!r} within {timeout_s or self.config.rpc_timeout_s:.1f} s "
            f"(is it running at {self.config.host}:{self.config.rpc_port}, and is this client's key authorized?)"
        )

    # -- Robot interface ---------------------------------------------------------------------------------------

    def connect(self) -> None:
        """Arm the bridge with a new session and start the heartbeat; waits for the first state message."""
        if self._session is not None and self._heartbeat is not None and self._heartbeat.is_alive():
            return
        self._open()
        session = secrets.token_hex(16)
        self._seq = itertools.count()
        session_id = self.call("arm", session=session, t_send_ns=time.monotonic_ns())["session_id"]
        self._session, self._session_id = session, session_id
        self._hb_stop.clear()
        self._heartbeat = threading.Thread(target=self._heartbeat_loop, name="bridge-heartbeat", daemon=True)
        self._heartbeat.start()
        armed = self.wait_state(lambda s: s.session == session_id, timeout_s=self.config.rpc_timeout_s)
        self._gripper_command = float(np.clip(armed.gripper, 0.0, 1.0))

    def _send_new(self, kind: MessageKind, **fields: Any) -> int:
        """Stamp and send one message; seq allocation and sending are atomic so seqs arrive strictly increasing."""
        with self._lock:
            seq = next(self._seq)
            cmd = Command(kind, session=self._session, seq=seq, t_send_ns=time.monotonic_ns(), **fields)
            self._sockets["cmd"].send(encode_command(cmd), zmq.NOBLOCK)
        return seq

    def _heartbeat_loop(self) -> None:
        period = 1.0 / self.config.heartbeat_hz
        # The first beat goes out at once: the bridge counts heartbeat silence from the moment it armed.
        while True:
            try:
                self._send_new(MessageKind.HEARTBEAT)
            except zmq.Again:
                log.warning("heartbeat dropped: the bridge is not draining commands")
            except zmq.ZMQError:
                return
            if self._hb_stop.wait(period):
                return

    def _poll(self) -> None:
        """Pull the newest state and camera frames off their sockets without blocking."""
        state = self._sockets["state"]
        while state.poll(0):
            self._state = StateMessage.decode(state.recv())
        camera = self._sockets["camera"]
        while camera.poll(0):
            role, _, t_ns, jpeg = decode_frame(camera.recv())
            image = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
            if image is not None:
                self._images[role] = (image[..., ::-1].copy(), t_ns / 1e9)

    def wait_state(self, predicate=lambda s: True, timeout_s: float = 1.0) -> StateMessage:
        """The first state message satisfying `predicate` within `timeout_s` (raises `BridgeError` otherwise)."""
        self._open()
        deadline = time.monotonic() + timeout_s
        state = self._sockets["state"]
        while True:
            self._poll()
            if self._state is not None and predicate(self._state):
                return self._state
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BridgeError(f"no matching state from the bridge within {timeout_s:.1f} s")
            state.poll(min(remaining, 0.05) * 1e3)

    @property
    def state(self) -> StateMessage | None:
        """The newest state received (None before the first)."""
        return self._state

    def get_observation(self) -> Observation:
        state = self.wait_state(timeout_s=self.config.rpc_timeout_s)
        # Wait for each role's first frame once; a role the bridge never sends is reported, not waited for again.
        missing = [r for r in self.camera_roles if r not in self._images and r not in self._absent_roles]
        deadline = time.monotonic() + self.config.rpc_timeout_s
        while missing and time.monotonic() < deadline:
            self._sockets["camera"].poll(50)
            self._poll()
            missing = [r for r in missing if r not in self._images]
        if missing:
            log.warning("no frames from the bridge for camera roles %s", missing)
            self._absent_roles.update(missing)
        images = {role: self._images[role][0] for role in self.camera_roles if role in self._images}
        return Observation(
            images=images,
            state=state.droid_state,
            joint_positions=np.asarray(state.q),
            gripper_position=state.gripper,
            timestamp=state.t_ns / 1e9,
            image_timestamps={role: self._images[role][1] for role in images},
        )

    def _clamp(self, action: np.ndarray) -> tuple[np.ndarray, list[str]]:
        limits, reasons = self.action_limits, []
        translation = float(np.linalg.norm(action[:3]))
        if translation > limits.max_translation:
            action[:3] *= limits.max_translation / translation
            reasons.append(f"translation {translation:.3f} m clamped to {limits.max_translation} m")
        rot = euler_xyz_to_matrix(action[3:6])
        angle = float(np.arccos(np.clip((np.trace(rot) - 1) / 2, -1.0, 1.0)))
        if angle > limits.max_rotation:
            from scipy.spatial.transform import Rotation

            rotvec = Rotation.from_matrix(rot).as_rotvec() * (limits.max_rotation / angle)
            action[3:6] = matrix_to_euler_xyz(Rotation.from_rotvec(rotvec).as_matrix())
            reasons.append(f"rotation {angle:.3f} rad clamped to {limits.max_rotation} rad")
        return action, reasons

    def send_action(self, action: np.ndarray) -> ActionResult:
        """Send one DROID delta action; returns once the bridge accepted or rejected it (then paces to control_hz)."""
        try:
            action = validate_action(action)
        except ValueError as exc:
            return ActionResult(ActionStatus.REJECTED, None, str(exc))
        if self._session is None:
            return ActionResult(ActionStatus.REJECTED, None, "not connected (call connect first)")
        action, reasons = self._clamp(action)
        state = self.wait_state(timeout_s=self.config.rpc_timeout_s)
        # Δgripper integrates on the last commanded closure, not the measured one: the measured closure drifts while
        # the arm moves (and stops short on a grasped object), and feeding it back would close a free hand over time.
        gripper = float(np.clip(self._gripper_command + action[6], 0.0, 1.0))
        period = 1.0 / self.config.control_hz
        try:
            seq = self._send_new(
                MessageKind.CMD,
                ttl_ms=int(min(1000, self.config.ttl_factor * period * 1e3)),
                mode=CommandMode.EE_DELTA,
                target=action[:6],
                gripper=gripper,
                duration_s=period,
                ref_state_seq=state.seq,
            )
        except zmq.Again:
            return ActionResult(ActionStatus.REJECTED, None, "command queue to the bridge is full")
        try:
            session_id = self._session_id
            reply = self.wait_state(
                lambda s: s.session == session_id
                and (
                    (s.last_cmd_seq is not None and s.last_cmd_seq >= seq)
                    # Exactly this seq: a rejected message with a larger seq says nothing about this one.
                    or s.last_rejected_seq == seq
                    or any(e.startswith(f"seq {seq}:") for e in s.errors)
                    or s.watchdog in ("STOPPED", "FAULT")
                ),
                timeout_s=self.config.ack_timeout_s,
            )
        except BridgeError:
            return ActionResult(ActionStatus.REJECTED, None, "no acknowledgement from the bridge")
        if reply.last_cmd_seq is None or reply.last_cmd_seq < seq:
            # The bridge reports rejections of the current session only (its error list restarts at every arm).
            reason = next((e for e in reversed(reply.errors) if e.startswith(f"seq {seq}:")), reply.watchdog)
            return ActionResult(ActionStatus.REJECTED, None, reason)
        if self.config.pace:
            wait = self._last_send + period - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        self._last_send = time.monotonic()
        self._gripper_command = gripper
        status = ActionStatus.CLAMPED if reasons else ActionStatus.ACCEPTED
        return ActionResult(status, action, "; ".join(reasons))

    def send_target(self, mode: CommandMode, target: np.ndarray, *, gripper: float | None = None,
                    duration_s: float = 1.0, ttl_ms: int = 1000) -> int:
        """Send an absolute target (`ee_abs` pose or `joint_abs` angles, or a raw `ee_delta`); returns its seq.

        The bridge applies the same limits as for actions; watch `state.last_cmd_seq` / `last_rejected_seq`."""
        if self._session is None:
            raise BridgeError("not connected (call connect first)")
        return self._send_new(MessageKind.CMD, ttl_ms=ttl_ms, mode=mode, target=np.asarray(target, dtype=np.float64),
                              gripper=gripper, duration_s=duration_s)

    def hold(self) -> None:
        self.call("hold")

    def home(self, q: np.ndarray | None = None) -> float:
        """Move to the bridge's home pose (or joint angles `q`) through its safety filter; returns the duration."""
        if self._session is None:
            raise BridgeError("not connected (call connect first)")
        args = {} if q is None else {"q": [float(v) for v in q]}
        return self.call("home", session=self._session, **args)["duration_s"]

    def stop(self) -> None:
        """Explicit stop: the bridge ends the motion at once; `connect` re-arms with a new session."""
        if self._session is not None and self._sockets:
            try:
                self._send_new(MessageKind.STOP)
            except zmq.ZMQError:
                log.warning("could not deliver stop; the bridge watchdog will stop the arm within 1 s")
        self._hb_stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=1.0)
            self._heartbeat = None
        self._session = self._session_id = None

    def close(self) -> None:
        self.stop()
        self._close_sockets()

    @property
    def session(self) -> str | None:
        """The session secret of the current connection (None when not connected)."""
        return self._session

    @property
    def session_id(self) -> str | None:
        """The public name of the current session, as the bridge's state messages show it."""
        return self._session_id
