"""The V-JEPA self-supervised pretraining predictor: context tokens + mask tokens -> features at masked positions.

Meta's `VisionTransformerPredictor` (`src/models/predictor.py`) with RoPE: the encoder's context tokens are projected
to the predictor width (`predictor_embed`), one learned mask token per mask generator (`mask_tokens.{i}`, zero
initialised) stands in for every target position, all of them go through transformer blocks with 3D RoPE at their
true (t, row, column) grid positions, and the target slots are normed (`predictor_norm`) and projected back to the
encoder width (`predictor_proj`). Attention is unmasked, so the order of the concatenated tokens does not matter.

V-JEPA 2.1's predictor (`app/vjepa_2_1/models/predictor.py`; vjepa2_1_pretraining.md §2, §4, §6) adds, by config:
`num_levels` = 4 takes the encoder's four concatenated levels [.., 4 D] through `predictor_embed` = Linear(4D -> D),
GELU, Linear(D -> width) (keys `predictor_embed.0` / `.2`) and predicts all four levels; `predict_context` adds
`predictor_proj_context`, the head that predicts the target features of the visible tokens (the dense loss);
`modality_embedding` adds a learned `img_mod_embed` / `video_mod_embed` to every token before the blocks.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from vjepa_ac.worldmodel.mask_predictor_config import MaskPredictorConfig
from vjepa_ac.worldmodel.layers import LAYER_NORM_EPS, Block, init_transformer_weights
from vjepa_ac.worldmodel.rope import grid_positions, rope_tables


Modality = Literal["image", "video"]


class MaskPrediction(NamedTuple):
    """Raw predictor outputs: at the target (masked) tokens, and at the context tokens when the predictor has the
    context head (`predict_context`), else None."""

    targets: Tensor
    context: Tensor | None


class MaskPredictor(nn.Module):
    """Predicts encoder features [B, Kt, F] at `target_idx` from context features [B, Kc, F] at `context_idx`, where
    F = `config.feature_dim` (all levels concatenated); with `predict_context` also [B, Kc, F] at `context_idx`."""

    def __init__(self, config: MaskPredictorConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        if c.num_levels > 1:  # Meta's 2.1 fusion of the levels: 4D -> D -> GELU -> predictor width
            self.predictor_embed: nn.Module = nn.Sequential(
                nn.Linear(c.feature_dim, c.embed_dim), nn.GELU(), nn.Linear(c.embed_dim, c.predictor_embed_dim)
            )
        else:
            self.predictor_embed = nn.Linear(c.embed_dim, c.predictor_embed_dim)
        self.mask_tokens = nn.ParameterList(
            [nn.Parameter(torch.zeros(1, 1, c.predictor_embed_dim)) for _ in range(c.num_mask_tokens)]
        )
        self.predictor_blocks = nn.ModuleList(
            [Block(c.predictor_embed_dim, c.num_heads, c.mlp_ratio, qkv_bias=c.qkv_bias) for _ in range(c.depth)]
        )
        self.predictor_norm = nn.LayerNorm(c.predictor_embed_dim, eps=LAYER_NORM_EPS)
        self.predictor_proj = nn.Linear(c.predictor_embed_dim, c.feature_dim)
        if c.predict_context:
            self.predictor_proj_context = nn.Linear(c.predictor_embed_dim, c.feature_dim)
        if c.modality_embedding:
            self.img_mod_embed = nn.Parameter(torch.zeros(1, 1, c.predictor_embed_dim))
            self.video_mod_embed = nn.Parameter(torch.zeros(1, 1, c.predictor_embed_dim))
        init_transformer_weights(self, self.predictor_blocks)
        if c.modality_embedding:  # as the encoder's (vjepa2.md §1.2)
            nn.init.normal_(self.img_mod_embed, std=1e-6)
            nn.init.normal_(self.video_mod_embed, std=1e-6)

    def forward(self, context: Tensor, context_idx: Tensor, target_idx: Tensor, grid: tuple[int, int, int], *,
                mask_index: int = 0, modality: Modality = "video") -> MaskPrediction:
        """context [B, Kc, F] (encoder output on the kept tokens); context_idx [B, Kc] and target_idx [B, Kt]
        index the token grid (frames, rows, cols) in t-major, row-major order. `modality` picks the modality
        embedding (ignored without one). Returns raw (not normalised) predictions."""
        c = self.config
        batch = context.shape[0]
        if context.ndim != 3 or context.shape[-1] != c.feature_dim:
            raise ValueError(f"context must be [B, Kc, {c.feature_dim}], got {tuple(context.shape)}")
        if context_idx.shape != context.shape[:2]:
            raise ValueError(f"context_idx {tuple(context_idx.shape)} does not match context {tuple(context.shape)}")
        if target_idx.ndim != 2 or target_idx.shape[0] != batch:
            raise ValueError(f"target_idx must be [B={batch}, Kt], got {tuple(target_idx.shape)}")
        if not 0 <= mask_index < c.num_mask_tokens:
            raise ValueError(f"mask_index {mask_index} outside the {c.num_mask_tokens} mask tokens")
        if modality not in ("image", "video"):
            raise ValueError(f"modality must be 'image' or 'video', got {modality!r}")
        frames, rows, cols = grid
        positions = torch.cat([context_idx, target_idx], dim=1).to(device=context.device, dtype=torch.int64)
        if int(positions.min()) < 0 or int(positions.max()) >= frames * rows * cols:
            raise ValueError(f"token indices must lie in [0, {frames * rows * cols}) for grid {tuple(grid)}")
        cos, sin = rope_tables(grid_positions(frames, rows, cols, device=context.device),
                               c.predictor_embed_dim // c.num_heads, interleaved=c.rope_interleaved)
        rope = (cos[positions].unsqueeze(1), sin[positions].unsqueeze(1))

        targets = self.mask_tokens[mask_index].expand(batch, target_idx.shape[1], -1)
        x = torch.cat([self.predictor_embed(context), targets.to(context.dtype)], dim=1)
        if c.modality_embedding:
            x = x + (self.img_mod_embed if modality == "image" else self.video_mod_embed)
        for block in self.predictor_blocks:
            x = block(x, rope)[0]
        x = self.predictor_norm(x)
        kept = context.shape[1]
        predicted_context = self.predictor_proj_context(x[:, :kept]) if c.predict_context else None
        return MaskPrediction(self.predictor_proj(x[:, kept:]), predicted_context)


def build_mask_predictor(**overrides) -> MaskPredictor:
    """A randomly initialised pretraining predictor with `MaskPredictorConfig` fields overridden."""
    return MaskPredictor(MaskPredictorConfig(**overrides))
