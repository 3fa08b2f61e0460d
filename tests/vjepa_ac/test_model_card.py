"""Model cards: a checkpoint's planning settings -> `MPCConfig`, paper defaults without a card, sim options."""

import json

import numpy as np
import pytest

from vjepa_ac.model_card import (
    PlanningOverrides,
    load_planning_defaults,
    mpc_config_for,
    resolve_checkpoint,
    sim_config_options,
)

CARD = {
    "crop": "square",
    "camera": "left",
    "fps": 15.0,
    "sim": {"image_size": [90, 160]},
    "planner": {"samples": 16, "iterations": 2, "topk": 4, "horizon": 1, "space": {"max_translation": 0.03}},
    "mpc": {"stop_energy": 0.01},
    "tasks": {"pick_and_place": {"switch_energy": 0.2}, "reach": {"planner": {"space": {"fixed": {"6": 0.0}}}}},
    "unrelated": "kept in .card only",
}


def test_model_card_to_mpc_config(tmp_path):
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"")
    (tmp_path / "model.json").write_text(json.dumps(CARD))
    defaults = load_planning_defaults(checkpoint)
    assert defaults.crop == "square" and defaults.sim["image_size"] == (90, 160) and defaults.card == CARD
    reach = mpc_config_for(defaults, "reach")
    assert reach.planner.samples == 16 and reach.planner.space.max_translation == 0.03
    assert reach.stop_energy == 0.01 and reach.switch_energy is None
    assert reach.planner.space.fixed == {6: 0.0}
    pick = mpc_config_for(defaults, "pick_and_place")
    assert pick.switch_energy == 0.2 and pick.planner.space.fixed == {}
    quick = mpc_config_for(defaults, "reach", PlanningOverrides(samples=3, horizon=2, max_steps=7))
    # Elites are kept inside the (smaller) sample count; other settings come from the card.
    assert (quick.planner.samples, quick.planner.topk, quick.planner.horizon, quick.max_steps) == (3, 3, 2, 7)
    assert quick.planner.iterations == 2


def test_checkpoint_without_card_uses_paper_defaults(tmp_path):
    defaults = load_planning_defaults(tmp_path / "vjepa2-ac-vitg.pt")
    config = mpc_config_for(defaults, "reach")
    assert (config.planner.samples, config.planner.iterations, config.planner.horizon) == (800, 10, 1)
    assert defaults.crop == "droid"


def test_broken_card_and_missing_default_are_named(tmp_path, monkeypatch):
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(ValueError, match="m.json"):
        load_planning_defaults(tmp_path / "m.pt")
    from vjepa_ac import default_model

    monkeypatch.setattr(default_model, "DEFAULT_CHECKPOINT", tmp_path / "absent.pt")
    with pytest.raises(FileNotFoundError, match="default_model.sh"):
        resolve_checkpoint(None)
    assert resolve_checkpoint(tmp_path / "x.pt") == tmp_path / "x.pt"


def test_workspace_bounds_from_the_card():
    options = sim_config_options({"image_size": (90, 160), "workspace_min": [0.3, -0.3, 0.05],
                                  "workspace_max": [0.75, 0.3, 0.55]})
    assert options["image_size"] == (90, 160)
    np.testing.assert_array_equal(options["action_limits"].workspace_max, [0.75, 0.3, 0.55])
    assert options["action_limits"].max_translation == 0.075  # the rest of the default limits is kept
    with pytest.raises(ValueError, match="workspace_min"):
        sim_config_options({"workspace_min": [0.3, float("nan"), 0.0]})


def _parsed(*words: str):
    from vjepa_ac.cli import build_parser

    return build_parser().parse_args(list(words))


def test_planning_settings_come_from_a_file_then_the_options_then_the_overrides(tmp_path):
    from vjepa_ac.control import resolved_config

    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"")
    (tmp_path / "model.json").write_text(json.dumps(CARD))
    settings = tmp_path / "planning.yaml"
    settings.write_text("samples: 9\nhorizon: 2\nreduce: sum\ngoal_schedule: [3, 4]\nswitch_energy: 0.3\n")
    args = _parsed("run", "--robot", "sim", "--task", "pick_and_place", "--config", str(settings), "--samples", "5",
                   "--planner-seed", "4", "horizon=3", "translation_constraint=box")
    overrides = PlanningOverrides.from_args(args)
    assert (overrides.samples, overrides.horizon, overrides.seed, overrides.reduce) == (5, 3, 4, "sum")
    config = resolved_config(args, load_planning_defaults(checkpoint))  # what `vjepa-ac run` plans with
    assert (config.planner.samples, config.planner.horizon, config.planner.seed) == (5, 3, 4)
    assert config.planner.iterations == 2 and config.planner.space.max_translation == 0.03  # from the card
    assert config.planner.space.translation_constraint == "box"
    # The file beats the card's task entry (switch_energy 0.2); what no layer sets keeps the card's value.
    assert (config.reduce, config.goal_schedule, config.switch_energy) == ("sum", (3, 4), 0.3)
    assert config.stop_energy == 0.01


def test_planning_levers_are_settings_like_any_other(tmp_path):
    from vjepa_ac.control import resolved_config

    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"")
    (tmp_path / "model.json").write_text(json.dumps(CARD))
    args = _parsed("run", "--robot", "sim", "--task", "pick_and_place", "--max-yaw", "0.05", "switch_plateau=3",
                   "plateau_floor=0.13", "regrasp=[3, 1]", "max_regrasps=1", "goal_max_translation=[null, 0.03, 0]",
                   "goal_reduce=[last, sum]")
    config = resolved_config(args, load_planning_defaults(checkpoint))
    assert config.planner.space.max_yaw == 0.05 and config.planner.space.dims == (0, 1, 2, 6, 5)
    assert (config.switch_plateau, config.plateau_floor, config.regrasp, config.max_regrasps) == (3, 0.13, (3, 1), 1)
    assert config.goal_max_translation == (None, 0.03, 0.0)
    assert config.goal_reduce == ("last", "sum")


@pytest.mark.parametrize("words, message", [
    (["smaples=3"], "unknown config key 'smaples' (did you mean 'samples'?)"),
    (["samples=0"], "samples must be >= 1, got 0"),
    (["reduce=mean"], "reduce: expected one of 'last', 'sum', got 'mean' (or null)"),
    (["goal_gripper=[2]"], "goal_gripper values must be in [-1, 1] or null"),
    (["planner=ppo"], "planner: expected one of 'cem', 'mppi'"),
])
def test_bad_planning_settings_are_usage_errors(words, message, capsys):
    from vjepa_ac.cli import main

    assert main(["demo", "--print-config", *words]) == 2
    assert message in capsys.readouterr().err


def test_print_config_shows_each_task_s_resolved_settings(tmp_path, capsys):
    import yaml

    from vjepa_ac.cli import main

    settings = tmp_path / "planning.yaml"
    settings.write_text("iterations: 2\n")
    assert main(["eval", "--task", "reach,pick_and_place", "--config", str(settings), "--print-config",
                 "--samples", "40", "switch_energy=0.25"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    defaults = load_planning_defaults(resolve_checkpoint(None))
    for task in ("reach", "pick_and_place"):
        expected = mpc_config_for(defaults, task, PlanningOverrides(samples=40, iterations=2, switch_energy=0.25))
        assert printed[task]["planner"]["samples"] == expected.planner.samples == 40
        assert printed[task]["planner"]["iterations"] == 2 and printed[task]["switch_energy"] == 0.25
        assert printed[task]["goal_schedule"] == (list(expected.goal_schedule) if expected.goal_schedule else None)


def test_plan_prints_its_config_without_an_observation(capsys):
    import yaml

    from vjepa_ac.cli import main

    assert main(["plan", "--print-config", "--max-yaw", "0.05", "horizon=2"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["planner"]["horizon"] == 2 and printed["planner"]["space"]["max_yaw"] == 0.05
