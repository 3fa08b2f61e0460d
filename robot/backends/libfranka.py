"""libfranka backend for the FR3 over libfranka's own wire protocol (real arm, or a server such as franka-sim).

* `pylibfranka` (official bindings, bundling libfranka; the default): a control thread runs libfranka's 1 kHz joint
  position loop (`Robot.start_joint_position_control(ControllerMode.JointImpedance)`, `readOnce` / `writeOnce`). The
  bridge streams its interpolated set-points at its tick rate (250 Hz); the thread follows them with a jerk-limited
  second-order filter integrated in robot time, so what libfranka receives is continuous in position, velocity and
  acceleration every cycle even when set-points arrive late or unevenly. libfranka's `AsyncPositionControlHandler`
  is not used: it writes targets that the robot-side generator has to plan towards, which simulators do not
  implement (franka-sim refuses a distant first target with `joint_position_motion_generator_start_pose_invalid`),
  and the bridge already does the planning and its safety checks.
* `franky` (`franky-control`, for robots whose system version needs an older libfranka): `robot.move(JointMotion(q),
  asynchronous=True)`; each set-point preempts the running motion with franky's online Ruckig re-plan.

Errors: a reflex (or any control exception) ends the control thread; the next `read_state` reports libfranka's
robot mode ("reflex") and its active error flags, which the bridge turns into FAULT. `recover` runs
`automatic_error_recovery`; arming again restarts the control loop. `stop` brings the commanded motion to rest
within the filter's limits and ends it with `motion_finished`.

Real-time: libfranka refuses to run without a PREEMPT_RT kernel unless `realtime_ignore` is set (simulators only, never
a real arm). The libraries are imported only when the backend starts; a missing one gives an install hint.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from vjepa_ac.robot.backends.base import ArmState, Backend, FrankaHandSettings

log = logging.getLogger(__name__)

_CYCLE_S = 0.001
"""libfranka's control cycle."""
_FR3_VELOCITY = np.array([2.0, 1.0, 1.5, 1.25, 3.0, 1.5, 3.0])
"""FR3 joint velocity bounds (rad/s) that hold in every configuration (robot.limits.FR3)."""


@dataclass(frozen=True)
class LibfrankaConfig(FrankaHandSettings):
    robot_ip: str = "172.16.0.2"
    library: str = "pylibfranka"
    """"pylibfranka" or "franky"."""
    realtime_ignore: bool = False
    """Skip libfranka's real-time kernel check (simulators only, never a real arm)."""
    filter_velocity: list[float] = field(default_factory=lambda: (0.6 * _FR3_VELOCITY).tolist())
    """rad/s the 1 kHz follower may command (the bridge's own set-points use half of the joint limits)."""
    filter_acceleration: float = 4.5
    """rad/s^2. The robot judges velocity, acceleration and jerk from differences of successive commands; on a host
    without a real-time kernel a command that lands one cycle off is differenced over half the time it covers, which
    doubles all three. Less than half of the FR3 limits (10 rad/s^2, 5000 rad/s^3) survives that."""
    filter_jerk: float = 2000.0
    """rad/s^3."""
    filter_stiffness: float = 25.0
    """1/s: position error -> velocity correction of the follower (critically damped with 4x this on velocity)."""
    control_priority: int | None = 80
    """SCHED_FIFO priority of the control thread (what libfranka itself sets when real-time is enforced); None keeps
    the default scheduling. Needs CAP_SYS_NICE (or root); without it the loop runs at normal priority and says so."""
    setpoint_horizon_s: float = 0.02
    """How far the follower extrapolates the newest set-point with its velocity; later it holds that position."""
    gripper: bool = True
    relative_dynamics_factor: float = 0.2
    """franky only: fraction of the robot's velocity / acceleration / jerk limits its motions may use."""

    def __post_init__(self) -> None:
        if self.library not in ("pylibfranka", "franky"):
            raise ValueError(f"library must be 'pylibfranka' or 'franky', got {self.library!r}")
        if len(self.filter_velocity) != 7:
            raise ValueError("filter_velocity needs 7 values")


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        package = {"pylibfranka": "pylibfranka", "franky": "franky-control"}[name]
        raise ImportError(
            f"the libfranka backend needs `pip install {package}` (or `pip install vjepa-ac[franka]`) matching your "
            f"robot's system version (see the libfranka / franky compatibility tables): {exc}"
        ) from exc


def robot_mode_name(mode: object) -> str:
    """libfranka RobotMode (enum like `RobotMode.kReflex` / `RobotMode.Reflex` or plain name) -> "reflex"."""
    name = str(getattr(mode, "name", mode)).rsplit(".", 1)[-1]
    if name.startswith("k") and name[1:2].isupper():
        name = name[1:]
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def active_errors(errors: object) -> tuple[str, ...]:
    """Names of the flags set in a libfranka `Errors` (attributes that are True)."""
    if errors is None:
        return ()
    names = [n for n in dir(errors) if not n.startswith("_") and isinstance(getattr(errors, n, None), bool)]
    return tuple(n for n in names if getattr(errors, n))


class JointFollower:
    """Jerk-limited second-order follower of a moving joint target, stepped once per control cycle.

    Velocity command v_ref = v_target + k (q_target - q), clipped to the velocity bounds; acceleration
    4 k (v_ref - v), clipped to the acceleration bound and changed by at most jerk * dt per cycle. Every output is
    therefore continuous in position and velocity with bounded acceleration and jerk, whatever the target does."""

    def __init__(self, q: np.ndarray, velocity: np.ndarray, acceleration: float, jerk: float, stiffness: float):
        self.q = np.asarray(q, dtype=np.float64).copy()
        self.v = np.zeros_like(self.q)
        self.a = np.zeros_like(self.q)
        self.velocity, self.acceleration, self.jerk, self.stiffness = velocity, acceleration, jerk, stiffness

    def step(self, q_target: np.ndarray, v_target: np.ndarray, dt: float) -> np.ndarray:
        v_ref = np.clip(v_target + self.stiffness * (q_target - self.q), -self.velocity, self.velocity)
        a_ref = np.clip(4.0 * self.stiffness * (v_ref - self.v), -self.acceleration, self.acceleration)
        self.a = np.clip(a_ref, self.a - self.jerk * dt, self.a + self.jerk * dt)
        # v first, then q: the law libfranka's robot side uses to extrapolate a missed cycle, so commands after a gap
        # difference consistently with what the robot filled in.
        self.v = np.clip(self.v + self.a * dt, -self.velocity, self.velocity)
        self.q = self.q + self.v * dt
        return self.q

    def coast(self, dt: float) -> None:
        """Advance one cycle with the acceleration frozen: how libfranka's robot side fills in a missed command."""
        self.v = self.v + self.a * dt
        self.q = self.q + self.v * dt

    @property
    def at_rest(self) -> bool:
        return bool(np.all(np.abs(self.v) < 1e-4) and np.all(np.abs(self.a) < 1e-2))


class _ControlLoop:
    """libfranka's 1 kHz joint position loop in a thread of its own, following the newest bridge set-point."""

    def __init__(self, robot, lib, config: LibfrankaConfig) -> None:
        self._robot, self._lib, self._config = robot, lib, config
        self._lock = threading.Lock()
        self._setpoint: tuple[np.ndarray, np.ndarray, float] | None = None
        self._finish = threading.Event()
        self.state = None
        """Newest libfranka RobotState read by the loop."""
        self.error: str | None = None
        """Why the loop ended, if it ended with an exception (e.g. a reflex)."""
        self.cycles = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="libfranka-control", daemon=True)

    def start(self, timeout_s: float = 5.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError("libfranka did not start joint position control")
        if self.state is None:
            raise RuntimeError(f"libfranka did not start joint position control: {self.error}")

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def command(self, q: np.ndarray, dq: np.ndarray) -> None:
        with self._lock:
            self._setpoint = (np.asarray(q, dtype=np.float64), np.asarray(dq, dtype=np.float64), time.monotonic())

    def finish(self, timeout_s: float = 2.0) -> None:
        """Bring the commanded motion to rest and end it (`motion_finished`); returns when the loop has ended."""
        self._finish.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def _target(self, follower: JointFollower) -> tuple[np.ndarray, np.ndarray]:
        if self._finish.is_set():
            return follower.q, np.zeros(7)
        with self._lock:
            setpoint = self._setpoint
        if setpoint is None:
            return follower.q, np.zeros(7)
        q, dq, t = setpoint
        age = time.monotonic() - t
        if age > self._config.setpoint_horizon_s:
            return q + dq * self._config.setpoint_horizon_s, np.zeros(7)
        return q + dq * age, dq

    def _raise_priority(self) -> None:
        priority = self._config.control_priority
        if priority is None or not hasattr(os, "sched_setscheduler"):
            return
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))  # 0: this thread
        except (PermissionError, OSError) as exc:
            log.warning("libfranka control thread keeps normal scheduling (%s); expect lost cycles under load", exc)

    def _run(self) -> None:
        cfg, lib = self._config, self._lib
        self._raise_priority()
        try:
            control = self._robot.start_joint_position_control(lib.ControllerMode.JointImpedance)
            state, period = control.readOnce()
        except Exception as exc:  # noqa: BLE001 (reported to the caller of start)
            self.error = str(exc)
            self._ready.set()
            return
        self.state = state
        follower = JointFollower(np.asarray(state.q_d, dtype=np.float64), np.asarray(cfg.filter_velocity),
                                 cfg.filter_acceleration, cfg.filter_jerk, cfg.filter_stiffness)
        self._ready.set()
        try:
            while True:
                # Cycles missed since the last command were filled in by the robot at frozen acceleration; follow the
                # same law through them, so this command continues the robot's own extrapolation smoothly.
                for _ in range(max(1, round(period.to_sec() / _CYCLE_S)) - 1):
                    follower.coast(_CYCLE_S)
                q_target, v_target = self._target(follower)
                command = lib.JointPositions(follower.step(q_target, v_target, _CYCLE_S).tolist())
                done = self._finish.is_set() and follower.at_rest
                command.motion_finished = done
                control.writeOnce(command)
                self.cycles += 1
                if done:
                    break
                state, period = control.readOnce()
                self.state = state
        except Exception as exc:  # noqa: BLE001 (a reflex or a lost connection ends the loop; read_state reports it)
            self.error = str(exc)
            log.warning("libfranka control loop ended: %s", exc)


class LibfrankaBackend(Backend):
    name = "libfranka"

    def __init__(self, config: LibfrankaConfig | None = None) -> None:
        self.config = config or LibfrankaConfig()
        self._robot = None
        self._loop: _ControlLoop | None = None
        self._gripper = None
        self._gripper_max_width = self.config.gripper_max_width
        self._gripper_width = self.config.gripper_max_width
        self._gripper_thread: threading.Thread | None = None
        self._last_gripper: float | None = None
        self._fault: str | None = None

    def start(self) -> None:
        cfg = self.config
        lib = self._lib = _import(cfg.library)
        if cfg.library == "pylibfranka":
            realtime = lib.RealtimeConfig.kIgnore if cfg.realtime_ignore else lib.RealtimeConfig.kEnforce
            self._robot = lib.Robot(cfg.robot_ip, realtime)
            # The control thread must get the interpreter every cycle; the default 5 ms switch interval would let a
            # busy bridge tick hold it for several libfranka cycles.
            sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        else:
            self._robot = lib.Robot(cfg.robot_ip)
            self._robot.relative_dynamics_factor = cfg.relative_dynamics_factor
        if cfg.gripper:
            self._gripper = lib.Gripper(cfg.robot_ip)
            state = self._gripper.read_once()
            self._gripper_max_width = float(getattr(state, "max_width", 0.0)) or self._gripper_max_width
            self._gripper_width = float(state.width)

    def activate(self) -> None:
        """Start libfranka's control loop (at arming); a running loop is kept."""
        if self.config.library != "pylibfranka" or (self._loop is not None and self._loop.running):
            return
        self._loop = _ControlLoop(self._robot, self._lib, self.config)
        self._loop.start()

    def read_state(self) -> ArmState:
        if self.config.library == "pylibfranka":
            loop = self._loop
            if loop is not None and loop.running and loop.state is not None:
                state = loop.state
            else:
                # No motion running (or it just ended): libfranka allows reading the state directly.
                state = self._robot.read_once()
            return ArmState(
                q=np.asarray(state.q, dtype=np.float64),
                dq=np.asarray(state.dq, dtype=np.float64),
                gripper=self._gripper_closure(),
                robot_t_s=float(getattr(state.time, "to_sec", lambda: state.time)()),
                tau_J=np.asarray(state.tau_J, dtype=np.float64),
                robot_mode=robot_mode_name(state.robot_mode),
                errors=active_errors(state.current_errors),
            )
        joint_state = self._robot.current_joint_state
        state = self._robot.state
        return ArmState(
            q=np.asarray(joint_state.position, dtype=np.float64),
            dq=np.asarray(joint_state.velocity, dtype=np.float64),
            gripper=self._gripper_closure(),
            robot_t_s=float(getattr(state, "time", 0.0) or 0.0),
            tau_J=np.asarray(getattr(state, "tau_J", np.zeros(7)), dtype=np.float64),
            robot_mode=robot_mode_name(getattr(state, "robot_mode", "move")),
            errors=active_errors(getattr(state, "current_errors", None)),
        )

    def _gripper_closure(self) -> float:
        return self.config.gripper_closure(self._gripper_width, self._gripper_max_width)

    def command_joints(self, q: np.ndarray, dq: np.ndarray) -> None:
        if self.config.library == "pylibfranka":
            loop = self._loop
            if loop is None or not loop.running:
                # Not armed, or the motion ended (a reflex: the next read_state reports it): nothing reaches the arm.
                return
            loop.command(q, dq)
        else:
            self._robot.move(self._lib.JointMotion([float(v) for v in q]), asynchronous=True)

    def set_gripper(self, position: float) -> None:
        """Gripper moves block for about a second, so each runs in its own thread; a busy gripper skips targets."""
        cfg = self.config
        position = float(np.clip(position, 0.0, 1.0))
        if self._gripper is None or (self._gripper_thread is not None and self._gripper_thread.is_alive()):
            return
        if not cfg.resend_gripper(position, self._last_gripper):
            return
        self._last_gripper = position
        width = cfg.gripper_width(position, self._gripper_max_width)

        def run() -> None:
            try:
                if cfg.grasps(position):
                    self._gripper.grasp(width, cfg.gripper_speed, cfg.grasp_force, self._gripper_max_width,
                                        self._gripper_max_width)
                else:
                    self._gripper.move(width, cfg.gripper_speed)
            except Exception as exc:  # noqa: BLE001 (a failed gripper move is reported, not fatal to the arm)
                log.warning("gripper command failed: %s", exc)
            self._gripper_width = float(self._gripper.read_once().width)

        self._gripper_thread = threading.Thread(target=run, name="franka-gripper", daemon=True)
        self._gripper_thread.start()

    def stop(self, q_hold: np.ndarray) -> None:
        if self.config.library == "pylibfranka":
            if self._loop is not None:
                self._loop.finish()
                self._loop = None
        else:
            self._robot.stop()

    def recover(self) -> None:
        if self.config.library == "pylibfranka":
            if self._loop is not None:
                self._loop.finish(timeout_s=0.5)
                self._loop = None
            self._robot.automatic_error_recovery()
        else:
            self._robot.recover_from_errors()

    def close(self) -> None:
        if self._robot is not None:
            self.stop(np.zeros(7))
