"""The V-JEPA 2-AC training objective, written against any predictor-like callable.

A predictor here is anything called as `predictor(x [B, T*N, D], actions [B, T, 7], states [B, T, 7], extrinsics)`
that returns raw next-frame predictions of the same shape as `x` (output block t predicts frame t+1): an
`ACPredictor`, the same wrapped in DDP, or a stand-in in tests. Latents are [B, T, N, D] and already passed through
the non-affine layer norm (`worldmodel.normalize_reps`), as the encoder side of the reference does.

Objective (reference `app/vjepa_droid/train.py` after PR #25):
  * teacher forcing: predict frames 1..T-1 from ground-truth frames 0..T-2;
  * rollout: start from [h_0, ẑ_1] (ẑ_1 = the first teacher-forced prediction) and feed each new prediction back,
    with ground-truth states, until `rollout_steps` frames ẑ_1..ẑ_k exist; score them against h_1..h_k;
  * total = w_tf * teacher forcing + w_rollout * rollout (equal weights by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from vjepa_ac.worldmodel import normalize_reps

from .config import LossConfig

Predictor = Callable[[Tensor, Tensor, Tensor, "Tensor | None"], Tensor]


@dataclass
class LossTerms:
    """Scalar loss tensors of one batch (the total carries the graph)."""

    total: Tensor
    teacher_forcing: Tensor
    rollout: Tensor


def check_clip_shapes(latents: Tensor, actions: Tensor, states: Tensor, extrinsics: Tensor | None = None) -> None:
    """Raise a ValueError naming the mismatch when a clip's tensors do not line up."""
    if latents.ndim != 4:
        raise ValueError(f"latents must be [B, T, N, D], got shape {tuple(latents.shape)}")
    batch, frames = latents.shape[:2]
    if actions.shape[:2] != (batch, frames - 1) or actions.ndim != 3:
        raise ValueError(f"actions must be [B, T-1, 7] = [{batch}, {frames - 1}, 7], got {tuple(actions.shape)}")
    if states.shape[:2] != (batch, frames) or states.ndim != 3:
        raise ValueError(f"states must be [B, T, 7] = [{batch}, {frames}, 7], got {tuple(states.shape)}")
    if extrinsics is not None and extrinsics.shape[:2] != (batch, frames):
        raise ValueError(f"extrinsics must be [B, T, 6] = [{batch}, {frames}, 6], got {tuple(extrinsics.shape)}")


def _predict(predictor: Predictor, latents: Tensor, actions: Tensor, states: Tensor, extrinsics: Tensor | None,
             num_levels: int) -> Tensor:
    """Run the predictor on [B, t, N, D] latents and return layer-normed predictions [B, t, N, D]."""
    batch, frames, tokens, dim = latents.shape
    out = predictor(latents.reshape(batch, frames * tokens, dim), actions, states, extrinsics)
    if out.shape != (batch, frames * tokens, dim):
        raise ValueError(
            f"predictor returned shape {tuple(out.shape)} for input {(batch, frames * tokens, dim)}: the latents' "
            f"token count ({tokens} per frame) or width ({dim}) does not match the predictor"
        )
    return normalize_reps(out, num_levels).reshape(batch, frames, tokens, dim)


def teacher_forcing_predictions(
    predictor: Predictor, latents: Tensor, actions: Tensor, states: Tensor, extrinsics: Tensor | None = None,
    *, num_levels: int = 1,
) -> Tensor:
    """Predictions ẑ_1..ẑ_{T-1} [B, T-1, N, D] of frames 1..T-1 from ground-truth frames 0..T-2.

    `num_levels` > 1 layer-norms each level of V-JEPA 2.1 hierarchical features on its own.
    """
    check_clip_shapes(latents, actions, states, extrinsics)
    ext = None if extrinsics is None else extrinsics[:, :-1]
    return _predict(predictor, latents[:, :-1], actions, states[:, :-1], ext, num_levels)


def rollout_predictions(
    predictor: Predictor,
    latents: Tensor,
    actions: Tensor,
    states: Tensor,
    extrinsics: Tensor | None = None,
    *,
    steps: int,
    first_prediction: Tensor | None = None,
    num_levels: int = 1,
    incremental: bool = False,
) -> Tensor:
    """Autoregressive predictions ẑ_1..ẑ_steps [B, steps, N, D] from the ground-truth first frame only.

    Each prediction is layer-normed and appended to the context; states stay ground truth (the reference's choice:
    in planning the states are integrated from the actions, so they are known). `first_prediction` ([B, N, D]) reuses
    ẑ_1 from teacher forcing, which the block-causal predictor computes identically. `incremental` runs the
    predictor's cached `step` API instead of re-running the whole context (same result, linear instead of quadratic
    cost; for a bare `ACPredictor`, e.g. in evaluation, since DDP only synchronises gradients through `forward`).
    """
    check_clip_shapes(latents, actions, states, extrinsics)
    if not 1 <= steps < latents.shape[1]:
        raise ValueError(f"rollout steps must be in [1, T-1] = [1, {latents.shape[1] - 1}], got {steps}")
    if incremental:
        frame, cache, outputs = latents[:, 0], None, []
        for t in range(steps):
            ext = None if extrinsics is None else extrinsics[:, t]
            out, cache = predictor.step(frame, actions[:, t], states[:, t], cache, ext)
            frame = normalize_reps(out, num_levels)
            outputs.append(frame)
        return torch.stack(outputs, dim=1)
    if first_prediction is None:
        ext = None if extrinsics is None else extrinsics[:, :1]
        first_prediction = _predict(predictor, latents[:, :1], actions[:, :1], states[:, :1], ext, num_levels)[:, 0]
    context = [latents[:, 0], first_prediction]
    for n in range(1, steps):
        ext = None if extrinsics is None else extrinsics[:, : n + 1]
        stacked = torch.stack(context, dim=1)
        next_frame = _predict(predictor, stacked, actions[:, : n + 1], states[:, : n + 1], ext, num_levels)[:, -1]
        context.append(next_frame)
    return torch.stack(context[1:], dim=1)


def latent_distance(predicted: Tensor, target: Tensor, loss_exp: float = 1.0) -> Tensor:
    """mean(|predicted - target| ** loss_exp) / loss_exp, computed in float32 (the reference's `loss_fn`)."""
    diff = (predicted.float() - target.float()).abs()
    if loss_exp != 1.0:
        diff = diff.pow(loss_exp)
    return diff.mean() / loss_exp


def ac_loss(
    predictor: Predictor,
    latents: Tensor,
    actions: Tensor,
    states: Tensor,
    extrinsics: Tensor | None = None,
    config: LossConfig | None = None,
    *,
    num_levels: int = 1,
) -> LossTerms:
    """Teacher-forcing plus rollout loss of one batch of clips."""
    config = config or LossConfig()
    tf = teacher_forcing_predictions(predictor, latents, actions, states, extrinsics, num_levels=num_levels)
    tf_loss = latent_distance(tf, latents[:, 1:], config.loss_exp)
    rollout = rollout_predictions(
        predictor, latents, actions, states, extrinsics, steps=config.rollout_steps, first_prediction=tf[:, 0],
        num_levels=num_levels,
    )
    rollout_loss = latent_distance(rollout, latents[:, 1 : config.rollout_steps + 1], config.loss_exp)
    total = config.teacher_forcing_weight * tf_loss + config.rollout_weight * rollout_loss
    return LossTerms(total=total, teacher_forcing=tf_loss, rollout=rollout_loss)


def per_step_l1(predicted: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error per horizon step: [B, S, N, D] pairs -> [S] (float32)."""
    return (predicted.float() - target.float()).abs().mean(dim=(0, 2, 3))
