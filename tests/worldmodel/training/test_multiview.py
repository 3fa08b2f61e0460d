"""A multi-view camera ("left+wrist") end to end: episodes with an exterior and a wrist camera -> `vjepa-ac encode`
-> a predictor trained on the side-by-side token grids -> the world model encoding joined frames as the cache did."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from vjepa_ac.cli import main
from vjepa_ac.data.droid import CameraRecording, open_episode, write_episode
from vjepa_ac.worldmodel import encode_frames, load_encoder, load_world_model
from vjepa_ac.worldmodel.training import Trainer, load_config
from vjepa_ac.worldmodel.training.latent_cache import LatentCache

from .conftest import IMG, synthetic_recording, tiny_train_overrides

TINY = Path(__file__).resolve().parents[3] / "worldmodel/training/configs/tiny_cpu.yaml"
ROWS = COLS = IMG // 16  # the tiny encoder's token grid per view


@pytest.fixture(scope="module")
def two_camera_episodes(tmp_path_factory) -> list[Path]:
    """Episodes whose wrist camera sees the square mirrored, so the two views differ."""
    root = tmp_path_factory.mktemp("droid2")
    for i in range(3):
        recording = synthetic_recording(10 + i)
        exterior = recording.cameras["11111111"]
        recording.cameras["22222222"] = CameraRecording(frames=np.ascontiguousarray(exterior.frames[:, ::-1, ::-1]),
                                                        extrinsics=exterior.extrinsics, kind="wrist")
        write_episode(root, recording, when=datetime(2024, 2, 3, 4, 5, 6) + timedelta(minutes=i))
    return sorted(p.parent for p in root.rglob("trajectory.h5"))


@pytest.fixture(scope="module")
def two_view_cache(tmp_path_factory, two_camera_episodes, tiny_checkpoint) -> Path:
    out = tmp_path_factory.mktemp("cache2") / "cache"
    assert main(["encode", *map(str, two_camera_episodes), "--out", str(out), "--encoder-checkpoint",
                 str(tiny_checkpoint), "--camera", "left+wrist", "--no-progress"]) == 0
    return out


def test_a_two_view_cache_holds_each_views_grid_side_by_side(two_view_cache, two_camera_episodes, tiny_checkpoint):
    cache = LatentCache.open(two_view_cache)
    assert cache.spec.camera == "left+wrist" and cache.spec.tokens_per_frame == 2 * ROWS * COLS
    encoder = load_encoder(tiny_checkpoint)
    with open_episode(two_camera_episodes[0]) as episode:
        entry = next(e for e in cache.episodes() if e.episode_id == episode.episode_id)
        np.testing.assert_array_equal(entry.extrinsics, episode.extrinsics("left")[entry.frame_indices])
        per_view = [encode_frames(encoder, torch.from_numpy(episode.read_frames(view, entry.frame_indices))[None])[0]
                    for view in ("left", "wrist")]
    cached = cache.read(entry, range(entry.num_frames)).unflatten(1, (ROWS, 2 * COLS))
    for i, direct in enumerate(per_view):
        torch.testing.assert_close(cached[:, :, i * COLS : (i + 1) * COLS].flatten(1, 2), direct, atol=5e-3, rtol=0)
    assert not torch.allclose(per_view[0], per_view[1], atol=0.1)  # the views really differ


def test_a_predictor_trained_on_two_views_plans_from_joined_frames(two_view_cache, two_camera_episodes, tmp_path):
    out = tmp_path / "train"
    Trainer(load_config(TINY, tiny_train_overrides(two_view_cache, out))).fit()
    world_model = load_world_model(out / "latest.pt")
    assert world_model.views == 2
    assert world_model.predictor.config.grid == (ROWS, 2 * COLS)
    cache = LatentCache.open(two_view_cache)
    with open_episode(two_camera_episodes[1]) as episode:
        entry = next(e for e in cache.episodes() if e.episode_id == episode.episode_id)
        joined = episode.read_camera("left+wrist", entry.frame_indices[:3])
    assert joined.shape == (3, IMG, 2 * IMG, 3)
    torch.testing.assert_close(world_model.encode(joined[None])[0], cache.read(entry, range(3)), atol=5e-3, rtol=0)


def test_raw_training_reads_and_encodes_both_views(two_camera_episodes, tiny_checkpoint, tmp_path):
    index = tmp_path / "episodes.txt"
    index.write_text("".join(f"{p}\n" for p in two_camera_episodes))
    out = tmp_path / "raw"
    config = load_config(TINY, [
        "data.source=raw", f"data.episodes={index}", "data.camera=left+wrist", "data.num_workers=0",
        "data.batch_size=2", f"model.encoder_checkpoint={tiny_checkpoint}", f"run.output_dir={out}",
        "run.tensorboard=false", "optim.total_steps=2", "optim.warmup_steps=1", "optim.anneal_steps=1",
    ])
    metrics = Trainer(config).fit()
    assert np.isfinite(metrics["loss"])
    assert load_world_model(out / "latest.pt").predictor.tokens_per_frame == 2 * ROWS * COLS


def test_a_camera_the_episodes_lack_fails_per_episode_naming_it(tmp_path, two_camera_episodes, tiny_checkpoint,
                                                                 capsys):
    code = main(["encode", str(two_camera_episodes[0]), "--out", str(tmp_path / "c"), "--encoder-checkpoint",
                 str(tiny_checkpoint), "--camera", "left+right", "--no-progress"])
    assert code == 1
    assert "right" in capsys.readouterr().err
