"""The robot-side bridge: ZMQ link + watchdog + safety filter + interpolator in front of one arm backend.

Sockets (all bound by the bridge, CURVE servers when keys are configured):
  cmd    PULL   workstation commands, heartbeats and stops; drained completely every tick
  state  PUB    one `StateMessage` per state tick
  rpc    ROUTER arm / disarm / hold / home / recover / config / status
  camera PUB    JPEG frames, published by their own thread so that encoding never delays commands

A receiver thread takes every command off its socket as it arrives, stamps it with the bridge clock (so a command's
age never depends on how busy the loop is) and decodes it. Every tick the loop handles what was received, keeps the
newest valid command (session secret and sender, strictly increasing seq, plausible timestamp, ttl by the estimated
sender clock), lets the watchdog apply its timeouts, resolves the command through the safety filter (IK to joint
targets in joint mode), and streams the interpolated set-point after a last limit check.

Sessions: `arm` takes a session secret that the client never publishes (the state stream carries only its digest,
`public_session_id`) and, with CurveZMQ, binds the session to the arming client's public key; only messages with
both the secret and that key count as the session's (commands, heartbeats, stops, `home`).
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np
import zmq
from scipy.spatial.transform import Rotation

from robot.backends.base import ArmState, Backend
from robot.cameras import CameraRig
from robot.config import BridgeConfig
from robot.interpolation import MotionLimits, SegmentRefused, SetpointInterpolator
from robot.keys import make_curve_server, start_authenticator
from robot.kinematics import ArmKinematics
from robot.protocol import (
    MAX_MESSAGE_BYTES,
    MAX_STATE_BYTES,
    Command,
    MessageKind,
    ProtocolError,
    StateMessage,
    decode_command,
    decode_request,
    describe,
    encode_frame,
    encode_reply,
    public_session_id,
    sanitize_text,
)
from robot.safety import (
    PATH_SAMPLES,
    PATH_TOLERANCE,
    SETPOINT_TOLERANCE,
    CommandRejected,
    SafeTarget,
    SafetyFilter,
    droid_pose,
    matrix_to_quat_xyzw,
)
from robot.watchdog import ACCEPTS_COMMANDS, Watchdog, WatchdogError, WatchdogState

log = logging.getLogger(__name__)

_MAX_DRAIN = 1000
"""Upper bound on messages handled per tick (and on the receiver's queue), so a flood cannot starve the set-points."""
_SOCKET_MAX_BYTES = MAX_MESSAGE_BYTES + 1024
"""ZMQ_MAXMSGSIZE of the command and RPC sockets (room for CurveZMQ framing); a larger message drops its sender."""
FUTURE_TOLERANCE_S = 0.1
"""How far a message's send time may lie ahead of the sender clock estimate before it is refused as implausible."""
_wake_ids = itertools.count()
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_CARTESIAN_LIMITS = MotionLimits(
    velocity=np.array([0.25] * 3 + [1.0] * 3),
    acceleration=np.array([2.5] * 3 + [5.0] * 3),
    jerk=np.array([100.0] * 3 + [200.0] * 3),
)
"""Flange set-point limits in Cartesian mode (m, rad per s, s^2, s^3): well inside Franka's Cartesian limits."""


class _Received:
    """One message as the receiver thread took it off the command socket."""

    __slots__ = ("command", "error", "sender", "t")

    def __init__(self, t: float, sender: str, command: Command | None, error: str = "") -> None:
        self.t = t
        """Bridge clock when the message left the socket."""
        self.sender = sender
        """CurveZMQ public key of the sending client ("" without CurveZMQ)."""
        self.command = command
        self.error = error


def _sender(frame: zmq.Frame) -> str:
    """The ZAP user id of a received frame: the client's CurveZMQ public key, "" on an unencrypted link."""
    try:
        return frame.get("User-Id") or ""
    except zmq.ZMQError:
        return ""


def _receive_one(sock: zmq.Socket) -> tuple[zmq.Frame, int]:
    """One message off `sock` (NOBLOCK): its first frame and its number of parts; further parts are read and dropped
    one at a time, so a many-part message costs no more memory than a single one."""
    frame = sock.recv(zmq.NOBLOCK, copy=False)
    parts = 1
    while sock.rcvmore:
        sock.recv(copy=False)
        parts += 1
    return frame, parts


class _Tracker:
    """Turns accepted targets into a continuous set-point stream. While `streaming` (set-points flow to the arm) every
    change (retarget, hold, re-arm, recovery from a failed set-point) continues from the current set-point's position
    and velocity within the limits; only a fresh start after the stream ended begins at the measured pose."""

    def __init__(self, bridge: Bridge, size: int, limits: MotionLimits) -> None:
        self.bridge = bridge
        self.interp = SetpointInterpolator(np.zeros(size), limits)
        self.target_q: np.ndarray | None = None
        """Joint target of the newest accepted command."""
        self.streaming = False
        self._last_sent: tuple[np.ndarray, np.ndarray, float] | None = None
        """Coordinates, velocity and time of the last set-point sent."""

    def start(self, arm: ArmState, now: float) -> None:
        """Arming: brake the running stream if there is one (re-arm while moving), else start at the measured pose."""
        if self.streaming:
            self.hold(now)
        else:
            self._reset(arm, now)
            self._last_sent = None
            self.target_q = None
        self.streaming = True

    def stop(self) -> None:
        """The backend ended the stream (stop, disarm, fault); the next start begins at the measured pose."""
        self.streaming = False

    def hold(self, now: float) -> None:
        """Come to rest from the current set-point; if no braking fits the limits, finish the running segment (it was
        within them when planned and ends at rest at a checked target)."""
        try:
            self.interp.brake(now)
        except SegmentRefused as exc:
            log.warning("hold: %s; finishing the running segment", exc)

    def recover(self, now: float) -> bool:
        """A set-point failed the last gate: brake from the last set-point that was sent. False if that is impossible
        (the caller then stops the arm)."""
        if self._last_sent is None:
            return False
        x, v, _ = self._last_sent
        try:
            self.interp.brake(now, start=(x, v))
        except SegmentRefused:
            return False
        return True

    def retarget(self, target: SafeTarget, now: float) -> float:
        """Plan towards `target` from the current set-point; raises `SegmentRefused` or `CommandRejected` (path leaves
        the workspace) and then keeps the running segment."""
        segment = self.interp.plan(self._target_coords(target), now, target.min_duration)
        self._check_path(segment.sample(np.linspace(0.0, segment.duration, PATH_SAMPLES))[0])
        self.target_q = target.q
        return self.interp.follow(segment, now)

    def emit(self, now: float) -> bool:
        x, v = self.interp.sample(now)
        if not self._send(x, v, now):
            return False
        self._last_sent = (x, v, now)
        return True

    def _reset(self, arm: ArmState, now: float) -> None:
        raise NotImplementedError

    def _target_coords(self, target: SafeTarget) -> np.ndarray:
        raise NotImplementedError

    def _check_path(self, xs: np.ndarray) -> None:
        raise NotImplementedError

    def _send(self, x: np.ndarray, v: np.ndarray, now: float) -> bool:
        """Check one set-point and hand it to the backend; False (nothing sent) if it fails the check."""
        raise NotImplementedError


class _JointTracker(_Tracker):
    """Joint-space set-points: IK happened in the safety filter, the interpolator runs on the 7 joints."""

    def __init__(self, bridge: Bridge) -> None:
        super().__init__(bridge, 7, bridge.safety.config.motion_limits())

    def _reset(self, arm: ArmState, now: float) -> None:
        self.interp.reset(arm.q, now)

    def _target_coords(self, target: SafeTarget) -> np.ndarray:
        return target.q

    def _check_path(self, xs: np.ndarray) -> None:
        self.bridge.safety.check_path(xs)

    def _send(self, q: np.ndarray, dq: np.ndarray, now: float) -> bool:
        previous = None if self._last_sent is None else (self._last_sent[1], self._last_sent[2])
        dt = 0.0 if previous is None else now - previous[1]
        if not self.bridge.safety.setpoint_ok(q, dq, previous, dt):
            return False
        self.bridge.backend.command_joints(q, dq)
        self.bridge.setpoint_q = q
        return True


class _PoseTracker(_Tracker):
    """Cartesian-impedance set-points: the flange pose is interpolated as xyz + rotation vector about an anchor."""

    def __init__(self, bridge: Bridge) -> None:
        super().__init__(bridge, 6, _CARTESIAN_LIMITS)
        self.anchor = np.eye(3)

    def _coords(self, pos: np.ndarray, rot: np.ndarray) -> np.ndarray:
        return np.concatenate([pos, Rotation.from_matrix(rot @ self.anchor.T).as_rotvec()])

    def _reset(self, arm: ArmState, now: float) -> None:
        pos, rot = self.bridge.kinematics.fk(arm.q)
        self.anchor = rot
        self.interp.reset(self._coords(pos, rot), now)

    def _target_coords(self, target: SafeTarget) -> np.ndarray:
        return self._coords(target.ee_pos, target.ee_rot)

    def _in_box(self, positions: np.ndarray, tolerance: float) -> bool:
        limits = self.bridge.safety.config.action_limits
        return bool(np.all(np.isfinite(positions)) and np.all(positions >= limits.workspace_min - tolerance)
                    and np.all(positions <= limits.workspace_max + tolerance))

    def _check_path(self, xs: np.ndarray) -> None:
        if not self._in_box(xs[:, :3], PATH_TOLERANCE):
            raise CommandRejected("the flange path leaves the workspace box")

    def _send(self, x: np.ndarray, v: np.ndarray, now: float) -> bool:
        if not (np.all(np.isfinite(x)) and self._in_box(x[:3], SETPOINT_TOLERANCE)):
            return False
        rot = Rotation.from_rotvec(x[3:]).as_matrix() @ self.anchor
        self.bridge.backend.command_pose(x[:3], matrix_to_quat_xyzw(rot))
        return True


class Bridge:
    """Owns the sockets and runs the loop; `start()` then `run()` (or `start_thread()`), `close()` at the end."""

    def __init__(
        self,
        config: BridgeConfig,
        backend: Backend,
        *,
        kinematics: ArmKinematics | None = None,
        context: zmq.Context | None = None,
        clock: Callable[[], float] = time.monotonic,
        cameras: CameraRig | None = None,
    ) -> None:
        """`cameras`: cameras read by the bridge (e.g. `CameraRig.from_configs(config.cameras)`), published on the
        camera stream beside the backend's own frames; a camera and the backend serving one role: the camera wins."""
        if not config.link.curve and config.link.host not in _LOOPBACK_HOSTS:
            raise ValueError(
                f"refusing to bind {config.link.host} without CurveZMQ keys; set link.secret_key and "
                "link.authorized_keys (vjepa-ac bridge keygen) or bind 127.0.0.1"
            )
        if config.control_mode == "cartesian" and not backend.supports_cartesian:
            raise ValueError(f"the {backend.name} backend has no Cartesian mode; use control_mode 'joint'")
        self.config = config
        self.backend = backend
        self.kinematics = kinematics or ArmKinematics()
        self.safety = SafetyFilter(self.kinematics, config.safety)
        self.watchdog = Watchdog(config.watchdog)
        self.clock = clock
        self.cameras = cameras
        if cameras is not None and cameras.roles and not config.camera_hz > 0:
            raise ValueError(f"cameras {list(cameras.roles)} are given but camera_hz is {config.camera_hz}")
        self._tracker = _PoseTracker(self) if config.control_mode == "cartesian" else _JointTracker(self)
        # A context of its own: the ZAP authenticator is per context, so bridges in one process stay independent.
        self._owns_context = context is None
        self._context = context or zmq.Context()
        self._auth = None
        self._sockets: list[zmq.Socket] = []
        self._stop = threading.Event()
        self._camera_thread: threading.Thread | None = None
        self._run_thread: threading.Thread | None = None
        self._receiver_thread: threading.Thread | None = None
        self._inbox: queue.Queue[_Received] = queue.Queue(maxsize=_MAX_DRAIN)
        self.transitions: collections.deque[tuple[float, str, str]] = collections.deque(maxlen=512)
        """(bridge time, new watchdog state, reason) for every transition; for logs, tests and benchmarks."""
        self.errors: collections.deque[str] = collections.deque(maxlen=16)
        """Recent rejections and faults since the last arm, newest last (published in every state message)."""
        self.setpoint_q: np.ndarray | None = None
        self.counters = collections.Counter()
        self._arm_state: ArmState | None = None
        self._last_seq = -1
        self._last_cmd_seq: int | None = None
        self._last_rejected_seq: int | None = None
        self._last_cmd_time: float | None = None
        self._session_sender: str | None = None
        """CurveZMQ key of the client that armed the session ("" without CurveZMQ)."""
        self._clock_offset_ns = 0
        """Estimated (bridge clock - sender clock) + the smallest latency seen in this session (set by `arm`)."""
        self._previous_offset_ns = 0
        self._state_seq = 0
        self._next_state = 0.0

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def _bind(self, kind: int, port: int, max_bytes: int = -1) -> zmq.Socket:
        sock = self._context.socket(kind)
        sock.linger = 0
        sock.maxmsgsize = max_bytes
        if self.config.link.curve:
            make_curve_server(sock, self.config.link.secret_key)
        sock.bind(self.config.link.endpoint(port))
        self._sockets.append(sock)
        return sock

    def start(self) -> None:
        link = self.config.link
        if link.curve:
            if not link.authorized_keys:
                raise ValueError("link.secret_key is set but link.authorized_keys is not: no client could connect")
            self._auth = start_authenticator(self._context, link.authorized_keys)
        self.backend.start()
        self._cmd = self._bind(zmq.PULL, link.cmd_port, _SOCKET_MAX_BYTES)
        self._cmd.rcvhwm = 100
        self._state = self._bind(zmq.PUB, link.state_port)
        self._state.sndhwm = 10
        self._rpc = self._bind(zmq.ROUTER, link.rpc_port, _SOCKET_MAX_BYTES)
        # The receiver thread wakes the loop through this pair when a command or stop arrives.
        wake = f"inproc://bridge-wake-{next(_wake_ids)}"
        self._wake = self._context.socket(zmq.PAIR)
        self._wake.bind(wake)
        self._wake_sender = self._context.socket(zmq.PAIR)
        self._wake_sender.connect(wake)
        self._sockets += [self._wake, self._wake_sender]
        self._poller = zmq.Poller()
        self._poller.register(self._wake, zmq.POLLIN)
        self._poller.register(self._rpc, zmq.POLLIN)
        # The receiver thread stamps arrivals; with the interpreter's default 5 ms switch interval a busy loop or
        # physics thread would delay it (and the stamp) by up to that much.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
        self._receiver_thread = threading.Thread(target=self._receive_loop, name="bridge-receiver", daemon=True)
        self._receiver_thread.start()
        self._arm_state = self.backend.read_state()
        self._record(self.watchdog.state.value, "started")
        if self.config.camera_hz > 0:
            if self.cameras is not None:
                self.cameras.start()  # before the camera thread, so a missing device stops the start with its name
            camera = self._bind(zmq.PUB, link.camera_port)
            camera.sndhwm = 2
            self._camera_thread = threading.Thread(target=self._camera_loop, args=(camera,), daemon=True)
            self._camera_thread.start()
        log.info("bridge up: backend %s, robot %s, %s mode on %s", self.backend.name, self.config.robot,
                 self.config.control_mode, link.host)

    def run(self) -> None:
        """Loop until `shutdown()`; wakes up on incoming messages and at least every tick."""
        period = 1.0 / self.config.tick_hz
        next_tick = self.clock()
        while not self._stop.is_set():
            wait = next_tick - self.clock()
            # Rounding the timeout up avoids spinning through the last fraction of a millisecond before a tick.
            if wait > 0 and not self._poller.poll(math.ceil(wait * 1e3)) and self.clock() < next_tick:
                continue
            while self._wake.poll(0):
                self._wake.recv()
            try:
                self.step()
            except Exception as exc:  # noqa: BLE001 (any failure must end in a safe state, not a dead loop)
                self._fail_safe(exc)
            now = self.clock()
            if now >= next_tick:
                next_tick = next_tick + period if next_tick + period > now else now + period

    def _fail_safe(self, exc: Exception) -> None:
        """An unexpected error in a tick (e.g. the backend lost its arm): FAULT, and stop the arm where it is."""
        if self.watchdog.state is WatchdogState.FAULT:
            log.debug("bridge tick failed again: %s", exc)
            return
        log.exception("bridge tick failed; stopping the arm")
        self.watchdog.fault(sanitize_text(f"bridge error: {type(exc).__name__}: {exc}"))
        self._record(WatchdogState.FAULT.value, self.watchdog.reason)
        self._error(self.watchdog.reason)
        self._tracker.stop()
        if self._arm_state is not None:
            try:
                self.backend.stop(self._arm_state.q)
            except Exception:
                log.exception("backend stop failed as well")

    def start_thread(self) -> threading.Thread:
        """Run the loop in a background thread (tests, benchmarks, embedding); `close()` joins it."""
        self._run_thread = threading.Thread(target=self.run, name="bridge", daemon=True)
        self._run_thread.start()
        return self._run_thread

    def shutdown(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Stop the loop, hold the arm where it is, close sockets and the backend."""
        self._stop.set()
        for thread in (self._run_thread, self._camera_thread, self._receiver_thread):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=2.0)
        try:
            if self.watchdog.state in ACCEPTS_COMMANDS and self._arm_state is not None:
                self.backend.stop(self._arm_state.q)
        finally:
            for sock in self._sockets:
                sock.close(linger=0)
            self._sockets.clear()
            if self._auth is not None:
                self._auth.stop()
            if self._owns_context:
                self._context.term()
            self.backend.close()

    # -- one tick ----------------------------------------------------------------------------------------------

    def step(self) -> None:
        now = self.clock()
        newest = self._drain_commands(now)
        self._serve_rpc(now)
        arm = self._arm_state = self.backend.read_state()
        if arm.fault and self.watchdog.state is not WatchdogState.FAULT:
            self.watchdog.fault(sanitize_text(f"robot {arm.robot_mode}: {', '.join(arm.errors) or 'no error flags'}"))
            self._record(WatchdogState.FAULT.value, self.watchdog.reason)
            self._error(self.watchdog.reason)
            self._tracker.stop()
        transition = self.watchdog.tick(now)
        if transition is not None:
            self._on_transition(transition, arm, now)
        if newest is not None and self.watchdog.state in ACCEPTS_COMMANDS:
            self._apply(newest, arm, now)
        if self.watchdog.state in ACCEPTS_COMMANDS:
            if self._tracker.emit(now):
                self.counters["setpoints"] += 1
            elif self._tracker.recover(now):
                self._error("set-point outside the limits; braking from the last set-point")
                if self.watchdog.state is not WatchdogState.HOLD:
                    self.watchdog.hold("set-point outside the limits")
                    self._record(self.watchdog.state.value, self.watchdog.reason)
            else:
                self._error("set-point outside the limits and no braking within them; stopping the arm")
                self.watchdog.stop("set-point outside the limits")
                self._on_transition(WatchdogState.STOPPED, arm, now)
        if now >= self._next_state:
            # Scheduled, not "now + period": publishing on the tick grid must not round the rate down.
            period = 1.0 / self.config.state_hz
            self._next_state = self._next_state + period if now - self._next_state < period else now + period
            self._publish_state(arm, now)

    def _record(self, state: str, reason: str) -> None:
        self.transitions.append((self.clock(), state, reason))
        log.info("watchdog -> %s (%s)", state, reason)

    def _error(self, text: str, seq: int | None = None) -> None:
        """Record a rejection; the text is cut and cleaned, so the state stream stays bounded whatever was sent."""
        self.errors.append(sanitize_text(text if seq is None else f"seq {seq}: {text}"))
        self.counters["rejected"] += 1
        if seq is not None:
            self._last_rejected_seq = seq

    def _on_transition(self, state: WatchdogState, arm: ArmState, now: float) -> None:
        self._record(state.value, self.watchdog.reason)
        if state is WatchdogState.HOLD:
            self._tracker.hold(now)
        elif state is WatchdogState.STOPPED:
            self._tracker.stop()
            self.backend.stop(arm.q)

    def _receive_loop(self) -> None:
        """Receiver thread: stamp, decode and queue every message of the command socket (the only user of it)."""
        while not self._stop.is_set():
            try:
                if not self._cmd.poll(50):
                    continue
                frame, parts = _receive_one(self._cmd)
            except zmq.Again:
                continue
            except zmq.ZMQError:
                return  # socket closed
            received = self.clock()
            if parts != 1:
                item = _Received(received, _sender(frame), None, f"multipart message of {parts} parts")
            else:
                try:
                    item = _Received(received, _sender(frame), decode_command(frame.bytes))
                except ProtocolError as exc:
                    item = _Received(received, _sender(frame), None, str(exc))
            # Wait for room rather than drop: a stop must never be lost to a flood (ZMQ's HWM then pushes back).
            while not self._stop.is_set():
                try:
                    self._inbox.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item.command is not None and item.command.kind is not MessageKind.HEARTBEAT:
                try:
                    self._wake_sender.send(b"", zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass

    def _drain_commands(self, now: float) -> Command | None:
        """Handle every received message; returns the newest valid motion command (older ones are superseded)."""
        newest: Command | None = None
        for _ in range(_MAX_DRAIN):
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            self.counters["messages"] += 1
            cmd = item.command
            if cmd is None:
                self._error(f"malformed message: {item.error}")
                continue
            if (cmd.session != self.watchdog.session or item.sender != self._session_sender
                    or self.watchdog.state not in ACCEPTS_COMMANDS):
                # Not `last_rejected_seq`: that field speaks about the armed session's own seqs.
                self._error(
                    f"seq {cmd.seq}: not the armed session of this client (watchdog {self.watchdog.state.value})"
                )
                continue
            if cmd.seq <= self._last_seq:
                self._error(f"seq {cmd.seq} is not greater than the last seq {self._last_seq}", cmd.seq)
                continue
            # A stop is honoured whatever its timestamp: stopping is never the unsafe choice.
            age_ms = 0.0 if cmd.kind is MessageKind.STOP else self._age_ms(cmd, item.t)
            if age_ms < -FUTURE_TOLERANCE_S * 1e3:
                self._error(f"timestamp {-age_ms:.0f} ms ahead of the sender clock estimate", cmd.seq)
                continue
            if cmd.kind is MessageKind.CMD and age_ms > cmd.ttl_ms:
                self._error(f"stale: {age_ms:.0f} ms old, ttl {cmd.ttl_ms} ms", cmd.seq)
                continue
            # Only a message that passed every check moves the seq on, so a bad one cannot block the good ones after it.
            self._last_seq = cmd.seq
            self.watchdog.heartbeat(cmd.session, now)
            if cmd.kind is MessageKind.STOP:
                newest = None
                if self._arm_state is not None:
                    self.watchdog.stop("stop requested by the client")
                    self._on_transition(WatchdogState.STOPPED, self._arm_state, now)
                break
            if cmd.kind is MessageKind.CMD:
                if newest is not None:
                    self.counters["superseded"] += 1
                newest = cmd
        return newest

    def _age_ms(self, cmd: Command, received: float) -> float:
        """Age of a session message by the sender clock estimate; negative if stamped after its arrival.

        The offset (arrival - send) of a message is the clock offset plus its latency. The estimate starts with the
        `arm` request's offset and follows the smallest offset seen since, so an age is the latency above the
        fastest one. A message stamped more than `FUTURE_TOLERANCE_S` ahead of the estimate is implausible and
        changes nothing; a new smallest offset counts only once the following message confirms it (the estimate
        moves to the larger of two consecutive offsets), so one wrong timestamp never changes how later messages
        are judged."""
        offset = int(received * 1e9) - cmd.t_send_ns
        age_ms = (offset - self._clock_offset_ns) / 1e6
        if age_ms < -FUTURE_TOLERANCE_S * 1e3:
            return age_ms
        confirmed = max(offset, self._previous_offset_ns)
        self._previous_offset_ns = offset
        if confirmed < self._clock_offset_ns:
            self._clock_offset_ns = confirmed
        return (offset - self._clock_offset_ns) / 1e6

    def _apply(self, cmd: Command, arm: ArmState, now: float) -> None:
        try:
            reference = self._tracker.target_q if self.watchdog.state is WatchdogState.TRACKING else None
            target = self.safety.resolve(cmd, arm.q, reference)
            duration = self._tracker.retarget(target, now)
        except (CommandRejected, SegmentRefused) as exc:
            self._error(f"rejected: {exc}", cmd.seq)
            return
        if target.gripper is not None:
            self.backend.set_gripper(target.gripper)
        was = self.watchdog.state
        # An accepted target is safety-checked and reached at rest, so finishing its motion is no extrapolation:
        # the command stays valid until its ttl or the end of its motion, whichever is later.
        self.watchdog.command_accepted(now, max(cmd.ttl_ms / 1e3, duration))
        if was is not WatchdogState.TRACKING:
            self._record(WatchdogState.TRACKING.value, f"command seq {cmd.seq}")
        self._last_cmd_seq = cmd.seq
        self._last_cmd_time = now
        self.counters["accepted"] += 1

    # -- rpc ---------------------------------------------------------------------------------------------------

    def _serve_rpc(self, now: float) -> None:
        for _ in range(16):
            try:
                identity = self._rpc.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if not self._rpc.rcvmore:
                continue  # only the routing identity: an empty message
            payload, payload_parts = _receive_one(self._rpc)
            received = self.clock()
            if payload_parts != 1:
                self._rpc.send_multipart([identity, encode_reply(0, ok=False, error="multipart requests are refused")])
                continue
            try:
                request_id, op, args = decode_request(payload.bytes)
            except ProtocolError as exc:
                self._rpc.send_multipart([identity, encode_reply(0, ok=False, error=sanitize_text(str(exc)))])
                continue
            try:
                result = self.rpc(op, args, received, sender=_sender(payload))
                reply = encode_reply(request_id, ok=True, result=result)
            except Exception as exc:  # noqa: BLE001 (every request gets an answer, also when the backend fails)
                reply = encode_reply(request_id, ok=False, error=sanitize_text(f"{describe(op)}: {exc}"))
            self._rpc.send_multipart([identity, reply])

    def rpc(self, op: str, args: dict[str, Any], now: float | None = None, sender: str = "") -> Any:
        """Carry out one control request (what the ROUTER socket receives at `now` from the CurveZMQ key `sender`);
        raises on refusal."""
        now = self.clock() if now is None else now
        arm = self._arm_state = self.backend.read_state()
        wd = self.watchdog
        if op == "arm":
            session = args.get("session")
            if not isinstance(session, str) or not 0 < len(session) <= 64:
                raise ValueError("arm needs a session string (1-64 characters)")
            if arm.fault:
                raise WatchdogError(f"robot is in {arm.robot_mode}; call recover first")
            t_send = args.get("t_send_ns")
            if type(t_send) is not int or not -(2**63) <= t_send < 2**63:
                raise ValueError("arm needs t_send_ns, the sender's monotonic clock in ns")
            wd.arm(session, now)
            self.backend.activate()
            self._session_sender = sender
            self._last_seq = -1
            self._last_cmd_seq = self._last_rejected_seq = self._last_cmd_time = None
            self.errors.clear()
            self._clock_offset_ns = self._previous_offset_ns = int(now * 1e9) - t_send
            self._tracker.start(arm, now)
            self._record(wd.state.value, f"armed session {public_session_id(session)}")
            return {"state": wd.state.value, "session_id": public_session_id(session)}
        if op == "disarm":
            if wd.state in ACCEPTS_COMMANDS:
                self._tracker.stop()
                self.backend.stop(arm.q)
            wd.disarm()
            self._record(wd.state.value, wd.reason)
            return {"state": wd.state.value}
        if op == "hold":
            if wd.state in (WatchdogState.ARMED, WatchdogState.TRACKING):
                wd.hold("hold requested by the client")
                self._on_transition(WatchdogState.HOLD, arm, now)
            return {"state": wd.state.value}
        if op == "home":
            if wd.state not in ACCEPTS_COMMANDS:
                raise WatchdogError(f"home needs an armed bridge, watchdog is {wd.state.value}")
            if args.get("session") != wd.session or sender != self._session_sender:
                raise WatchdogError("home needs the armed session (pass session=, from the client that armed it)")
            q_home = args.get("q", self.config.home_q)
            if not isinstance(q_home, (list, tuple)) or len(q_home) != 7:
                raise ValueError(f"home pose must be 7 joint angles, got {describe(q_home)}")
            try:
                q_home = np.asarray([float(v) for v in q_home], dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError("home pose must be 7 numbers") from None
            target = self.safety.resolve_joint_target(q_home)
            duration = self._tracker.retarget(target, now)
            wd.command_accepted(now, duration + 1.0)
            self._record(wd.state.value, "homing")
            return {"duration_s": duration}
        if op == "recover":
            self._tracker.stop()
            self.backend.recover()
            wd.recover()
            self._record(wd.state.value, wd.reason)
            return {"state": wd.state.value}
        if op == "config":
            cfg = asdict(self.config)
            return _plain(cfg)
        if op == "status":
            return self._state_message(arm, now).__dict__
        raise ValueError(f"unknown op {describe(op)} (arm, disarm, hold, home, recover, config, status)")

    # -- publishing --------------------------------------------------------------------------------------------

    def _publish_state(self, arm: ArmState, now: float) -> None:
        msg = self._state_message(arm, now)
        self._state_seq += 1
        data = msg.encode()
        if len(data) > MAX_STATE_BYTES:  # cannot happen with bounded error texts; never publish what clients refuse
            log.error("state message of %d bytes exceeds %d; dropping the error list", len(data), MAX_STATE_BYTES)
            msg.errors = ["error list dropped: state message too large"]
            data = msg.encode()
        try:
            self._state.send(data, zmq.NOBLOCK)
        except zmq.Again:
            pass

    def _state_message(self, arm: ArmState, now: float) -> StateMessage:
        pos, rot = self.kinematics.fk(arm.q)
        hb_age = self.watchdog.heartbeat_age(now)
        return StateMessage(
            seq=self._state_seq,
            t_ns=int(now * 1e9),
            robot_t_s=float(arm.robot_t_s),
            backend=self.backend.name,
            q=arm.q.tolist(),
            dq=arm.dq.tolist(),
            tau_J=np.asarray(arm.tau_J, dtype=np.float64).tolist(),
            ee_pos=pos.tolist(),
            ee_quat_xyzw=matrix_to_quat_xyzw(rot).tolist(),
            ee_droid=droid_pose(pos, rot).tolist(),
            gripper=float(arm.gripper),
            robot_mode=arm.robot_mode,
            watchdog=self.watchdog.state.value,
            session=None if self.watchdog.session is None else public_session_id(self.watchdog.session),
            errors=list(self.errors),
            last_cmd_seq=self._last_cmd_seq,
            last_rejected_seq=self._last_rejected_seq,
            last_cmd_age_ms=None if self._last_cmd_time is None else (now - self._last_cmd_time) * 1e3,
            hb_age_ms=None if hb_age is None else hb_age * 1e3,
            setpoint_q=None if self.setpoint_q is None else self.setpoint_q.tolist(),
        )

    def _camera_loop(self, sock: zmq.Socket) -> None:
        import cv2

        period = 1.0 / self.config.camera_hz
        params = [int(cv2.IMWRITE_JPEG_QUALITY), int(self.config.jpeg_quality)]
        seq = 0
        published: dict[str, int] = {}
        """Role -> seq of the last camera frame published, so a camera slower than camera_hz is not re-sent."""
        try:
            while not self._stop.wait(period):
                try:
                    images = self.backend.read_images()
                except Exception:  # a camera failure must never take the bridge down
                    log.exception("camera read failed")
                    images = {}
                if self.cameras is not None:
                    for role, frame in self.cameras.read().items():
                        images.pop(role, None)
                        if published.get(role) != frame.seq:
                            published[role] = frame.seq
                            images[role] = (frame.image, frame.capture_time)
                for role, (image, t_capture) in images.items():
                    ok, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), params)
                    if ok:
                        try:
                            sock.send(encode_frame(role, seq, int(t_capture * 1e9), jpeg.tobytes()), zmq.NOBLOCK)
                        except zmq.Again:
                            pass
                seq += 1
        finally:
            self.backend.close_cameras()
            if self.cameras is not None:
                self.cameras.close()


def _plain(value: Any) -> Any:
    """Config values as msgpack-friendly builtins."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
