"""The action-frame transform: round trips, agreement with the DROID pose convention, and its use in the planner."""

import numpy as np
import pytest
import torch

from vjepa_ac.data.droid.poses import states_to_actions
from vjepa_ac.planner.action_frame import ActionFrame, rotate_actions, rotate_states, wrap_degrees
from vjepa_ac.planner.cem import CEMConfig
from vjepa_ac.planner.mpc import LatentPlanner, MPCConfig

from .conftest import PointRobot


def _random_states(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    states = np.concatenate([rng.uniform(-0.6, 0.6, (n, 3)), rng.uniform(-1.2, 1.2, (n, 3)),
                             rng.uniform(0, 1, (n, 1))], axis=1)
    return states


@pytest.mark.parametrize("yaw", [0.0, 17.5, -60.0, 135.0, 180.0])
def test_round_trip_numpy_and_torch(yaw):
    frame = ActionFrame(yaw)
    states = _random_states(16)
    actions = states_to_actions(states)
    assert np.allclose(frame.to_base_states(frame.to_model_states(states)), states, atol=1e-12)
    assert np.allclose(frame.to_base_actions(frame.to_model_actions(actions)), actions, atol=1e-12)
    as_tensor = frame.to_model_actions(torch.from_numpy(actions).float())
    assert as_tensor.dtype == torch.float32
    assert torch.allclose(as_tensor.double(), torch.from_numpy(frame.to_model_actions(actions)), atol=1e-5)


def test_rotation_matches_the_droid_convention():
    states = _random_states(10, seed=1)
    for yaw in (30.0, -75.0):
        # Actions between rotated states are the rotated actions (conjugated rotation deltas), so a model fed rotated
        # states and actions sees a consistent trajectory.
        expected = rotate_actions(states_to_actions(states), yaw)
        assert np.allclose(states_to_actions(rotate_states(states, yaw)), expected, atol=1e-10)
    turned = rotate_states(np.array([0.5, 0.0, 0.3, np.pi, 0.0, 0.0, 0.4]), 90.0)
    assert np.allclose(turned[:3], [0.0, 0.5, 0.3], atol=1e-12) and turned[6] == 0.4
    # The flange's yaw turns with the frame; a positive model-frame yaw sees base-frame +x as -y.
    assert np.allclose(ActionFrame(90.0).to_model_actions(np.array([0.05, 0, 0, 0, 0, 0, 0.5]))[:3], [0, -0.05, 0],
                       atol=1e-12)


def test_identity_and_bad_values():
    states = _random_states(3)
    assert ActionFrame(0.0).to_model_states(states) is states and ActionFrame(360.0).is_identity
    assert wrap_degrees(190.0) == -170.0 and wrap_degrees(-180.0) == -180.0
    with pytest.raises(ValueError, match="finite"):
        ActionFrame(float("nan"))
    with pytest.raises(ValueError, match="finite"):
        MPCConfig(action_frame_yaw=float("inf"))
    with pytest.raises(ValueError, match=r"\[..., 7\]"):
        rotate_actions(np.zeros(6), 10.0)


def test_planner_plans_in_the_model_frame(tiny_world_model):
    """Planning with yaw θ from base state s equals planning unrotated from Rz(-θ) s, rotated back into the base."""
    robot = PointRobot()
    goal = robot.image_at([0.6, 0.1, 0.3, 0, 0, 0, 0])
    frame = robot.image_at(robot.state)
    planner_config = CEMConfig(samples=32, iterations=2, topk=4, horizon=2)
    turned = LatentPlanner(tiny_world_model, [goal], MPCConfig(planner=planner_config, action_frame_yaw=40.0))
    plain = LatentPlanner(tiny_world_model, [goal], MPCConfig(planner=planner_config))
    latents = turned.encode([frame, frame])
    states = np.stack([robot.state, robot.state + [0.02, -0.01, 0, 0, 0, 0, 0]])
    actions = states_to_actions(states)
    result = turned.plan(latents, states, actions, seed=3)
    reference = plain.plan(latents, rotate_states(states, -40.0), rotate_actions(actions, -40.0), seed=3)
    assert torch.allclose(result.actions, rotate_actions(reference.actions, 40.0).float(), atol=1e-6)
    assert not torch.allclose(result.actions, reference.actions, atol=1e-3)
    # The rotation keeps the step's length, so the robot's translation limit still holds.
    assert torch.allclose(result.actions[:, :3].norm(dim=-1), reference.actions[:, :3].norm(dim=-1), atol=1e-6)
