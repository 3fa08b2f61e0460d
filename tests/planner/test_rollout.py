"""Rollouts through the real `worldmodel.ACPredictor` (tiny preset, random weights)."""

import pytest
import torch

from vjepa_ac.data.droid.poses import rollout_states
from vjepa_ac.planner.cem import CEMConfig, CEMPlanner
from vjepa_ac.planner.objectives import GoalObjective
from vjepa_ac.planner.rollout import NaiveRollout, WorldModelRollout, candidate_memory_bytes, imagine_states
from vjepa_ac.worldmodel import PredictorConfig, build_predictor, normalize_reps


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    return build_predictor("vit_ac_tiny").eval()


def _context(predictor, frames: int, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    n, d = predictor.tokens_per_frame, predictor.config.embed_dim
    latents = normalize_reps(torch.randn(frames, n, d, generator=gen))
    states = torch.tensor([0.55, 0.0, 0.3, 3.1, 0.05, -0.2, 0.1]).repeat(frames, 1)
    states[:, :3] += 0.01 * torch.randn(frames, 3, generator=gen)
    actions = 0.02 * torch.randn(frames - 1, 7, generator=gen)
    return latents, states, actions


def _candidates(samples: int, horizon: int, seed: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    actions = 0.05 * torch.randn(samples, horizon, 7, generator=gen)
    actions[..., 3:6] = 0
    return actions


def test_imagine_states_matches_pose_rollout():
    state = torch.tensor([0.5, 0.1, 0.2, 3.0, 0.1, -0.3, 0.4], dtype=torch.float64)
    actions = 0.1 * torch.randn(6, 3, 7, dtype=torch.float64)
    imagined = imagine_states(state, actions)
    assert imagined.shape == (6, 3, 7)
    torch.testing.assert_close(imagined[:, 0], state.expand(6, 7))
    expected = rollout_states(state.expand(6, 7), actions[:, :-1])
    torch.testing.assert_close(imagined[:, 1:], expected)


@pytest.mark.parametrize("context_frames", [1, 3])
def test_incremental_rollout_equals_full_recompute(predictor, context_frames):
    latents, states, actions = _context(predictor, context_frames)
    args = (predictor, latents.squeeze(0) if context_frames == 1 else latents, states, actions)
    fast, naive = WorldModelRollout(*args), NaiveRollout(*args)
    candidates = _candidates(5, 3)
    out_fast, out_naive = fast(candidates), naive(candidates)
    assert out_fast.shape == (5, 3, predictor.tokens_per_frame, predictor.config.embed_dim)
    torch.testing.assert_close(out_fast, out_naive, atol=2e-5, rtol=1e-5)
    # Outputs are normalized latents: zero mean, unit variance per token.
    torch.testing.assert_close(out_fast.mean(-1), torch.zeros(out_fast.shape[:-1]), atol=1e-5, rtol=0)


def test_rollout_matches_forward_on_explicit_history(predictor):
    latents, states, _ = _context(predictor, 1)
    candidates = _candidates(2, 2)
    out = WorldModelRollout(predictor, latents[0], states[0])(candidates)
    imagined = imagine_states(states[0], candidates).float()
    first = normalize_reps(predictor(latents, candidates[:1, :1], imagined[:1, :1]))
    torch.testing.assert_close(out[0, 0], first[0], atol=1e-5, rtol=1e-5)
    history = torch.cat([latents[0], out[0, 0]]).unsqueeze(0)
    second = normalize_reps(predictor(history, candidates[:1], imagined[:1])[:, -predictor.tokens_per_frame :])
    torch.testing.assert_close(out[0, 1], second[0], atol=1e-5, rtol=1e-5)


def test_incremental_planner_returns_the_naive_planners_action(predictor):
    latents, states, _ = _context(predictor, 1)
    goal = normalize_reps(torch.randn(predictor.tokens_per_frame, predictor.config.embed_dim))
    config = CEMConfig(samples=64, iterations=4, topk=8, horizon=2, seed=3)
    fast = CEMPlanner(config).plan(WorldModelRollout(predictor, latents[0], states[0]), GoalObjective(goal))
    naive = CEMPlanner(config).plan(NaiveRollout(predictor, latents[0], states[0]), GoalObjective(goal))
    torch.testing.assert_close(fast.actions, naive.actions, atol=1e-6, rtol=0)
    torch.testing.assert_close(fast.energies, naive.energies, atol=1e-5, rtol=0)


def test_bf16_rollout_stays_close_to_fp32(predictor):
    latents, states, _ = _context(predictor, 1)
    candidates = _candidates(4, 2)
    fp32 = WorldModelRollout(predictor, latents[0], states[0], precision="float32")(candidates)
    bf16 = WorldModelRollout(predictor, latents[0], states[0], precision="bfloat16")(candidates)
    assert bf16.dtype == torch.float32
    assert (bf16 - fp32).abs().mean() < 0.05


def test_bad_context_is_refused(predictor):
    latents, states, _ = _context(predictor, 1)
    bad_state = states[0].clone()
    bad_state[2] = float("nan")
    with pytest.raises(ValueError, match="states contain NaN"):
        WorldModelRollout(predictor, latents[0], bad_state)
    with pytest.raises(ValueError, match="context latents"):
        WorldModelRollout(predictor, latents[0, :5], states[0])
    with pytest.raises(ValueError, match="context actions"):
        NaiveRollout(predictor, latents.expand(2, -1, -1), states.expand(2, 7))
    with pytest.raises(ValueError, match="precision"):
        WorldModelRollout(predictor, latents[0], states[0], precision="fp8")
    with pytest.raises(ValueError, match=r"\[S, H, 7\]"):
        WorldModelRollout(predictor, latents[0], states[0])(torch.zeros(3, 7))


@pytest.mark.slow
def test_compiled_rollout_matches_eager(predictor):
    latents, states, actions = _context(predictor, 2)
    candidates = _candidates(6, 2)
    eager = WorldModelRollout(predictor, latents, states, actions)(candidates)
    compiled_rollout = WorldModelRollout(predictor, latents, states, actions, compile=True)
    compiled = compiled_rollout(candidates)
    assert compiled_rollout._step.is_compiled, compiled_rollout._step.failure
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
    # The compiled planner against the reference method: same first-iteration energies, action within 1 mm.
    goal = GoalObjective(normalize_reps(torch.randn(predictor.tokens_per_frame, predictor.config.embed_dim)))
    config = CEMConfig(samples=64, iterations=4, topk=8, horizon=2, seed=3)
    fast = CEMPlanner(config).plan(compiled_rollout, goal)
    naive = CEMPlanner(config).plan(NaiveRollout(predictor, latents, states, actions), goal)
    torch.testing.assert_close(fast.energies[0], naive.energies[0], atol=1e-5, rtol=0)
    assert float((fast.actions - naive.actions)[:, :3].abs().max()) <= 1e-3


def test_rollout_reuses_its_buffer_and_gives_the_same_result(predictor):
    latents, states, actions = _context(predictor, 2)
    rollout = WorldModelRollout(predictor, latents, states, actions)
    candidates = _candidates(5, 2)
    first = rollout(candidates)
    buffer = rollout._buffer
    torch.testing.assert_close(rollout(candidates), first, atol=0, rtol=0)
    assert rollout._buffer is buffer  # same size: no new allocation
    torch.testing.assert_close(rollout(candidates[:3, :1]), first[:3, :1], atol=1e-5, rtol=1e-5)


def test_compile_failure_falls_back_to_eager(predictor, monkeypatch, caplog):
    from vjepa_ac.planner import compiled

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(compiled, "_COMPILED", {})
    monkeypatch.setattr(compiled.torch, "compile", lambda fn, **kwargs: broken)
    latents, states, actions = _context(predictor, 2)
    candidates = _candidates(4, 2)
    eager = WorldModelRollout(predictor, latents, states, actions)(candidates)
    rollout = WorldModelRollout(predictor, latents, states, actions, compile=True)
    torch.testing.assert_close(rollout(candidates), eager, atol=0, rtol=0)
    assert not rollout._step.is_compiled and "no C++ compiler" in rollout._step.failure
    assert "running it eagerly" in caplog.text


def test_candidate_memory_estimate_covers_the_real_cache(predictor):
    latents, states, actions = _context(predictor, 2)
    rollout = WorldModelRollout(predictor, latents, states, actions)
    frame, state = latents[1:].expand(3, -1, -1), states[1:].expand(3, 7)
    _, cache = predictor.step(frame, torch.zeros(3, 7), state, rollout.prefix.expand(3))
    cache_bytes = sum(t.contiguous().nbytes for t in cache.keys + cache.values) / 3
    assert candidate_memory_bytes(predictor, steps=2) >= cache_bytes

    class Giant:  # the released predictor's sizes, without allocating it
        config = PredictorConfig()
        tokens_per_step, tokens_per_frame = 258, 256

    per_step = candidate_memory_bytes(Giant(), steps=10) / 10
    assert 50e6 < per_step < 56e6
