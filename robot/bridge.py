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
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np
import zmq

from vjepa_ac.robot.backends.base import ArmState, Backend
from vjepa_ac.robot.bridge_camera import CameraStreamer
from vjepa_ac.robot.bridge_link import MAX_DRAIN, BridgeSockets
from vjepa_ac.robot.bridge_tracking import JointTracker, PoseTracker
from vjepa_ac.robot.cameras import CameraRig
from vjepa_ac.robot.config import BridgeConfig
from vjepa_ac.robot.interpolation import SegmentRefused
from vjepa_ac.robot.kinematics import ArmKinematics
from vjepa_ac.robot.protocol import (
    MAX_STATE_BYTES,
    Command,
    MessageKind,
    StateMessage,
    describe,
    public_session_id,
    sanitize_text,
)
from vjepa_ac.robot.safety import CommandRejected, SafetyFilter, droid_pose, matrix_to_quat_xyzw
from vjepa_ac.robot.watchdog import ACCEPTS_COMMANDS, Watchdog, WatchdogError, WatchdogState

log = logging.getLogger(__name__)

FUTURE_TOLERANCE_S = 0.1
"""How far a message's send time may lie ahead of the sender clock estimate before it is refused as implausible."""
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


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
        self._tracker = (PoseTracker(self.safety, backend, self.kinematics) if config.control_mode == "cartesian"
                         else JointTracker(self.safety, backend))
        self._stop = threading.Event()
        self._link = BridgeSockets(config.link, context, clock, self._stop)
        self._cameras = CameraStreamer(backend, cameras, config.camera_hz, config.jpeg_quality, self._stop)
        self._run_thread: threading.Thread | None = None
        self.transitions: collections.deque[tuple[float, str, str]] = collections.deque(maxlen=512)
        """(bridge time, new watchdog state, reason) for every transition; for logs, tests and benchmarks."""
        self.errors: collections.deque[str] = collections.deque(maxlen=16)
        """Recent rejections and faults since the last arm, newest last (published in every state message)."""
        self.counters = collections.Counter()
        self._arm_state: ArmState | None = None
        self._last_seq = -1
        self._last_cmd_seq: int | None = None
        self._last_rejected_seq: int | None = None
        self._last_cmd_time: float | None = None
        self._session_sender: str | None = None
        """CurveZMQ key of the client that armed the session ("" without CurveZMQ)."""
        self._clock_offset_ns = 0
        self._offset_from_message = False
        """Estimated (bridge clock - sender clock) + the smallest latency seen in this session (set by `arm`)."""
        self._previous_offset_ns = 0
        self._state_seq = 0
        self._next_state = 0.0

    # -- lifecycle ---------------------------------------------------------------------------------------------

    @property
    def setpoint_q(self) -> np.ndarray | None:
        """Joint set-point last sent to the arm (joint mode only)."""
        return self._tracker.setpoint_q

    def start(self) -> None:
        link = self.config.link
        self._link.authenticate()
        self.backend.start()
        self._link.open()
        self._arm_state = self.backend.read_state()
        self._record(self.watchdog.state.value, "started")
        if self.config.camera_hz > 0:
            if self.cameras is not None:
                self.cameras.start()  # before the camera thread, so a missing device stops the start with its name
            self._cameras.start(self._link.open_camera())
        log.info("bridge up: backend %s, robot %s, %s mode on %s", self.backend.name, self.config.robot,
                 self.config.control_mode, link.host)

    def run(self) -> None:
        """Loop until `shutdown()`; wakes up on incoming messages and at least every tick."""
        period = 1.0 / self.config.tick_hz
        next_tick = self.clock()
        while not self._stop.is_set():
            wait = next_tick - self.clock()
            # Rounding the timeout up avoids spinning through the last fraction of a millisecond before a tick.
            if wait > 0 and not self._link.wait(math.ceil(wait * 1e3)) and self.clock() < next_tick:
                continue
            self._link.clear_wakeups()
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
        for thread in (self._run_thread, self._cameras.thread, self._link.receiver_thread):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=2.0)
        try:
            if self.watchdog.state in ACCEPTS_COMMANDS and self._arm_state is not None:
                self.backend.stop(self._arm_state.q)
        finally:
            self._link.close()
            self.backend.close()

    # -- one tick ----------------------------------------------------------------------------------------------

    def step(self) -> None:
        now = self.clock()
        newest = self._drain_commands(now)
        self._link.serve_rpc(lambda op, args, received, sender: self.rpc(op, args, received, sender=sender))
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

    def _drain_commands(self, now: float) -> Command | None:
        """Handle every received message; returns the newest valid motion command (older ones are superseded)."""
        newest: Command | None = None
        for _ in range(MAX_DRAIN):
            try:
                item = self._link.inbox.get_nowait()
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
        are judged.

        The `arm` request is read by the tick loop, possibly a tick or a slow backend call after it arrived, so its
        offset can be too large; the session's first message, stamped on arrival by the receiver thread, replaces it
        when smaller. A first message stamped in the future lowers the estimate, so later honest messages look older
        than they are and are refused as stale: the error, if any, is on the safe side."""
        offset = int(received * 1e9) - cmd.t_send_ns
        if not self._offset_from_message:
            self._offset_from_message = True
            self._clock_offset_ns = self._previous_offset_ns = min(self._clock_offset_ns, offset)
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
            self._offset_from_message = False
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
        self._link.publish_state(data)

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
