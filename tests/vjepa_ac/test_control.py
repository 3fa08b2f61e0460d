import argparse
import json

import cv2
import numpy as np
import pytest

from vjepa_ac.control import _goal_gripper, existing_file, positive_int
from vjepa_ac.cli import main
from vjepa_ac.worldmodel import save_ac_checkpoint

from tests.planner.conftest import PointRobot

STATE = "0.5,0,0.3,3.1,0,0,0"


@pytest.fixture
def files(tiny_world_model, tmp_path):
    ckpt = save_ac_checkpoint(
        tmp_path / "tiny.pt", encoder=tiny_world_model.encoder, predictor=tiny_world_model.predictor
    )
    robot = PointRobot()
    paths = {"ckpt": ckpt}
    for name, image in (("obs", robot.image_at(robot.state)), ("goal", robot.image_at([0.6, 0.1, 0.3, 0, 0, 0, 0]))):
        paths[name] = tmp_path / f"{name}.png"
        cv2.imwrite(str(paths[name]), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    paths["small_goal"] = tmp_path / "small.png"
    cv2.imwrite(str(paths["small_goal"]), np.zeros((20, 30, 3), np.uint8))
    return paths


def _plan(files, *extra, goal="goal"):
    return main(
        ["plan", "--checkpoint", str(files["ckpt"]), "--obs", str(files["obs"]), "--goal", str(files[goal]),
         "--samples", "32", "--iterations", "2", "--topk", "4", "--device", "cpu", *extra]
    )


def test_plan_prints_the_next_action(files, capsys):
    assert _plan(files, "--state", STATE) == 0
    action = np.array([float(v) for v in capsys.readouterr().out.split()])
    assert action.shape == (7,) and np.all(np.isfinite(action))
    assert np.abs(action[:3]).sum() <= 0.075 + 1e-6 and np.all(action[3:6] == 0)
    assert _plan(files, "--state", STATE) == 0
    assert np.allclose([float(v) for v in capsys.readouterr().out.split()], action)  # same seed, same action


def test_plan_json_and_mppi(files, capsys):
    assert _plan(files, "--state", STATE, "--json", "--planner", "mppi", "--horizon", "2") == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["actions"]) == 2 and len(report["iteration_energies"]) == 2


@pytest.mark.parametrize(
    ("state", "goal", "message"),
    [
        ("0.5,nan,0.3,3.1,0,0,0", "goal", "non-finite"),
        ("0.5,0,0.3", "goal", "7 values"),
        (STATE, "small_goal", "goal image 0 is 30x20"),
    ],
)
def test_plan_bad_input(files, capsys, state, goal, message):
    assert _plan(files, "--state", state, goal=goal) == 2
    assert message in capsys.readouterr().err


def test_type_helpers(tmp_path):
    assert positive_int("7") == 7
    for bad in ("0", "two"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected an integer"):
            positive_int(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="no such file"):
        existing_file(str(tmp_path / "missing.pt"))
    for bad, message in (("open", "like -0.5,0.5,free"), ("0.5,2", "in \\[-1, 1\\]"), ("", "at least one")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            _goal_gripper(bad)


def test_missing_checkpoint_is_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["plan", "--checkpoint", "/no/such/file.pt", "--obs", "o.png", "--state", STATE, "--goal", "g.png"])
    assert "no such file" in capsys.readouterr().err


def _resolved(argv):
    """The `MPCConfig` that `vjepa-ac run` / `plan` would use for `argv` (no world model is loaded)."""
    from vjepa_ac.control import resolved_config
    from vjepa_ac.model_card import load_planning_defaults, resolve_checkpoint
    from vjepa_ac.cli import build_parser

    args = build_parser().parse_args(argv)
    return resolved_config(args, load_planning_defaults(resolve_checkpoint(args.checkpoint)))


def test_run_resolves_settings_like_demo():
    """With the embedded default model, `run --robot sim --task reach` plans with the card's reach settings, as demo."""
    from vjepa_ac.cli import build_parser
    from vjepa_ac.model_card import PlanningOverrides, load_planning_defaults, mpc_config_for, resolve_checkpoint

    run = _resolved(["run", "--robot", "sim", "--task", "reach"])
    demo = mpc_config_for(load_planning_defaults(resolve_checkpoint(None)), "reach",
                          PlanningOverrides.from_args(build_parser().parse_args(["demo"])))
    assert run == demo
    assert (run.planner.samples, run.planner.iterations, run.planner.topk) == (128, 4, 12)
    assert run.planner.space.fixed == {6: -0.5}  # the card pins Δgripper while reaching
    # Per-task overrides follow --task; a bridged arm gets the card's common settings only.
    pick = _resolved(["run", "--robot", "sim", "--task", "pick_and_place"])
    assert pick.goal_schedule == (10, 8, 3, 5, 17, 7) and pick.goal_gripper == (-0.5, -0.5, 0.5, 0.5, 0.5, -0.5)
    pinned = _resolved(["run", "--robot", "sim", "--task", "pick_and_place", "--goal-gripper=-1,free,0.25"])
    assert pinned.goal_gripper == (-1.0, None, 0.25)
    bridge = _resolved(["run", "--robot", "bridge", "--task", "pick_and_place"])
    assert bridge.goal_schedule is None and bridge.planner.space.fixed == {} and bridge.planner.samples == 128


def test_explicit_options_override_the_card():
    config = _resolved(["run", "--robot", "sim", "--task", "reach", "--samples", "32",
                        "--translation-constraint", "box",
                        "--planner-seed", "5", "--max-steps", "7", "--reduce", "sum", "--precision", "float32"])
    assert (config.planner.samples, config.planner.iterations, config.planner.topk) == (32, 4, 12)
    assert config.planner.space.translation_constraint == "box" and config.planner.space.fixed == {6: -0.5}
    assert (config.planner.seed, config.max_steps, config.reduce, config.precision) == (5, 7, "sum", "float32")
    mppi = _resolved(["run", "--robot", "sim", "--planner", "mppi", "--topk", "4"])
    assert type(mppi.planner).__name__ == "MPPIConfig" and (mppi.planner.samples, mppi.planner.log_topk) == (128, 4)


def test_help_shows_the_values_used():
    """Each planning option's help names the value the embedded model plans with and the library's own default, so
    the help cannot drift from the model card or the library's dataclasses."""
    from vjepa_ac.planner.action_space import SearchSpace
    from vjepa_ac.planner.cem import CEMConfig
    from vjepa_ac.planner.mpc import MPCConfig
    from vjepa_ac.cli import build_parser

    run = next(a for a in build_parser()._subparsers._group_actions[0].choices.values() if a.prog.endswith(" run"))
    helps = {option: action.help for action in run._actions for option in action.option_strings}
    library = {"--samples": CEMConfig.samples, "--iterations": CEMConfig.iterations, "--topk": CEMConfig.topk,
               "--horizon": CEMConfig.horizon, "--planner-seed": CEMConfig.seed,
               "--max-translation": SearchSpace.max_translation,
               "--translation-constraint": SearchSpace.translation_constraint,
               "--close-gripper": SearchSpace.close_gripper, "--reduce": MPCConfig.reduce,
               "--context-frames": MPCConfig.context_frames, "--max-frame-age": MPCConfig.max_frame_age_s,
               "--camera": MPCConfig.camera, "--switch-energy": MPCConfig.switch_energy,
               "--stop-energy": MPCConfig.stop_energy}
    for option, value in library.items():
        help_text = " ".join(helps[option].split())
        assert f"default: {value}" in help_text or f", {value} without a card" in help_text, (option, help_text)
    # The embedded card plans 3 steps ahead; the help says so (it once said 1, the library's default).
    assert "default: 3 with the embedded model's card, 1 without a card" in " ".join(helps["--horizon"].split())


def test_without_a_card_the_paper_defaults_apply(files):
    config = _resolved(["plan", "--checkpoint", str(files["ckpt"]), "--obs", "o.png", "--state", STATE,
                        "--goal", "g.png"])
    assert (config.planner.samples, config.planner.iterations, config.planner.topk, config.planner.horizon) == (
        800, 10, 10, 1)
    space = config.planner.space
    assert (space.max_translation, space.translation_constraint, space.close_gripper, space.fixed) == (
        0.075, "l1_ball", None, {})
    assert (config.planner.seed, config.reduce, config.precision, config.compile, config.context_frames) == (
        0, "last", "auto", False, 1)


def _schedule(folder, images, camera="left", pins=(-0.5, 0.5)):
    from vjepa_ac.planner.goals import GoalScheduleWriter

    writer = GoalScheduleWriter(folder, camera=camera, crop="droid")
    for image, pin in zip(images, pins):
        writer.add(image, steps=3, gripper=pin, state=[0.5, 0, 0.3, 3.1, 0, 0, 0], joint_positions=np.zeros(7),
                   gripper_position=0.0)
    return writer.path


def test_plan_toward_a_sub_goal_of_a_schedule(files, tmp_path, capsys):
    robot = PointRobot()
    goals = [robot.image_at([0.4, -0.1, 0.3, 0, 0, 0, 0]), robot.image_at([0.6, 0.1, 0.3, 0, 0, 0, 0])]
    schedule = _schedule(tmp_path / "goals", goals)
    argv = ["plan", "--checkpoint", str(files["ckpt"]), "--obs", str(files["obs"]), "--state", STATE,
            "--samples", "32", "--iterations", "2", "--topk", "4", "--device", "cpu"]
    assert main([*argv, "--goal-schedule", str(schedule), "--goal-index", "1"]) == 0
    action = np.array([float(v) for v in capsys.readouterr().out.split()])
    assert action[6] == 0.5  # the sub-goal's gripper pin
    assert main([*argv, "--goal-schedule", str(schedule), "--goal-index", "0"]) == 0
    assert float(capsys.readouterr().out.split()[6]) == -0.5
    assert main([*argv, "--goal-schedule", str(schedule), "--goal-index", "2"]) == 2
    assert "has 2 sub-goals" in capsys.readouterr().err
    wrist = _schedule(tmp_path / "wrist", goals, camera="wrist")
    assert main([*argv, "--goal-schedule", str(wrist)]) == 2
    assert "taken with camera 'wrist' but the planner uses 'left'" in capsys.readouterr().err
    (tmp_path / "goals" / "goal_00.png").unlink()
    assert main([*argv, "--goal-schedule", str(schedule)]) == 2
    assert "goal_00.png, which does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv, "--goal-schedule", str(schedule), "--goal", str(files["goal"])])
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_schedule_replaces_the_task_sub_goal_settings(tmp_path):
    """run --goal-schedule: the schedule's steps and pins replace the card's task settings; options override both."""
    from vjepa_ac.control import with_goal_schedule
    from vjepa_ac.planner.goals import load_goal_schedule
    from vjepa_ac.cli import build_parser

    robot = PointRobot()
    schedule = load_goal_schedule(_schedule(tmp_path, [robot.image_at(robot.state)] * 2))
    argv = ["run", "--robot", "sim", "--task", "pick_and_place", "--goal-schedule", str(schedule.path)]
    config = with_goal_schedule(_resolved(argv), schedule, build_parser().parse_args(argv))
    assert config.goal_schedule == (3, 3) and config.goal_gripper == (-0.5, 0.5) and config.step_budget == 6
    argv += ["--goal-gripper=free,1", "--stop-energy", "0.2"]
    config = with_goal_schedule(_resolved(argv), schedule, build_parser().parse_args(argv))
    assert config.goal_schedule == (3, 3) and config.goal_gripper == (None, 1.0) and config.stop_energy == 0.2


def test_calibrate_on_the_sim_writes_a_file_run_accepts(tmp_path, capsys):
    """`calibrate` probes the sim arm with the embedded model and writes the yaw; `run` / `plan` / `eval` take it."""
    out = tmp_path / "frame.json"
    assert main(["calibrate", "--robot", "sim", "--camera-yaw", "30", "--probes", "4", "--probe-step", "0.05",
                 "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "action-frame yaw:" in printed and "probes: 4 of 4 used" in printed
    document = json.loads(out.read_text())
    yaw = document["action_frame_yaw"]
    assert -180 <= yaw < 180 and document["calibration"]["probes_total"] == 4
    assert _resolved(["run", "--robot", "sim", "--action-frame", str(out)]).action_frame_yaw == yaw
    assert _resolved(["run", "--robot", "sim", "--action-frame-yaw", "-12.5"]).action_frame_yaw == -12.5
    assert _resolved(["run", "--robot", "sim"]).action_frame_yaw == 0.0
    with pytest.raises(SystemExit):
        _resolved(["run", "--robot", "sim", "--action-frame", str(out), "--action-frame-yaw", "3"])


def test_calibrate_bad_input_writes_nothing(tmp_path, capsys):
    out = tmp_path / "frame.json"
    # The sim renders every view the planner's camera names; a camera it does not have is refused up front.
    assert main(["calibrate", "--robot", "sim", "--camera", "top", "--probes", "4", "--device", "cpu",
                 "--out", str(out)]) == 2
    assert "unknown camera roles ['top']" in capsys.readouterr().err and not out.exists()
    assert main(["calibrate", "--robot", "sim", "--probe-step", "0.005", "--device", "cpu", "--out", str(out)]) == 2
    assert "min_motion" in capsys.readouterr().err and not out.exists()
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(SystemExit):
        main(["run", "--robot", "sim", "--action-frame", str(bad)])
    assert "no 'action_frame_yaw' entry" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--robot", "sim", "--camera-yaw", "400"])
    assert "within [-180, 180]" in capsys.readouterr().err


def test_camera_yaw_reaches_the_sim_settings():
    from vjepa_ac.model_card import load_planning_defaults, resolve_checkpoint, sim_settings
    from vjepa_ac.cli import build_parser

    defaults = load_planning_defaults(resolve_checkpoint(None))
    for argv in (["eval", "--camera-yaw", "-45"], ["demo", "--camera-yaw", "-45"],
                 ["run", "--robot", "sim", "--camera-yaw", "-45"]):
        settings = sim_settings(defaults, build_parser().parse_args(argv))
        assert settings["camera_yaw"] == -45.0 and settings["image_size"] == (180, 320)
    assert "camera_yaw" not in sim_settings(defaults, build_parser().parse_args(["eval"]))
