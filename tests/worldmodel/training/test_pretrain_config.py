"""`vjepa-ac pretrain` settings: a YAML file of `PretrainConfig` fields, then the options, then KEY=VALUE words."""

from __future__ import annotations

import pytest
import yaml

from vjepa_ac.cli import main
from vjepa_ac.worldmodel.training import pretrain as pretrain_module
from vjepa_ac.worldmodel.training.pretrain_config import PretrainConfig


@pytest.fixture
def received(monkeypatch, tmp_path) -> list[PretrainConfig]:
    """The configs `pretrain_encoder` is called with (it returns at once)."""
    configs: list[PretrainConfig] = []

    def record(references, config):
        configs.append(config)
        return tmp_path / "latest.pt"

    monkeypatch.setattr(pretrain_module, "pretrain_encoder", record)
    return configs


def test_file_options_and_overrides_reach_the_run(tmp_path, episode_folders, received):
    settings = tmp_path / "pretrain.yaml"
    settings.write_text("objective: vjepa2_1\nimg_size: 96\ncamera: right\noptim:\n  total_steps: 40\n"
                        "predictor:\n  depth: 3\n")
    episodes = [str(folder) for folder in episode_folders[:2]]
    assert main(["pretrain", *episodes, "predictor.num_heads=2", "--config", str(settings), "--img-size", "64",
                 "--lr", "1e-3", "--out", str(tmp_path / "run"), "optim.total_steps=12"]) == 0
    (config,) = received
    assert (config.objective, config.img_size, config.camera) == ("vjepa2_1", 64, "right")  # option beats file
    assert config.optim.total_steps == 12  # a KEY=VALUE word beats the file, also after the options
    assert (config.optim.start_lr, config.optim.lr, config.optim.final_lr) == pytest.approx((2e-4, 1e-3, 2e-5))
    assert config.optim.warmup_steps == PretrainConfig().optim.warmup_steps  # the rest of the section's defaults
    assert (config.predictor.depth, config.predictor.num_heads) == (3, 2)
    assert config.output_dir == str(tmp_path / "run")


def test_a_camera_set_nowhere_is_the_episodes_default(tmp_path, episode_folders, received, capsys):
    assert main(["pretrain", str(episode_folders[0]), "--out", str(tmp_path / "run")]) == 0
    assert received[0].camera == "left" and "camera: left" in capsys.readouterr().err
    assert main(["pretrain", str(episode_folders[0]), "camera=wrist"]) == 0
    assert received[1].camera == "wrist" and received[1].output_dir == PretrainConfig().output_dir


def test_print_config_shows_the_resolved_settings_and_loads_back(tmp_path, capsys):
    assert main(["pretrain", "--print-config", "--steps", "7", "--crop", "none", "ema=[0.9, 0.95]",
                 "mask_specs=[{spatial_scale: 0.5, num_blocks: 1}]"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["optim"]["total_steps"] == 7 and printed["crop"] is None and printed["ema"] == [0.9, 0.95]
    assert printed["mask_specs"] == [{"spatial_scale": 0.5, "num_blocks": 1, "aspect_ratio": [0.75, 1.5],
                                      "temporal_scale": 1.0}]
    saved = tmp_path / "saved.yaml"
    saved.write_text(yaml.safe_dump(printed))
    assert main(["pretrain", "--config", str(saved), "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == printed


@pytest.mark.parametrize("words, message", [
    (["predictor.deph=3"], "unknown config key 'predictor.deph' (did you mean 'depth'?)"),
    (["objective=vjepa3"], "objective: expected one of 'vjepa2', 'vjepa2_1', got 'vjepa3'"),
    (["predictor.num_heads=5"], "predictor: predictor_embed_dim 64 is not divisible by num_heads 5"),
    (["ema=[0.9]"], "ema: expected 2 values, got 1"),
    (["--batch-size", "0"], "frame_stride, batch_size, clip_batch_size and clip_frames must be >= 1"),
])
def test_bad_settings_are_usage_errors(words, message, capsys):
    assert main(["pretrain", "--print-config", *words]) == 2
    assert message in capsys.readouterr().err


def test_help_lists_the_settings_with_their_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    lines = capsys.readouterr().out.splitlines()
    defaults = PretrainConfig()
    assert f"  optim.total_steps={defaults.optim.total_steps}" in lines and f"  img_size={defaults.img_size}" in lines
    assert "  predictor.depth=2" in lines and "  context_lambda_ramp=[150, 300]" in lines
