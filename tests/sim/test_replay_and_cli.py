"""`vjepa-ac sim replay|show|collect` end to end on small inputs."""

import av
import pytest

from sim.cli import TASK_CHOICES
from sim.tasks import TASK_NAMES
from vjepa_ac.cli import main


def test_cli_task_choices_match_the_tasks():
    assert TASK_CHOICES == TASK_NAMES


@pytest.fixture(scope="module")
def episode(tmp_path_factory):
    root = tmp_path_factory.mktemp("droid")
    code = main(["sim", "collect", "--task", "reach", "--episodes", "1", "--out", str(root), "--image-size", "48x64",
                 "--explore-fraction", "0", "--quiet"])
    assert code == 0
    (path,) = root.glob("SIM/*/*/*")
    return path


def test_replay_matches_recorded_flange_poses_and_writes_side_by_side_video(episode, tmp_path, capsys):
    out = tmp_path / "replay.mp4"
    assert main(["sim", "replay", str(episode), "--out", str(out), "--height", "60", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "forward kinematics vs recorded flange: 0.00 mm" in printed
    with av.open(str(out)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert frames[0].shape == (60, 80 + 106, 3)  # recorded 48x64 scaled to 60 rows, then the 16:9 simulation
    assert len(frames) >= 5


def test_replay_rejects_a_missing_camera(episode, tmp_path):
    from sim.replay import replay_episode

    with pytest.raises(ValueError, match="no 'top' camera"):
        replay_episode(episode, tmp_path / "x.mp4", camera="top", progress=False)


def test_show_writes_camera_and_goal_images(tmp_path, capsys):
    out = tmp_path / "show"
    assert main(["sim", "show", "--task", "pick_and_place", "--seed", "2", "--out", str(out), "--image-size",
                 "64x96"]) == 0
    names = sorted(p.name for p in out.glob("*.png"))
    assert len(names) == 9 and "pick_and_place_goal_5.png" in names  # 3 cameras + 6 sub-goals
    assert "task info" in capsys.readouterr().out


def test_bad_image_size_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        main(["sim", "show", "--image-size", "big"])
    assert "HEIGHTxWIDTH" in capsys.readouterr().err
