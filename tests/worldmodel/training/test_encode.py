"""`vjepa-ac encode`: latents equal direct encoding, resumes, shards across processes, verifies and repairs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from data.droid import open_episode
from vjepa_ac.cli import main
from worldmodel import encode_frames, load_encoder
from worldmodel.training.latent_cache import LatentCache


def _encode_args(cache, checkpoint, *episodes, extra=()):
    return ["encode", *map(str, episodes), "--out", str(cache), "--encoder-checkpoint", str(checkpoint), *extra]


def test_cached_latents_equal_direct_encoding(latent_cache_dir, episode_folders, tiny_checkpoint):
    cache = LatentCache.open(latent_cache_dir)
    assert cache.spec.tokens_per_frame == 16 and cache.spec.embed_dim == 64
    assert cache.spec.encoder["checkpoint"] == str(tiny_checkpoint.resolve())
    encoder = load_encoder(tiny_checkpoint)
    with open_episode(episode_folders[1]) as episode:
        entry = next(e for e in cache.episodes() if e.episode_id == episode.episode_id)
        assert entry.frame_indices == list(range(0, 40, 4))
        np.testing.assert_array_equal(entry.states, episode.states()[::4])
        np.testing.assert_array_equal(entry.extrinsics, episode.extrinsics("left")[::4])
        frames = torch.from_numpy(episode.read_frames("left", entry.frame_indices))[None]
    direct = encode_frames(encoder, frames)[0]
    torch.testing.assert_close(cache.read(entry, range(entry.num_frames)), direct, atol=5e-3, rtol=0)


def test_rerun_skips_cached_episodes(tmp_path, episode_folders, tiny_checkpoint, capsys):
    cache_dir = tmp_path / "cache"
    assert main(_encode_args(cache_dir, tiny_checkpoint, *episode_folders[:2])) == 0
    assert main(_encode_args(cache_dir, tiny_checkpoint, *episode_folders[:3])) == 0
    assert "encoded 1, already cached 2" in capsys.readouterr().out
    with pytest.raises(ValueError, match="other settings"):
        main(_encode_args(cache_dir, tiny_checkpoint, *episode_folders[:1], extra=["--fps", "5"]))


def test_two_processes_fill_one_cache(tmp_path, droid_root, tiny_checkpoint):
    cache_dir = tmp_path / "cache"
    other = subprocess.Popen(
        [sys.executable, "-m", "vjepa_ac.cli",
         *_encode_args(cache_dir, tiny_checkpoint, droid_root, extra=["--shard", "1/2"])],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert main(_encode_args(cache_dir, tiny_checkpoint, droid_root, extra=["--shard", "0/2"])) == 0
    assert other.wait(180) == 0, other.stderr.read().decode()[-2000:]
    cache = LatentCache.open(cache_dir)
    assert len(cache.episodes()) == 5 and cache.verify() == {}


def test_verify_reports_and_repair_reencodes(tmp_path, latent_cache_dir, episode_folders, tiny_checkpoint, capsys):
    cache_dir = tmp_path / "cache"
    shutil.copytree(latent_cache_dir, cache_dir)
    victim = LatentCache.open(cache_dir).episodes()[0]
    (cache_dir / "latents" / victim.key / "3.0.0").unlink()
    assert main(["encode", "--out", str(cache_dir), "--verify"]) == 1
    err = capsys.readouterr().err
    assert f"DAMAGED {victim.key}" in err and "frame 3" in err
    assert main(_encode_args(cache_dir, tiny_checkpoint, *episode_folders, extra=["--repair"])) == 0
    out = capsys.readouterr()
    assert "encoded 1, already cached 4" in out.out and f"dropped damaged episode {victim.key}" in out.err
    assert main(["encode", "--out", str(cache_dir), "--verify"]) == 0


def test_nan_states_fail_that_episode_only(tmp_path, episode_folders, tiny_checkpoint, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(episode_folders[0], broken)
    with h5py.File(broken / "trajectory.h5", "r+") as h5:
        h5["observation/robot_state/cartesian_position"][8, 2] = np.nan
    cache_dir = tmp_path / "cache"
    assert main(_encode_args(cache_dir, tiny_checkpoint, broken, episode_folders[1])) == 1
    err = capsys.readouterr().err
    assert f"FAILED {broken}" in err and "not finite" in err
    assert len(LatentCache.open(cache_dir).episodes()) == 1


def test_episode_interrupted_before_its_manifest_is_redone(tmp_path, latent_cache_dir, episode_folders,
                                                          tiny_checkpoint, capsys):
    cache_dir = tmp_path / "cache"
    shutil.copytree(latent_cache_dir, cache_dir)
    victim = LatentCache.open(cache_dir).episodes()[2]
    # A kill while writing leaves latents without a manifest (plus maybe an index naming it): not cached.
    (cache_dir / "episodes" / f"{victim.key}.json").unlink()
    assert len(LatentCache.open(cache_dir).episodes()) == 4
    assert main(_encode_args(cache_dir, tiny_checkpoint, *episode_folders)) == 0
    assert "encoded 1, already cached 4" in capsys.readouterr().out
    assert LatentCache.open(cache_dir).verify() == {}
