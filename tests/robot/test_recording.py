"""Recording runs as raw DROID episodes: what the robot did is what the episode holds, and a killed run loses
nothing (the MuJoCo arm as the robot; a real arm goes through the same `Robot` interface)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from vjepa_ac.data.droid import open_episode, validate_episode
from vjepa_ac.robot.action_repeat import ActionRepeatRobot
from vjepa_ac.robot.recording import JOURNAL_PREFIX, RecordingConfig, RecordingRobot, recover_interrupted
from vjepa_ac.sim.robot import SimConfig, SimRobot

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sim():
    robot = SimRobot(SimConfig(cameras=("left", "wrist"), image_size=(48, 64)))
    robot.connect()
    yield robot
    robot.close()


def _episodes(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("trajectory.h5"))


def test_recorded_episode_is_what_the_robot_did(sim, tmp_path):
    sim.connect()
    sim.reset()
    recorder = RecordingRobot(sim, tmp_path, RecordingConfig(task="move right", lab="TEST"))
    recorder.connect()
    arm = ActionRepeatRobot(recorder, 3)
    start = arm.get_observation().state
    for _ in range(2):
        arm.send_action(np.array([0.0, 0.03, 0.0, 0.0, 0.0, 0.0, 0.0]))
    end = arm.get_observation().state
    path = recorder.finish(success=True)

    assert path is not None and path.parent.parent.name == "success"
    assert validate_episode(path).ok
    episode = open_episode(path)
    assert episode.num_steps == 2 * 3 + 1  # every control period plus DROID's final step
    states = episode.states()
    np.testing.assert_allclose(states[0], start, atol=1e-9)
    np.testing.assert_allclose(states[-1], end, atol=1e-9)
    assert states[-1][1] - states[0][1] > 0.03  # the arm moved along +y
    metadata = json.loads(next(path.glob("metadata_*.json")).read_text())
    assert metadata["current_task"] == "move right" and metadata["success"] is True
    assert {metadata["wrist_cam_serial"], metadata["ext1_cam_serial"]} == {"10000001", "20000001"}
    frames = episode.read_frames("left", np.arange(episode.num_steps))
    assert frames.shape[:3] == (7, 48, 64)
    assert not list(tmp_path.glob(f"{JOURNAL_PREFIX}*")), "the journal is removed once the episode is written"


def test_close_without_finish_keeps_a_failed_episode(sim, tmp_path):
    sim.connect()
    sim.reset()
    recorder = RecordingRobot(sim, tmp_path)
    with ActionRepeatRobot(recorder, 2) as arm:
        arm.send_action(np.array([0.02, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]))
        # an exception in the planner would leave the `with` here
    [path] = _episodes(tmp_path)
    assert path.parents[1].name == "failure"
    assert open_episode(path).num_steps == 2
    import h5py

    with h5py.File(path / "trajectory.h5") as h5:
        assert bool(h5.attrs["interrupted"]) is True


def test_refused_action_is_recorded_as_a_hold(sim, tmp_path):
    sim.connect()
    sim.reset()
    recorder = RecordingRobot(sim, tmp_path)
    recorder.connect()
    state = recorder.get_observation().state
    result = recorder.send_action(np.array([np.nan] * 7))
    assert not result.ok
    path = recorder.finish(success=False)
    with __import__("h5py").File(path / "trajectory.h5") as h5:
        target = h5["action/cartesian_position"][0]
    np.testing.assert_allclose(target, state[:6], atol=1e-9)


def test_two_exterior_cameras_without_extrinsics_are_refused():
    class Blind:
        camera_roles = ("left", "right")
        control_hz = 15.0

    with pytest.raises(ValueError, match="extrinsics"):
        RecordingRobot(Blind(), "unused")  # type: ignore[arg-type]


_KILLED_RUN = textwrap.dedent(
    """
    import sys, numpy as np
    from vjepa_ac.robot.recording import RecordingRobot
    from vjepa_ac.sim.robot import SimConfig, SimRobot
    robot = SimRobot(SimConfig(cameras=("left",), image_size=(48, 64)))
    recorder = RecordingRobot(robot, sys.argv[1])
    recorder.connect()
    robot.reset()
    for step in range(10_000):
        recorder.send_action(np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]))
        if step == 4:
            print("recording", flush=True)
    """
)


def test_a_killed_run_loses_nothing(sim, tmp_path):
    # An earlier, finished episode in the same folder.
    sim.connect()
    sim.reset()
    earlier = RecordingRobot(sim, tmp_path)
    earlier.connect()
    earlier.send_action(np.zeros(7))
    earlier_path = earlier.finish(success=True)
    earlier_bytes = {p: p.read_bytes() for p in earlier_path.rglob("*") if p.is_file()}

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", _KILLED_RUN, str(tmp_path)], stdout=subprocess.PIPE, env=env,
                               cwd=REPO, text=True)
    assert process.stdout.readline().strip() == "recording"
    process.send_signal(signal.SIGKILL)
    process.wait()
    [journal] = tmp_path.glob(f"{JOURNAL_PREFIX}*")
    recorded_steps = len(list(journal.glob("*.npz")))
    assert recorded_steps >= 5

    [recovered] = recover_interrupted(tmp_path)
    assert recovered.parents[1].name == "failure"
    assert open_episode(recovered).num_steps == recorded_steps
    assert validate_episode(recovered).ok
    assert not list(tmp_path.glob(f"{JOURNAL_PREFIX}*"))
    assert {p: p.read_bytes() for p in earlier_path.rglob("*") if p.is_file()} == earlier_bytes
    assert set(_episodes(tmp_path)) == {earlier_path, recovered}


def test_a_live_recording_is_not_recovered(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        journal = tmp_path / f"{JOURNAL_PREFIX}{process.pid}-20260101T000000000000"
        journal.mkdir()
        (journal / "episode.json").write_text("{}")
        assert recover_interrupted(tmp_path) == []
        assert journal.exists()
    finally:
        process.kill()
        process.wait()
    time.sleep(0.05)
    assert recover_interrupted(tmp_path) == []  # an empty journal of a dead process is just removed
    assert not journal.exists()
