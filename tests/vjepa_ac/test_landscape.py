"""The encoder energy-landscape measures: rank maths, per-goal scores, and a rendered reach episode."""

import numpy as np
import pytest
import torch

from vjepa_ac.landscape import (
    GRASP_OFFSET_BOX,
    PATH_POINTS,
    GoalLandscape,
    cube_landscape,
    goal_landscape,
    rank_correlation,
)
from vjepa_ac.worldmodel import build_encoder, build_predictor
from vjepa_ac.worldmodel.world_model import WorldModel


@pytest.fixture(scope="module")
def world_model() -> WorldModel:
    """A random tiny encoder: the landscape maths and rendering are under test, not the encoder's quality."""
    torch.manual_seed(0)
    return WorldModel(encoder=build_encoder("vit_tiny").eval(), predictor=build_predictor("vit_ac_tiny"),
                      crop="square")


def test_rank_correlation():
    x = np.array([0.1, 0.4, 0.2, 0.9])
    assert rank_correlation(x, x ** 3) == pytest.approx(1.0)
    assert rank_correlation(x, -x) == pytest.approx(-1.0)
    # Ranks 1 2 3 4 vs 2 1 4 3: 1 - 6 * 4 / (4 * 15) = 0.6.
    assert rank_correlation(np.arange(4.0), np.array([2.0, 1.0, 4.0, 3.0])) == pytest.approx(0.6)
    assert np.isnan(rank_correlation(x, np.ones(4)))


def test_path_measures():
    distance = np.linspace(0.4, 0.0, 5)
    falling = GoalLandscape(0, np.zeros(1), np.zeros(1), np.array([0.3, 0.25, 0.2, 0.1, 0.0]), distance)
    assert falling.path_descending == 1.0 and not falling.path_barrier
    barrier = GoalLandscape(0, np.zeros(1), np.zeros(1), np.array([0.3, 0.32, 0.2, 0.1, 0.0]), distance)
    assert barrier.path_descending == 0.75 and barrier.path_barrier


def test_goal_landscape_on_a_rendered_reach_episode(world_model):
    """The path ends at the goal pose, rendered exactly as the goal image: zero energy there, and distances that
    shrink linearly along the path."""
    from vjepa_ac.sim.tasks import make_env

    robot, task = make_env("reach", seed=3, image_size=(64, 64), cameras=("left",))
    try:
        result = goal_landscape(world_model, task, 3, np.random.default_rng(0))
    finally:
        robot.close()
    assert result.path_energy.shape == (PATH_POINTS,) and result.path_energy[-1] == pytest.approx(0.0, abs=1e-6)
    assert result.path_energy[0] > 0.0
    np.testing.assert_allclose(np.diff(result.path_distance), result.path_distance[0] * -0.1, rtol=1e-6)
    assert len(result.workspace_energy) == len(result.workspace_distance) > 0
    assert np.all(result.workspace_energy > 0)


def test_cube_landscape_around_the_straddle_pose(world_model):
    """Offsets from the straddle pose, scored against the straddle image: zero offset would be zero energy, so every
    offset scores above it; the axis shares compare 2 cm with 8 cm along x, y, z."""
    from vjepa_ac.sim.tasks import make_env

    robot, task = make_env("grasp", seed=2, image_size=(64, 64), cameras=("left",))
    try:
        result = cube_landscape(world_model, task, 2, np.random.default_rng(0))
    finally:
        robot.close()
    assert len(result.energy) == len(result.distance) > 20 and np.all(result.energy > 0)
    assert np.all(result.distance <= np.linalg.norm(GRASP_OFFSET_BOX[1]) + 1e-9)
    assert result.axis_share.shape == (3,) and np.all(result.axis_share > 0)
    assert -1.0 <= result.near_rank_correlation <= 1.0
