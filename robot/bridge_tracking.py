"""The bridge's set-point stream: accepted targets become a continuous, limit-checked stream of joint set-points
(`JointTracker`, IK done by the safety filter) or flange equilibrium poses (`PoseTracker`, Cartesian impedance) for
the backend. Every set-point passes the safety filter's last gate before the backend sees it."""

from __future__ import annotations

import logging

import numpy as np
from scipy.spatial.transform import Rotation

from vjepa_ac.robot.backends.base import ArmState, Backend
from vjepa_ac.robot.interpolation import MotionLimits, SegmentRefused, SetpointInterpolator
from vjepa_ac.robot.kinematics import ArmKinematics
from vjepa_ac.robot.safety import (
    PATH_SAMPLES,
    PATH_TOLERANCE,
    SETPOINT_TOLERANCE,
    CommandRejected,
    SafeTarget,
    SafetyFilter,
    matrix_to_quat_xyzw,
)

log = logging.getLogger(__name__)

CARTESIAN_LIMITS = MotionLimits(
    velocity=np.array([0.25] * 3 + [1.0] * 3),
    acceleration=np.array([2.5] * 3 + [5.0] * 3),
    jerk=np.array([100.0] * 3 + [200.0] * 3),
)
"""Flange set-point limits in Cartesian mode (m, rad per s, s^2, s^3): well inside Franka's Cartesian limits."""


class SetpointTracker:
    """Turns accepted targets into a continuous set-point stream. While `streaming` (set-points flow to the arm) every
    change (retarget, hold, re-arm, recovery from a failed set-point) continues from the current set-point's position
    and velocity within the limits; only a fresh start after the stream ended begins at the measured pose."""

    def __init__(self, safety: SafetyFilter, backend: Backend, size: int, limits: MotionLimits) -> None:
        self.safety = safety
        self.backend = backend
        self.interp = SetpointInterpolator(np.zeros(size), limits)
        self.target_q: np.ndarray | None = None
        """Joint target of the newest accepted command."""
        self.streaming = False
        self._last_sent: tuple[np.ndarray, np.ndarray, float] | None = None
        """Coordinates, velocity and time of the last set-point sent."""
        self.setpoint_q: np.ndarray | None = None
        """Joint set-point last sent to the arm (joint mode only)."""

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


class JointTracker(SetpointTracker):
    """Joint-space set-points: IK happened in the safety filter, the interpolator runs on the 7 joints."""

    def __init__(self, safety: SafetyFilter, backend: Backend) -> None:
        super().__init__(safety, backend, 7, safety.config.motion_limits())

    def _reset(self, arm: ArmState, now: float) -> None:
        self.interp.reset(arm.q, now)

    def _target_coords(self, target: SafeTarget) -> np.ndarray:
        return target.q

    def _check_path(self, xs: np.ndarray) -> None:
        self.safety.check_path(xs)

    def _send(self, q: np.ndarray, dq: np.ndarray, now: float) -> bool:
        previous = None if self._last_sent is None else (self._last_sent[1], self._last_sent[2])
        dt = 0.0 if previous is None else now - previous[1]
        if not self.safety.setpoint_ok(q, dq, previous, dt):
            return False
        self.backend.command_joints(q, dq)
        self.setpoint_q = q
        return True


class PoseTracker(SetpointTracker):
    """Cartesian-impedance set-points: the flange pose is interpolated as xyz + rotation vector about an anchor."""

    def __init__(self, safety: SafetyFilter, backend: Backend, kinematics: ArmKinematics) -> None:
        super().__init__(safety, backend, 6, CARTESIAN_LIMITS)
        self.kinematics = kinematics
        self.anchor = np.eye(3)

    def _coords(self, pos: np.ndarray, rot: np.ndarray) -> np.ndarray:
        return np.concatenate([pos, Rotation.from_matrix(rot @ self.anchor.T).as_rotvec()])

    def _reset(self, arm: ArmState, now: float) -> None:
        pos, rot = self.kinematics.fk(arm.q)
        self.anchor = rot
        self.interp.reset(self._coords(pos, rot), now)

    def _target_coords(self, target: SafeTarget) -> np.ndarray:
        return self._coords(target.ee_pos, target.ee_rot)

    def _in_box(self, positions: np.ndarray, tolerance: float) -> bool:
        limits = self.safety.config.action_limits
        return bool(np.all(np.isfinite(positions)) and np.all(positions >= limits.workspace_min - tolerance)
                    and np.all(positions <= limits.workspace_max + tolerance))

    def _check_path(self, xs: np.ndarray) -> None:
        if not self._in_box(xs[:, :3], PATH_TOLERANCE):
            raise CommandRejected("the flange path leaves the workspace box")

    def _send(self, x: np.ndarray, v: np.ndarray, now: float) -> bool:
        if not (np.all(np.isfinite(x)) and self._in_box(x[:3], SETPOINT_TOLERANCE)):
            return False
        rot = Rotation.from_rotvec(x[3:]).as_matrix() @ self.anchor
        self.backend.command_pose(x[:3], matrix_to_quat_xyzw(rot))
        return True
