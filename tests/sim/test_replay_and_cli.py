"""`vjepa-ac sim replay|show|collect` end to end on small inputs."""

import av
import pytest

from vjepa_ac.sim import TASK_NAMES
from vjepa_ac.sim.tasks import TASKS
from vjepa_ac.cli import main


def test_task_names_match_the_tasks():
    assert tuple(TASKS) == TASK_NAMES


@pytest.fixture(scope="module")
def episode(tmp_path_factory):
    root = tmp_path_factory.mktemp("droid")
    code = main(["sim", "collect", "--task", "reach", "--episodes", "1", "--out", str(root), "--image-size", "48x64",
                 "--explore-fraction", "0", "--no-progress"])
    assert code == 0
    (path,) = root.glob("SIM/*/*/*")
    return path


def test_replay_matches_recorded_flange_poses_and_writes_side_by_side_video(episode, tmp_path, capsys):
    out = tmp_path / "replay.mp4"
    assert main(["sim", "replay", str(episode), "-o", str(out), "--height", "60", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "forward kinematics vs recorded flange: 0.00 mm" in printed
    assert "objects: cube, " in printed and "mug" in printed and "replayed at their recorded poses" in printed
    with av.open(str(out)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert frames[0].shape == (60, 80 + 106, 3)  # recorded 48x64 scaled to 60 rows, then the 16:9 simulation
    assert len(frames) >= 5


def test_replay_rejects_a_missing_camera(episode, tmp_path):
    from vjepa_ac.sim.replay import replay_episode

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


def test_replay_puts_objects_at_their_recorded_poses(episode, tmp_path, monkeypatch):
    import shutil

    import h5py
    import numpy as np

    from vjepa_ac.data.droid import open_episode
    from vjepa_ac.sim.collect import OBJECT_POSES_GROUP
    from vjepa_ac.sim.replay import recorded_objects, replay_episode
    from vjepa_ac.sim.robot import SimRobot

    recorded = recorded_objects(open_episode(episode), ("cube", "mug"))
    assert set(recorded) == {"cube", "mug"} and recorded["cube"].shape[1] == 6
    placed: list[dict[str, np.ndarray]] = []
    real_set = SimRobot.set_object_poses

    def spy(self, poses):
        placed.append({name: np.array(pose) for name, pose in poses.items()})
        real_set(self, poses)

    monkeypatch.setattr(SimRobot, "set_object_poses", spy)
    report = replay_episode(episode, tmp_path / "a.mp4", height=40, progress=False)
    assert {"cube", "mug"} <= set(report.objects)
    cubes = np.stack([poses["cube"] for poses in placed])
    np.testing.assert_allclose(cubes, recorded["cube"][: report.steps])

    # An episode without object poses (every real DROID episode) leaves the objects alone, and the report says so.
    bare = tmp_path / "bare"
    shutil.copytree(episode, bare)
    with h5py.File(bare / "trajectory.h5", "r+") as f:
        del f[OBJECT_POSES_GROUP]
    placed.clear()
    report = replay_episode(bare, tmp_path / "b.mp4", height=40, progress=False)
    assert report.objects == () and not any(placed)
