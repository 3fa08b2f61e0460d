"""The robot interface the planner talks to; the MuJoCo simulator and the Franka bridge client both implement it.

Conventions (DROID / V-JEPA 2-AC, stated in `data.conventions`):
* state: 7-D, flange xyz (m, base frame) + Euler "xyz" (rad) + gripper (0 = open .. 1 = closed).
* action: 7-D delta, Δxyz (m, base frame) + Euler "xyz" of the left-multiplied rotation delta + Δgripper. The target
  is `data.droid.poses.apply_actions(state, action)` (gripper clipped to [0, 1]).

Implementations validate every action (finite, 7-D), clamp it to their limits, and fail safe: on any doubt they
hold the current pose and say why in the returned `ActionResult`.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field

import numpy as np

from vjepa_ac.data.conventions import ACTION_DIM, STATE_DIM

NUM_JOINTS = 7


@dataclass(frozen=True)
class Observation:
    """One synchronous snapshot of the robot and its cameras."""

    images: dict[str, np.ndarray]
    """Camera role (e.g. "left", "wrist") -> RGB image [H, W, 3] uint8."""
    state: np.ndarray
    """DROID 7-D state (float64)."""
    joint_positions: np.ndarray
    """Arm joint angles [7] in rad (float64)."""
    gripper_position: float
    """0 = open .. 1 = closed."""
    timestamp: float
    """Seconds on the producer's monotonic clock when the state was read."""
    image_timestamps: dict[str, float] = field(default_factory=dict)
    """Camera role -> seconds on the same clock when that image was captured."""

    def __post_init__(self) -> None:
        state = np.asarray(self.state, dtype=np.float64)
        joints = np.asarray(self.joint_positions, dtype=np.float64)
        if state.shape != (STATE_DIM,):
            raise ValueError(f"state must have shape ({STATE_DIM},), got {state.shape}")
        if joints.shape != (NUM_JOINTS,):
            raise ValueError(f"joint_positions must have shape ({NUM_JOINTS},), got {joints.shape}")
        for role, image in self.images.items():
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"image {role!r} must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
        object.__setattr__(self, "state", state)
        object.__setattr__(self, "joint_positions", joints)


class ActionStatus(str, enum.Enum):
    ACCEPTED = "accepted"
    """Applied as sent."""
    CLAMPED = "clamped"
    """Applied after clamping to a limit (the reason says which)."""
    REJECTED = "rejected"
    """Not applied at all; the robot holds its pose."""


@dataclass(frozen=True)
class ActionResult:
    status: ActionStatus
    applied: np.ndarray | None
    """The action actually applied (after clamping), or None if rejected."""
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not ActionStatus.REJECTED


class Robot(abc.ABC):
    """A Franka arm, real or simulated, driven with DROID-convention delta actions."""

    camera_roles: tuple[str, ...] = ("left",)
    control_hz: float = 15.0

    @abc.abstractmethod
    def connect(self) -> None:
        """Open connections / load the scene. Idempotent."""

    @abc.abstractmethod
    def get_observation(self) -> Observation:
        """The latest camera frames and robot state."""

    @abc.abstractmethod
    def send_action(self, action: np.ndarray) -> ActionResult:
        """Move by one DROID delta action [7] and return once the step's command is issued (sim: executed)."""

    @abc.abstractmethod
    def hold(self) -> None:
        """Keep the current measured pose (zero velocity), staying ready for further actions."""

    @abc.abstractmethod
    def stop(self) -> None:
        """End motion; further actions are refused until `connect` is called again."""

    def close(self) -> None:
        """Release resources; the default stops the robot."""
        self.stop()

    def __enter__(self) -> "Robot":
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def validate_action(action: object) -> np.ndarray:
    """A float64 copy of `action` as a 7-vector, or ValueError naming what is wrong (shape, non-finite values)."""
    try:
        arr = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"action is not numeric: {exc}") from None
    if arr.shape != (ACTION_DIM,):
        raise ValueError(f"action must have shape ({ACTION_DIM},), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"action has non-finite values: {arr.tolist()}")
    return arr.copy()
