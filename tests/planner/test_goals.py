"""Goal schedule files: writing capture by capture, reading back, the mapping onto MPCConfig, and bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import yaml

from vjepa_ac.planner.goals import (
    GoalSchedule,
    GoalScheduleError,
    GoalScheduleWriter,
    SubGoal,
    load_goal_schedule,
)
from vjepa_ac.planner.mpc import MPCConfig


def _image(value: int, size=(36, 64)) -> np.ndarray:
    image = np.zeros((*size, 3), np.uint8)
    image[..., 0] = value
    image[: size[0] // 2, :, 2] = 255 - value
    return image


def _write(folder, count=3, **writer_options):
    writer = GoalScheduleWriter(folder, camera="left", crop="droid", **writer_options)
    for i in range(count):
        closed = float(i >= 1)
        writer.add(_image(40 * i), steps=4 + i, gripper=0.5 if closed else -0.5,
                   state=[0.5, 0.0, 0.3 - 0.05 * i, 3.1, 0.0, 0.0, closed], joint_positions=np.arange(7) * 0.1,
                   gripper_position=closed)
    return writer


def test_round_trip_and_mpc_settings(tmp_path):
    writer = _write(tmp_path / "goals")
    schedule = load_goal_schedule(tmp_path / "goals")  # the folder means its schedule.yaml
    assert schedule.path == tmp_path / "goals" / "schedule.yaml" and schedule == writer.schedule
    assert schedule.camera == "left" and schedule.image_size == (36, 64) and schedule.crop == "droid"
    assert [g.image for g in schedule.goals] == ["goal_00.png", "goal_01.png", "goal_02.png"]
    assert schedule.goals[2].state[2] == pytest.approx(0.2) and schedule.goals[1].gripper_position == 1.0
    images = schedule.load_images()
    for i, image in enumerate(images):
        np.testing.assert_array_equal(image, _image(40 * i))  # PNG: lossless, RGB order kept
    settings = schedule.mpc_settings()
    assert settings == {"camera": "left", "goal_schedule": (4, 5, 6), "goal_gripper": (-0.5, 0.5, 0.5),
                        "switch_energy": None, "switch_plateau": None, "stop_energy": None}
    config = MPCConfig(**settings)
    assert config.step_budget == 15


def test_energy_switching_rule(tmp_path):
    _write(tmp_path, count=2, switch="energy", switch_energy=0.2, stop_energy=0.1)
    schedule = load_goal_schedule(tmp_path / "schedule.yaml")
    # Steps given for every sub-goal become caps under an energy rule.
    assert schedule.mpc_settings()["goal_schedule"] == (4, 5)
    assert schedule.mpc_settings()["switch_energy"] == 0.2 and schedule.mpc_settings()["stop_energy"] == 0.1
    without_steps = GoalSchedule(camera="left", image_size=(4, 4), goals=(SubGoal("a.png", steps=3), SubGoal("b.png")),
                                 switch="energy", switch_energy=0.2)
    assert without_steps.mpc_settings()["goal_schedule"] is None
    with pytest.raises(GoalScheduleError, match="switch: energy needs switch_energy"):
        GoalSchedule(camera="left", image_size=(4, 4), goals=(SubGoal("a.png"), SubGoal("b.png")), switch="energy")


def test_plateau_switching_rule(tmp_path):
    _write(tmp_path, count=2, switch="plateau", switch_plateau=3)
    schedule = load_goal_schedule(tmp_path)
    settings = schedule.mpc_settings()
    assert settings["switch_plateau"] == 3 and settings["goal_schedule"] == (4, 5) and settings["switch_energy"] is None
    assert MPCConfig(**settings).step_budget == 9
    with pytest.raises(GoalScheduleError, match="switch: plateau needs switch_plateau"):
        GoalSchedule(camera="left", image_size=(4, 4), goals=(SubGoal("a.png"),), switch="plateau")


def test_existing_schedule_is_never_overwritten_by_default(tmp_path):
    _write(tmp_path)
    before = (tmp_path / "schedule.yaml").read_text()
    with pytest.raises(GoalScheduleError, match="already exists"):
        GoalScheduleWriter(tmp_path, camera="left", crop="droid")
    assert (tmp_path / "schedule.yaml").read_text() == before
    _write(tmp_path, count=1, overwrite=True)
    assert len(load_goal_schedule(tmp_path).goals) == 1


def test_a_bad_capture_keeps_everything_written_before(tmp_path):
    writer = _write(tmp_path, count=2)
    before = (tmp_path / "schedule.yaml").read_text()
    with pytest.raises(GoalScheduleError, match="changed its frame size from 64x36 to 32x20"):
        writer.add(_image(9, size=(20, 32)), steps=3, gripper=None, state=np.zeros(7), joint_positions=np.zeros(7),
                   gripper_position=0.0)
    with pytest.raises(GoalScheduleError, match="needs steps >= 1"):
        writer.add(_image(9), steps=None, gripper=None, state=np.zeros(7), joint_positions=np.zeros(7),
                   gripper_position=0.0)
    assert (tmp_path / "schedule.yaml").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["goal_00.png", "goal_01.png", "schedule.yaml"]
    assert len(load_goal_schedule(tmp_path).load_images()) == 2


def _edit(path, change):
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="something"), "is not a goal schedule"),
        (lambda d: d.update(version=7), "version 7 is not supported"),
        (lambda d: d.update(cameras="left"), r"unknown keys \['cameras'\]"),
        (lambda d: d["goals"][1].update(step=3), r"sub-goal 1: unknown keys \['step'\]"),
        (lambda d: d["goals"][0].update(steps=0), "sub-goal 0 \\(goal_00.png\\) needs steps >= 1"),
        (lambda d: d["goals"][0].update(steps="many"), "steps must be an integer"),
        (lambda d: d["goals"][2].update(gripper=3), "gripper must be in \\[-1, 1\\]"),
        (lambda d: d["goals"][0].update(state=[1, 2]), "state must be 7 finite numbers"),
        (lambda d: d.update(goals=[]), "no sub-goals"),
        (lambda d: d.update(switch="time"), "switch must be one of"),
        (lambda d: d.pop("camera"), "'camera' must name"),
        (lambda d: d.update(image_size=[36]), "image_size must be 2"),
    ],
)
def test_bad_schedule_files_name_the_problem(tmp_path, change, message):
    _write(tmp_path)
    _edit(tmp_path / "schedule.yaml", change)
    with pytest.raises(GoalScheduleError, match=message):
        load_goal_schedule(tmp_path)


def test_missing_unreadable_and_wrongly_sized_images(tmp_path):
    _write(tmp_path)
    (tmp_path / "goal_01.png").unlink()
    schedule = load_goal_schedule(tmp_path)
    with pytest.raises(GoalScheduleError, match="sub-goal 1 refers to .*goal_01.png, which does not exist"):
        schedule.load_images()
    (tmp_path / "goal_01.png").write_bytes(b"not a png")
    with pytest.raises(GoalScheduleError, match="goal_01.png is not a readable image"):
        schedule.load_images()
    cv2.imwrite(str(tmp_path / "goal_01.png"), np.zeros((18, 32, 3), np.uint8))
    with pytest.raises(GoalScheduleError, match="goal_01.png is 32x18, but the schedule's camera frames are 64x36"):
        schedule.load_images()
    with pytest.raises(GoalScheduleError, match="goal schedule not found"):
        load_goal_schedule(tmp_path / "nowhere.yaml")
    (tmp_path / "broken.yaml").write_text("goals: [\n")
    with pytest.raises(GoalScheduleError, match="not valid YAML"):
        load_goal_schedule(tmp_path / "broken.yaml")


def test_camera_and_frame_size_must_match_the_planner(tmp_path):
    schedule = _write(tmp_path).schedule
    schedule.check_camera("left", (36, 64, 3))
    with pytest.raises(GoalScheduleError, match="taken with camera 'left' but the planner uses 'wrist'"):
        schedule.check_camera("wrist")
    with pytest.raises(GoalScheduleError, match="goal images are 64x36 but camera 'left' delivers 320x180"):
        schedule.check_camera("left", (180, 320, 3))
