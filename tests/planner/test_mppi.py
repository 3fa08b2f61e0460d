import pytest
import torch

from vjepa_ac.data.droid.poses import apply_actions
from vjepa_ac.planner.mppi import MPPIConfig, MPPIPlanner
from vjepa_ac.planner.objectives import GoalObjective


def test_mppi_converges_to_known_minimum(world, start_state):
    delta = torch.tensor([-0.02, 0.03, 0.01, 0, 0, 0, 0.4], dtype=torch.float64)
    objective = GoalObjective(world.latent(apply_actions(start_state, delta)))
    result = MPPIPlanner(MPPIConfig(samples=300, iterations=15, temperature=0.05)).plan(world, objective)
    torch.testing.assert_close(result.actions[0, :3], delta[:3].float(), atol=3e-3, rtol=0)
    assert result.actions[0, 6] == pytest.approx(0.4, abs=0.03)
    assert result.energies.shape == (15, 3) and result.elite_actions.shape == (10, 1, 7)
    assert result.energies[-1, 0] < result.energies[0, 0]


def test_mppi_deterministic_and_fixed_noise(world, start_state):
    objective = GoalObjective(world.latent(start_state))
    config = MPPIConfig(samples=50, iterations=3, adapt_std=False)
    a = MPPIPlanner(config).plan(world, objective)
    b = MPPIPlanner(config).plan(world, objective)
    assert torch.equal(a.actions, b.actions)
    initial_std = config.space.initial_distribution(1)[1]
    assert torch.equal(a.stds[-1], initial_std)


def test_mppi_bad_temperature():
    with pytest.raises(ValueError, match="temperature"):
        MPPIConfig(temperature=0.0)
