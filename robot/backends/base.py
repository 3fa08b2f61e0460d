"""What the bridge needs from an arm: read its state, stream joint (or Cartesian) set-points, move the gripper,
hold, stop and recover. One implementation per way of reaching a Franka (MuJoCo, ROS 1, ROS 2, libfranka)."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

FAULT_MODES = frozenset({"reflex", "user_stopped"})
"""libfranka `RobotMode` values (lower case) that mean the arm refuses motion until recovered."""


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
