"""libfranka backend for the FR3 (and, through franky wheels built on libfranka 0.9, the Panda).

* `pylibfranka` (official): `AsyncPositionControlHandler` runs libfranka's joint-impedance motion generator on the
  robot side; the bridge's interpolated joint set-points become its position targets (the handler keeps its own
  velocity limits, so its targets may come at any rate). State from `Robot.read_once()`.
* `franky`: `robot.move(JointMotion(q), asynchronous=True)`; each new motion preempts the running one with an
  online jerk-limited (Ruckig) re-plan.

Both need a PREEMPT_RT host wired to the arm; neither installs on this project's CI machines, so the modules are
imported only when the backend starts and a missing one gives an install hint.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass, field

import numpy as np

from robot.backends.base import ArmState, Backend


@dataclass(frozen=True)
class LibfrankaConfig:
    robot_ip: str = "172.16.0.2"
    library: str = "pylibfranka"
    """"pylibfranka" or "franky"."""
    maximum_joint_velocities: list[float] = field(default_factory=lambda: [0.655] * 4 + [1.315] * 3)
    """rad/s for the async handler (libfranka's example defaults)."""
    goal_tolerance: float = 0.01
    realtime_ignore: bool = False
    """Skip libfranka's realtime kernel check (simulators only, never a real arm)."""
    gripper: bool = True
    gripper_max_width: float = 0.08
    gripper_speed: float = 0.1
    grasp_force: float = 20.0
    grasp_threshold: float = 0.95
    relative_dynamics_factor: float = 0.2
    """franky only: fraction of the robot's velocity / acceleration / jerk limits its motions may use."""

    def __post_init__(self) -> None:
        if self.library not in ("pylibfranka", "franky"):
            raise ValueError(f"library must be 'pylibfranka' or 'franky', got {self.library!r}")
        if len(self.maximum_joint_velocities) != 7:
            raise ValueError("maximum_joint_velocities needs 7 values")


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        package = {"pylibfranka": "pylibfranka", "franky": "franky-control"}[name]
        raise ImportError(
            f"the libfranka backend needs `pip install {package}` matching your robot's system version "
            f"(see the libfranka / franky compatibility tables) on a PREEMPT_RT host: {exc}"
        ) from exc


def robot_mode_name(mode: object) -> str:
    """libfranka RobotMode (enum like `RobotMode.kReflex` or plain name) -> "reflex"."""
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


class LibfrankaBackend(Backend):
    name = "libfranka"

    def __init__(self, config: LibfrankaConfig | None = None) -> None:
        self.config = config or LibfrankaConfig()
        self._handler = None
        self._gripper = None
        self._gripper_width = self.config.gripper_max_width
        self._gripper_thread: threading.Thread | None = None
        self._last_gripper: float | None = None

    def start(self) -> None:
        cfg = self.config
        lib = self._lib = _import(cfg.library)
        if cfg.library == "pylibfranka":
            realtime = lib.RealtimeConfig.kIgnore if cfg.realtime_ignore else lib.RealtimeConfig.kEnforce
            self._robot = lib.Robot(cfg.robot_ip, realtime)
            self._configure_handler()
            if cfg.gripper:
                self._gripper = lib.Gripper(cfg.robot_ip)
        else:
            self._robot = lib.Robot(cfg.robot_ip)
            self._robot.relative_dynamics_factor = cfg.relative_dynamics_factor
            if cfg.gripper:
                self._gripper = lib.Gripper(cfg.robot_ip)

    def activate(self) -> None:
        if self.config.library == "pylibfranka" and self._handler is None:
            self._configure_handler()

    def _configure_handler(self) -> None:
        handler_cls = self._lib.AsyncPositionControlHandler
        configuration = handler_cls.Configuration(
            maximum_joint_velocities=list(self.config.maximum_joint_velocities), goal_tolerance=self.config.goal_tolerance
        )
        result = handler_cls.configure(self._robot, configuration)
        if result.error_message:
            raise RuntimeError(f"libfranka async position control did not start: {result.error_message}")
        self._handler = result.handler

    def read_state(self) -> ArmState:
        if self.config.library == "pylibfranka":
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
        return float(np.clip(1.0 - self._gripper_width / self.config.gripper_max_width, 0.0, 1.0))

    def command_joints(self, q: np.ndarray, dq: np.ndarray) -> None:
        target = [float(v) for v in q]
        if self.config.library == "pylibfranka":
            if self._handler is None:
                return
            result = self._handler.set_joint_position_target(
                self._lib.AsyncPositionControlHandler.JointPositionTarget(joint_positions=target)
            )
            if result.error_message:
                raise RuntimeError(f"libfranka refused the joint target: {result.error_message}")
        else:
            self._robot.move(self._lib.JointMotion(target), asynchronous=True)

    def set_gripper(self, position: float) -> None:
        """Gripper moves block for about a second, so each runs in its own thread; a busy gripper skips targets."""
        cfg = self.config
        position = float(np.clip(position, 0.0, 1.0))
        if self._gripper is None or (self._gripper_thread is not None and self._gripper_thread.is_alive()):
            return
        if self._last_gripper is not None and abs(position - self._last_gripper) < 0.02:
            return
        self._last_gripper = position
        width = cfg.gripper_max_width * (1.0 - position)

        def run() -> None:
            if position >= cfg.grasp_threshold:
                self._gripper.grasp(width, cfg.gripper_speed, cfg.grasp_force, cfg.gripper_max_width, cfg.gripper_max_width)
            else:
                self._gripper.move(width, cfg.gripper_speed)
            self._gripper_width = float(self._gripper.read_once().width)

        self._gripper_thread = threading.Thread(target=run, name="franka-gripper", daemon=True)
        self._gripper_thread.start()

    def stop(self, q_hold: np.ndarray) -> None:
        if self.config.library == "pylibfranka":
            if self._handler is not None:
                self._handler.stop_control()
                self._handler = None
        else:
            self._robot.stop()

    def recover(self) -> None:
        if self.config.library == "pylibfranka":
            self._robot.automatic_error_recovery()
            if self._handler is None:
                self._configure_handler()
        else:
            self._robot.recover_from_errors()

    def close(self) -> None:
        if getattr(self, "_robot", None) is not None:
            self.stop(np.zeros(7))
