"""The real-robot guide, proven: the commands of `docs/real_robot.md`'s rehearsal block run end to end against
`vjepa-ac bridge run --backend mujoco` (the simulated arm behind the real ZMQ bridge), exactly as a user types them
into two terminals: calibrate the action frame, capture a goal schedule, show it, send the arm home, run a
pick-and-place with recording, validate the recording.

The test only moves the bridge to free loopback ports (`--port-base`) and, in the default suite, caps the run at a
few planned actions (`--max-steps`); `pytest -m slow` runs the guide's `run` with its full budget."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from vjepa_ac.data.droid import open_episode
from vjepa_ac.planner.report import read_jsonl

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "real_robot.md"


def rehearsal_commands() -> list[str]:
    """The commands of the guide's rehearsal block, continuation lines joined, comments dropped."""
    text = GUIDE.read_text()
    block = re.search(r"<!-- rehearsal -->\s*```bash\n(.*?)```", text, re.S)
    assert block, "docs/real_robot.md lost its rehearsal block"
    commands = []
    for line in block.group(1).replace("\\\n", " ").splitlines():
        line = line.split("  #", 1)[0].strip()
        if line:
            commands.append(line)
    return commands


def _argv(command: str, port_base: int) -> tuple[list[str], bool]:
    """(argv, background) of one guide command, pointed at the test's bridge ports."""
    background = command.endswith("&")
    words = shlex.split(command.rstrip("&"))
    assert words[0] == "vjepa-ac", f"the rehearsal runs vjepa-ac commands only, got {command!r}"
    if words[1] == "bridge" or "--robot" in words and words[words.index("--robot") + 1] == "bridge":
        words += ["--port-base", str(port_base)]
    return [sys.executable, "-m", "vjepa_ac.cli", *words[1:]], background


def _run_guide(tmp_path: Path, make_port_base, processes, run_budget: list[str]) -> dict[str, subprocess.CompletedProcess]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    base = make_port_base()
    done: dict[str, subprocess.CompletedProcess] = {}
    bridge = None
    try:
        for command in rehearsal_commands():
            argv, background = _argv(command, base)
            if background:
                bridge = processes.start(argv, env, "bridge running", timeout=90)
                continue
            if argv[3] == "run":
                argv += run_budget
            name = " ".join(argv[3:5])
            result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
            done[name] = result
            assert "Traceback" not in result.stderr, f"{name}:\n{result.stderr}"
            if argv[3] == "run":
                assert result.returncode in (0, 1), f"{name} failed ({result.returncode}):\n{result.stderr}"
            else:
                assert result.returncode == 0, f"{name} failed ({result.returncode}):\n{result.stderr}"
    finally:
        if bridge is not None:
            processes.stop(bridge)
    return done


def _check_outputs(tmp_path: Path, done: dict[str, subprocess.CompletedProcess], planned: int | None) -> None:
    # Goal capture: six sub-goals from the bridge's camera, with the arm and gripper state at each capture.
    schedule = yaml.safe_load((tmp_path / "goals/pick_place/schedule.yaml").read_text())
    goals = schedule["goals"]
    assert len(goals) == 6 and schedule["camera"] == "left"
    grasp_z = [g["state"][2] for g in goals]
    assert grasp_z[1] < grasp_z[0] - 0.1 and grasp_z[3] > grasp_z[2] + 0.1  # down to the cube, then lifted
    assert goals[2]["gripper_position"] > goals[1]["gripper_position"] + 0.2  # closed on the third capture
    assert goals[4]["state"][1] - goals[3]["state"][1] > 0.3  # carried towards the mat (+y)
    assert (tmp_path / "goals/pick_place/contact_sheet.png").stat().st_size > 0

    # Calibration on the unrotated camera: the model's action frame is the base frame, within the fit's spread.
    calibration = json.loads((tmp_path / "calibration.json").read_text())
    assert abs(calibration["action_frame_yaw"]) <= 20.0, calibration

    # The run followed the schedule and was recorded; the recording validates and holds what the arm did.
    steps = read_jsonl(tmp_path / "runs/first_pick/steps.jsonl")
    if planned is not None:
        assert len(steps) == planned
    run_out = done["run --robot"].stdout
    [recording] = [p.parent for p in (tmp_path / "my_data").rglob("trajectory.h5")]
    assert f"recording: {recording.relative_to(tmp_path)}" in run_out
    assert "ok" in done["droid validate"].stdout.lower() or "1 episode" in done["droid validate"].stdout
    episode = open_episode(recording)
    assert episode.num_steps == 3 * len(steps) + 1  # three control periods per planned action + the final step
    states = episode.states()
    assert np.abs(states[-1][:3] - states[0][:3]).max() > 0.005, "the arm did not move during the run"


def test_the_guide_runs_end_to_end_on_the_simulated_arm(tmp_path, make_port_base, processes):
    done = _run_guide(tmp_path, make_port_base, processes, ["--max-steps", "4"])
    _check_outputs(tmp_path, done, planned=4)


@pytest.mark.slow
def test_the_guide_runs_as_written(tmp_path, make_port_base, processes):
    done = _run_guide(tmp_path, make_port_base, processes, [])
    _check_outputs(tmp_path, done, planned=None)
