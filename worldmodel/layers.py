"""Transformer building blocks shared by the encoder and the predictor.

Parameter names (`norm1`, `attn.qkv`, `attn.proj`, `norm2`, `mlp.fc1`, `mlp.fc2`) follow Meta's V-JEPA 2 modules so
that released state dicts load without renaming.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vjepa_ac.worldmodel.rope import apply_rope

LAYER_NORM_EPS = 1e-6


class MLP(nn.Module):
    """fc1 -> exact GELU -> fc2."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class RoPEAttention(nn.Module):
    """Multi-head self-attention with 3D RoPE on queries and keys, through `F.scaled_dot_product_attention`.

    `forward` can prepend cached keys/values of earlier tokens (the predictor's incremental rollout) and returns the
    keys and values it attended over (past + new, rotated) so the caller can cache them.
    """

    def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self,
        x: Tensor,
        rope: tuple[Tensor, Tensor],
        *,
        attn_mask: Tensor | None = None,
        past: tuple[Tensor, Tensor] | None = None,
        buffer: tuple[Tensor, Tensor, int] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """x [B, N, D]; rope = (cos, sin) [N, R]; attn_mask bool [N, N_total] (True = may attend).

        Earlier keys/values come either as `past` (concatenated in front of the new ones) or as `buffer` = (keys,
        values, filled): preallocated [B, heads, capacity, head_dim] tensors whose first `filled` tokens hold the past;
        the new keys/values are written in place after them, so no step copies the history again.

        Returns (output [B, N, D], keys, values [B, heads, N_past + N, head_dim]).
        """
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim)).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(qkv[:2], *rope)  # queries and keys in one pass
        v = qkv[2]
        if buffer is not None:
            keys, values, filled = buffer
            keys[:, :, filled : filled + tokens] = k
            values[:, :, filled : filled + tokens] = v
            k, v = keys[:, :, : filled + tokens], values[:, :, : filled + tokens]
        elif past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        out = out.transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj(out), k, v


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, *, qkv_bias: bool = True) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = RoPEAttention(dim, num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(
        self,
        x: Tensor,
        rope: tuple[Tensor, Tensor],
        *,
        attn_mask: Tensor | None = None,
        past: tuple[Tensor, Tensor] | None = None,
        buffer: tuple[Tensor, Tensor, int] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Returns (output, keys, values); see `RoPEAttention.forward`."""
        attended, k, v = self.attn(self.norm1(x), rope, attn_mask=attn_mask, past=past, buffer=buffer)
        x = x + attended
        x = x + self.mlp(self.norm2(x))
        return x, k, v



def init_transformer_weights(module: nn.Module, blocks: nn.ModuleList, *, std: float = 0.02) -> None:
    """Meta's initialisation: truncated-normal linear/conv weights, zero biases, unit LayerNorms, and the output
    projections of block `i` (1-based) divided by sqrt(2 i) so deep stacks start near the identity."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv3d)):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    with torch.no_grad():
        for layer_id, block in enumerate(blocks, start=1):
            block.attn.proj.weight.div_((2.0 * layer_id) ** 0.5)
            block.mlp.fc2.weight.div_((2.0 * layer_id) ** 0.5)
