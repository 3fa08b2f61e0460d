"""Joint and Cartesian limits of the Franka arms (frankaemika docs / libfranka tables) and the default per-step and
workspace bounds for DROID-convention actions. Every robot-facing component takes its limits from here."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class JointLimits:
    name: str
    q_min: np.ndarray
    q_max: np.ndarray
    dq_max: np.ndarray
    ddq_max: np.ndarray
    dddq_max: np.ndarray
    tau_max: np.ndarray

    def clip_positions(self, q: np.ndarray, margin: float = 0.0) -> np.ndarray:
        return np.clip(q, self.q_min + margin, self.q_max - margin)

    def within(self, q: np.ndarray, margin: float = 0.0) -> bool:
        q = np.asarray(q, dtype=np.float64)
        return bool(np.all(q >= self.q_min + margin - 1e-12) and np.all(q <= self.q_max - margin + 1e-12))


def _arr(values) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    arr.setflags(write=False)
    return arr


PANDA = JointLimits(
    name="panda",
    q_min=_arr([-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973]),
    q_max=_arr([2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973]),
    dq_max=_arr([2.1750, 2.1750, 2.1750, 2.1750, 2.6100, 2.6100, 2.6100]),
    ddq_max=_arr([15.0, 7.5, 10.0, 12.5, 15.0, 20.0, 20.0]),
    dddq_max=_arr([7500.0, 3750.0, 5000.0, 6250.0, 7500.0, 10000.0, 10000.0]),
    tau_max=_arr([87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0]),
)

# FR3 rectangular limits recommended for planners (franka_description fr3 joint_limits.yaml); the exact FR3 velocity
# limit depends on the position, these constant bounds stay inside it.
FR3 = JointLimits(
    name="fr3",
    q_min=_arr([-2.3093, -1.5133, -2.4937, -2.7478, -2.4800, 0.8521, -2.6895]),
    q_max=_arr([2.3093, 1.5133, 2.4937, -0.4461, 2.4800, 4.2094, 2.6895]),
    dq_max=_arr([2.0, 1.0, 1.5, 1.25, 3.0, 1.5, 3.0]),
    ddq_max=_arr([10.0] * 7),
    dddq_max=_arr([5000.0] * 7),
    tau_max=_arr([87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0]),
)

JOINT_LIMITS: dict[str, JointLimits] = {"panda": PANDA, "fr3": FR3}


@dataclass(frozen=True)
class ActionLimits:
    """Bounds on one DROID delta action and on where the end effector may go."""

    max_translation: float = 0.075
    """Largest |Δxyz| per action in metres (DROID: 0.075 m per 1/15 s step)."""
    max_rotation: float = 0.15
    """Largest rotation angle per action in radians."""
    workspace_min: np.ndarray = field(default_factory=lambda: _arr([0.1, -0.4, -0.05]))
    workspace_max: np.ndarray = field(default_factory=lambda: _arr([1.0, 0.4, 1.0]))
    """Base-frame box for the flange position (polymetis defaults)."""
    max_ee_speed: float = 0.25
    """m/s, for interpolated set-points."""
    max_ee_angular_speed: float = 1.0
    """rad/s, for interpolated set-points."""


DEFAULT_ACTION_LIMITS = ActionLimits()
