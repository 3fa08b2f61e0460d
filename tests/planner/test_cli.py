import argparse
import json

import cv2
import numpy as np
import pytest

from planner.cli import existing_file, positive_int
from vjepa_ac.cli import main
from worldmodel import save_ac_checkpoint

from .conftest import PointRobot

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
         "--samples", "32", "--iterations", "2", "--elites", "4", "--device", "cpu", *extra]
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


def test_missing_checkpoint_is_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["plan", "--checkpoint", "/no/such/file.pt", "--obs", "o.png", "--state", STATE, "--goal", "g.png"])
    assert "no such file" in capsys.readouterr().err
