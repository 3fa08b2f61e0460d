"""SimRobot: the Robot interface, DROID delta-action tracking, clamping and fail-safe behaviour."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vjepa_ac.data.droid.poses import apply_actions, euler_xyz_to_matrix
from vjepa_ac.robot.interface import ActionStatus, Observation
from vjepa_ac.robot.kinematics import DROID_HOME_Q, rotation_error
from vjepa_ac.robot.limits import DEFAULT_ACTION_LIMITS, PANDA
from vjepa_ac.sim.robot import SimConfig, SimRobot, clamp_action


def test_observation_matches_the_interface(fresh):
    obs = fresh.get_observation()
    assert isinstance(obs, Observation)
    assert set(obs.images) == {"left", "wrist"}
    assert obs.images["left"].shape == (64, 96, 3)
    np.testing.assert_allclose(obs.joint_positions, DROID_HOME_Q, atol=1e-9)
    np.testing.assert_allclose(obs.state[:3], [0.3597, 0.0, 0.4899], atol=1e-3)
    assert obs.gripper_position == pytest.approx(0.0, abs=1e-6)


def test_small_delta_actions_reach_their_droid_targets(fresh):
    rng = np.random.default_rng(0)
    position_errors = []
    for _ in range(30):
        state = fresh.droid_state()
        action = np.concatenate([rng.uniform(-0.015, 0.015, 3), rng.uniform(-0.03, 0.03, 3), [0.0]])
        result = fresh.send_action(action)
        assert result.status is ActionStatus.ACCEPTED, result.reason
        reached, target = fresh.droid_state(), apply_actions(state, action)
        position_errors.append(np.linalg.norm(reached[:3] - target[:3]))
        rotation = rotation_error(euler_xyz_to_matrix(target[3:6]), euler_xyz_to_matrix(reached[3:6]))
        assert np.linalg.norm(rotation) < 0.015
    # Within one 1/15 s period the servos follow to about a millimetre (the arm is still moving at the period end).
    assert max(position_errors) < 6e-3 and np.mean(position_errors) < 2.5e-3


def test_nan_and_malformed_actions_are_rejected_and_change_nothing(fresh):
    q0 = fresh.joint_positions
    for bad in (np.full(7, np.nan), [0.0, np.inf, 0, 0, 0, 0, 0], np.zeros(6), "forward"):
        result = fresh.send_action(bad)
        assert result.status is ActionStatus.REJECTED and result.applied is None and result.reason
    np.testing.assert_array_equal(fresh.joint_positions, q0)


def test_huge_actions_are_clamped_and_the_arm_stays_within_limits(fresh):
    result = fresh.send_action(np.array([5.0, -5.0, 5.0, 3.0, -3.0, 3.0, 9.0]))
    assert result.status is ActionStatus.CLAMPED
    assert "translation" in result.reason and "rotation" in result.reason
    assert np.linalg.norm(result.applied[:3]) <= DEFAULT_ACTION_LIMITS.max_translation + 1e-9
    assert np.all(np.isfinite(fresh.droid_state()))


def test_random_actions_never_exceed_joint_position_or_velocity_limits(fresh):
    rng = np.random.default_rng(1)
    max_step = PANDA.dq_max / fresh.control_hz
    for _ in range(150):
        q_before = fresh.joint_positions
        action = np.concatenate([rng.normal(0, 0.05, 3), rng.normal(0, 0.2, 3), rng.normal(0, 0.5, 1)])
        assert fresh.send_action(action).ok
        q = fresh.joint_positions
        assert PANDA.within(q, margin=-1e-3)
        # Commands use 90 % of the velocity limits, so servo overshoot keeps the measured motion within them.
        assert np.all(np.abs(q - q_before) <= max_step)
        assert PANDA.within(fresh.last_joint_target)


def test_targets_outside_the_workspace_are_clipped(fresh):
    for _ in range(30):
        result = fresh.send_action(np.array([0.0, 0.07, 0.0, 0, 0, 0, 0]))
    assert "workspace" in result.reason
    assert fresh.droid_state()[1] <= DEFAULT_ACTION_LIMITS.workspace_max[1] + 2e-3


def test_joint_target_mode_clamps_to_limits(fresh):
    result = fresh.send_joint_target(PANDA.q_max + 1.0, gripper=0.0)
    assert result.status is ActionStatus.CLAMPED
    assert "position limits" in result.reason and "velocity" in result.reason
    assert PANDA.within(fresh.joint_positions, margin=-1e-3)
    assert fresh.send_joint_target(np.full(7, np.nan)).status is ActionStatus.REJECTED


def test_gripper_closes_and_opens(fresh):
    fresh.send_action(np.array([0, 0, 0, 0, 0, 0, 1.0]))
    fresh.settle(2)
    assert fresh.gripper_position > 0.95
    fresh.send_action(np.array([0, 0, 0, 0, 0, 0, -1.0]))
    fresh.settle(5)
    assert fresh.gripper_position < 0.05


def test_zero_gripper_deltas_keep_the_gripper_where_it_is(fresh):
    # A part-closed free gripper must not creep shut on its own when the planner sends Δgripper = 0.
    fresh.send_action(np.array([0, 0, 0, 0, 0, 0, 0.2]))
    fresh.settle(2)
    before = fresh.gripper_position
    for _ in range(15):
        fresh.send_action(np.zeros(7))
    assert abs(fresh.gripper_position - before) < 0.05
    assert fresh.gripper_position < 0.9


def test_stop_refuses_actions_until_connect(fresh):
    fresh.stop()
    assert fresh.send_action(np.zeros(7)).status is ActionStatus.REJECTED
    fresh.connect()
    assert fresh.send_action(np.zeros(7)).ok


def test_hold_keeps_the_measured_pose(fresh):
    fresh.send_action(np.array([0.03, 0, 0, 0, 0, 0, 0]))
    fresh.hold()
    q = fresh.joint_positions
    fresh.settle(5)
    assert np.abs(fresh.joint_positions - q).max() < 1e-3


def test_clamp_action_scales_rotation_to_the_limit():
    action = np.array([0, 0, 0, 0.5, 0.0, 0.0, 0.0])
    clamped, reasons = clamp_action(action, DEFAULT_ACTION_LIMITS)
    np.testing.assert_allclose(clamped[3:6], [DEFAULT_ACTION_LIMITS.max_rotation, 0, 0], atol=1e-12)
    assert reasons and clamp_action(np.zeros(7), DEFAULT_ACTION_LIMITS)[1] == []


def test_unknown_camera_role_is_a_clear_error():
    with pytest.raises(ValueError, match="camera roles"):
        SimRobot(SimConfig(cameras=("left", "top")))


def test_diverging_physics_is_rolled_back_and_reported(fresh, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo logs the divergence to MUJOCO_LOG.TXT in the working directory
    fresh.send_action(np.array([0.01, 0, 0, 0, 0, 0, 0]))
    q = fresh.joint_positions
    hand = fresh.model.body("panda_hand").id
    fresh.data.xfrc_applied[hand, :3] = 1e15  # an absurd force makes the integration blow up
    result = fresh.send_action(np.zeros(7))
    assert result.status is ActionStatus.REJECTED and "unstable" in result.reason
    np.testing.assert_array_equal(fresh.joint_positions, q)
    fresh.data.xfrc_applied[hand] = 0.0
    assert fresh.send_action(np.zeros(7)).ok
    assert np.abs(fresh.joint_positions - q).max() < 1e-3


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(action=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=7, max_size=7))
def test_any_action_is_applied_safely_or_rejected(fresh, action):
    result = fresh.send_action(np.array(action))
    assert result.reason or result.status is ActionStatus.ACCEPTED
    assert np.all(np.isfinite(fresh.droid_state()))
    assert PANDA.within(fresh.joint_positions, margin=-1e-3)
    if not np.all(np.isfinite(action)):
        assert result.status is ActionStatus.REJECTED
