"""The robot-side bridge: ZMQ link + watchdog + safety filter + interpolator in front of one arm backend.

Sockets (all bound by the bridge, CURVE servers when keys are configured):
  cmd    PULL   workstation commands, heartbeats and stops; drained completely every tick
  state  PUB    one `StateMessage` per state tick
  rpc    ROUTER arm / disarm / hold / home / recover / config / status
  camera PUB    JPEG frames, published by their own thread so that encoding never delays commands

Every tick the bridge drains the command socket, keeps the newest valid command (session, strictly increasing seq,
ttl by the estimated sender clock), lets the watchdog apply its timeouts, resolves the command through the safety
filter (IK to joint targets in joint mode), and streams the interpolated set-point after a last limit check.
"""

from __future__ import annotations

import collections
import logging
import math
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
from robot.interpolation import MotionLimits, SetpointInterpolator
from robot.keys import make_curve_server, start_authenticator
from robot.kinematics import ArmKinematics
from robot.protocol import (
    Command,
    MessageKind,
    ProtocolError,
    StateMessage,
    decode_command,
    decode_request,
    encode_frame,
    encode_reply,
)
from robot.safety import (
    CommandRejected,
    SafeTarget,
    SafetyFilter,
    droid_pose,
    matrix_to_quat_xyzw,
)
from robot.watchdog import ACCEPTS_COMMANDS, Watchdog, WatchdogError, WatchdogState

log = logging.getLogger(__name__)

_MAX_DRAIN = 1000
"""Upper bound on messages handled per tick, so a flood cannot starve the set-point stream."""
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_CARTESIAN_LIMITS = MotionLimits(
    velocity=np.array([0.25] * 3 + [1.0] * 3),
    acceleration=np.array([2.5] * 3 + [5.0] * 3),
    jerk=np.array([100.0] * 3 + [200.0] * 3),
)
"""Flange set-point limits in Cartesian mode (m, rad per s, s^2, s^3): well inside Franka's Cartesian limits."""


class _JointTracker:
    """Joint-space set-points: IK happened in the safety filter, the interpolator runs on the 7 joints."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.interp = SetpointInterpolator(np.zeros(7), bridge.safety.config.motion_limits())
        self.target_q: np.ndarray | None = None
        """Joint target of the newest accepted command."""

        self._previous: tuple[np.ndarray, float] | None = None
        """Velocity and time of the last set-point sent, for the acceleration check."""

    def reset(self, arm: ArmState, now: float) -> None:
        self.interp.reset(arm.q, now)
        self._previous = None  # a reset starts from the measured pose at rest, not from the last set-point

    def retarget(self, target: SafeTarget, now: float) -> float:
        self.target_q = target.q
        return self.interp.retarget(target.q, now, target.min_duration)

    def hold(self, arm: ArmState, now: float) -> None:
        self.interp.retarget(arm.q, now)

    def emit(self, now: float) -> bool:
        q, dq = self.interp.sample(now)
        dt = 0.0 if self._previous is None else now - self._previous[1]
        if not self.bridge.safety.setpoint_ok(q, dq, self._previous, dt):
            return False
        self.bridge.backend.command_joints(q, dq)
        self.bridge.setpoint_q = q
        self._previous = (dq, now)
        return True


class _PoseTracker:
    """Cartesian-impedance set-points: the flange pose is interpolated as xyz + rotation vector about an anchor."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.interp = SetpointInterpolator(np.zeros(6), _CARTESIAN_LIMITS)
        self.target_q: np.ndarray | None = None
        self.anchor = np.eye(3)

    def _coords(self, pos: np.ndarray, rot: np.ndarray) -> np.ndarray:
        return np.concatenate([pos, Rotation.from_matrix(rot @ self.anchor.T).as_rotvec()])

    def reset(self, arm: ArmState, now: float) -> None:
        pos, rot = self.bridge.kinematics.fk(arm.q)
        self.anchor = rot
        self.interp.reset(self._coords(pos, rot), now)

    def retarget(self, target: SafeTarget, now: float) -> float:
        self.target_q = target.q
        return self.interp.retarget(self._coords(target.ee_pos, target.ee_rot), now, target.min_duration)

    def hold(self, arm: ArmState, now: float) -> None:
        pos, rot = self.bridge.kinematics.fk(arm.q)
        self.interp.retarget(self._coords(pos, rot), now)

    def emit(self, now: float) -> bool:
        x, _ = self.interp.sample(now)
        limits = self.bridge.safety.config.action_limits
        if not (np.all(np.isfinite(x)) and np.all(x[:3] >= limits.workspace_min) and np.all(x[:3] <= limits.workspace_max)):
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
        self._clock_offset_ns: int | None = None
        self._state_seq = 0
        self._next_state = 0.0

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def _bind(self, kind: int, port: int) -> zmq.Socket:
        sock = self._context.socket(kind)
        sock.linger = 0
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
        self._cmd = self._bind(zmq.PULL, link.cmd_port)
        self._cmd.rcvhwm = 100
        self._state = self._bind(zmq.PUB, link.state_port)
        self._state.sndhwm = 10
        self._rpc = self._bind(zmq.ROUTER, link.rpc_port)
        self._poller = zmq.Poller()
        self._poller.register(self._cmd, zmq.POLLIN)
        self._poller.register(self._rpc, zmq.POLLIN)
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
        self.watchdog.fault(f"bridge error: {type(exc).__name__}: {exc}")
        self._record(WatchdogState.FAULT.value, self.watchdog.reason)
        self._error(self.watchdog.reason)
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
        for thread in (self._run_thread, self._camera_thread):
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
            self.watchdog.fault(f"robot {arm.robot_mode}: {', '.join(arm.errors) or 'no error flags'}")
            self._record(WatchdogState.FAULT.value, self.watchdog.reason)
        transition = self.watchdog.tick(now)
        if transition is not None:
            self._on_transition(transition, arm, now)
        if newest is not None and self.watchdog.state in ACCEPTS_COMMANDS:
            self._apply(newest, arm, now)
        if self.watchdog.state in ACCEPTS_COMMANDS:
            if not self._tracker.emit(now):
                self._error("set-point outside the limits; holding the measured pose")
                self._tracker.reset(arm, now)
                if self.watchdog.state is not WatchdogState.HOLD:
                    self.watchdog.hold("set-point outside the limits")
                    self._record(self.watchdog.state.value, self.watchdog.reason)
            self.counters["setpoints"] += 1
        if now >= self._next_state:
            # Scheduled, not "now + period": publishing on the tick grid must not round the rate down.
            period = 1.0 / self.config.state_hz
            self._next_state = self._next_state + period if now - self._next_state < period else now + period
            self._publish_state(arm, now)

    def _record(self, state: str, reason: str) -> None:
        self.transitions.append((self.clock(), state, reason))
        log.info("watchdog -> %s (%s)", state, reason)

    def _error(self, text: str, seq: int | None = None) -> None:
        self.errors.append(text if seq is None else f"seq {seq}: {text}")
        self.counters["rejected"] += 1
        if seq is not None:
            self._last_rejected_seq = seq

    def _on_transition(self, state: WatchdogState, arm: ArmState, now: float) -> None:
        self._record(state.value, self.watchdog.reason)
        if state is WatchdogState.HOLD:
            self._tracker.hold(arm, now)
        elif state is WatchdogState.STOPPED:
            self.backend.stop(arm.q)

    def _drain_commands(self, now: float) -> Command | None:
        """Handle every pending message; returns the newest valid motion command (older ones are superseded)."""
        newest: Command | None = None
        for _ in range(_MAX_DRAIN):
            try:
                data = self._cmd.recv(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                break
            self.counters["messages"] += 1
            try:
                cmd = decode_command(data)
            except ProtocolError as exc:
                self._error(f"malformed message: {exc}")
                continue
            if cmd.session != self.watchdog.session or self.watchdog.state not in ACCEPTS_COMMANDS:
                # Not `last_rejected_seq`: that field speaks about the armed session's own seqs.
                self._error(f"seq {cmd.seq} of session {cmd.session[:12]!r}: not armed (watchdog {self.watchdog.state.value})")
                continue
            if cmd.seq <= self._last_seq:
                self._error(f"seq {cmd.seq} is not greater than the last seq {self._last_seq}", cmd.seq)
                continue
            self._last_seq = cmd.seq
            now_ns = int(now * 1e9)
            # The smallest (receive - send) seen is the best estimate of the clock offset plus the minimal latency.
            offset = now_ns - cmd.t_send_ns
            if self._clock_offset_ns is None or offset < self._clock_offset_ns:
                self._clock_offset_ns = offset
            self.watchdog.heartbeat(cmd.session, now)
            if cmd.kind is MessageKind.STOP:
                newest = None
                if self._arm_state is not None:
                    self.watchdog.stop("stop requested by the client")
                    self._on_transition(WatchdogState.STOPPED, self._arm_state, now)
                break
            if cmd.kind is MessageKind.CMD:
                age_ms = (offset - self._clock_offset_ns) / 1e6
                if age_ms > cmd.ttl_ms:
                    self._error(f"stale: {age_ms:.0f} ms old, ttl {cmd.ttl_ms} ms", cmd.seq)
                    continue
                if newest is not None:
                    self.counters["superseded"] += 1
                newest = cmd
        return newest

    def _apply(self, cmd: Command, arm: ArmState, now: float) -> None:
        try:
            reference = self._tracker.target_q if self.watchdog.state is WatchdogState.TRACKING else None
            target = self.safety.resolve(cmd, arm.q, reference)
        except CommandRejected as exc:
            self._error(f"rejected: {exc}", cmd.seq)
            return
        duration = self._tracker.retarget(target, now)
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
                frames = self._rpc.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 2:
                continue
            identity, payload = frames
            try:
                request_id, op, args = decode_request(payload)
            except ProtocolError as exc:
                self._rpc.send_multipart([identity, encode_reply(0, ok=False, error=str(exc))])
                continue
            try:
                result = self.rpc(op, args, now)
                reply = encode_reply(request_id, ok=True, result=result)
            except Exception as exc:  # noqa: BLE001 (every request gets an answer, also when the backend fails)
                reply = encode_reply(request_id, ok=False, error=f"{op}: {exc}")
            self._rpc.send_multipart([identity, reply])

    def rpc(self, op: str, args: dict[str, Any], now: float | None = None) -> Any:
        """Carry out one control request (what the ROUTER socket receives); raises on refusal."""
        now = self.clock() if now is None else now
        arm = self._arm_state = self.backend.read_state()
        wd = self.watchdog
        if op == "arm":
            session = args.get("session")
            if not isinstance(session, str) or not 0 < len(session) <= 64:
                raise ValueError("arm needs a session string (1-64 characters)")
            if arm.fault:
                raise WatchdogError(f"robot is in {arm.robot_mode}; call recover first")
            wd.arm(session, now)
            self.backend.activate()
            self._last_seq = -1
            self._last_cmd_seq = self._last_rejected_seq = self._last_cmd_time = None
            self.errors.clear()
            t_send = args.get("t_send_ns")
            self._clock_offset_ns = int(now * 1e9) - int(t_send) if isinstance(t_send, int) else None
            self._tracker.reset(arm, now)
            self._record(wd.state.value, f"armed session {session[:12]}")
            return {"state": wd.state.value}
        if op == "disarm":
            if wd.state in ACCEPTS_COMMANDS:
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
            q_home = np.asarray(args.get("q", self.config.home_q), dtype=np.float64)
            if q_home.shape != (7,) or not self.config.safety.joint_limits.within(q_home, self.config.safety.joint_margin):
                raise ValueError(f"home pose {q_home.tolist()} is outside the joint limits")
            pos, rot = self.kinematics.fk(q_home)
            duration = self._tracker.retarget(SafeTarget(q_home, pos, rot, None, 0.0), now)
            wd.command_accepted(now, duration + 1.0)
            self._record(wd.state.value, "homing")
            return {"duration_s": duration}
        if op == "recover":
            self.backend.recover()
            wd.recover()
            self._record(wd.state.value, wd.reason)
            return {"state": wd.state.value}
        if op == "config":
            cfg = asdict(self.config)
            return _plain(cfg)
        if op == "status":
            return self._state_message(arm, now).__dict__
        raise ValueError(f"unknown op {op!r} (arm, disarm, hold, home, recover, config, status)")

    # -- publishing --------------------------------------------------------------------------------------------

    def _publish_state(self, arm: ArmState, now: float) -> None:
        msg = self._state_message(arm, now)
        self._state_seq += 1
        try:
            self._state.send(msg.encode(), zmq.NOBLOCK)
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
            session=self.watchdog.session,
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
