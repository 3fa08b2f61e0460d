"""Multi-block masks on a token grid for V-JEPA pretraining (Meta's `src/masks/multiseq_multiblock3d.py` scheme).

A mask generator draws one block size per batch: a spatial area of `spatial_scale` of the (rows x cols) grid with an
aspect ratio (rows / cols) drawn from `aspect_ratio`, spanning `temporal_scale` of the token frames. Every sample
then places `num_blocks` such blocks at random; their union is the prediction target and the complement is the
context the encoder sees. Every sample of a batch must have the same token counts, so context and target lists are
trimmed to the smallest in the batch, as Meta does (the trimmed tokens are simply left out of both).

Meta's video recipe pairs two generators: 8 blocks of 15% ("short range") and 2 blocks of 70% ("long range");
V-JEPA 2.1 masks images with one generator of 10 blocks of 15% (vjepa2_1_pretraining.md §3).

`nearest_target_distance` gives V-JEPA 2.1's dense-loss geometry: how far each context token is from the closest
target token of its sample (§1 "Distance d").
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .pretrain_config import BlockMaskSpec

_MAX_TRIES = 50  # redraws of a sample whose blocks happen to cover the whole grid


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + (high - low) * torch.rand(1, generator=generator).item()


def _randint(high: int, generator: torch.Generator) -> int:
    """An integer in [0, high)."""
    return int(torch.randint(high, (1,), generator=generator).item())


def block_size(grid: tuple[int, int, int], spec: BlockMaskSpec, generator: torch.Generator) -> tuple[int, int, int]:
    """(frames, rows, cols) of one block: area `spatial_scale * rows * cols`, shape drawn from `aspect_ratio`, each
    side strictly smaller than the grid's (Meta shrinks oversize sides so context is never empty by construction)."""
    frames, rows, cols = grid
    area = max(1, int(rows * cols * spec.spatial_scale))
    ratio = _uniform(*spec.aspect_ratio, generator)
    height = max(1, min(round(math.sqrt(area * ratio)), rows - 1 if rows > 1 else 1))
    width = max(1, min(round(math.sqrt(area / ratio)), cols - 1 if cols > 1 else 1))
    duration = max(1, int(frames * spec.temporal_scale))
    return duration, height, width


def _one_sample(grid: tuple[int, int, int], size: tuple[int, int, int], num_blocks: int,
                generator: torch.Generator) -> tuple[Tensor, Tensor]:
    frames, rows, cols = grid
    duration, height, width = size
    for _ in range(_MAX_TRIES):
        masked = torch.zeros(frames, rows, cols, dtype=torch.bool)
        for _ in range(num_blocks):
            t = _randint(frames - duration + 1, generator)
            top = _randint(rows - height + 1, generator)
            left = _randint(cols - width + 1, generator)
            masked[t : t + duration, top : top + height, left : left + width] = True
        flat = masked.flatten()
        if not flat.all():
            return (~flat).nonzero().squeeze(1), flat.nonzero().squeeze(1)
    raise ValueError(f"{num_blocks} blocks of {size} cover the whole {grid} grid in every draw; use fewer or "
                     f"smaller blocks")


def sample_block_masks(grid: tuple[int, int, int], batch_size: int, spec: BlockMaskSpec,
                       generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(context_idx [B, Kc], target_idx [B, Kt]) for a token grid (frames, rows, cols), both sorted per sample.

    The two are disjoint; before trimming to the batch's smallest counts they cover the grid exactly.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if min(grid) < 1:
        raise ValueError(f"grid must have positive sides, got {tuple(grid)}")
    size = block_size(grid, spec, generator)
    samples = [_one_sample(grid, size, spec.num_blocks, generator) for _ in range(batch_size)]
    keep_context = min(len(context) for context, _ in samples)
    keep_target = min(len(target) for _, target in samples)
    context_idx = torch.stack([context[:keep_context] for context, _ in samples])
    target_idx = torch.stack([target[:keep_target] for _, target in samples])
    return context_idx, target_idx


def token_coordinates(indices: Tensor, grid: tuple[int, int, int]) -> Tensor:
    """(t, row, col) of flat token indices [..., K] on a (frames, rows, cols) grid -> float [..., K, 3]."""
    _, rows, cols = grid
    return torch.stack([indices // (rows * cols), (indices // cols) % rows, indices % cols], dim=-1).float()


def nearest_target_distance(context_idx: Tensor, target_idx: Tensor, grid: tuple[int, int, int]) -> Tensor:
    """Euclidean distance [B, Kc], in token units over (token-frame, row, col), from every context token to the nearest
    target token of the same sample (Meta's `masks_dist.py`, vectorised). Both lists are the trimmed ones the loss
    sees; disjoint lists give distances >= 1."""
    if context_idx.ndim != 2 or target_idx.ndim != 2 or context_idx.shape[0] != target_idx.shape[0]:
        raise ValueError(f"expected context [B, Kc] and target [B, Kt] indices, got {tuple(context_idx.shape)} and "
                         f"{tuple(target_idx.shape)}")
    if target_idx.shape[1] == 0:
        raise ValueError("every sample needs at least one target token to measure distances to")
    # Exact differences rather than the matrix-product shortcut, so integer offsets give exact distances.
    distances = torch.cdist(token_coordinates(context_idx, grid), token_coordinates(target_idx, grid),
                            compute_mode="donot_use_mm_for_euclid_dist")
    return distances.min(dim=-1).values
