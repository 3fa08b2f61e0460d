"""`sim collect` with variety: motion modes in their proportions, failed attempts that fail, self-describing
randomised episodes (mode, proportions, scene, object poses) that validate and replay, resumption after a kill, and
the fixed scene's expert/exploration data unchanged from before."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from vjepa_ac.data.droid import open_episode
from vjepa_ac.data.droid.validate import validate_episode
from vjepa_ac.data.droid.video import decode_all_frames
from vjepa_ac.sim.collect import MANIFEST_NAME, MOTION_MODES, OBJECT_POSES_GROUP, CollectConfig, collect
from vjepa_ac.sim.experts import FAILURES, FailedAttempt
from vjepa_ac.sim.randomization import DomainRandomization, SceneVariation, variation_rng
from vjepa_ac.sim.replay import replay_episode
from vjepa_ac.sim.robot import SimConfig, SimRobot
from vjepa_ac.sim.tasks import make_env

from .conftest import digest

REPO = Path(__file__).resolve().parents[2]
TINY = dict(image_size=(32, 48), steps_after_success=3)


def test_motion_modes_follow_the_configured_proportions():
    config = CollectConfig(explore_fraction=0.2, noisy_fraction=0.15, failed_fraction=0.1)
    assert config.motion_mix == pytest.approx({"explore": 0.2, "noisy_expert": 0.15, "failed": 0.1, "expert": 0.55})
    assert [config.motion_mode(u) for u in (0.0, 0.19, 0.2, 0.34, 0.36, 0.44, 0.46, 0.999)] == [
        "explore", "explore", "noisy_expert", "noisy_expert", "failed", "failed", "expert", "expert"]
    draws = np.random.default_rng(0).random(4000)
    shares = {mode: np.mean([config.motion_mode(u) == mode for u in draws]) for mode in MOTION_MODES}
    for mode, share in config.motion_mix.items():
        assert shares[mode] == pytest.approx(share, abs=0.025), mode
    only_failed = CollectConfig(explore_fraction=0.0, noisy_fraction=0.0, failed_fraction=1.0)
    assert {only_failed.motion_mode(u) for u in draws} == {"failed"}
    with pytest.raises(ValueError, match="must be <= 1"):
        CollectConfig(explore_fraction=0.6, noisy_fraction=0.3, failed_fraction=0.2)
    with pytest.raises(ValueError, match="noisy_fraction"):
        CollectConfig(noisy_fraction=-0.1)


@pytest.mark.parametrize("task_name", sorted(FAILURES))
@pytest.mark.parametrize("randomize", [False, True], ids=["fixed", "randomised"])
def test_failed_attempts_fail(task_name, randomize):
    """Every deliberate mistake ends the task's budget short of success (no rendering: physics only). A miss can pass
    through the goal on its way when the goal is close to the start, so the outcome at the end is what counts."""
    robot = SimRobot(SimConfig(cameras=("left",), randomize_appearance=randomize))
    robot.connect()
    for failure in FAILURES[task_name]:
        _, task = make_env(task_name, seed=1, robot=robot)
        policy = FailedAttempt(task, np.random.default_rng(1), failure=failure)
        for _ in range(task.max_steps):
            robot.send_action(policy.act(robot.droid_state()))
        assert not task.success(), (task_name, failure)
    with pytest.raises(ValueError, match="does not apply"):
        FailedAttempt(task, np.random.default_rng(0), failure="teleport")
    robot.close()


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    """One randomised episode of each motion mode (grasp, tiny images)."""
    root = tmp_path_factory.mktemp("varied")
    paths = {}
    for mode, fractions in {"failed": (0.0, 0.0, 1.0), "noisy_expert": (0.0, 1.0, 0.0),
                            "explore": (1.0, 0.0, 0.0)}.items():
        config = CollectConfig(task="grasp", episodes=1, seed=4, explore_fraction=fractions[0],
                               noisy_fraction=fractions[1], failed_fraction=fractions[2], **TINY)
        paths[mode] = collect(root / mode, config, progress=False).paths[0]
    return paths


def test_randomised_episodes_are_self_describing(varied):
    for mode, path in varied.items():
        report = validate_episode(path)
        assert report.ok and not report.warnings, (mode, report.problems, report.warnings)
        episode = open_episode(path)
        attrs = episode.attrs
        assert attrs["sim_policy"] == mode
        assert (attrs["sim_failure"] in FAILURES["grasp"]) == (mode == "failed")
        mix = json.loads(attrs["sim_motion_mix"])
        assert mix[mode] == 1.0 and sum(mix.values()) == pytest.approx(1.0)
        # The recorded scene is the one the episode's task seed draws: rebuilding it gives the same scene.
        variation = SceneVariation.from_json(attrs["sim_scene"])
        task_seed = next(json.loads(line)["task_seed"] for line in (path.parents[3] / MANIFEST_NAME).read_text()
                         .splitlines())
        assert variation == DomainRandomization().sample(variation_rng(task_seed))
        config = json.loads(attrs["sim_config"])
        assert config["randomize_appearance"] is True and "camera_position_jitter" in config["randomization"]
        # Every object's pose at every step, the distractors included.
        with h5py.File(path / "trajectory.h5") as h5:
            names = set(h5[OBJECT_POSES_GROUP])
            assert names == {"cube", "mug", "target"} | {f"distractor_{i}" for i in range(len(variation.distractors))}
            for name in names:
                poses = h5[f"{OBJECT_POSES_GROUP}/{name}"][:]
                assert poses.shape == (episode.num_steps, 6) and np.all(np.isfinite(poses))
            cube = h5[f"{OBJECT_POSES_GROUP}/cube"][:]
        # The cube starts resting on the table at its own height.
        assert cube[0, 2] == pytest.approx(variation.object.half_height, abs=3e-3)
        assert episode.task.startswith("pick up the ") and episode.task.endswith(("cube", "block", "ball", "cylinder"))


def test_noisy_expert_is_noisier_than_the_expert(varied, tmp_path):
    expert = collect(tmp_path, CollectConfig(task="grasp", episodes=1, seed=4, explore_fraction=0.0,
                                             noisy_fraction=0.0, failed_fraction=0.0, perturb_probability=0.0,
                                             **TINY), progress=False).paths[0]

    def jerk(path: Path) -> float:
        actions = open_episode(path).actions()[:, :3]
        return float(np.abs(np.diff(actions, axis=0)).mean())

    assert jerk(varied["noisy_expert"]) > 1.3 * jerk(expert)


def test_replay_rebuilds_the_recorded_scene_and_objects(varied, tmp_path):
    path = varied["explore"]
    with_objects = replay_episode(path, tmp_path / "objects.mp4", height=64, progress=False)
    fixed = replay_episode(path, tmp_path / "fixed.mp4", height=64, objects=False, progress=False)
    assert with_objects.recorded_scene and not fixed.recorded_scene
    assert {"cube", "mug", "target", "distractor_0"} <= set(with_objects.objects) and fixed.objects == ()

    def halves_differ(video: Path) -> float:
        frames = decode_all_frames(video)
        half = frames.shape[2] // 2
        return float(np.abs(frames[:, :, :half].astype(int) - frames[:, :, half:]).mean())

    # Recorded and simulated halves agree far better when the recorded scene and objects are rebuilt.
    assert halves_differ(tmp_path / "objects.mp4") < 0.5 * halves_differ(tmp_path / "fixed.mp4")


def test_fixed_scene_collection_is_unchanged():
    """With randomisation off and no noisy or failed episodes, `sim collect` plays out exactly as before these modes
    existed (states and joints of the code at commit da2b7ba, to 1e-6: their last bits differ from one CPU to
    another, while the two codes agree bit for bit on each machine)."""
    import tempfile

    with tempfile.TemporaryDirectory() as root:
        summary = collect(root, CollectConfig(task="grasp", episodes=2, seed=0, image_size=(48, 64),
                                              randomize_appearance=False, explore_fraction=0.5, noisy_fraction=0.0,
                                              failed_fraction=0.0), progress=False)
        episodes = [open_episode(p) for p in summary.paths]
        assert [(digest(e.states(), 6), digest(e.joint_positions(), 6), e.num_steps) for e in episodes] == [
            ("9054dbbeafeecfb7", "05ace85260485517", 50), ("9d8ed7753d32234c", "4fdb28cb6984e364", 50)]
        assert all(e.attrs["sim_scene"] == "" and e.task == "pick up the red cube" for e in episodes)


def _manifest_indices(root: Path) -> list[int]:
    path = root / MANIFEST_NAME
    if not path.exists():
        return []
    return [json.loads(line)["index"] for line in path.read_text().splitlines() if line.strip()]


def test_collection_resumes_after_a_kill(tmp_path):
    """Kill a randomised `vjepa-ac sim collect` mid-run (SIGKILL, like a power cut), run it again: every episode is
    there exactly once, each one identical to an uninterrupted run's (same scene, states and decoded frames: a seed
    gives the same episode in another process), and all of them validate."""
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    args = ["--task", "reach", "--episodes", "2", "--seed", "9", "--image-size", "32x48", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "vjepa_ac.cli", "sim", "collect", *args, "--out", str(killed)],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # Safety net only (the run itself takes seconds): wait for the first finished episode, then kill.
        deadline = time.monotonic() + 600
        while len(_manifest_indices(killed)) < 1 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None, "collection finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    done_before = _manifest_indices(killed)
    assert done_before == [0]

    from vjepa_ac.cli import main

    assert main(["sim", "collect", *args, "--out", str(killed)]) == 0
    assert sorted(_manifest_indices(killed)) == [0, 1]
    assert main(["sim", "collect", *args, "--out", str(clean)]) == 0

    def by_index(root: Path) -> dict[int, tuple]:
        out = {}
        for line in (root / MANIFEST_NAME).read_text().splitlines():
            entry = json.loads(line)
            episode = open_episode(root / entry["path"])
            assert validate_episode(root / entry["path"]).ok
            frames = episode.read_frames("left", list(range(episode.num_frames("left"))))
            out[entry["index"]] = (entry["mode"], entry["task_seed"], digest(episode.states()), digest(frames),
                                   episode.attrs["sim_scene"])
        return out

    assert by_index(killed) == by_index(clean)
    assert main(["droid", "validate", str(killed), "--report", str(tmp_path / "report.jsonl"), "--no-progress"]) == 0


def test_cli_contact_sheet_and_clear_errors(tmp_path, capsys):
    import cv2

    from vjepa_ac.cli import main

    assert main(["sim", "show", "--task", "grasp", "--randomize", "--scenes", "3", "--image-size", "32x48",
                 "--out", str(tmp_path)]) == 0
    sheet = cv2.imread(str(tmp_path / "grasp_scenes.png"))
    assert sheet.shape == (64, 96, 3)  # 2 x 2 tiles, the last one blank
    assert sheet[32:, 48:].max() == 0 and sheet[:32, :48].std() > 10
    assert (tmp_path / "grasp_scenes.png").stat().st_size > 0

    capsys.readouterr()
    assert main(["sim", "collect", "--task", "reach", "--episodes", "1", "--out", str(tmp_path / "x"),
                 "--explore-fraction", "0.9", "--noisy-fraction", "0.5"]) == 2
    assert "must be <= 1" in capsys.readouterr().err
    settings = tmp_path / "dr.yaml"
    settings.write_text("distractor_count: [0, 2]\n")
    assert main(["sim", "collect", "--task", "reach", "--episodes", "1", "--out", str(tmp_path / "x"),
                 "--randomization", str(settings)]) == 2
    assert "unknown config key 'randomization.distractor_count' (did you mean 'distractors'?)" in capsys.readouterr().err
    settings.write_text("distractors: [0, 0]\nobject_shapes: [sphere]\n")
    assert main(["sim", "collect", "--task", "reach", "--episodes", "1", "--out", str(tmp_path / "y"),
                 "--randomization", str(settings), "--image-size", "32x48", "--explore-fraction", "1",
                 "--noisy-fraction", "0", "--failed-fraction", "0", "--no-progress"]) == 0
    (path,) = (tmp_path / "y").glob("SIM/*/*/*")
    variation = SceneVariation.from_json(open_episode(path).attrs["sim_scene"])
    assert variation.object.shape == "sphere" and variation.distractors == ()
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())
