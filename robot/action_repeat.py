"""Run a world model trained at a lower frame rate than the robot's control rate.

A predictor trained on frames `1/fps` seconds apart treats one action as the pose change over that interval, i.e. over
`control_hz / fps` control periods (V-JEPA 2-AC: 4 fps on a 15 Hz arm). `ActionRepeatRobot` makes a `Robot` execute
each planned action as that many equal control-period actions, so the next observation is the frame the predictor
was asked to imagine.
"""

from __future__ import annotations

import numpy as np

from vjepa_ac.data.droid.poses import euler_xyz_to_matrix, matrix_to_euler_xyz
from vjepa_ac.robot.interface import (
    ActionResult,
    ActionStatus,
    Observation,
    Robot,
    validate_action,
)
from vjepa_ac.robot.kinematics import rotation_error, rotvec_to_matrix


def control_periods_per_step(control_hz: float, fps: float) -> int:
    """Control periods per world-model step: round(control_hz / fps), at least 1."""
    if not (np.isfinite(control_hz) and np.isfinite(fps) and control_hz > 0 and fps > 0):
        raise ValueError(f"control_hz and fps must be positive, got {control_hz} and {fps}")
    return max(1, round(control_hz / fps))


def split_action(action: np.ndarray, parts: int) -> np.ndarray:
    """`parts` equal actions [parts, 7] whose composition is `action` (translation and gripper divided, rotation
    taken in equal angles about its axis)."""
    action = validate_action(action)
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    piece = action / parts
    rotvec = rotation_error(euler_xyz_to_matrix(action[3:6]), np.eye(3))
    piece[3:6] = matrix_to_euler_xyz(rotvec_to_matrix(rotvec / parts))
    return np.tile(piece, (parts, 1))


class ActionRepeatRobot(Robot):
    """A `Robot` whose `send_action` spreads one action over `periods` control periods of the wrapped robot."""

    def __init__(self, robot: Robot, periods: int) -> None:
        if periods < 1:
            raise ValueError(f"periods must be >= 1, got {periods}")
        self.robot = robot
        self.periods = periods
        self.camera_roles = robot.camera_roles
        self.control_hz = robot.control_hz / periods

    def connect(self) -> None:
        self.robot.connect()

    def get_observation(self) -> Observation:
        return self.robot.get_observation()

    def hold(self) -> None:
        self.robot.hold()

    def stop(self) -> None:
        self.robot.stop()

    def close(self) -> None:
        self.robot.close()

    def send_action(self, action: np.ndarray) -> ActionResult:
        """Execute the pieces in order; stop at the first refused piece. The result's `applied` is the composition
        of what was applied (translation and gripper summed, rotations composed)."""
        try:
            pieces = split_action(action, self.periods)
        except ValueError as exc:
            self.robot.hold()
            return ActionResult(ActionStatus.REJECTED, None, str(exc))
        translation, rotation, gripper = np.zeros(3), np.eye(3), 0.0
        reasons: list[str] = []
        executed = 0
        for piece in pieces:
            result = self.robot.send_action(piece)
            if not result.ok:
                reasons.append(f"period {executed + 1}/{self.periods} refused: {result.reason}")
                break
            executed += 1
            applied = np.asarray(result.applied, dtype=np.float64)
            translation += applied[:3]
            rotation = euler_xyz_to_matrix(applied[3:6]) @ rotation
            gripper += applied[6]
            if result.status is ActionStatus.CLAMPED and result.reason not in reasons:
                reasons.append(result.reason)
        if executed == 0:
            return ActionResult(ActionStatus.REJECTED, None, "; ".join(reasons))
        applied = np.concatenate([translation, matrix_to_euler_xyz(rotation), [gripper]])
        status = ActionStatus.CLAMPED if reasons else ActionStatus.ACCEPTED
        return ActionResult(status, applied, "; ".join(reasons))
