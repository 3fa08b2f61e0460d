"""ArmKinematics against Franka's published modified-DH table, finite differences and IK round trips."""

import mujoco
import numpy as np
import pytest

from vjepa_ac.data.droid.poses import euler_xyz_to_matrix
from vjepa_ac.robot.kinematics import (
    DROID_HOME_Q,
    ArmKinematics,
    default_arm_mjcf,
    rotation_error,
    rotvec_to_matrix,
)
from vjepa_ac.robot.limits import PANDA

# Franka's modified-DH parameters (a, d, alpha) per joint, then the flange.
DH = [
    (0.0, 0.333, 0.0),
    (0.0, 0.0, -np.pi / 2),
    (0.0, 0.316, np.pi / 2),
    (0.0825, 0.0, np.pi / 2),
    (-0.0825, 0.384, -np.pi / 2),
    (0.0, 0.0, np.pi / 2),
    (0.088, 0.0, np.pi / 2),
]
FLANGE_D = 0.107


def _dh_flange(q: np.ndarray) -> np.ndarray:
    def rot_x(a):
        c, s = np.cos(a), np.sin(a)
        return np.array([[1, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0], [0, 0, 0, 1.0]])

    def rot_z(t):
        c, s = np.cos(t), np.sin(t)
        return np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])

    def trans(x, z):
        out = np.eye(4)
        out[0, 3], out[2, 3] = x, z
        return out

    pose = np.eye(4)
    for (a, d, alpha), theta in zip(DH, q, strict=True):
        pose = pose @ rot_x(alpha) @ trans(a, 0) @ rot_z(theta) @ trans(0, d)
    return pose @ trans(0, FLANGE_D)


@pytest.fixture(scope="module")
def kin() -> ArmKinematics:
    return ArmKinematics()


def _random_q(rng: np.random.Generator, margin: float = 0.2) -> np.ndarray:
    return rng.uniform(PANDA.q_min + margin, PANDA.q_max - margin)


def test_fk_matches_published_dh_table(kin):
    rng = np.random.default_rng(0)
    for q in [DROID_HOME_Q, *(_random_q(rng) for _ in range(20))]:
        pos, rot = kin.fk(q)
        expected = _dh_flange(q)
        np.testing.assert_allclose(pos, expected[:3, 3], atol=1e-9)
        np.testing.assert_allclose(rot, expected[:3, :3], atol=1e-9)


def test_home_pose_points_down_in_front_of_the_robot(kin):
    state = kin.droid_state(DROID_HOME_Q, 0.25)
    assert state.shape == (7,)
    np.testing.assert_allclose(state[:3], [0.3597, 0.0, 0.4899], atol=1e-3)
    np.testing.assert_allclose(euler_xyz_to_matrix(state[3:6]), np.diag([1.0, -1.0, -1.0]), atol=1e-9)
    assert state[6] == 0.25


def test_jacobian_matches_finite_differences(kin):
    q = DROID_HOME_Q + np.random.default_rng(1).normal(0, 0.2, 7)
    jac = kin.jacobian(q)
    pos0, rot0 = kin.fk(q)
    eps = 1e-6
    for j in range(7):
        dq = np.zeros(7)
        dq[j] = eps
        pos1, rot1 = kin.fk(q + dq)
        np.testing.assert_allclose((pos1 - pos0) / eps, jac[:3, j], atol=1e-5)
        np.testing.assert_allclose(rotation_error(rot1, rot0) / eps, jac[3:, j], atol=1e-5)


def test_rotation_error_inverts_rotvec_to_matrix_up_to_a_half_turn():
    rng = np.random.default_rng(2)
    base = euler_xyz_to_matrix(rng.uniform(-np.pi, np.pi, 3))
    for angle in [0.0, 1e-5, 0.7, 3.0, np.pi - 1e-9]:
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        rotvec = axis * angle
        delta = rotvec_to_matrix(rotvec)
        got = rotation_error(delta @ base, base)
        if angle > np.pi - 1e-6:  # at a half turn +axis and -axis are the same rotation
            got = got if got @ rotvec > 0 else -got
        np.testing.assert_allclose(got, rotvec, atol=1e-6)


def test_ik_round_trip_from_perturbed_start(kin):
    rng = np.random.default_rng(3)
    converged = 0
    trials = 100
    for _ in range(trials):
        q = _random_q(rng)
        pos, rot = kin.fk(q)
        result = kin.ik(pos, rot, PANDA.clip_positions(q + rng.normal(0, 0.3, 7)))
        assert PANDA.within(result.q)
        if result.converged:
            converged += 1
            got_pos, got_rot = kin.fk(result.q)
            assert np.linalg.norm(got_pos - pos) <= 1e-4
            assert np.linalg.norm(rotation_error(rot, got_rot)) <= 1e-3
    assert converged >= 0.9 * trials


def test_ik_tracks_small_droid_steps_in_few_iterations(kin):
    rng = np.random.default_rng(4)
    q = DROID_HOME_Q.copy()
    for _ in range(50):
        pos, rot = kin.fk(q)
        target_pos = pos + rng.uniform(-0.03, 0.03, 3)
        target_rot = euler_xyz_to_matrix(rng.uniform(-0.05, 0.05, 3)) @ rot
        result = kin.ik(target_pos, target_rot, q)
        assert result.converged and result.iterations <= 10
        q = result.q


def test_unreachable_target_stays_within_limits_and_reports_failure(kin):
    result = kin.ik(np.array([2.0, 0.0, 0.5]), np.diag([1.0, -1.0, -1.0]), DROID_HOME_Q)
    assert not result.converged
    assert result.pos_err > 0.5
    assert PANDA.within(result.q)


def test_bad_inputs_are_rejected_with_a_reason(kin):
    with pytest.raises(ValueError, match="non-finite"):
        kin.fk(np.full(7, np.nan))
    with pytest.raises(ValueError, match="shape"):
        kin.fk(np.zeros(6))
    with pytest.raises(ValueError, match="non-finite"):
        kin.ik(np.array([np.inf, 0, 0]), np.eye(3), DROID_HOME_Q)
    with pytest.raises(FileNotFoundError):
        ArmKinematics("/nonexistent/panda.xml")


def test_flange_from_link7_offset_when_model_has_no_link8(kin):
    # Menagerie's Panda/FR3 have no link8 body; the flange is then link7 + 0.107 m along z.
    spec = mujoco.MjSpec.from_file(str(default_arm_mjcf()))
    spec.body("panda_link8").name = "hand_mount"
    other = ArmKinematics(spec.compile())
    q = _random_q(np.random.default_rng(5))
    for got, expected in zip(other.fk(q), kin.fk(q), strict=True):
        np.testing.assert_allclose(got, expected, atol=1e-12)
