import pytest
import torch

from vjepa_ac.planner.objectives import GoalObjective, latent_distance


def test_l1_energy_is_mean_absolute_difference_of_last_step():
    gen = torch.Generator().manual_seed(0)
    preds = torch.randn(5, 3, 4, 6, generator=gen)
    goal = torch.randn(4, 6, generator=gen)
    energy = GoalObjective(goal)(preds)
    torch.testing.assert_close(energy, (preds[:, -1] - goal).abs().flatten(1).mean(1))
    summed = GoalObjective(goal, reduce="sum")(preds)
    torch.testing.assert_close(summed, (preds - goal).abs().flatten(2).mean(2).sum(1))


def test_other_metrics():
    a = torch.ones(2, 3, 4)
    assert torch.allclose(latent_distance(a, a, "cosine"), torch.zeros(2), atol=1e-6)
    assert torch.allclose(latent_distance(a, 0 * a, "l2"), torch.ones(2))


def test_goal_shape_errors():
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        GoalObjective(torch.zeros(2, 3, 4, 5))
    with pytest.raises(ValueError, match="non-finite"):
        GoalObjective(torch.full((4, 5), float("nan")))
    with pytest.raises(ValueError, match="do not match the goal"):
        GoalObjective(torch.zeros(4, 5))(torch.zeros(2, 1, 4, 6))
    with pytest.raises(ValueError, match="metric"):
        GoalObjective(torch.zeros(4, 5), metric="l3")
