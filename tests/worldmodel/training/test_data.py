"""Resumable sampler, episode split and cached clips."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from vjepa_ac.data.droid.poses import states_to_actions
from vjepa_ac.worldmodel.training.data import CachedClipDataset, ResumableSampler, split_episodes
from vjepa_ac.worldmodel.training.latent_cache import LatentCache


def _take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_sampler_restarts_at_any_position():
    full = _take(ResumableSampler(7, seed=3), 30)
    for start in (0, 5, 7, 13):
        assert _take(ResumableSampler(7, seed=3, start=start), 30 - start) == full[start:]


def test_sampler_epochs_are_permutations_and_ranks_partition_them():
    one = _take(ResumableSampler(6, seed=1), 12)
    assert sorted(i for i, _ in one[:6]) == list(range(6)) and sorted(i for i, _ in one[6:]) == list(range(6))
    assert [i for i, _ in one[:6]] != [i for i, _ in one[6:]]  # reshuffled per epoch
    ranks = [_take(ResumableSampler(6, seed=1, rank=r, world_size=2), 3) for r in range(2)]
    # Rank r holds global slots r, r+2, r+4 of the same permutation, with the same per-sample seeds.
    assert sorted(ranks[0] + ranks[1]) == sorted(one[:6])
    assert len({seed for _, seed in one}) == 12


def test_split_is_stable_and_respects_explicit_ids():
    ids = [f"ep{i}" for i in range(200)]
    train, val = split_episodes(ids, val_fraction=0.1)
    assert 5 < len(val) < 40 and not set(train) & set(val)
    train2, val2 = split_episodes(list(reversed(ids)) + ["new"], val_fraction=0.1)
    assert set(val) <= set(val2)  # adding or reordering episodes does not move old ones
    assert split_episodes(ids, val_fraction=0.1, val_episodes=["ep3"])[1] == ["ep3"]
    with pytest.raises(ValueError, match="not found"):
        split_episodes(ids, val_fraction=0.0, val_episodes=["nope"])


def test_cached_clips(latent_cache_dir):
    cache = LatentCache.open(latent_cache_dir)
    dataset = CachedClipDataset(cache, cache.episodes(), frames_per_clip=4, fps=4.0)
    assert len(dataset) == 5
    item = dataset[(2, 1234)]
    assert item["latents"].shape == (4, 16, 64) and item["latents"].dtype == torch.float32
    assert item["actions"].shape == (3, 7) and item["states"].shape == (4, 7) and item["extrinsics"].shape == (4, 6)
    assert torch.all(torch.diff(item["frame_indices"]) == 4)  # 15 fps video at 4 fps: stride ceil(15/4)
    np.testing.assert_allclose(item["actions"].numpy(), states_to_actions(item["states"].double().numpy()),
                               atol=1e-6)
    again = dataset[(2, 1234)]
    assert torch.equal(again["latents"], item["latents"])  # a pure function of (index, seed)
    starts = {int(dataset[(2, s)]["frame_indices"][0]) for s in range(40)}
    assert len(starts) > 3


def test_clip_rate_must_fit_the_cache(latent_cache_dir):
    cache = LatentCache.open(latent_cache_dir)
    with pytest.raises(ValueError, match="re-encode with a compatible --fps"):
        CachedClipDataset(cache, cache.episodes(), frames_per_clip=4, fps=5.0)  # stride 3 vs cached stride 4
    assert len(CachedClipDataset(cache, cache.episodes(), frames_per_clip=20)) == 0  # too short: skipped
