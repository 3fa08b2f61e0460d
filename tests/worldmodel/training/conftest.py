"""Shared fixtures: tiny generated DROID episodes (raw layout, via the project's writer), a tiny encoder checkpoint,
and a latent cache encoded from them. Everything is generated, nothing is downloaded."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from vjepa_ac.data.droid import CameraRecording, EpisodeRecording, write_episode
from vjepa_ac.worldmodel import build_encoder, build_predictor, save_ac_checkpoint

IMG = 64  # the tiny encoder's resolution: 4x4 = 16 tokens per frame
STEPS = 40  # control steps per episode (15 Hz); at 4 fps that is 10 cached frames
NUM_EPISODES = 5


def synthetic_recording(seed: int, steps: int = STEPS) -> EpisodeRecording:
    """A gripper-coloured square whose image position follows the end effector's xy, so actions are visible."""
    rng = np.random.default_rng(seed)
    xyz = np.cumsum(rng.normal(0, 0.01, size=(steps, 3)), axis=0) + [0.5, 0.0, 0.3]
    euler = np.cumsum(rng.normal(0, 0.02, size=(steps, 3)), axis=0) + [np.pi, 0.0, 0.0]
    gripper = np.clip(np.cumsum(rng.normal(0, 0.1, size=steps)), 0, 1)
    frames = np.full((steps, IMG, IMG, 3), 40, dtype=np.uint8)
    for t in range(steps):
        row = int(np.clip((xyz[t, 0] - 0.5) * 300 + IMG / 2, 4, IMG - 12))
        col = int(np.clip(xyz[t, 1] * 300 + IMG / 2, 4, IMG - 12))
        frames[t, row : row + 10, col : col + 10] = (255 * gripper[t], 200, 255 * (1 - gripper[t]))
    extrinsics = np.tile([0.3, 0.5, 0.6, -2.0, 0.0, -2.5], (steps, 1))
    return EpisodeRecording(
        cartesian_position=np.concatenate([xyz, euler], axis=1),
        gripper_position=gripper,
        joint_positions=rng.normal(0, 0.1, size=(steps, 7)),
        cameras={"11111111": CameraRecording(frames=frames, extrinsics=extrinsics, kind="exterior")},
        task="move the square",
    )


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny models gain nothing from intra-op threads, and on a loaded machine idle-spinning OpenMP threads make each
    step ~100x slower; run these tests on one thread and restore the setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def droid_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("droid")
    start = datetime(2024, 1, 2, 3, 4, 5)
    for i in range(NUM_EPISODES):
        write_episode(root, synthetic_recording(i), when=start + timedelta(minutes=i))
    return root


@pytest.fixture(scope="session")
def episode_folders(droid_root) -> list[Path]:
    return sorted(p.parent for p in droid_root.rglob("trajectory.h5"))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised tiny encoder + predictor in Meta's AC layout (the encoder source for the cache)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny-ac.pt"
    save_ac_checkpoint(path, encoder=build_encoder("vit_tiny"), predictor=build_predictor("vit_ac_tiny"))
    return path


@pytest.fixture(scope="session")
def latent_cache_dir(tmp_path_factory, episode_folders, tiny_checkpoint) -> Path:
    """The generated episodes encoded into a float16 cache at 4 fps (10 frames per episode)."""
    from vjepa_ac.worldmodel import load_encoder
    from vjepa_ac.worldmodel.training.encode import cache_spec_for, encode_to_cache
    from vjepa_ac.worldmodel.training.latent_cache import LatentCache

    root = tmp_path_factory.mktemp("cache")
    encoder = load_encoder(tiny_checkpoint)
    spec = cache_spec_for(encoder, checkpoint=str(tiny_checkpoint))
    cache = LatentCache.create(root, spec)
    summary = encode_to_cache(cache, encoder, [str(p) for p in episode_folders], progress=False)
    assert not summary.failed, summary.failed
    cache.write_index()
    return root


def tiny_train_overrides(cache_dir: Path, output_dir: Path, **extra) -> list[str]:
    """Overrides turning the tiny CPU config into a seconds-long run on the generated cache."""
    values = {
        "data.cache": str(cache_dir),
        "data.num_workers": 0,
        "data.batch_size": 2,
        "data.frames_per_clip": 4,
        "run.output_dir": str(output_dir),
        "run.val_every": 1000,
        "run.checkpoint_every": 1000,
        "run.tensorboard": False,
        "optim.total_steps": 6,
        "optim.warmup_steps": 2,
        "optim.anneal_steps": 2,
        **extra,
    }
    return [f"{k}={v}" for k, v in values.items()]
