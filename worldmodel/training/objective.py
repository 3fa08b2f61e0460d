"""The loss of V-JEPA self-supervised pretraining: V-JEPA 2's masked prediction and V-JEPA 2.1's dense, deeply
supervised version, computed by one module so that a DDP wrapper sees a single forward per step.

Section numbers refer to `vjepa2_1_pretraining.md` (the recipe as Meta's `app/vjepa_2_1/train.py` has it):

* §1 L_pred: per mask set, the mean over (batch, target tokens, channels) of |prediction - target| (L1, `loss_exp`
  1), then the plain average over the mask sets.
* §1 L_ctx (2.1 dense loss): the same on the context tokens, from the predictor's context head; each token's error is
  multiplied by w = 1 / sqrt(d), d its distance to the nearest target token (`weight_distance_loss`). A plain mean,
  not normalised by the sum of weights. L = L_pred + lambda(step) * L_ctx with `pretrain_config.ContextLambda`
  (warm-up then hold) and a lambda per modality.
* §2 deep self-supervision: targets are the target encoder's four levels, each layer-normed on its own (no affine,
  eps 1e-5); the channel mean is then the equal-weight average of the four per-level losses.
* §4 joint image + video: each modality is its own batch (never mixed); their losses are averaged 1:1, which is what
  DDP averaging over half image ranks and half video ranks gives in Meta's runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vjepa_ac.worldmodel.encoder import VisionTransformer
from vjepa_ac.worldmodel.mask_predictor import MaskPredictor, Modality

_RANK_SAMPLE_ROWS = 1024  # token rows used for the effective-rank monitor (an SVD of at most this many rows)


def context_weights(distance: Tensor) -> Tensor:
    """Per-token weights of the context loss from distances to the nearest target: d ** -0.5 (in (0, 1] for d >= 1)."""
    return distance.rsqrt()


def gather_tokens(features: Tensor, indices: Tensor) -> Tensor:
    """features [B, N, F] at per-sample token indices [B, K] -> [B, K, F]."""
    return torch.gather(features, 1, indices.unsqueeze(-1).expand(-1, -1, features.shape[-1]))


@dataclass
class MaskSet:
    """One mask generator's draw for a batch: kept (context) and predicted (target) token indices [B, K], the mask
    token it uses, and the per-context-token loss weights [B, Kc] (None = unweighted)."""

    context_idx: Tensor
    target_idx: Tensor
    mask_index: int = 0
    weights: Tensor | None = None


@dataclass
class ModalityBatch:
    """One modality's share of a step: clips [B, 3, T, H, W], their token grid, the normalised target features
    [B, N, F] of the EMA encoder, the mask sets, and the context-loss weight lambda at this step (0 = no context
    loss even if the predictor has the head)."""

    modality: Modality
    clips: Tensor
    grid: tuple[int, int, int]
    targets: Tensor
    masks: Sequence[MaskSet]
    context_lambda: float = 0.0


class PretrainObjective(nn.Module):
    """Context encoder + mask predictor -> the pretraining loss of a step (see the module docstring).

    `hierarchical` feeds and predicts the encoder's concatenated levels (2.1 deep self-supervision); the predictor's
    `num_levels` must match. Returns the loss and a dict of detached monitoring values (per modality, per level).
    """

    def __init__(self, encoder: VisionTransformer, predictor: MaskPredictor, *, hierarchical: bool) -> None:
        super().__init__()
        levels = encoder.config.num_levels if hierarchical else 1
        if predictor.config.num_levels != levels:
            raise ValueError(f"the predictor takes {predictor.config.num_levels} feature levels, the encoder gives "
                             f"{levels}")
        self.encoder = encoder
        self.predictor = predictor
        self.hierarchical = hierarchical

    @property
    def num_levels(self) -> int:
        return self.predictor.config.num_levels

    def forward(self, batches: Sequence[ModalityBatch]) -> tuple[Tensor, dict[str, Tensor]]:
        if not batches:
            raise ValueError("a step needs at least one modality batch")
        levels = self.num_levels
        stats: dict[str, Tensor] = {}
        modality_losses = []
        level_sum = 0.0
        for batch in batches:
            name = batch.modality
            pred_losses, ctx_losses, level_losses, context_std = [], [], [], []
            for mask in batch.masks:
                context = self.encoder(batch.clips, masks=mask.context_idx, return_hierarchical=self.hierarchical)
                prediction = self.predictor(context, mask.context_idx, mask.target_idx, batch.grid,
                                            mask_index=mask.mask_index, modality=name)
                error = (prediction.targets.float() - gather_tokens(batch.targets, mask.target_idx)).abs()
                pred_losses.append(error.mean())
                level_losses.append(error.detach().unflatten(-1, (levels, -1)).mean(dim=(0, 1, 3)))
                context_std.append(_feature_std(context.detach().float(), levels)[-1])
                if prediction.context is not None:
                    error = (prediction.context.float() - gather_tokens(batch.targets, mask.context_idx)).abs()
                    if mask.weights is not None:
                        error = error * mask.weights.unsqueeze(-1)
                    ctx_losses.append(error.mean())
            loss_pred = torch.stack(pred_losses).mean()
            loss = loss_pred
            stats[f"loss_pred_{name}"] = loss_pred.detach()
            if ctx_losses:
                loss_ctx = torch.stack(ctx_losses).mean()
                loss = loss + batch.context_lambda * loss_ctx
                stats[f"loss_ctx_{name}"] = loss_ctx.detach()
                stats[f"lambda_{name}"] = torch.tensor(float(batch.context_lambda))
            stats[f"loss_{name}"] = loss.detach()
            stats[f"context_std_{name}"] = torch.stack(context_std).mean()
            level_sum = level_sum + torch.stack(level_losses).mean(dim=0)
            modality_losses.append(loss)
            stats.update(collapse_monitors(batch.targets, levels, prefix=f"target_{name}_"))
            stats[f"prediction_std_{name}"] = _feature_std(prediction.targets.detach().float(), levels).mean()
        if levels > 1:
            for level, value in enumerate(level_sum / len(batches)):
                stats[f"loss_pred_level{level}"] = value
        total = torch.stack(modality_losses).mean()
        return total, stats


def _feature_std(features: Tensor, num_levels: int) -> Tensor:
    """Per level: the spread of each channel over all tokens of the batch, averaged over channels -> [num_levels].
    It falls towards 0 when features collapse to a constant."""
    flat = features.reshape(-1, features.shape[-1]).unflatten(-1, (num_levels, -1))
    return flat.std(dim=0).mean(dim=-1)


def effective_rank(features: Tensor) -> Tensor:
    """exp(entropy) of the normalised singular values of token features [K, D] (centred): D for isotropic features,
    1 when all tokens lie on one direction (dimensional collapse)."""
    centred = features - features.mean(dim=0, keepdim=True)
    singular = torch.linalg.svdvals(centred)
    p = singular / singular.sum().clamp_min(1e-12)
    entropy = -(p * p.clamp_min(1e-12).log()).sum()
    return entropy.exp()


@torch.no_grad()
def collapse_monitors(targets: Tensor, num_levels: int, *, prefix: str = "target_") -> dict[str, Tensor]:
    """Per-level feature std over tokens and batch (`{prefix}std_l{i}`) and the last level's effective rank over up to
    1024 token rows (`{prefix}rank`, out of D) of normalised target features [B, N, levels * D]."""
    stats = {f"{prefix}std_l{i}": value for i, value in enumerate(_feature_std(targets.float(), num_levels))}
    last = targets.reshape(-1, targets.shape[-1])[:, -targets.shape[-1] // num_levels:].float()
    step = max(1, math.ceil(last.shape[0] / _RANK_SAMPLE_ROWS))
    stats[f"{prefix}rank"] = effective_rank(last[::step])
    return stats
