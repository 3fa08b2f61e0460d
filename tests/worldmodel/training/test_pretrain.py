"""`pretrain_encoder` end to end on generated DROID episodes, plus its EMA, schedule and frame preparation."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from vjepa_ac.data.droid import open_episode
from vjepa_ac.cli import main
from vjepa_ac.worldmodel import (
    CONFIG_KEY,
    build_encoder,
    encode_frames,
    load_encoder,
    preprocess_frames,
)
from vjepa_ac.worldmodel.checkpoints import atomic_torch_save
from vjepa_ac.worldmodel.mask_predictor import MaskPredictorConfig
from vjepa_ac.worldmodel.training import pretrain as pretrain_module
from vjepa_ac.worldmodel.training.config import OptimConfig
from vjepa_ac.worldmodel.training.pretrain import (
    PRETRAIN_KEY,
    PretrainConfig,
    ema_momentum,
    ema_update,
    frames_to_clips,
    load_frame_bank,
    pretrain_encoder,
)

IMG = 64


def _config(tmp_path, **overrides) -> PretrainConfig:
    """vit_tiny at 64 px (4x4 tokens) on the generated episodes, a few seconds on one thread."""
    optim = OptimConfig(total_steps=30, warmup_steps=3, anneal_steps=0, start_lr=2e-4, lr=1e-3, final_lr=1e-3)
    values = {"output_dir": str(tmp_path / "run"), "img_size": IMG, "frame_stride": 2, "batch_size": 8,
              "optim": optim, "ema": (0.99, 0.99), "checkpoint_every": 10, "log_every": 1, "device": "cpu"}
    values.update(overrides)
    return PretrainConfig(**values)


def _references(episode_folders) -> list[str]:
    return [str(p) for p in episode_folders]


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_ema_update_is_the_convex_combination():
    torch.manual_seed(0)
    online = build_encoder("vit_tiny")
    target = copy.deepcopy(online)
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))
    before = [p.clone() for p in target.parameters()]
    ema_update(target, online, 0.9)
    for old, new, source in zip(before, target.parameters(), online.parameters()):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * source)
    assert ema_momentum(0, 100, (0.99, 0.999)) == 0.99
    assert ema_momentum(50, 100, (0.99, 0.999)) == pytest.approx(0.9945)
    assert ema_momentum(200, 100, (0.99, 0.999)) == 0.999


def test_frame_bank_matches_planning_preprocessing(episode_folders):
    bank = load_frame_bank(_references(episode_folders[:2]), img_size=(32, 32), frame_stride=4, progress=False)
    assert bank.frames.dtype == np.uint8 and bank.frames.shape == (20, 32, 32, 3)
    assert bank.episode_lengths.tolist() == [10, 10]
    # 4-frame clips start at 0..6 of each episode's 10 frames, never across the boundary.
    assert bank.clip_starts(4).tolist() == [*range(7), *range(10, 17)]
    assert len(bank.clip_starts(11)) == 0
    with open_episode(episode_folders[0]) as episode:
        frames = torch.from_numpy(episode.read_frames("left", list(range(0, 40, 4))))
    planning = preprocess_frames(frames, (32, 32), "droid")
    # The bank is rounded to uint8: at most half a grey level off, i.e. 0.5 / (255 * std) after normalisation.
    from_bank = preprocess_frames(torch.from_numpy(bank.frames[:10]), (32, 32), crop=None)
    torch.testing.assert_close(from_bank, planning, atol=0.5 / (255 * 0.224) + 1e-4, rtol=0)


def test_clips_are_built_as_encode_frames_builds_them():
    torch.manual_seed(0)
    encoder = build_encoder("vit_tiny").eval()
    frames = torch.randint(0, 256, (3, IMG, IMG, 3), dtype=torch.uint8)
    clips = frames_to_clips(preprocess_frames(frames, (IMG, IMG), crop=None), encoder)
    assert clips.shape == (3, 3, 2, IMG, IMG) and torch.equal(clips[:, :, 0], clips[:, :, 1])
    with torch.no_grad():
        direct = torch.nn.functional.layer_norm(encoder(clips), (64,), eps=1e-5)
    torch.testing.assert_close(direct, encode_frames(encoder, frames[None], crop=None)[0], atol=1e-5, rtol=0)


def test_pretraining_lowers_the_loss_and_writes_a_loadable_target_encoder(tmp_path, episode_folders):
    config = _config(tmp_path)
    torch.manual_seed(config.seed)
    initial = build_encoder(config.encoder_preset, img_size=(IMG, IMG)).eval()
    path = pretrain_encoder(_references(episode_folders), config, progress=False)

    rows = _rows(path.parent / "train.jsonl")
    losses = [row["loss"] for row in rows]
    assert len(losses) == 30 and all(np.isfinite(losses))
    # collapse monitors: feature spread over tokens and batch, effective rank (of 64 channels) of the targets; on
    # these near-uniform synthetic frames the predictions do collapse towards a constant, which the monitor shows
    assert all(0 < row["target_image_std_l0"] <= 1.01 and 1 <= row["target_image_rank"] <= 64 for row in rows)
    assert rows[-1]["prediction_std_image"] < rows[0]["prediction_std_image"]
    assert "loss_ctx_image" not in rows[-1]  # V-JEPA 2: masked tokens only
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])

    data = torch.load(path, map_location="cpu", weights_only=True)
    assert {"encoder", "target_encoder", "predictor", "opt", "epoch", CONFIG_KEY, PRETRAIN_KEY} <= set(data)
    assert all(k.startswith("module.backbone.") for part in ("encoder", "target_encoder", "predictor")
               for k in data[part])
    assert data[PRETRAIN_KEY]["step"] == 30 and data["epoch"] == 30 * 8 // 100

    loaded = load_encoder(path)
    target_state = {k.removeprefix("module.backbone."): v for k, v in data["target_encoder"].items()}
    assert all(torch.equal(v, target_state[k]) for k, v in loaded.state_dict().items())
    with open_episode(episode_folders[0]) as episode:
        frames = torch.from_numpy(episode.read_frames("left", [0, 20]))[None]
    assert not torch.allclose(encode_frames(loaded, frames), encode_frames(initial, frames), atol=1e-3)


def test_interrupted_run_resumes_at_its_checkpoint_and_ends_where_a_straight_run_does(tmp_path, episode_folders,
                                                                                     monkeypatch):
    references = _references(episode_folders)
    straight = pretrain_encoder(references, _config(tmp_path / "a", optim=_short_optim()), progress=False)

    real_step = pretrain_module.train_step
    calls = {"n": 0}

    def crash_after_seven(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 7:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    config = _config(tmp_path / "b", optim=_short_optim(), checkpoint_every=5)
    monkeypatch.setattr(pretrain_module, "train_step", crash_after_seven)
    with pytest.raises(KeyboardInterrupt):
        pretrain_encoder(references, config, progress=False)
    monkeypatch.setattr(pretrain_module, "train_step", real_step)
    latest = tmp_path / "b" / "run" / "latest.pt"
    assert torch.load(latest, weights_only=True)[PRETRAIN_KEY]["step"] == 5

    # Predictor options given on resume are ignored: the saved architecture is rebuilt.
    resumed_config = dataclasses.replace(config, predictor=MaskPredictorConfig(depth=3))
    resumed = pretrain_encoder(references, resumed_config, progress=False)
    assert [row["step"] for row in _rows(resumed.parent / "train.jsonl")] == list(range(1, 13))
    a, b = (torch.load(p, weights_only=True) for p in (straight, resumed))
    for part in ("encoder", "target_encoder", "predictor"):
        for key, value in a[part].items():
            torch.testing.assert_close(b[part][key], value, atol=1e-6, rtol=0)


def _short_optim() -> OptimConfig:
    return OptimConfig(total_steps=12, warmup_steps=3, anneal_steps=4, start_lr=2e-4, lr=1e-3, final_lr=1e-5)


def test_starts_from_an_init_checkpoint(tmp_path, episode_folders, tiny_checkpoint):
    config = _config(tmp_path, init=str(tiny_checkpoint), optim=_short_optim(), preset="vit_large")
    path = pretrain_encoder(_references(episode_folders[:2]), config, progress=False)
    assert load_encoder(path).config == load_encoder(tiny_checkpoint).config


def test_refuses_a_foreign_checkpoint_and_unreadable_episodes(tmp_path, episode_folders, tiny_checkpoint):
    config = _config(tmp_path)
    atomic_torch_save(torch.load(tiny_checkpoint, weights_only=True), tmp_path / "run" / "latest.pt")
    with pytest.raises(ValueError, match="not a pretraining checkpoint"):
        pretrain_encoder(_references(episode_folders), config, progress=False)
    with pytest.raises(ValueError, match="camera 'wrist'"):
        pretrain_encoder(_references(episode_folders), _config(tmp_path / "c", camera="wrist"), progress=False)
    with pytest.raises(ValueError, match="crop"):
        _config(tmp_path, crop="centre")


def test_cli_pretrains_and_reports_bad_input(tmp_path, episode_folders, capsys):
    out = tmp_path / "cli"
    args = ["pretrain", *map(str, episode_folders[:2]), "--out", str(out), "--img-size", str(IMG), "--steps", "4",
            "--batch-size", "4", "--warmup-steps", "1", "--anneal-steps", "1", "--log-every", "2", "--device", "cpu"]
    assert main(args) == 0
    assert load_encoder(out / "latest.pt").config.img_size == (IMG, IMG)
    assert [row["step"] for row in _rows(out / "train.jsonl")] == [2, 4]
    assert main(["pretrain", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "no such episode" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    help_text = capsys.readouterr().out
    assert all(text in help_text for text in ("--objective {vjepa2,vjepa2_1}", "--no-deep-supervision",
                                              "1/sqrt(distance", "--context-lambda-ramp", "torchrun"))


# ---------------------------------------------------------------------------------------------------- V-JEPA 2.1
def _config_2_1(tmp_path, **overrides) -> PretrainConfig:
    """vjepa2_1_vit_tiny (depth 4, four levels) at 64 px; 4-frame clips = 2 token-frames of 4x4."""
    values = {"objective": "vjepa2_1", "batch_size": 4, "clip_batch_size": 4, "clip_frames": 4,
              "context_lambda": (0.5, 0.7), "context_lambda_ramp": (5, 10)}
    values.update(overrides)
    return _config(tmp_path, **values)


def test_v2_1_step_batches_hold_images_and_clips_with_their_masks(tmp_path, episode_folders):
    from vjepa_ac.worldmodel.training.distributed import DistInfo

    config = _config_2_1(tmp_path)
    run = pretrain_module.build_run(config, DistInfo(0, 1, 0, torch.device("cpu")), None, tmp_path / "x.pt")
    bank = load_frame_bank(_references(episode_folders), img_size=(IMG, IMG), frame_stride=2, progress=False)
    image, video = pretrain_module.step_batches(run, config, torch.from_numpy(bank.frames),
                                                 torch.from_numpy(bank.clip_starts(4)))
    assert (image.modality, image.clips.shape, image.grid, image.targets.shape) == (
        "image", (4, 3, 1, IMG, IMG), (1, 4, 4), (4, 16, 4 * 64))
    assert (video.modality, video.clips.shape, video.grid, video.targets.shape) == (
        "video", (4, 3, 4, IMG, IMG), (2, 4, 4), (4, 32, 4 * 64))
    assert len(image.masks) == 1 and len(video.masks) == 2  # img_mask; the two video mask sets
    assert all(m.mask_index == 0 and m.weights.shape == m.context_idx.shape for m in [*image.masks, *video.masks])
    assert all(bool((m.weights > 0).all() and (m.weights <= 1).all()) for m in video.masks)
    assert image.context_lambda == video.context_lambda == 0.0  # step 0 is before the ramp
    # each level of the targets is layer-normed on its own
    levels = video.targets.unflatten(-1, (4, 64))
    torch.testing.assert_close(levels.mean(-1), torch.zeros(4, 32, 4), atol=1e-5, rtol=0)


def test_v2_1_pretraining_logs_its_terms_and_writes_a_2_1_checkpoint(tmp_path, episode_folders, capsys):
    config = _config_2_1(tmp_path, optim=_short_optim())
    path = pretrain_encoder(_references(episode_folders), config, progress=False)

    rows = _rows(path.parent / "train.jsonl")
    assert [row["step"] for row in rows] == list(range(1, 13))
    # row of step s used lambda(s - 1): 0 up to step 5, 0.7 * (8 - 5) / 5 at step 9, 0.7 from step 11
    assert [rows[i]["lambda_video"] for i in (4, 8, 10, 11)] == pytest.approx([0.0, 0.42, 0.7, 0.7])
    assert rows[8]["lambda_image"] == pytest.approx(0.3)
    for row in rows:
        assert row["loss"] == pytest.approx((row["loss_image"] + row["loss_video"]) / 2, rel=1e-5)
        assert row["loss_video"] == pytest.approx(row["loss_pred_video"] + row["lambda_video"] * row["loss_ctx_video"],
                                                  rel=1e-5)
        assert {f"target_video_std_l{i}" for i in range(4)} | {"target_image_rank", "loss_pred_level3"} <= set(row)

    data = torch.load(path, map_location="cpu", weights_only=True)
    assert {"encoder", "target_encoder", "ema_encoder", "predictor", "opt", CONFIG_KEY, PRETRAIN_KEY} <= set(data)
    target_keys = {k.removeprefix("module.backbone.") for k in data["target_encoder"]}
    assert {f"norms_block.{i}.{p}" for i in range(4) for p in ("weight", "bias")} <= target_keys
    assert {"patch_embed_img.proj.weight", "img_mod_embed", "video_mod_embed"} <= target_keys
    assert not any(k.startswith("norm.") for k in target_keys)
    assert all(torch.equal(data["ema_encoder"][k], v) for k, v in data["target_encoder"].items())
    predictor_keys = {k.removeprefix("module.backbone.") for k in data["predictor"]}
    assert {"predictor_embed.0.weight", "predictor_embed.2.weight", "predictor_proj_context.weight",
            "img_mod_embed", "video_mod_embed", "mask_tokens.0"} <= predictor_keys
    assert tuple(data["predictor"]["module.backbone.predictor_proj.weight"].shape) == (4 * 64, 64)

    encoder = load_encoder(path)
    assert encoder.config.is_v2_1 and encoder.config.hierarchical_layers == (0, 1, 2, 3)
    assert main(["info", str(path)]) == 0
    assert "V-JEPA 2.1 encoder" in capsys.readouterr().out


def test_v2_1_without_deep_supervision_predicts_the_last_level(tmp_path, episode_folders):
    config = _config_2_1(tmp_path, deep_supervision=False, optim=_short_optim(), distance_weighting=False)
    path = pretrain_encoder(_references(episode_folders[:2]), config, progress=False)
    data = torch.load(path, map_location="cpu", weights_only=True)
    assert tuple(data["predictor"]["module.backbone.predictor_proj.weight"].shape) == (64, 64)
    assert "module.backbone.predictor_embed.weight" in data["predictor"]  # one Linear, as Meta's single level
    assert "loss_pred_level0" not in _rows(path.parent / "train.jsonl")[-1]
    with pytest.raises(ValueError, match="deep_supervision=False"):  # the run cannot continue as another ablation
        pretrain_encoder(_references(episode_folders[:2]), dataclasses.replace(config, deep_supervision=True),
                         progress=False)


def test_v2_1_objective_refuses_a_v2_encoder(tmp_path, episode_folders):
    with pytest.raises(ValueError, match="needs a V-JEPA 2.1 encoder"):
        pretrain_encoder(_references(episode_folders), _config_2_1(tmp_path, preset="vit_tiny"), progress=False)
    with pytest.raises(ValueError, match="no episode has 30 frames"):
        pretrain_encoder(_references(episode_folders), _config_2_1(tmp_path / "b", clip_frames=30), progress=False)
    with pytest.raises(ValueError, match="objective"):
        _config_2_1(tmp_path, objective="vjepa3")


def _cli_args(episode_folders, out, *extra) -> list[str]:
    return ["pretrain", *map(str, episode_folders), "--out", str(out), "--objective", "vjepa2_1", "--img-size",
            str(IMG), "--frame-stride", "2", "--batch-size", "4", "--clip-batch-size", "4", "--steps", "12",
            "--warmup-steps", "3", "--anneal-steps", "4", "--lr", "1e-3", "--context-lambda-ramp", "3", "6",
            "--log-every", "1", "--device", "cpu", *extra]


def test_v2_1_run_killed_mid_way_resumes_to_the_uninterrupted_result(tmp_path, episode_folders):
    """SIGKILL a real `vjepa-ac pretrain` process once it has checkpointed, resume it, and compare with a run that
    was never interrupted: same metrics rows, same weights (float tolerance)."""
    killed_out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "vjepa_ac.cli", *_cli_args(
        episode_folders, killed_out, "--checkpoint-every", "2")], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    latest = killed_out / "latest.pt"
    try:
        while process.poll() is None and not (latest.is_file() and
                                               torch.load(latest, weights_only=True)[PRETRAIN_KEY]["step"] >= 4):
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    killed_at = torch.load(latest, weights_only=True)[PRETRAIN_KEY]["step"]
    assert 4 <= killed_at < 12, f"the run was not killed mid-way (step {killed_at}); {process.stderr.read()[-2000:]}"

    assert main(_cli_args(episode_folders, killed_out, "--checkpoint-every", "2")) == 0
    straight_out = tmp_path / "straight"
    assert main(_cli_args(episode_folders, straight_out, "--checkpoint-every", "12")) == 0

    resumed_rows, straight_rows = _rows(killed_out / "train.jsonl"), _rows(straight_out / "train.jsonl")
    assert [row["step"] for row in resumed_rows] == list(range(1, 13))
    for resumed_row, straight_row in zip(resumed_rows, straight_rows):
        assert resumed_row == pytest.approx(straight_row, rel=1e-5, abs=1e-6)
    a, b = (torch.load(out / "latest.pt", weights_only=True) for out in (straight_out, killed_out))
    for part in ("encoder", "target_encoder", "ema_encoder", "predictor"):
        for key, value in a[part].items():
            torch.testing.assert_close(b[part][key], value, atol=1e-6, rtol=0)
