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

from vjepa_ac.data.droid import open_episode
from vjepa_ac.cli import main
from vjepa_ac.worldmodel import encode_frames, load_encoder
from vjepa_ac.worldmodel.training.latent_cache import DuplicateEpisodeError, LatentCache


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
    assert main(_encode_args(cache_dir, tiny_checkpoint, *episode_folders[:1], extra=["--fps", "5"])) == 1
    assert "other settings" in capsys.readouterr().err
    # The same recordings read from another place (a moved dataset) are still the cached episodes.
    moved = tmp_path / "moved"
    shutil.copytree(episode_folders[0], moved)
    assert main(_encode_args(cache_dir, tiny_checkpoint, moved)) == 0
    assert "encoded 0, already cached 1" in capsys.readouterr().out


def test_episodes_sharing_a_uuid_are_never_merged(tmp_path, episode_folders, tiny_checkpoint, capsys):
    # Episode 1's metadata copied into episode 0's folder: two different recordings, one uuid.
    first, second = tmp_path / "first", tmp_path / "second"
    shutil.copytree(episode_folders[0], first)
    shutil.copytree(episode_folders[1], second)
    (metadata,) = first.glob("metadata_*.json")
    for old in second.glob("metadata_*.json"):
        old.unlink()
    shutil.copy(metadata, second / metadata.name)
    assert open_episode(first).episode_id == open_episode(second).episode_id
    cache_dir = tmp_path / "cache"
    assert main(_encode_args(cache_dir, tiny_checkpoint, first, second)) == 1
    captured = capsys.readouterr()
    assert "encoded 1, already cached 0, failed 1" in captured.out and "cache holds 1 episodes" in captured.out
    (failure,) = [line for line in captured.err.splitlines() if line.startswith("FAILED")]
    assert f"FAILED {second}" in failure and f"already taken by {first}" in failure
    # A cache that got both anyway (e.g. from two processes) refuses to serve either, naming both sources.
    cache = LatentCache.open(cache_dir)
    with open_episode(second) as episode:
        cache.write_episode(episode.episode_id, iter([torch.zeros(1, 16, 64)]), frame_indices=[0],
                            states=episode.states()[:1], source=str(second), content="other")
    with pytest.raises(DuplicateEpisodeError, match="cached twice") as raised:
        cache.episodes()
    assert f"from {first} and" in str(raised.value) or f"and from {first} " in str(raised.value)
    assert f"from {second} and" in str(raised.value) or f"and from {second} " in str(raised.value)


def test_finding_no_episodes_is_an_error_that_creates_nothing(tmp_path, tiny_checkpoint, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(_encode_args(tmp_path / "cache", tiny_checkpoint, empty)) == 1
    err = capsys.readouterr().err
    assert f"no episodes found in {empty}" in err and "trajectory.h5" in err and "tfrecord" in err
    assert not (tmp_path / "cache").exists()


def test_rlds_shards_encode_by_default_and_a_truncated_shard_is_skipped(tmp_path, droid_root, tiny_checkpoint,
                                                                       capsys):
    from vjepa_ac.data.droid import iter_episode_references
    from vjepa_ac.data.droid.rlds import episode_to_example, write_tfrecord

    shards = tmp_path / "rlds"
    shards.mkdir()
    examples = []
    for reference in list(iter_episode_references(droid_root))[:3]:
        with open_episode(reference) as episode:
            examples.append(episode_to_example(episode, image_size=(64, 64)))
    write_tfrecord(shards / "droid-train.tfrecord-00000-of-00002", examples[:2])
    cut = shards / "droid-train.tfrecord-00001-of-00002"
    write_tfrecord(cut, examples[2:])
    cut.write_bytes(cut.read_bytes()[:-50])
    cache_dir = tmp_path / "cache"
    assert main(_encode_args(cache_dir, tiny_checkpoint, shards)) == 1  # the damaged shard is reported
    captured = capsys.readouterr()
    assert "camera: ext1" in captured.err and "RLDS" in captured.err
    assert "encoded 2, already cached 0, failed 1" in captured.out
    assert f"FAILED {cut}#0" in captured.err and "truncated" in captured.err
    cache = LatentCache.open(cache_dir)
    assert cache.spec.camera == "ext1" and len(cache.episodes()) == 2


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
