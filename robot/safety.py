"""The safety filter every command passes before any backend sees it, and the last gate on every set-point.

A command is accepted whole or rejected whole (`CommandRejected` names the violated limit): finite values, per-step
translation / rotation relative to the measured flange pose, the workspace box, gripper in [0, 1], an IK solution
within tolerance, joint position limits (with a margin) and a bound on how far the joints may move for one command
(which catches IK branch flips). The interpolator then enforces joint position / velocity / acceleration / jerk limits
on every segment, `check_path` keeps the flange of a planned segment inside the workspace box, and `setpoint_ok`
re-checks every set-point so that nothing outside the limits is ever sent to the arm. Every motion source (commands,
`home`, holds and recoveries) passes the same checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from scipy.spatial.transform import Rotation

from vjepa_ac.data.conventions import euler_xyz_to_matrix, matrix_to_euler_xyz
from vjepa_ac.robot.interpolation import MotionLimits
from vjepa_ac.robot.kinematics import DROID_HOME_Q
from vjepa_ac.robot.limits import DEFAULT_ACTION_LIMITS, PANDA, ActionLimits, JointLimits
from vjepa_ac.robot.protocol import Command, CommandMode


class Kinematics(Protocol):
    """The part of `robot.kinematics.ArmKinematics` the filter needs."""

    def fk(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def ik(self, target_pos, target_rot, q_init, *, limits=..., rest_q=None): ...


class CommandRejected(ValueError):
    """A command that violates a limit; nothing of it is applied."""


@dataclass(frozen=True)
class SafetyConfig:
    joint_limits: JointLimits = PANDA
    action_limits: ActionLimits = DEFAULT_ACTION_LIMITS
    joint_margin: float = 0.02
    """rad kept clear of every hard joint limit."""
    velocity_fraction: float = 0.5
    """Fraction of the joint velocity limits the interpolator may use."""
    acceleration_fraction: float = 0.5
    jerk_fraction: float = 0.1
    ik_position_tolerance: float = 0.003
    """m; an IK result further than this from the target is a rejection, not an approximation."""
    ik_rotation_tolerance: float = 0.02
    max_joint_step: float = 0.6
    """rad any joint may move for one command."""
    rest_q: np.ndarray | None = field(default=None)
    """Null-space rest pose for IK; None uses DROID's home pose."""

    def motion_limits(self) -> MotionLimits:
        """Joint-space segment limits: the configured fractions of the rate limits, positions inside half the margin
        (the bound `setpoint_ok` applies)."""
        lim = self.joint_limits
        return MotionLimits(
            lim.dq_max * self.velocity_fraction,
            lim.ddq_max * self.acceleration_fraction,
            lim.dddq_max * self.jerk_fraction,
            lower=lim.q_min + self.joint_margin / 2,
            upper=lim.q_max - self.joint_margin / 2,
        )


@dataclass(frozen=True)
class SafeTarget:
    """An accepted command, resolved to joints and a flange pose."""

    q: np.ndarray
    ee_pos: np.ndarray
    ee_rot: np.ndarray
    gripper: float | None
    min_duration: float
    """Shortest time to reach the target at the configured Cartesian speed caps."""


def rotation_angle(rot: np.ndarray) -> float:
    """Angle in rad of a rotation matrix."""
    return float(np.arccos(np.clip((np.trace(rot) - 1.0) / 2.0, -1.0, 1.0)))


def quat_xyzw_to_matrix(quat: np.ndarray) -> np.ndarray:
    return Rotation.from_quat(np.asarray(quat, dtype=np.float64)).as_matrix()


def matrix_to_quat_xyzw(rot: np.ndarray) -> np.ndarray:
    return Rotation.from_matrix(np.asarray(rot, dtype=np.float64)).as_quat(canonical=True)


def droid_pose(pos: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """The first six DROID state entries (xyz + Euler "xyz") of a flange pose."""
    return np.concatenate([pos, matrix_to_euler_xyz(np.asarray(rot, dtype=np.float64))])


PATH_SAMPLES = 32
"""Points of a planned joint segment whose flange position is checked against the workspace box."""
PATH_TOLERANCE = 0.002
"""m a planned path may bulge beyond the box between its checked ends (joint-space paths curve in Cartesian space)."""
SETPOINT_TOLERANCE = 0.005
"""m a single set-point may lie beyond the box (sampled paths bulge a little between samples)."""


class SafetyFilter:
    def __init__(self, kinematics: Kinematics, config: SafetyConfig | None = None) -> None:
        self.kinematics = kinematics
        self.config = config or SafetyConfig()
        self.rest_q = (
            np.asarray(self.config.rest_q, dtype=np.float64) if self.config.rest_q is not None else DROID_HOME_Q
        )

    def resolve(self, cmd: Command, q_measured: np.ndarray, q_reference: np.ndarray | None = None) -> SafeTarget:
        """Check `cmd` against every limit; returns the joint/pose target or raises `CommandRejected`.

        Deltas apply to the flange pose at `q_reference` (the previous accepted target while a command stream is
        being tracked, so that tracking lag does not eat into the commanded motion) or else at `q_measured`. The
        step limits bound the change from that reference; the target may also not run further than two steps
        ahead of the measured pose.
        """
        if cmd.mode is None or cmd.target is None:
            raise CommandRejected("not a motion command")
        target = np.asarray(cmd.target, dtype=np.float64)
        if not np.all(np.isfinite(target)):
            raise CommandRejected("target has non-finite values")
        q_measured = np.asarray(q_measured, dtype=np.float64)
        q_ref = q_measured if q_reference is None else np.asarray(q_reference, dtype=np.float64)
        pos_meas, rot_meas = self.kinematics.fk(q_measured)
        pos, rot = self.kinematics.fk(q_ref)
        q_goal: np.ndarray | None = None
        if cmd.mode is CommandMode.EE_DELTA:
            goal_pos = pos + target[:3]
            goal_rot = euler_xyz_to_matrix(target[3:6]) @ rot
        elif cmd.mode is CommandMode.EE_ABS:
            goal_pos, goal_rot = target[:3], quat_xyzw_to_matrix(target[3:7])
        else:
            q_goal = target
            self._check_joints(q_goal, q_ref)
            goal_pos, goal_rot = self.kinematics.fk(q_goal)
        translation = float(np.linalg.norm(goal_pos - pos))
        angle = rotation_angle(goal_rot @ rot.T)
        limits = self.config.action_limits
        if translation > limits.max_translation + 1e-9:
            raise CommandRejected(f"step translation {translation:.4f} m exceeds {limits.max_translation} m")
        if angle > limits.max_rotation + 1e-9:
            raise CommandRejected(f"step rotation {angle:.4f} rad exceeds {limits.max_rotation} rad")
        lead = float(np.linalg.norm(goal_pos - pos_meas))
        lead_angle = rotation_angle(goal_rot @ rot_meas.T)
        if lead > 2 * limits.max_translation or lead_angle > 2 * limits.max_rotation:
            raise CommandRejected(f"target is {lead:.3f} m / {lead_angle:.3f} rad ahead of the measured pose")
        self._check_box(goal_pos, 0.0, "target position")
        if cmd.gripper is not None and not 0.0 <= cmd.gripper <= 1.0:
            raise CommandRejected(f"gripper target {cmd.gripper} is outside [0, 1]")
        if q_goal is None:
            q_goal = self.solve_ik(goal_pos, goal_rot, q_ref)
            self._check_joints(q_goal, q_ref)
        min_duration = max(
            cmd.duration_s, translation / limits.max_ee_speed, angle / limits.max_ee_angular_speed
        )
        return SafeTarget(q_goal, goal_pos, goal_rot, cmd.gripper, min_duration)

    def resolve_joint_target(self, q: np.ndarray) -> SafeTarget:
        """A long joint-space move such as `home`: joint limits (with the margin) and the workspace box at the target;
        no per-step bounds. The path is checked by `check_path` once the segment is planned."""
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (self.config.joint_limits.q_min.shape[0],) or not np.all(np.isfinite(q)):
            raise CommandRejected(f"joint target must be {self.config.joint_limits.q_min.shape[0]} finite angles")
        self._check_joints(q, q, step_limit=False)
        pos, rot = self.kinematics.fk(q)
        self._check_box(pos, 0.0, "target position")
        return SafeTarget(q, pos, rot, None, 0.0)

    def check_path(self, qs: np.ndarray) -> None:
        """Raise `CommandRejected` if the flange leaves the workspace box at any of the joint configurations `qs`."""
        for q in qs:
            pos, _ = self.kinematics.fk(q)
            self._check_box(pos, PATH_TOLERANCE, "the path")

    def flange_in_box(self, q: np.ndarray, tolerance: float = SETPOINT_TOLERANCE) -> bool:
        pos, _ = self.kinematics.fk(q)
        limits = self.config.action_limits
        return bool(np.all(pos >= limits.workspace_min - tolerance) and np.all(pos <= limits.workspace_max + tolerance))

    def _check_box(self, pos: np.ndarray, tolerance: float, what: str) -> None:
        limits = self.config.action_limits
        if np.any(pos < limits.workspace_min - tolerance) or np.any(pos > limits.workspace_max + tolerance):
            raise CommandRejected(
                f"{what} reaches {np.round(pos, 4).tolist()}, outside the workspace box "
                f"{limits.workspace_min.tolist()}..{limits.workspace_max.tolist()}"
            )

    def solve_ik(self, pos: np.ndarray, rot: np.ndarray, q_init: np.ndarray) -> np.ndarray:
        cfg = self.config
        result = self.kinematics.ik(pos, rot, q_init, limits=cfg.joint_limits, rest_q=self.rest_q)
        if result.pos_err > cfg.ik_position_tolerance or result.rot_err > cfg.ik_rotation_tolerance:
            raise CommandRejected(
                f"no joint solution for the target (IK error {result.pos_err * 1e3:.1f} mm, {result.rot_err:.3f} rad)"
            )
        return np.asarray(result.q, dtype=np.float64)

    def _check_joints(self, q: np.ndarray, q_measured: np.ndarray, step_limit: bool = True) -> None:
        lim, margin = self.config.joint_limits, self.config.joint_margin
        if not lim.within(q, margin):
            bad = [i for i in range(len(q)) if not lim.q_min[i] + margin <= q[i] <= lim.q_max[i] - margin]
            raise CommandRejected(f"joint target outside the {lim.name} limits (margin {margin} rad) at joints {bad}")
        step = float(np.max(np.abs(q - q_measured)))
        if step_limit and step > self.config.max_joint_step:
            raise CommandRejected(f"joint step {step:.3f} rad exceeds {self.config.max_joint_step} rad per command")

    def setpoint_ok(
        self, q: np.ndarray, dq: np.ndarray, previous: tuple[np.ndarray, float] | None = None, dt: float = 0.0
    ) -> bool:
        """The last gate: a set-point inside the joint position (with half the margin) and velocity limits with its
        flange inside the workspace box, and, given the `previous` set-point (its velocity) `dt` seconds earlier,
        inside the acceleration limits."""
        lim = self.config.joint_limits
        q, dq = np.asarray(q, dtype=np.float64), np.asarray(dq, dtype=np.float64)
        ok = (
            q.shape == lim.q_min.shape
            and np.all(np.isfinite(q))
            and np.all(np.isfinite(dq))
            and lim.within(q, self.config.joint_margin / 2)
            and np.all(np.abs(dq) <= lim.dq_max + 1e-9)
            and self.flange_in_box(q)
        )
        if ok and previous is not None and dt > 0:
            ok = np.all(np.abs(dq - previous[0]) <= lim.ddq_max * dt + 1e-9)
        return bool(ok)
