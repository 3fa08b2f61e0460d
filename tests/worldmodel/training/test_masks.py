"""Multi-block masks: disjoint context/target, exact cover before trimming, equal counts per batch, seeded."""

from __future__ import annotations

import pytest
import torch

from vjepa_ac.worldmodel.training.masks import block_size, nearest_target_distance, sample_block_masks
from vjepa_ac.worldmodel.training.pretrain_config import DEFAULT_MASK_SPECS, IMAGE_MASK_SPECS, BlockMaskSpec

GRID = (1, 8, 8)  # the default model: 128 px, patch 16


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("spec", DEFAULT_MASK_SPECS)
def test_context_and_target_are_disjoint_sorted_and_equal_sized(spec):
    context, target = sample_block_masks(GRID, 16, spec, _generator())
    assert context.dtype == target.dtype == torch.int64
    assert context.shape[0] == target.shape[0] == 16 and context.shape[1] >= 1 and target.shape[1] >= 1
    for c, t in zip(context, target):
        assert len(set(c.tolist()) | set(t.tolist())) == len(c) + len(t)
        assert torch.all(c.diff() > 0) and torch.all(t.diff() > 0)
        assert 0 <= min(c.min(), t.min()) and max(c.max(), t.max()) < 64


@pytest.mark.parametrize("spec", DEFAULT_MASK_SPECS)
def test_a_single_sample_covers_the_grid_exactly(spec):
    for seed in range(20):
        context, target = sample_block_masks(GRID, 1, spec, _generator(seed))
        assert sorted(context[0].tolist() + target[0].tolist()) == list(range(64))


def test_targets_are_unions_of_rectangles_of_the_drawn_size():
    spec = BlockMaskSpec(spatial_scale=0.15, num_blocks=1)
    size = block_size(GRID, spec, _generator(5))
    _, target = sample_block_masks(GRID, 4, spec, _generator(5))
    for sample in target:
        rows, cols = sample // 8, sample % 8
        assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == size[1:]
        assert len(sample) == size[1] * size[2]


def test_block_sizes_follow_scale_and_aspect_ratio():
    for seed in range(50):
        frames, height, width = block_size(GRID, BlockMaskSpec(spatial_scale=0.15), _generator(seed))
        assert frames == 1 and 6 <= height * width <= 12 and 0.5 <= height / width <= 2
        _, height, width = block_size(GRID, BlockMaskSpec(spatial_scale=0.7), _generator(seed))
        assert height < 8 and width < 8 and height * width >= 30


def test_mean_masked_fractions_match_meta_short_and_long_range():
    short, long = (sum(sample_block_masks(GRID, 1, spec, _generator(s))[1].shape[1] for s in range(200)) / 200 / 64
                   for spec in DEFAULT_MASK_SPECS)
    assert 0.4 < short < 0.85 and 0.75 < long < 0.97


def test_seeded_determinism():
    spec = DEFAULT_MASK_SPECS[0]
    first = sample_block_masks(GRID, 8, spec, _generator(7))
    again = sample_block_masks(GRID, 8, spec, _generator(7))
    other = sample_block_masks(GRID, 8, spec, _generator(8))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(first, other))


def test_temporal_blocks_span_the_requested_frames():
    spec = BlockMaskSpec(spatial_scale=0.25, num_blocks=1, temporal_scale=0.5)
    _, target = sample_block_masks((4, 4, 4), 3, spec, _generator())
    for sample in target:
        assert len(set((sample // 16).tolist())) == 2


def test_impossible_or_invalid_specs_raise():
    with pytest.raises(ValueError, match="cover the whole"):
        sample_block_masks((1, 1, 1), 1, BlockMaskSpec(spatial_scale=1.0, num_blocks=1), _generator())
    with pytest.raises(ValueError, match="spatial_scale"):
        BlockMaskSpec(spatial_scale=0.0)
    with pytest.raises(ValueError, match="aspect_ratio"):
        BlockMaskSpec(aspect_ratio=(2.0, 1.0))
    with pytest.raises(ValueError, match="batch_size"):
        sample_block_masks(GRID, 0, DEFAULT_MASK_SPECS[0], _generator())


def test_nearest_target_distance_on_a_hand_made_mask():
    """4x4 frame, one target token at (row 1, col 1): distances are plain Euclidean offsets in token units."""
    target = torch.tensor([[5]])
    context = torch.tensor([[0, 3, 6, 15]])
    distance = nearest_target_distance(context, target, (1, 4, 4))
    torch.testing.assert_close(distance, torch.tensor([[2**0.5, 5**0.5, 1.0, 8**0.5]]))


def test_nearest_target_distance_counts_token_frames_and_takes_the_closest_target():
    # 2 token-frames of 2x2: target tokens (t0, r0, c0) and (t1, r1, c0); context (t1, r1, c1) is 1 from the second.
    target = torch.tensor([[0, 6]])
    context = torch.tensor([[7, 3]])  # 3 = (t0, r1, c1) is sqrt(2) from both targets
    torch.testing.assert_close(nearest_target_distance(context, target, (2, 2, 2)), torch.tensor([[1.0, 2**0.5]]))
    # per sample: the second sample's target decides its own distances
    two = nearest_target_distance(torch.tensor([[1], [1]]), torch.tensor([[0], [7]]), (2, 2, 2))
    torch.testing.assert_close(two, torch.tensor([[1.0], [2**0.5]]))


def test_image_mask_spec_is_ten_blocks_of_fifteen_percent():
    (spec,) = IMAGE_MASK_SPECS
    assert (spec.num_blocks, spec.spatial_scale, spec.aspect_ratio, spec.temporal_scale) == (10, 0.15, (0.75, 1.5), 1)
    context, target = sample_block_masks(GRID, 4, spec, _generator())
    assert target.shape[1] > context.shape[1]  # 10 blocks of 9 tokens cover most of an 8x8 grid
