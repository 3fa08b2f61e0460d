"""Two CPU processes under torchrun (DDP over gloo) train exactly like one process with the doubled batch: the
sampler deals the same clips and DDP averages the gradients of equal-sized halves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vjepa_ac.worldmodel import read_checkpoint
from vjepa_ac.worldmodel.training import Trainer, load_config

from .conftest import tiny_train_overrides

REPO = Path(__file__).resolve().parents[3]
TINY = REPO / "worldmodel" / "training" / "configs" / "tiny_cpu.yaml"


def _losses(output_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (output_dir / "train.jsonl").read_text().splitlines()]


def test_two_process_torchrun_matches_single_process(latent_cache_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    steps = {"optim.total_steps": 4, "optim.warmup_steps": 1, "optim.anneal_steps": 1, "run.val_every": 4}
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "vjepa_ac.cli", "train", str(TINY),
         *tiny_train_overrides(latent_cache_dir, ddp_dir, **steps, **{"data.batch_size": 2})],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    Trainer(load_config(TINY, tiny_train_overrides(latent_cache_dir, single_dir, **steps,
                                                   **{"data.batch_size": 4}))).fit()
    assert _losses(ddp_dir) == pytest.approx(_losses(single_dir), rel=1e-5, abs=1e-6)
    state = read_checkpoint(ddp_dir / "latest.pt")
    assert state["world_size"] == 2
    assert len(state["trainer_state"]["rng"]) == 2
    assert state["trainer_state"]["samples_consumed"] == 4 * 2  # per rank: 4 steps x batch 2
    val = json.loads((ddp_dir / "val.jsonl").read_text().splitlines()[-1])
    assert val["val_rollout_t1"] > 0


def test_two_process_pretraining_matches_single_process(episode_folders, tmp_path):
    """`vjepa-ac pretrain` (V-JEPA 2.1 objective) under torchrun: each rank takes half of the same global image and
    clip batches with the same masks, so two processes log the losses of one process with the whole batch."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = [*map(str, episode_folders), "--objective", "vjepa2_1", "--img-size", "64", "--frame-stride", "2",
              "--batch-size", "4", "--clip-batch-size", "4", "--steps", "4", "--warmup-steps", "1",
              "--anneal-steps", "1", "--context-lambda-ramp", "0", "2", "--log-every", "1", "--device", "cpu"]
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "vjepa_ac.cli", "pretrain", *common, "--out", str(ddp_dir)],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = subprocess.run([sys.executable, "-m", "vjepa_ac.cli", "pretrain", *common, "--out", str(single_dir)],
                            env=env, capture_output=True, text=True, timeout=300, check=False)
    assert single.returncode == 0, single.stderr[-3000:]
    for name in ("loss", "loss_pred_image", "loss_ctx_video", "loss_pred_level0"):
        assert _column(ddp_dir, name) == pytest.approx(_column(single_dir, name), rel=1e-5, abs=1e-6), name
    assert read_checkpoint(ddp_dir / "latest.pt")["world_size"] == 2


def _column(output_dir: Path, name: str) -> list[float]:
    return [json.loads(line)[name] for line in (output_dir / "train.jsonl").read_text().splitlines()]
