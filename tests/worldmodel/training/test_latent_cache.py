"""Latent cache: round trips, settings checks, concurrent writers, and damage that must be reported."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from vjepa_ac.worldmodel.training.latent_cache import CacheSpec, CorruptCacheError, LatentCache, episode_key

SPEC = CacheSpec(tokens_per_frame=4, embed_dim=8, dtype="float16")


def _write(cache: LatentCache, episode_id: str, frames: int = 6, seed: int = 0):
    latents = torch.randn(frames, 4, 8, generator=torch.Generator().manual_seed(seed))
    states = np.random.default_rng(seed).normal(size=(frames, 7))
    chunks = [latents[i : i + 4] for i in range(0, frames, 4)]
    episode = cache.write_episode(episode_id, chunks, frame_indices=list(range(0, 4 * frames, 4)), states=states,
                                  video_fps=15.0)
    return episode, latents, states


@pytest.mark.parametrize("dtype, tol", [("float16", 1e-3), ("bfloat16", 1e-2)])
def test_round_trip_with_manifest(tmp_path, dtype, tol):
    cache = LatentCache.create(tmp_path, CacheSpec(tokens_per_frame=4, embed_dim=8, dtype=dtype))
    episode, latents, states = _write(cache, "LAB+abc+2024-01-01")
    reopened = LatentCache.open(tmp_path)
    [listed] = reopened.episodes()
    assert listed.episode_id == "LAB+abc+2024-01-01" and listed.frame_indices == [0, 4, 8, 12, 16, 20]
    np.testing.assert_array_equal(listed.states, states)  # JSON keeps float64 exactly
    out = reopened.read(listed, [1, 3, 5])
    assert out.dtype == torch.float32 and out.shape == (3, 4, 8)
    torch.testing.assert_close(out, latents[[1, 3, 5]], atol=tol * latents.abs().max().item(), rtol=0)
    assert reopened.has_episode("LAB+abc+2024-01-01") and not reopened.has_episode("other")


def test_index_is_used_only_while_it_matches_the_manifests(tmp_path):
    cache = LatentCache.create(tmp_path, SPEC)
    _write(cache, "a")
    assert cache.write_index() == 1
    _write(cache, "b", seed=1)  # written after the index: must still be listed
    assert [e.episode_id for e in cache.episodes()] == sorted(["a", "b"], key=episode_key)


def test_create_refuses_other_settings(tmp_path):
    LatentCache.create(tmp_path, SPEC)
    with pytest.raises(ValueError, match="other settings.*embed_dim"):
        LatentCache.create(tmp_path, CacheSpec(tokens_per_frame=4, embed_dim=16))
    with pytest.raises(FileNotFoundError, match="not a latent cache"):
        LatentCache.open(tmp_path / "missing")


def test_nan_states_rejected_naming_the_episode(tmp_path):
    cache = LatentCache.create(tmp_path, SPEC)
    states = np.zeros((2, 7))
    states[1, 3] = np.nan
    with pytest.raises(ValueError, match="episode ep-nan: states are not finite at frame 4"):
        cache.write_episode("ep-nan", [torch.zeros(2, 4, 8)], frame_indices=[0, 4], states=states)
    assert not cache.has_episode("ep-nan")


def test_shape_mismatch_rejected(tmp_path):
    cache = LatentCache.create(tmp_path, SPEC)
    with pytest.raises(ValueError, match=re.escape("does not match the cache's [k, 4, 8]")):
        cache.write_episode("x", [torch.zeros(2, 5, 8)], frame_indices=[0, 1], states=np.zeros((2, 7)))


@pytest.mark.parametrize("damage", ["flip", "delete", "garbage"])
def test_damaged_chunk_is_reported_not_used(tmp_path, damage):
    cache = LatentCache.create(tmp_path, SPEC)
    episode, _, _ = _write(cache, "ep")
    chunk = tmp_path / "latents" / episode.key / "2.0.0"
    if damage == "flip":
        # Rewrite frame 2 with other values through tensorstore: the chunk decodes fine, only the CRC can tell.
        cache._array(episode.key)[2].write(np.ones((4, 8), dtype=np.float16)).result()
    elif damage == "delete":
        chunk.unlink()  # tensorstore would silently return zeros for a missing chunk
    else:
        chunk.write_bytes(b"\x00garbage" * 8)
    fresh = LatentCache.open(tmp_path)
    fresh.read(episode, [0, 1, 3])  # undamaged frames still read
    with pytest.raises(CorruptCacheError, match=r"episode ep .*frame 2|episode ep .*cannot be decoded"):
        fresh.read(episode, [1, 2])
    assert list(fresh.verify()) == [episode.key]


def test_damaged_manifest_is_reported(tmp_path):
    cache = LatentCache.create(tmp_path, SPEC)
    episode, _, _ = _write(cache, "ep")
    (tmp_path / "episodes" / f"{episode.key}.json").write_text('{"key": "ep", "truncat')
    with pytest.raises(CorruptCacheError, match="manifest .* is damaged"):
        LatentCache.open(tmp_path).episodes()
    assert list(LatentCache.open(tmp_path).verify()) == [episode.key]
