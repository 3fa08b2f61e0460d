"""End-to-end training on generated episodes: the loss falls, checkpoints are Meta-layout and resumable, and a run
killed with SIGKILL resumes with exactly the losses of an uninterrupted run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vjepa_ac.worldmodel import CheckpointError, load_predictor, load_world_model, read_checkpoint
from vjepa_ac.worldmodel.training import Trainer, load_config

from .conftest import tiny_train_overrides

REPO = Path(__file__).resolve().parents[3]
TINY = REPO / "worldmodel" / "training" / "configs" / "tiny_cpu.yaml"


def _losses(output_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (output_dir / "train.jsonl").read_text().splitlines()]
    return {row["step"]: row["loss"] for row in rows}


def _train_command(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "vjepa_ac.cli", "train", str(TINY), *overrides]


def _env() -> dict[str, str]:
    # One thread: identical float reduction order in every process, so losses can be compared bit for bit.
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def test_loss_decreases_and_checkpoint_is_meta_layout(latent_cache_dir, tmp_path):
    out = tmp_path / "run"
    config = load_config(TINY, tiny_train_overrides(
        latent_cache_dir, out, **{"optim.total_steps": 20, "optim.warmup_steps": 3, "optim.anneal_steps": 3,
                                  "optim.lr": 3e-3, "run.val_every": 20, "run.checkpoint_every": 10}))
    metrics = Trainer(config).fit()
    losses = _losses(out)
    assert len(losses) == 20
    first, last = sum(list(losses.values())[:4]) / 4, sum(list(losses.values())[-4:]) / 4
    assert last < 0.5 * first, (first, last)
    # Validation: teacher-forcing and rollout L1 per horizon step on the held-out episode.
    val = json.loads((out / "val.jsonl").read_text().splitlines()[-1])
    assert {"val_teacher_forcing_t1", "val_teacher_forcing_t3", "val_rollout_t1", "val_rollout_t3"} <= set(val)
    assert val["val_rollout_t1"] == pytest.approx(val["val_teacher_forcing_t1"], rel=1e-5)
    assert "val_rollout" in metrics
    assert (out / "train.csv").read_text().splitlines()[0].startswith("step,loss")
    # Meta's layout: prefixes, both encoder keys, optimizer; and it loads without arguments in our loader.
    raw = read_checkpoint(out / "latest.pt")
    assert all(k.startswith("module.") for k in raw["predictor"])
    assert all(k.startswith("module.backbone.") for k in raw["encoder"])
    assert raw["encoder"].keys() == raw["target_encoder"].keys()
    assert {"opt", "epoch", "trainer_state"} <= set(raw)
    assert raw["trainer_state"]["step"] == 20
    wm = load_world_model(out / "latest.pt")
    assert wm.predictor.config.predictor_embed_dim == 64
    assert sorted(p.name for p in out.glob("step_*.pt")) == ["step_00000020.pt"]


def test_resume_after_sigkill_reproduces_losses(latent_cache_dir, tmp_path):
    total, anneal = 40, 2
    common = tiny_train_overrides(latent_cache_dir, tmp_path / "x", **{"optim.total_steps": total,
                                                                       "optim.anneal_steps": anneal,
                                                                       "run.checkpoint_every": 3})
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    # In-process on one thread (conftest), like the subprocesses: float reductions happen in the same order.
    Trainer(load_config(TINY, [*common, f"run.output_dir={reference_dir}"])).fit()
    reference = _losses(reference_dir)
    assert sorted(reference) == list(range(1, total + 1))

    # Same run, killed without warning once it has checkpointed at least once and moved past that point.
    proc = subprocess.Popen(_train_command(*common, f"run.output_dir={killed_dir}", "optim.total_steps=1000"),
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            log_file = killed_dir / "train.jsonl"
            if log_file.is_file() and len(log_file.read_text().splitlines()) >= 5:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    resumed_from = read_checkpoint(killed_dir / "latest.pt")["trainer_state"]["step"]
    # The killed run's schedule (total 1000) equals the reference's only before the reference's decay phase, so the
    # checkpoint it resumes from must come from before it; a kill this late would mean 30 steps in 10 ms.
    assert 3 <= resumed_from <= total - anneal
    # Resume (in-process, one thread) with the reference's total_steps, which sets the decay phase of the schedule.
    Trainer(load_config(TINY, [*common, f"run.output_dir={killed_dir}"])).fit()
    resumed = _losses(killed_dir)
    assert sorted(resumed) == list(range(1, total + 1))  # steps past the checkpoint were dropped, then redone
    for step in range(resumed_from + 1, total + 1):
        assert resumed[step] == reference[step], (step, resumed[step], reference[step])


def test_resume_refuses_checkpoint_of_another_model(latent_cache_dir, tmp_path):
    out = tmp_path / "run"
    short = {"optim.total_steps": 1, "optim.warmup_steps": 0, "optim.anneal_steps": 0}
    Trainer(load_config(TINY, tiny_train_overrides(latent_cache_dir, out, **short))).fit()
    bigger = tiny_train_overrides(latent_cache_dir, out, **short, **{"model.predictor": "{depth: 3}"})
    with pytest.raises(CheckpointError, match="another architecture"):
        Trainer(load_config(TINY, bigger))


def test_nan_states_in_batch_name_the_episode(latent_cache_dir, tmp_path):
    trainer = Trainer(load_config(TINY, tiny_train_overrides(latent_cache_dir, tmp_path / "run")))
    batch = next(trainer.batch_stream(trainer.train_set, start=0, seed=0))
    batch["states"][1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match=re.escape(f"episode {batch['episode_id'][1]}: states contain NaN")):
        trainer.prepare_batch(batch)


def test_raw_video_source_trains_with_encoder_in_the_loop(episode_folders, tiny_checkpoint, tmp_path):
    index = tmp_path / "episodes.txt"
    index.write_text("".join(f"{p}\n" for p in episode_folders))
    out = tmp_path / "raw"
    config = load_config(TINY, [
        "data.source=raw", f"data.episodes={index}", "data.num_workers=0", "data.batch_size=2",
        f"model.encoder_checkpoint={tiny_checkpoint}", f"run.output_dir={out}", "run.tensorboard=false",
        "optim.total_steps=2", "optim.warmup_steps=1", "optim.anneal_steps=1", "run.val_every=2",
    ])
    metrics = Trainer(config).fit()
    assert torch.isfinite(torch.tensor(metrics["loss"]))
    assert "val_rollout_t3" in metrics
    assert load_predictor(out / "latest.pt").config.depth == 2


def test_raw_source_on_rlds_shards_uses_their_exterior_camera_by_default(episode_folders, tiny_checkpoint, tmp_path):
    from vjepa_ac.data.droid import open_episode
    from vjepa_ac.data.droid.rlds import episode_to_example, write_tfrecord

    shard = tmp_path / "droid-train.tfrecord-00000-of-00001"
    examples = []
    for folder in episode_folders:
        with open_episode(folder) as episode:
            examples.append(episode_to_example(episode, image_size=(64, 64)))
    write_tfrecord(shard, examples)
    config = load_config(TINY, [
        "data.source=raw", f"data.episodes={shard}", "data.num_workers=0", "data.batch_size=2",
        f"model.encoder_checkpoint={tiny_checkpoint}", f"run.output_dir={tmp_path / 'out'}", "run.tensorboard=false",
        "optim.total_steps=1", "optim.warmup_steps=0", "optim.anneal_steps=0", "run.val_every=1",
    ])
    assert config.data.camera is None
    metrics = Trainer(config).fit()  # "left" does not exist in RLDS records; ext1 does
    assert torch.isfinite(torch.tensor(metrics["loss"]))


def test_gradient_accumulation_equals_the_larger_batch(latent_cache_dir, tmp_path):
    short = {"optim.total_steps": 3, "optim.warmup_steps": 1, "optim.anneal_steps": 1}
    big = Trainer(load_config(TINY, tiny_train_overrides(latent_cache_dir, tmp_path / "a", **short,
                                                         **{"data.batch_size": 4})))
    accumulated = Trainer(load_config(TINY, tiny_train_overrides(
        latent_cache_dir, tmp_path / "b", **short, **{"data.batch_size": 2, "optim.grad_accum_steps": 2})))
    big.fit(), accumulated.fit()
    assert list(_losses(tmp_path / "a").values()) == pytest.approx(list(_losses(tmp_path / "b").values()), rel=1e-5)
    for p, q in zip(big.predictor.parameters(), accumulated.predictor.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-4)  # Adam amplifies float noise of tiny grads


def test_activation_checkpointing_gives_the_same_step(latent_cache_dir, tmp_path):
    short = {"optim.total_steps": 2, "optim.warmup_steps": 1, "optim.anneal_steps": 1}
    plain = Trainer(load_config(TINY, tiny_train_overrides(latent_cache_dir, tmp_path / "a", **short)))
    ckpt = Trainer(load_config(TINY, tiny_train_overrides(latent_cache_dir, tmp_path / "b", **short,
                                                          **{"model.use_activation_checkpointing": True})))
    assert ckpt.predictor.config.use_activation_checkpointing
    plain.fit(), ckpt.fit()
    assert _losses(tmp_path / "a") == pytest.approx(_losses(tmp_path / "b"), rel=1e-6)


def test_predictor_that_does_not_fit_the_latents_is_refused(latent_cache_dir, tmp_path):
    overrides = tiny_train_overrides(latent_cache_dir, tmp_path / "run", **{"model.predictor": "{img_size: [32, 32]}"})
    with pytest.raises(ValueError, match="expects 4 tokens of width 64 per frame, the data has 16 of width 64"):
        Trainer(load_config(TINY, overrides))


def test_loader_workers_do_not_change_the_batches(latent_cache_dir, tmp_path):
    batches = []
    for workers in (0, 1):
        trainer = Trainer(load_config(TINY, tiny_train_overrides(latent_cache_dir, tmp_path / f"w{workers}",
                                                                 **{"data.num_workers": workers})))
        stream = trainer.batch_stream(trainer.train_set, start=3, seed=5)
        batches.append([next(stream) for _ in range(3)])
    for a, b in zip(*batches, strict=True):
        assert a["episode_id"] == b["episode_id"]
        assert torch.equal(a["latents"], b["latents"]) and torch.equal(a["frame_indices"], b["frame_indices"])


def test_vjepa2_1_hierarchical_features(episode_folders, tmp_path):
    """A 2.1 encoder's four levels, cached side by side (4 x 64 channels), train a predictor of that width."""
    from vjepa_ac.cli import main
    from vjepa_ac.worldmodel import build_encoder, build_predictor, save_ac_checkpoint
    from vjepa_ac.worldmodel.training import LatentCache

    checkpoint = tmp_path / "v21.pt"
    save_ac_checkpoint(checkpoint, encoder=build_encoder("vjepa2_1_vit_tiny"), predictor=build_predictor("vit_ac_tiny"))
    cache_dir = tmp_path / "cache"
    assert main(["encode", *map(str, episode_folders[:3]), "--out", str(cache_dir), "--encoder-checkpoint",
                 str(checkpoint), "--hierarchical"]) == 0
    spec = LatentCache.open(cache_dir).spec
    assert (spec.num_levels, spec.embed_dim) == (4, 256)
    trainer = Trainer(load_config(TINY, tiny_train_overrides(cache_dir, tmp_path / "run", **{
        "optim.total_steps": 2, "optim.warmup_steps": 1, "optim.anneal_steps": 1, "data.val_fraction": 0.0})))
    assert trainer.predictor.config.embed_dim == 256 and trainer.num_levels == 4
    assert torch.isfinite(torch.tensor(trainer.fit()["loss"]))


def test_fine_tuning_starts_from_the_given_checkpoint(latent_cache_dir, tiny_checkpoint, tmp_path):
    trainer = Trainer(load_config(TINY, tiny_train_overrides(latent_cache_dir, tmp_path / "ft", **{
        "model.init_checkpoint": str(tiny_checkpoint)})))
    start = load_predictor(tiny_checkpoint).state_dict()
    for name, value in trainer.predictor.state_dict().items():
        assert torch.equal(value, start[name]), name
    with pytest.raises(CheckpointError, match="another architecture"):
        Trainer(load_config(TINY, tiny_train_overrides(latent_cache_dir, tmp_path / "ft2", **{
            "model.init_checkpoint": str(tiny_checkpoint), "model.predictor": "{depth: 3}"})))


def test_fine_tuning_refuses_a_checkpoint_of_another_encoder(latent_cache_dir, tiny_checkpoint, tmp_path):
    """The same architecture with other encoder weights: the predictor would read foreign latents."""
    from vjepa_ac.worldmodel import build_encoder, build_predictor, save_ac_checkpoint

    torch.manual_seed(1)
    other = tmp_path / "other-encoder.pt"
    save_ac_checkpoint(other, encoder=build_encoder("vit_tiny"), predictor=build_predictor("vit_ac_tiny"))
    with pytest.raises(CheckpointError, match=f"{other} was trained on another encoder.*--encoder-checkpoint"):
        Trainer(load_config(TINY, tiny_train_overrides(latent_cache_dir, tmp_path / "ft", **{
            "model.init_checkpoint": str(other)})))
    assert not (tmp_path / "ft" / "latest.pt").exists()


def test_missing_encoder_checkpoint_says_how_to_fix_it(latent_cache_dir, tmp_path):
    overrides = tiny_train_overrides(latent_cache_dir, tmp_path / "run",
                                     **{"model.encoder_checkpoint": str(tmp_path / "moved.pt")})
    with pytest.raises(FileNotFoundError, match="set model.encoder_checkpoint=PATH"):
        Trainer(load_config(TINY, overrides))
