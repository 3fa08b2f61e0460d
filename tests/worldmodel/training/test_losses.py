"""The objective against hand-computed references, the incremental predictor API, and its gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vjepa_ac.worldmodel import build_predictor, normalize_reps
from vjepa_ac.worldmodel.training.config import LossConfig
from vjepa_ac.worldmodel.training.losses import (
    ac_loss,
    latent_distance,
    per_step_l1,
    rollout_predictions,
    teacher_forcing_predictions,
)

B, T, N, D = 2, 4, 16, 64


@pytest.fixture
def predictor():
    torch.manual_seed(0)
    return build_predictor("vit_ac_tiny").eval()


@pytest.fixture
def clip():
    g = torch.Generator().manual_seed(1)
    latents = normalize_reps(torch.randn(B, T, N, D, generator=g))
    return latents, torch.randn(B, T - 1, 7, generator=g), torch.randn(B, T, 7, generator=g)


def _reference_losses(predictor, latents, actions, states, auto_steps):
    """The reference's train_step arithmetic, written out on flattened [B, T*N, D] tokens."""
    h = latents.flatten(1, 2)
    step = lambda z, a, s: F.layer_norm(predictor(z, a, s), (D,), eps=1e-5)  # noqa: E731
    z_tf = step(h[:, :-N], actions, states[:, :-1])
    z = torch.cat([h[:, :N], z_tf[:, :N]], dim=1)
    for n in range(1, auto_steps):
        z = torch.cat([z, step(z, actions[:, : n + 1], states[:, : n + 1])[:, -N:]], dim=1)
    z_ar = z[:, N:]
    jloss = (z_tf - h[:, N : z_tf.shape[1] + N]).abs().mean()
    sloss = (z_ar - h[:, N : z_ar.shape[1] + N]).abs().mean()
    return jloss, sloss


@pytest.mark.parametrize("rollout_steps", [1, 2, 3])
def test_losses_match_reference_arithmetic(predictor, clip, rollout_steps):
    latents, actions, states = clip
    with torch.no_grad():
        terms = ac_loss(predictor, latents, actions, states, config=LossConfig(rollout_steps=rollout_steps))
        jloss, sloss = _reference_losses(predictor, latents, actions, states, rollout_steps)
    torch.testing.assert_close(terms.teacher_forcing, jloss, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(terms.rollout, sloss, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(terms.total, jloss + sloss)


def test_rollout_equals_incremental_step_api(predictor, clip):
    """Feeding predictions back through the full forward equals the planner's cached step-by-step rollout."""
    latents, actions, states = clip
    with torch.no_grad():
        rollout = rollout_predictions(predictor, latents, actions, states, steps=T - 1)
        incremental = rollout_predictions(predictor, latents, actions, states, steps=T - 1, incremental=True)
    torch.testing.assert_close(rollout, incremental, rtol=1e-5, atol=1e-5)


def test_first_rollout_step_is_teacher_forcing(predictor, clip):
    latents, actions, states = clip
    with torch.no_grad():
        tf = teacher_forcing_predictions(predictor, latents, actions, states)
        rollout = rollout_predictions(predictor, latents, actions, states, steps=1)
    torch.testing.assert_close(rollout[:, 0], tf[:, 0], rtol=1e-5, atol=1e-6)


def test_loss_weights_and_exponent(predictor, clip):
    latents, actions, states = clip
    with torch.no_grad():
        base = ac_loss(predictor, latents, actions, states)
        weighted = ac_loss(predictor, latents, actions, states,
                           config=LossConfig(teacher_forcing_weight=0.5, rollout_weight=2.0))
    torch.testing.assert_close(weighted.total, 0.5 * base.teacher_forcing + 2.0 * base.rollout)
    a, b = torch.zeros(3), torch.tensor([1.0, 2.0, 3.0])
    assert latent_distance(a, b) == pytest.approx(2.0)
    assert latent_distance(a, b, loss_exp=2.0) == pytest.approx((1 + 4 + 9) / 3 / 2)
    torch.testing.assert_close(per_step_l1(torch.zeros(2, 3, 4, 5), torch.ones(2, 3, 4, 5)), torch.ones(3))


def test_gradients_reach_every_trained_parameter(predictor, clip):
    latents, actions, states = clip
    predictor.train()
    ac_loss(predictor, latents, actions, states).total.backward()
    for name, param in predictor.named_parameters():
        if name.startswith("extrinsics_encoder"):
            assert param.grad is None  # unused without use_extrinsics, as in the reference
        else:
            assert param.grad is not None and torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0, name


def test_hierarchical_levels_are_normalised_separately():
    levels, width = 4, 8
    identity = lambda x, a, s, e: x * torch.arange(1, levels * width + 1.0)  # noqa: E731
    latents = torch.randn(1, 3, 2, levels * width)
    actions, states = torch.zeros(1, 2, 7), torch.zeros(1, 3, 7)
    out = teacher_forcing_predictions(identity, latents, actions, states, num_levels=levels)
    chunks = out.unflatten(-1, (levels, width))
    torch.testing.assert_close(chunks.mean(-1), torch.zeros(chunks.shape[:-1]), atol=1e-5, rtol=0)


def test_shape_errors_name_the_problem(predictor, clip):
    latents, actions, states = clip
    with pytest.raises(ValueError, match=r"actions must be \[B, T-1, 7\]"):
        ac_loss(predictor, latents, actions[:, :-1], states)
    with pytest.raises(ValueError, match="token count"):
        wrong_tokens = lambda x, a, s, e: x[:, :-1]  # noqa: E731
        ac_loss(wrong_tokens, latents, actions, states)
    with pytest.raises(ValueError, match="tokens"):
        ac_loss(predictor, latents[:, :, :9], actions, states)  # 9 tokens per frame, the predictor expects 16
