"""What the bridge needs from an arm: read its state, stream joint (or Cartesian) set-points, move the gripper,
hold, stop and recover. One implementation per way of reaching a Franka (MuJoCo, ROS 1, ROS 2, libfranka)."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

FAULT_MODES = frozenset({"reflex", "user_stopped"})
"""libfranka `RobotMode` values (lower case) that mean the arm refuses motion until recovered."""


@dataclass(frozen=True)
class FrankaHandSettings:
    """Franka Hand settings shared by the real arms' backend configs (ROS 1, ROS 2, libfranka), and the one conversion
    between the bridge's gripper closure (0 = open .. 1 = closed) and the hand's finger width."""

    gripper_max_width: float = 0.08
    """Franka Hand opening at gripper = 0 (m); libfranka reads the hand's own value when it connects."""
    gripper_speed: float = 0.1
    """m/s of gripper moves and grasps."""
    grasp_force: float = 20.0
    """Newtons used when closing (gripper target >= `grasp_threshold`)."""
    grasp_threshold: float = 0.95
    """Gripper targets at or above this closure grasp (force-controlled); below it the fingers move to a width."""
    gripper_deadband: float = 0.02
    """Gripper targets closer than this to the last one are not re-sent (a gripper action takes ~0.5 s)."""

    def gripper_width(self, closure: float, max_width: float | None = None) -> float:
        """Finger width (m) of a closure 0..1 (clipped)."""
        return (max_width or self.gripper_max_width) * (1.0 - float(np.clip(closure, 0.0, 1.0)))

    def gripper_closure(self, width: float, max_width: float | None = None) -> float:
        """Closure 0..1 of a measured finger width (m)."""
        return float(np.clip(1.0 - width / (max_width or self.gripper_max_width), 0.0, 1.0))

    def grasps(self, closure: float) -> bool:
        """Whether a target closure is a force-controlled grasp rather than a move to a width."""
        return float(np.clip(closure, 0.0, 1.0)) >= self.grasp_threshold

    def resend_gripper(self, closure: float, last: float | None) -> bool:
        """Whether a gripper target differs enough from the last one sent (None: nothing sent yet)."""
        return last is None or abs(closure - last) >= self.gripper_deadband


@dataclass(frozen=True)
class ArmState:
    """One reading of the arm, in the backend's own time base."""

    q: np.ndarray
    dq: np.ndarray
    gripper: float
    """0 = open .. 1 = closed."""
    robot_t_s: float
    """Robot or ROS stamp of the reading, seconds."""
    tau_J: np.ndarray = field(default_factory=lambda: np.zeros(7))
    robot_mode: str = "move"
    """libfranka `RobotMode` in lower case: "idle", "move", "guiding", "reflex", "user_stopped", ..."""
    errors: tuple[str, ...] = ()
    """Active robot error flags (e.g. "joint_position_limits_violation")."""

    @property
    def fault(self) -> bool:
        return self.robot_mode in FAULT_MODES or bool(self.errors)


class Backend(abc.ABC):
    name: str = "backend"
    supports_cartesian: bool = False
    """True if `command_pose` streams equilibrium poses (Cartesian impedance)."""

    def start(self) -> None:
        """Connect to the arm; called once by the bridge before its loop."""

    def activate(self) -> None:
        """Get ready to take set-points again (called when the bridge is armed, e.g. after a stop)."""

    @abc.abstractmethod
    def read_state(self) -> ArmState:
        """The newest state; must not block for longer than a bridge tick."""

    @abc.abstractmethod
    def command_joints(self, q: np.ndarray, dq: np.ndarray) -> None:
        """Stream one joint position set-point (with its velocity feed-forward) that already passed the safety gate."""

    def command_pose(self, pos: np.ndarray, quat_xyzw: np.ndarray) -> None:
        """Stream one flange equilibrium pose (base frame)."""
        raise NotImplementedError(f"the {self.name} backend has no Cartesian mode")

    @abc.abstractmethod
    def set_gripper(self, position: float) -> None:
        """Move the gripper to `position` (0 = open .. 1 = closed) without blocking."""

    @abc.abstractmethod
    def stop(self, q_hold: np.ndarray) -> None:
        """End the motion after holding `q_hold` (the measured pose); no set-points follow until re-arming."""

    def recover(self) -> None:
        """Clear a reflex / user stop (franka_ros error_recovery, libfranka automatic_error_recovery)."""

    def read_images(self) -> dict[str, tuple[np.ndarray, float]]:
        """Camera role -> (RGB uint8 [H, W, 3], capture time on the bridge's monotonic clock); none by default."""
        return {}

    def close_cameras(self) -> None:
        """Release camera resources; called by the thread that called `read_images` (GL contexts are per thread)."""

    def close(self) -> None:
        """Release connections and threads."""
