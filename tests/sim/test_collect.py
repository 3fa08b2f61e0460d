"""`sim collect`: DROID raw-format episodes that the project's DROID reader and clip loader accept; resumable."""

import json

import h5py
import numpy as np
import pytest

from vjepa_ac.data.droid import DroidClipDataset, open_episode
from vjepa_ac.data.droid.poses import states_to_actions
from vjepa_ac.robot.kinematics import ArmKinematics
from vjepa_ac.sim.collect import MANIFEST_NAME, CollectSummary, collect, recording_time
from vjepa_ac.sim.collect_config import CollectConfig

SMALL = dict(task="grasp", image_size=(48, 64), steps_after_success=3, noisy_fraction=0.0, failed_fraction=0.0,
             randomize_appearance=False)
"""The fixed scene and the expert/exploration mix; tests/sim/test_variety.py covers randomised scenes and modes."""


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    root = tmp_path_factory.mktemp("droid")
    expert = collect(root, CollectConfig(episodes=1, seed=0, explore_fraction=0.0, perturb_probability=0.0, **SMALL),
                     progress=False)
    explore = collect(root, CollectConfig(episodes=1, seed=1, explore_fraction=1.0, **SMALL), progress=False)
    return root, expert.paths[0], explore.paths[0]


def test_expert_episode_is_a_successful_droid_episode(collected):
    _, path, _ = collected
    assert path.parent.parent.name == "success"
    episode = open_episode(path)
    steps = episode.num_steps
    assert episode.success is True and episode.fps == pytest.approx(15.0)
    assert set(episode.camera_roles) >= {"left", "right", "wrist"}
    frames = episode.read_frames("left", [0, steps - 1])
    assert frames.shape == (2, 48, 64, 3) and frames.dtype == np.uint8
    # Recorded states are the forward kinematics of the recorded joints (DROID's flange convention).
    states, joints = episode.states(), episode.joint_positions()
    kin = ArmKinematics()
    for t in (0, steps // 2, steps - 1):
        np.testing.assert_allclose(kin.droid_state(joints[t], states[t, 6])[:3], states[t, :3], atol=1e-9)
    np.testing.assert_allclose(episode.actions(), states_to_actions(states))
    # The gripper closed on the cube and the flange rose with it.
    closed = np.flatnonzero(states[:, 6] > 0.3)
    assert len(closed) and states[closed, 2].max() > states[:, 2].min() + 0.05
    # Long enough for V-JEPA 2-AC's 8-frame clips at 4 fps (32 steps at 15 Hz).
    assert steps > 48
    assert "cube" in episode.metadata["current_task"]


def test_h5_holds_droid_keys_with_one_row_per_step(collected):
    _, path, _ = collected
    with h5py.File(path / "trajectory.h5") as h5:
        steps = h5["observation/robot_state/cartesian_position"].shape[0]
        for key, shape in {
            "observation/robot_state/joint_positions": (steps, 7),
            "observation/robot_state/joint_velocities": (steps, 7),
            "observation/robot_state/gripper_position": (steps,),
            "action/cartesian_position": (steps, 6),
            "action/gripper_position": (steps,),
            "action/joint_position": (steps, 7),
            "observation/camera_extrinsics/20000001_left": (steps, 6),
        }.items():
            assert h5[key].shape == shape, key
        # The wrist camera moves with the hand; exterior cameras stay put.
        wrist = h5["observation/camera_extrinsics/10000001_left"][:]
        left = h5["observation/camera_extrinsics/20000001_left"][:]
        assert np.ptp(wrist[:, :3], axis=0).max() > 0.05 and np.ptp(left, axis=0).max() == 0
        assert h5["observation/camera_type/10000001"][0] == 0 and h5.attrs["sim_task"] == "grasp"


def test_exploration_episode_feeds_the_clip_loader(collected):
    _, _, path = collected
    with h5py.File(path / "trajectory.h5") as h5:
        assert h5.attrs["sim_policy"] == "explore"
    dataset = DroidClipDataset([path], frames_per_clip=4, fps=4.0)
    item = dataset[0]
    assert item["frames"].shape == (4, 48, 64, 3)
    assert item["actions"].shape == (3, 7) and item["states"].shape == (4, 7)


def test_collection_resumes_without_redoing_episodes(collected):
    root, _, _ = collected
    again = collect(root, CollectConfig(episodes=1, seed=0, **SMALL), progress=False)
    assert again.written == 0 and again.skipped == 1
    lines = (root / MANIFEST_NAME).read_text().splitlines()
    assert [json.loads(line)["seed"] for line in lines] == [0, 1]


def test_a_collection_run_again_writes_the_same_episodes_under_the_same_names(collected, tmp_path):
    root, path, _ = collected
    again = collect(tmp_path, CollectConfig(episodes=1, seed=0, explore_fraction=0.0, perturb_probability=0.0,
                                            **SMALL), progress=False)
    assert again.paths[0].relative_to(tmp_path) == path.relative_to(root)
    with open_episode(path) as first, open_episode(again.paths[0]) as second:
        assert first.episode_id == second.episode_id
        np.testing.assert_array_equal(first.states(), second.states())
    # Other runs and other episodes get other times.
    assert len({recording_time(task, seed, index) for task in ("grasp", "reach") for seed in (0, 1)
                for index in range(3)}) == 12


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown task"):
        collect(tmp_path, CollectConfig(task="stack"), progress=False)
    with pytest.raises(ValueError, match="explore_fraction"):
        collect(tmp_path, CollectConfig(explore_fraction=2.0), progress=False)
    (tmp_path / MANIFEST_NAME).write_text("not json\n")
    with pytest.raises(ValueError, match="not a collection record"):
        collect(tmp_path, CollectConfig(episodes=1, **SMALL), progress=False)


def test_collected_episodes_pass_droid_validate(collected, tmp_path):
    from vjepa_ac.data.droid.validate import validate_episode
    from vjepa_ac.cli import main

    root, expert_path, explore_path = collected
    for path in (expert_path, explore_path):
        report = validate_episode(path)
        assert report.ok and not report.warnings, (report.problems, report.warnings)
        assert set(report.frames) >= {"left", "right", "wrist"}
    # Exit status 0: every episode under the root (expert and exploration) is usable.
    assert main(["droid", "validate", str(root), "--report", str(tmp_path / "report.jsonl"), "--no-progress"]) == 0


def test_collect_settings_come_from_a_file_then_the_options_then_the_overrides(tmp_path, monkeypatch, capsys):
    """`vjepa-ac sim collect`: the collection runs with the merged `CollectConfig`; --print-config shows it."""
    import yaml

    from vjepa_ac.cli import main
    from vjepa_ac.sim import collect as collect_module

    received = []
    monkeypatch.setattr(collect_module, "collect",
                        lambda out, config, progress: received.append((out, config)) or CollectSummary())
    settings = tmp_path / "collect.yaml"
    settings.write_text("task: grasp\nepisodes: 4\nexplore_fraction: 0.5\nnoisy_expert:\n  rotation_noise: 0.05\n"
                        "randomization:\n  distractors: [0, 1]\n")
    assert main(["sim", "collect", "--out", str(tmp_path / "out"), "--config", str(settings), "--episodes", "6",
                 "--image-size", "48x64", "--no-randomize", "explore_fraction=0.25", "--no-progress"]) == 0
    ((out, config),) = received
    assert out == str(tmp_path / "out") and (config.task, config.episodes, config.image_size) == ("grasp", 6, (48, 64))
    assert config.explore_fraction == 0.25 and config.randomize_appearance is False
    assert config.noisy_expert.rotation_noise == 0.05
    assert config.noisy_expert.translation_noise == CollectConfig().noisy_expert.translation_noise
    assert config.randomization.distractors == (0, 1)
    capsys.readouterr()
    assert main(["sim", "collect", "--out", "x", "--print-config", "--task", "reach", "seed=7"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert (printed["task"], printed["seed"], printed["episodes"]) == ("reach", 7, CollectConfig().episodes)
    assert main(["sim", "collect", "--out", "x", "--print-config", "expert.max_translaton=1"]) == 2
    assert "unknown config key 'expert.max_translaton' (did you mean 'max_translation'?)" in capsys.readouterr().err
    assert main(["sim", "collect", "--out", "x", "--print-config", "episodes=-2"]) == 2
    assert "episodes must be >= 0, got -2" in capsys.readouterr().err
