"""DROID pose convention against an independent computation with scipy's Rotation."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from vjepa_ac.data.droid import poses


def _random_states(rng, n):
    xyz = rng.uniform(-1, 1, (n, 3))
    euler = Rotation.random(n, random_state=rng.integers(1 << 31)).as_euler("xyz")
    grip = rng.uniform(0, 1, (n, 1))
    return np.concatenate([xyz, euler, grip], axis=1)


def test_euler_round_trip_matches_scipy():
    rng = np.random.default_rng(0)
    euler = Rotation.random(500, random_state=1).as_euler("xyz")
    mat = poses.euler_xyz_to_matrix(euler)
    np.testing.assert_allclose(mat, Rotation.from_euler("xyz", euler).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(poses.matrix_to_euler_xyz(mat), euler, atol=1e-9)
    assert rng is not None


def test_states_to_actions_matches_scipy_including_wraparound():
    rng = np.random.default_rng(1)
    states = _random_states(rng, 64)
    # Angles near ±pi wrap around: the delta must be the small rotation, not ~2pi.
    states[10, 3:6] = [np.pi - 1e-3, 0.2, -np.pi + 1e-3]
    states[11, 3:6] = [-np.pi + 1e-3, 0.2, np.pi - 1e-3]
    actions = poses.states_to_actions(states)
    rot = Rotation.from_euler("xyz", states[:, 3:6])
    expected_rot = (rot[1:] * rot[:-1].inv()).as_euler("xyz")
    np.testing.assert_allclose(actions[:, :3], states[1:, :3] - states[:-1, :3], atol=1e-12)
    np.testing.assert_allclose(actions[:, 3:6], expected_rot, atol=1e-9)
    np.testing.assert_allclose(actions[:, 6], states[1:, 6] - states[:-1, 6], atol=1e-12)
    assert np.abs(actions[10, 3:6]).max() < 0.01


def test_apply_actions_inverts_states_to_actions_batched_torch():
    rng = np.random.default_rng(2)
    states = torch.from_numpy(_random_states(rng, 2 * 9)).reshape(2, 9, 7)
    actions = poses.states_to_actions(states)
    nxt = poses.apply_actions(states[:, :-1], actions)
    rot_err = (
        Rotation.from_euler("xyz", nxt[..., 3:6].reshape(-1, 3).numpy())
        * Rotation.from_euler("xyz", states[:, 1:, 3:6].reshape(-1, 3).numpy()).inv()
    )
    assert rot_err.magnitude().max() < 1e-9
    torch.testing.assert_close(nxt[..., :3], states[:, 1:, :3])
    torch.testing.assert_close(nxt[..., 6], states[:, 1:, 6])
    rolled = poses.rollout_states(states[:, 0], actions)
    torch.testing.assert_close(rolled[..., :3], states[:, 1:, :3])


def test_apply_actions_clips_gripper_and_checks_shapes():
    state = np.array([0, 0, 0, 0, 0, 0, 0.9])
    nxt = poses.apply_actions(state, np.array([0, 0, 0, 0, 0, 0, 0.5]))
    assert nxt[6] == 1.0
    with pytest.raises(ValueError, match="last dimension 7"):
        poses.apply_actions(state, np.zeros(6))
    with pytest.raises(ValueError, match="at least 2 time steps"):
        poses.states_to_actions(np.zeros((1, 7)))


def test_states_to_camera_frame_matches_scipy():
    rng = np.random.default_rng(3)
    states = _random_states(rng, 20)
    extrinsics = np.concatenate([rng.uniform(-1, 1, (20, 3)), Rotation.random(20, random_state=4).as_euler("xyz")], 1)
    out = poses.states_to_camera_frame(states, extrinsics)
    cam = Rotation.from_euler("xyz", extrinsics[:, 3:])
    np.testing.assert_allclose(out[:, :3], cam.inv().apply(states[:, :3] - extrinsics[:, :3]), atol=1e-12)
    expected = (cam.inv() * Rotation.from_euler("xyz", states[:, 3:6])).as_matrix()
    np.testing.assert_allclose(poses.euler_xyz_to_matrix(out[:, 3:6]), expected, atol=1e-9)
    np.testing.assert_array_equal(out[:, 6], states[:, 6])
