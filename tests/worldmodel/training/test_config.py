"""Config loading: YAML, dotted overrides, type checks and the shipped example configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from vjepa_ac.worldmodel.training.config import TrainConfig, load_config

CONFIGS = Path(__file__).resolve().parents[3] / "worldmodel" / "training" / "configs"


def test_shipped_configs_load():
    vitg = load_config(CONFIGS / "vitg16_droid_256px_8f.yaml", ["data.cache=/tmp/c"])
    assert (vitg.optim.lr, vitg.optim.start_lr, vitg.optim.weight_decay) == (4.25e-4, 7.5e-5, 0.04)
    assert (vitg.optim.total_steps, vitg.optim.warmup_steps, vitg.optim.anneal_steps) == (94500, 4500, 4500)
    assert vitg.loss.rollout_steps == 2 and vitg.data.frames_per_clip == 8
    assert vitg.model.predictor == {"predictor_embed_dim": 1024, "depth": 24, "num_heads": 16, "use_extrinsics": False}
    tiny = load_config(CONFIGS / "tiny_cpu.yaml", ["data.cache=/tmp/c"])
    assert tiny.model.predictor_preset == "vit_ac_tiny"


def test_overrides_parse_yaml_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  cache: /x\noptim:\n  lr: 1e-3\n")
    config = load_config(path, ["optim.betas=[0.8, 0.9]", "data.val_episodes=[a, b]", "run.seed=7",
                                "model.predictor={depth: 3}", "optim.clip_grad_norm=1"])
    assert config.optim.lr == 1e-3  # YAML 1.1 reads 1e-3 as a string; accepted as a number
    assert config.optim.betas == (0.8, 0.9) and config.data.val_episodes == ["a", "b"]
    assert config.run.seed == 7 and config.model.predictor == {"depth": 3} and config.optim.clip_grad_norm == 1.0


@pytest.mark.parametrize("override, message", [
    ("optim.warmup=1", "unknown config key .optim.warmup. \\(did you mean .warmup_steps."),
    ("run.seed=abc", "run.seed: expected an integer"),
    ("loss.rollout_steps=8", "rollout_steps=8 needs"),
    ("data.source=video", "data.source must be"),
    ("optim.warmup_steps=95000", "must fit in optim.total_steps"),
    ("novalue", "section.key=value"),
])
def test_bad_settings_are_named(override, message):
    with pytest.raises((KeyError, TypeError, ValueError), match=message):
        load_config(None, ["data.cache=/x", override])


def test_defaults_are_the_reference_recipe():
    config = TrainConfig()
    assert config.loss.rollout_steps == 2
    assert config.loss.teacher_forcing_weight == config.loss.rollout_weight == 1.0
    assert config.optim.weight_decay == 0.04
    with pytest.raises(ValueError, match="data.cache"):
        config.validate()


def test_train_command_runs_with_the_file_and_the_overrides(tmp_path, monkeypatch, capsys):
    """`vjepa-ac train FILE KEY=VALUE...`: the Trainer gets the merged config, --print-config shows it (loadably)."""
    from types import SimpleNamespace

    import yaml

    from vjepa_ac.cli import main
    from vjepa_ac.worldmodel.training import trainer as trainer_module

    path = tmp_path / "c.yaml"
    path.write_text("data:\n  cache: /x\noptim:\n  total_steps: 50\n  warmup_steps: 5\n  anneal_steps: 5\n  lr: 2e-4\n")
    received = []

    class RecordingTrainer:
        def __init__(self, config):
            received.append(config)
            self.dist = SimpleNamespace(is_main=True, is_distributed=False)

        def fit(self):
            return {}

    monkeypatch.setattr(trainer_module, "Trainer", RecordingTrainer)
    assert main(["train", str(path), "optim.lr=1e-3", "-v", "run.seed=3"]) == 0  # an override may follow an option
    (config,) = received
    assert (config.optim.lr, config.optim.total_steps, config.run.seed, config.data.cache) == (1e-3, 50, 3, "/x")
    assert main(["train", str(path), "--print-config", "optim.warmup_steps=7"]) == 0
    printed = tmp_path / "printed.yaml"
    printed.write_text(capsys.readouterr().out)
    assert yaml.safe_load(printed.read_text())["optim"]["warmup_steps"] == 7
    assert load_config(printed).to_dict() == load_config(path, ["optim.warmup_steps=7"]).to_dict()
    assert main(["train", str(path), "optim.lrr=1"]) == 2
    assert f"{path}: unknown config key 'optim.lrr' (did you mean 'lr'?)" in capsys.readouterr().err
