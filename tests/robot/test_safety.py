"""Safety filter: every limit rejects the whole command with a reason; accepted targets are reachable and in limits."""

from __future__ import annotations

import numpy as np
import pytest

from vjepa_ac.data.droid.poses import euler_xyz_to_matrix
from vjepa_ac.robot.kinematics import DROID_HOME_Q, ArmKinematics
from vjepa_ac.robot.limits import FR3, ActionLimits
from vjepa_ac.robot.protocol import Command, CommandMode, MessageKind
from vjepa_ac.robot.safety import (
    CommandRejected,
    SafetyConfig,
    SafetyFilter,
    matrix_to_quat_xyzw,
    quat_xyzw_to_matrix,
)


@pytest.fixture(scope="module")
def safety() -> SafetyFilter:
    return SafetyFilter(ArmKinematics())


def cmd(mode: CommandMode, target, gripper=None, duration=0.1) -> Command:
    return Command(MessageKind.CMD, "s", 0, 0, 100, mode, np.asarray(target, dtype=np.float64), gripper, duration)


def test_small_delta_is_accepted_and_reaches_the_pose(safety):
    delta = [0.02, -0.01, 0.01, 0.0, 0.05, -0.05]
    target = safety.resolve(cmd(CommandMode.EE_DELTA, delta, gripper=0.3), DROID_HOME_Q)
    pos0, rot0 = safety.kinematics.fk(DROID_HOME_Q)
    pos, rot = safety.kinematics.fk(target.q)
    np.testing.assert_allclose(pos, pos0 + delta[:3], atol=1e-3)
    np.testing.assert_allclose(rot, euler_xyz_to_matrix(np.array(delta[3:])) @ rot0, atol=1e-3)
    assert target.gripper == 0.3
    assert target.min_duration >= np.linalg.norm(delta[:3]) / safety.config.action_limits.max_ee_speed


@pytest.mark.parametrize(
    "target,gripper,needle",
    [
        ([0.08, 0, 0, 0, 0, 0], None, "step translation"),
        ([0, 0, 0, 0.2, 0, 0], None, "step rotation"),
        ([0, 0, 0, 0, 0, 0], 1.5, "gripper"),
        ([0, 0, 0, 0, 0, 0], -0.1, "gripper"),
    ],
)
def test_step_and_gripper_limits(safety, target, gripper, needle):
    with pytest.raises(CommandRejected, match=needle):
        safety.resolve(cmd(CommandMode.EE_DELTA, target, gripper), DROID_HOME_Q)


def test_workspace_box(safety):
    limits = ActionLimits(workspace_max=np.array([1.0, 0.4, 0.5]))
    filt = SafetyFilter(safety.kinematics, SafetyConfig(action_limits=limits))
    with pytest.raises(CommandRejected, match="workspace"):
        filt.resolve(cmd(CommandMode.EE_DELTA, [0, 0, 0.03, 0, 0, 0]), DROID_HOME_Q)


def test_joint_targets_outside_limits_or_too_far(safety):
    q = DROID_HOME_Q.copy()
    q[3] = -0.05  # beyond the Panda's joint 4 upper limit (-0.0698)
    with pytest.raises(CommandRejected, match="joint target outside"):
        safety.resolve(cmd(CommandMode.JOINT_ABS, q), DROID_HOME_Q)
    q = DROID_HOME_Q.copy()
    q[6] += 0.1
    safety.resolve(cmd(CommandMode.JOINT_ABS, q), DROID_HOME_Q)  # a pure wrist roll: allowed
    q[6] += 1.0
    with pytest.raises(CommandRejected):
        safety.resolve(cmd(CommandMode.JOINT_ABS, q), DROID_HOME_Q)


def test_fr3_limits_apply_after_ik(safety):
    filt = SafetyFilter(safety.kinematics, SafetyConfig(joint_limits=FR3))
    # DROID's home joint 6 (1.885) is legal on the FR3 too; joint 1 at 2.5 is not (FR3 rectangular 2.3093).
    q = DROID_HOME_Q.copy()
    q[0] = 2.5
    with pytest.raises(CommandRejected, match="fr3"):
        filt.resolve(cmd(CommandMode.JOINT_ABS, q), q)


def test_unreachable_pose_is_rejected(safety):
    pos, rot = safety.kinematics.fk(DROID_HOME_Q)
    far = np.concatenate([pos + [0.05, 0, 0], matrix_to_quat_xyzw(rot)])
    safety.resolve(cmd(CommandMode.EE_ABS, far), DROID_HOME_Q)
    q_stretched = np.array([0.0, 1.2, 0.0, -0.3, 0.0, 1.6, 0.0])  # arm almost straight: little reach left
    pos, rot = safety.kinematics.fk(q_stretched)
    with pytest.raises(CommandRejected):
        safety.resolve(cmd(CommandMode.EE_ABS, np.concatenate([pos + [0.06, 0, 0], matrix_to_quat_xyzw(rot)])),
                       q_stretched)


def test_target_may_not_run_ahead_of_the_arm(safety):
    ahead = DROID_HOME_Q.copy()
    target_ahead = safety.resolve(cmd(CommandMode.EE_DELTA, [0.07, 0, 0, 0, 0, 0]), ahead)
    target_ahead = safety.resolve(cmd(CommandMode.EE_DELTA, [0.07, 0, 0, 0, 0, 0]), ahead, target_ahead.q)
    with pytest.raises(CommandRejected, match="ahead of the measured pose"):
        safety.resolve(cmd(CommandMode.EE_DELTA, [0.07, 0, 0, 0, 0, 0]), ahead, target_ahead.q)


def test_setpoint_gate(safety):
    assert safety.setpoint_ok(DROID_HOME_Q, np.zeros(7))
    assert not safety.setpoint_ok(DROID_HOME_Q, np.full(7, 3.0))
    bad = DROID_HOME_Q.copy()
    bad[1] = 1.9
    assert not safety.setpoint_ok(bad, np.zeros(7))
    assert not safety.setpoint_ok(np.full(7, np.nan), np.zeros(7))
    assert not safety.setpoint_ok(np.zeros(6), np.zeros(6))
    # Acceleration against the previous set-point: 0.5 rad/s more on joint 2 (7.5 rad/s^2) needs at least 67 ms.
    faster = np.zeros(7)
    faster[1] = 0.5
    assert safety.setpoint_ok(DROID_HOME_Q, faster, (np.zeros(7), 0.0), dt=0.07)
    assert not safety.setpoint_ok(DROID_HOME_Q, faster, (np.zeros(7), 0.0), dt=0.004)


def test_quaternion_helpers_round_trip():
    rot = euler_xyz_to_matrix(np.array([0.3, -1.0, 2.5]))
    np.testing.assert_allclose(quat_xyzw_to_matrix(matrix_to_quat_xyzw(rot)), rot, atol=1e-12)
