"""3D rotary position embeddings (RoPE) as used by V-JEPA 2 and V-JEPA 2.1.

Each attention head's dimension is split into three equal even-sized chunks for the time, row and column positions
(`d = 2 * ((head_dim // 3) // 2)` each); any remainder is left unrotated. Within a chunk of size `d`, frequency
`j` is `10000 ** (-j / (d / 2))` and elements are rotated in adjacent pairs `(2i, 2i + 1)`.

The two model generations differ in how the per-frequency angles are laid out over the chunk:

* V-JEPA 2 (`interleaved=False`) *tiles* them, `[a_0 .. a_{d/2-1}, a_0 .. a_{d/2-1}]`, so the two members of a pair
  use different frequencies. This is not a proper rotation, but the released weights were trained with it, so it is
  reproduced exactly.
* V-JEPA 2.1 (`interleaved=True`) repeats each angle twice, `[a_0, a_0, a_1, a_1, ...]`: a true pairwise rotation.

Tables are computed in float32 and cached by the callers (they only depend on the token positions), so the per-layer
cost is two multiplies and an add.
"""

from __future__ import annotations

import torch
from torch import Tensor

ROPE_BASE = 10000.0


def rope_axis_dim(head_dim: int) -> int:
    """Number of head dimensions rotated by each of the three position axes."""
    return 2 * ((head_dim // 3) // 2)


def rope_tables(positions: Tensor, head_dim: int, *, interleaved: bool) -> tuple[Tensor, Tensor]:
    """cos and signed-sin tables for tokens at `positions` [N, 3] (t, h, w; may be fractional).

    Returns two float32 tensors [N, head_dim], to be applied with `apply_rope`. They cover the whole head: the
    unrotated tail has cos 1 and sin 0, and the sin of the first member of each pair is negated, so that applying
    them is `x * cos + swap_pairs(x) * sin` with no slicing or concatenation.
    """
    if positions.ndim != 2 or positions.shape[-1] != 3:
        raise ValueError(f"positions must be [N, 3] (t, h, w), got {tuple(positions.shape)}")
    axis_dim = rope_axis_dim(head_dim)
    half = axis_dim // 2
    exponent = torch.arange(half, dtype=torch.float32, device=positions.device) / half
    omega = 1.0 / (ROPE_BASE**exponent)
    # [N, 3, half]: one set of angles per axis.
    angles = positions.to(torch.float32).unsqueeze(-1) * omega
    if interleaved:
        angles = angles.repeat_interleave(2, dim=-1)
    else:
        angles = torch.cat([angles, angles], dim=-1)
    angles = angles.flatten(1)
    tail = head_dim - angles.shape[-1]
    cos = torch.cat([angles.cos(), angles.new_ones(angles.shape[0], tail)], dim=-1)
    sin = torch.cat([angles.sin(), angles.new_zeros(angles.shape[0], tail)], dim=-1)
    sign = torch.tensor([-1.0, 1.0], device=positions.device).repeat(head_dim // 2)
    return cos, sin * sign


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate `x` [..., N, head_dim] in adjacent pairs with tables from `rope_tables` (broadcast over leading dims).

    `out[2i] = x[2i] cos_2i - x[2i+1] sin_2i` and `out[2i+1] = x[2i+1] cos_2i+1 + x[2i] sin_2i+1`; dims past the
    three rotated chunks pass through unchanged.
    """
    # Under autocast q/k arrive in bf16; the tables follow them so SDPA sees one dtype.
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    swapped = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
    return x * cos + swapped * sin


def grid_positions(
    num_frames: int, height: int, width: int, *, spatial_scale: tuple[float, float] = (1.0, 1.0),
    device: torch.device | str | None = None,
) -> Tensor:
    """(t, h, w) of every token of a [num_frames, height, width] grid in t-major, row-major order -> [N, 3].

    `spatial_scale` multiplies the row and column indices (V-JEPA 2.1's RoPE interpolation).
    """
    t = torch.arange(num_frames, dtype=torch.float32, device=device)
    h = torch.arange(height, dtype=torch.float32, device=device) * spatial_scale[0]
    w = torch.arange(width, dtype=torch.float32, device=device) * spatial_scale[1]
    grid = torch.stack(torch.meshgrid(t, h, w, indexing="ij"), dim=-1)
    return grid.reshape(-1, 3)
