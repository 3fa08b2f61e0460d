import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vjepa_ac.data.droid.poses import apply_actions
from vjepa_ac.planner.action_space import SearchSpace
from vjepa_ac.planner.base import PlanningError
from vjepa_ac.planner.cem import CEMConfig, CEMPlanner
from vjepa_ac.planner.mppi import MPPIConfig, MPPIPlanner
from vjepa_ac.planner.objectives import GoalObjective


def _goal(world, start_state, delta):
    target = apply_actions(start_state, torch.tensor(delta, dtype=torch.float64))
    return GoalObjective(world.latent(target))


class Recorder:
    """Wraps a rollout and keeps every candidate batch it was asked to evaluate."""

    def __init__(self, rollout):
        self.rollout, self.batches = rollout, []

    def __call__(self, actions):
        self.batches.append(actions.clone())
        return self.rollout(actions)


@pytest.mark.parametrize("constraint", ["l1_ball", "box"])
def test_cem_converges_to_known_minimum(world, start_state, constraint):
    delta = [0.03, -0.02, 0.015, 0, 0, 0, 0.5]
    config = CEMConfig(samples=200, iterations=20, space=SearchSpace(translation_constraint=constraint))
    result = CEMPlanner(config).plan(world, _goal(world, start_state, delta))
    assert result.actions.shape == (1, 7)
    torch.testing.assert_close(result.actions[0, :3], torch.tensor(delta[:3]), atol=2e-3, rtol=0)
    assert result.actions[0, 6] == pytest.approx(0.5, abs=0.02)
    assert torch.all(result.actions[0, 3:6] == 0)
    # The energy decreases over iterations.
    assert result.energies[-1, 0] < result.energies[0, 0]
    assert result.num_rollouts == 200 * 20 and world.calls == 20


def test_cem_turns_the_hand_only_when_yaw_is_searched(start_state):
    from tests.planner.conftest import LinearLatentWorld

    world = LinearLatentWorld(start_state, coords=(0, 1, 2, 5, 6))  # sees the hand's yaw
    objective = _goal(world, start_state, [0.02, 0, 0, 0, 0, 0.1, 0])
    turning = CEMConfig(samples=200, iterations=20, space=SearchSpace(max_yaw=0.15))
    result = CEMPlanner(turning).plan(world, objective)
    assert float(result.actions[0, 5]) == pytest.approx(0.1, abs=5e-3)
    assert float(result.actions[0, 0]) == pytest.approx(0.02, abs=3e-3)
    assert torch.all(result.actions[0, 3:5] == 0)
    assert result.means.shape[-1] == 5
    fixed = CEMPlanner(CEMConfig(samples=200, iterations=20)).plan(world, objective)
    assert torch.all(fixed.actions[0, 3:6] == 0)
    # A goal beyond the per-step bound is approached as far as the bound allows.
    far = CEMPlanner(turning).plan(world, _goal(world, start_state, [0, 0, 0, 0, 0, 0.4, 0]))
    assert float(far.actions[0, 5]) == pytest.approx(0.15, abs=1e-6)


def test_cem_horizon_two_reaches_far_goal_with_summed_energy(world, start_state):
    # 0.1 m along x needs two steps of at most 0.075 each.
    target = apply_actions(start_state, torch.tensor([0.1, 0, 0, 0, 0, 0, 0], dtype=torch.float64))
    objective = GoalObjective(world.latent(target), reduce="last")
    config = CEMConfig(samples=300, iterations=25, horizon=2)
    result = CEMPlanner(config).plan(world, objective)
    assert result.actions.shape == (2, 7)
    assert float(result.actions[:, 0].sum()) == pytest.approx(0.1, abs=5e-3)
    summed = GoalObjective(world.latent(target), reduce="sum")
    first = CEMPlanner(config).plan(world, summed).actions[0, 0]
    # With the summed energy the first step already moves as far as allowed.
    assert float(first) == pytest.approx(0.075, abs=5e-3)


def test_elite_and_momentum_update_as_specified(world, start_state):
    config = CEMConfig(
        samples=50,
        iterations=2,
        topk=5,
        momentum_mean=0.3,
        momentum_std=0.6,
        momentum_mean_gripper=0.1,
        momentum_std_gripper=0.2,
    )
    objective = _goal(world, start_state, [0.02, 0.01, 0, 0, 0, 0, 0.3])
    recorder = Recorder(world)
    result = CEMPlanner(config).plan(recorder, objective)
    mean, std = config.space.initial_distribution(1)
    m_mean = torch.tensor([0.3, 0.3, 0.3, 0.1])
    m_std = torch.tensor([0.6, 0.6, 0.6, 0.2])
    for it, batch in enumerate(recorder.batches):
        energies = objective(world(batch))
        elites = batch[energies.argsort()[:5]][..., [0, 1, 2, 6]]
        mean = (1 - m_mean) * elites.mean(0) + m_mean * mean
        std = (1 - m_std) * elites.std(0, unbiased=True) + m_std * std
        torch.testing.assert_close(result.means[it], mean)
        torch.testing.assert_close(result.stds[it], std)
    torch.testing.assert_close(result.elite_energies, objective(world(result.elite_actions)))
    assert torch.all(result.elite_energies[:-1] <= result.elite_energies[1:])


@pytest.mark.parametrize("constraint", ["l1_ball", "box"])
def test_every_sample_respects_bounds(world, start_state, constraint):
    space = SearchSpace(translation_constraint=constraint, close_gripper=1, max_translation=0.05)
    config = CEMConfig(samples=100, iterations=3, horizon=3, space=space)
    recorder = Recorder(world)
    result = CEMPlanner(config).plan(recorder, _goal(world, start_state, [0.5, 0.5, 0.5, 0, 0, 0, 0]))
    samples = torch.cat(recorder.batches + [result.actions[None]])
    xyz = samples[..., :3]
    if constraint == "box":
        assert torch.all(xyz.abs() <= 0.05 + 1e-7)
    else:
        assert torch.all(xyz.abs().sum(-1) <= 0.05 + 1e-6)
    assert torch.all(samples[..., 3:6] == 0)
    assert torch.all(samples[:, 0, 6].abs() <= 0.75)
    assert torch.all(samples[:, 1:, 6] == 1.0)


def test_fixed_dimensions_stay_pinned(world, start_state):
    config = CEMConfig(samples=64, iterations=4, space=SearchSpace(fixed={2: 0.0, 6: 0.0}))
    recorder = Recorder(world)
    result = CEMPlanner(config).plan(recorder, _goal(world, start_state, [0.02, 0.02, 0.03, 0, 0, 0, 0.6]))
    for batch in recorder.batches:
        assert torch.all(batch[..., 2] == 0) and torch.all(batch[..., 6] == 0)
    assert result.actions[0, 2] == 0 and result.actions[0, 6] == 0


def test_deterministic_under_seed(world, start_state):
    objective = _goal(world, start_state, [0.01, 0.02, -0.01, 0, 0, 0, 0])
    config = CEMConfig(samples=40, iterations=3, seed=7)
    a = CEMPlanner(config).plan(world, objective)
    b = CEMPlanner(config).plan(world, objective)
    c = CEMPlanner(config).plan(world, objective, seed=8)
    assert torch.equal(a.actions, b.actions) and torch.equal(a.energies, b.energies)
    assert not torch.equal(a.actions, c.actions)


def test_chunked_evaluation_gives_the_same_plan(world, start_state):
    objective = _goal(world, start_state, [0.01, 0.02, -0.01, 0, 0, 0, 0])
    whole = CEMPlanner(CEMConfig(samples=40, iterations=3)).plan(world, objective)
    chunked = CEMPlanner(CEMConfig(samples=40, iterations=3, max_batch=7)).plan(world, objective)
    torch.testing.assert_close(whole.actions, chunked.actions)


def test_nonfinite_energies_never_become_elites(world, start_state):
    objective = _goal(world, start_state, [0.02, 0.0, 0.0, 0, 0, 0, 0])

    def half_broken(actions):
        out = world(actions)
        out[::2] = float("nan")
        return out

    result = CEMPlanner(CEMConfig(samples=40, iterations=3)).plan(half_broken, objective)
    assert torch.all(torch.isfinite(result.actions)) and torch.all(torch.isfinite(result.elite_energies))

    def broken(actions):
        return torch.full_like(world(actions), float("nan"))

    with pytest.raises(PlanningError, match="non-finite"):
        CEMPlanner(CEMConfig(samples=40, iterations=3)).plan(broken, objective)


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="topk"):
        CEMConfig(samples=10, topk=1)
    with pytest.raises(ValueError, match="topk"):
        CEMConfig(samples=10, topk=11)
    with pytest.raises(ValueError, match="momentum_std"):
        CEMConfig(momentum_std=1.5)
    with pytest.raises(ValueError, match="horizon"):
        CEMConfig(horizon=0)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    constraint=st.sampled_from(["l1_ball", "box"]),
    max_translation=st.floats(0.0, 0.2),
    horizon=st.integers(1, 3),
    momentum=st.floats(0.0, 1.0),
    nan_fraction=st.floats(0.0, 0.9),
    scale=st.sampled_from([1e-12, 1.0, 1e12]),
)
def test_plans_are_always_finite_and_in_bounds(
    seed, constraint, max_translation, horizon, momentum, nan_fraction, scale
):
    gen = torch.Generator().manual_seed(seed)

    def rollout(actions):
        return torch.zeros(actions.shape[0], actions.shape[1], 1, 1)

    def objective(predictions):
        energies = scale * torch.randn(predictions.shape[0], generator=gen)
        energies[torch.rand(predictions.shape[0], generator=gen) < nan_fraction] = float("nan")
        energies[0] = 1.0  # at least one finite candidate
        return energies

    space = SearchSpace(translation_constraint=constraint, max_translation=max_translation)
    for planner in (
        CEMPlanner(CEMConfig(samples=16, iterations=3, topk=4, horizon=horizon, momentum_mean=momentum, space=space)),
        MPPIPlanner(MPPIConfig(samples=16, iterations=3, horizon=horizon, momentum=momentum, space=space)),
    ):
        actions = planner.plan(rollout, objective, seed=seed).actions
        assert actions.shape == (horizon, 7) and torch.all(torch.isfinite(actions))
        if constraint == "box":
            assert torch.all(actions[:, :3].abs() <= max_translation + 1e-7)
        else:
            assert torch.all(actions[:, :3].abs().sum(-1) <= max_translation + 1e-6)
        assert torch.all(actions[:, 6].abs() <= 0.75) and torch.all(actions[:, 3:6] == 0)


def test_early_stop_ends_once_the_elites_converge(world, start_state):
    objective = _goal(world, start_state, [0.03, -0.02, 0.015, 0, 0, 0, 0.5])
    full = CEMPlanner(CEMConfig(samples=200, iterations=30)).plan(world, objective)
    stopped = CEMPlanner(CEMConfig(samples=200, iterations=30, early_stop_std=1e-3)).plan(world, objective)
    iterations = len(stopped.energies)
    assert 1 < iterations < 30 and stopped.num_rollouts == 200 * iterations
    assert torch.all(stopped.stds[-1, :, :3] < 1e-3) and not torch.all(stopped.stds[-2, :, :3] < 1e-3)
    torch.testing.assert_close(stopped.actions[0, :3], full.actions[0, :3], atol=2e-3, rtol=0)
    with pytest.raises(ValueError, match="early_stop_std"):
        CEMConfig(early_stop_std=0.0)


def test_warm_start_shifts_the_previous_plan(world, start_state):
    from vjepa_ac.planner.cem import shift_plan

    objective = _goal(world, start_state, [0.1, 0, 0, 0, 0, 0, 0])
    config = CEMConfig(samples=100, iterations=3, horizon=3)
    previous = CEMPlanner(config).plan(world, objective)
    mean = shift_plan(previous, 3)
    torch.testing.assert_close(mean, torch.cat([previous.means[-1][1:], previous.means[-1][2:]]))
    warm = CEMPlanner(config).plan(world, objective, initial_mean=mean)
    cold = CEMPlanner(config).plan(world, objective)
    # Same random stream, different starting mean: the first iteration samples around the shifted plan.
    assert not torch.equal(warm.means[0], cold.means[0])
    one_step = CEMPlanner(dataclasses.replace(config, horizon=1)).plan(world, objective)
    torch.testing.assert_close(shift_plan(one_step, 1), one_step.means[-1])  # horizon 1: reused as it is
    with pytest.raises(ValueError, match="initial_mean"):
        CEMPlanner(config).plan(world, objective, initial_mean=torch.zeros(2, 4))
