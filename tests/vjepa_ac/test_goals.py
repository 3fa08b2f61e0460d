"""`vjepa-ac goal capture` driven by command lists (no terminal) against the MuJoCo sim and against
`vjepa-ac bridge run --backend mujoco` on free loopback ports; the schedules it writes feed `vjepa-ac run`, and
`vjepa-ac goal show` renders them."""

from __future__ import annotations

import os
import sys
import time

import cv2
import numpy as np
import pytest

from vjepa_ac.planner.goals import load_goal_schedule
from vjepa_ac.planner.report import read_jsonl
from vjepa_ac.cli import main
from vjepa_ac.goals import CaptureCommand, parse_command, parse_commands


def _fails(argv, capsys) -> str:
    """The error message of a command that must fail (raised, or printed with a non-zero exit code)."""
    try:
        code = main(argv)
    except (ValueError, TimeoutError) as exc:
        return str(exc)
    assert code != 0
    return capsys.readouterr().err


def test_command_lists_parse():
    commands = parse_commands("""
        z-*3 x+   # approach
        close capture:steps=5,gripper=free
        capture:gripper=0.25 open yaw- finish
    """)
    assert commands[0] == CaptureCommand("jog", 2, -1.0, 3)
    assert commands[1] == CaptureCommand("jog", 0, 1.0, 1)
    assert commands[2] == CaptureCommand("gripper", sign=1.0)
    assert commands[3] == CaptureCommand("capture", steps=5, gripper="free")
    assert commands[4] == CaptureCommand("capture", gripper=0.25)
    assert commands[5] == CaptureCommand("gripper", sign=-1.0)
    assert commands[6] == CaptureCommand("jog", 5, -1.0, 1)
    assert commands[7].kind == "finish"
    for bad, message in (("jump", "unknown command"), ("x", "write e.g. x+"), ("x+*500", "at most 100"),
                         ("capture:steps=0", "positive integer"), ("capture:gripper=2", "in \\[-1, 1\\]"),
                         ("capture:speed=1", "unknown settings"), ("open+", "only jogs"), ("x+!", "cannot read")):
        with pytest.raises(ValueError, match=message):
            parse_command(bad)


CAPTURE = "capture z-*3 capture close capture:steps=4 z+*2 capture finish"


@pytest.fixture(scope="module")
def sim_schedule(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim_goals")
    assert main(["goal", "capture", "--robot", "sim", "--task", "pick_and_place", "--out", str(out), "--overwrite",
                 "--commands", CAPTURE, "--settle", "0"]) == 0
    return out


def test_capture_against_the_sim(sim_schedule):
    schedule = load_goal_schedule(sim_schedule)
    assert schedule.camera == "left" and schedule.image_size == (180, 320) and schedule.crop == "droid"
    goals = schedule.goals
    assert [g.steps for g in goals] == [10, 10, 4, 10]
    assert [g.gripper for g in goals] == [-0.5, -0.5, 0.5, 0.5]  # auto: the gripper state at capture
    z = [g.state[2] for g in goals]
    assert z[1] - z[0] == pytest.approx(-0.06, abs=0.01) and z[3] - z[2] == pytest.approx(0.04, abs=0.01)
    assert goals[1].gripper_position < 0.1 and goals[2].gripper_position > 0.9
    images = schedule.load_images()
    assert not np.array_equal(images[0], images[1])  # the arm moved between the captures


def test_run_takes_the_captured_schedule(sim_schedule, tmp_path, capsys):
    code = main(["run", "--robot", "sim", "--task", "pick_and_place", "--goal-schedule", str(sim_schedule),
                 "--samples", "8", "--iterations", "1", "--topk", "2", "--schedule", "1,1,1,1", "--device", "cpu",
                 "--no-video", "--out", str(tmp_path / "run")])
    assert code in (0, 1), capsys.readouterr().err
    steps = read_jsonl(tmp_path / "run" / "steps.jsonl")
    assert [s["goal_index"] for s in steps] == [0, 1, 2, 3]
    assert [s["action"][6] for s in steps] == [-0.5, -0.5, 0.5, 0.5]  # the schedule's gripper pins


def test_goal_show_renders_a_contact_sheet(sim_schedule, tmp_path):
    out = tmp_path / "sheet.png"
    assert main(["goal", "show", str(sim_schedule / "schedule.yaml"), "--out", str(out), "--columns", "2"]) == 0
    sheet = cv2.imread(str(out))
    # Two rows of two 320x180 tiles with captions under a header.
    assert sheet.shape[1] == 8 + 2 * (320 + 8) and sheet.shape[0] > 2 * 180 + 40
    tile = cv2.cvtColor(sheet[40:220, 8:328], cv2.COLOR_BGR2RGB)
    first = load_goal_schedule(sim_schedule).load_images()[0]
    assert np.abs(tile.astype(int) - first).mean() < 12  # the first tile is the first goal (with its crop outline)


def test_capture_refuses_bad_requests_and_loses_nothing(sim_schedule, tmp_path, capsys):
    before = (sim_schedule / "schedule.yaml").read_text()
    assert "already exists" in _fails(["goal", "capture", "--robot", "sim", "--out", str(sim_schedule),
                                       "--commands", "capture"], capsys)
    assert (sim_schedule / "schedule.yaml").read_text() == before
    assert "cannot be moved by hand" in _fails(["goal", "capture", "--robot", "sim", "--out", str(tmp_path / "g"),
                                                "--guide", "--commands", "capture"], capsys)
    assert "no terminal" in _fails(["goal", "capture", "--robot", "sim", "--out", str(tmp_path / "g")], capsys)
    assert "unknown command 'jump'" in _fails(["goal", "capture", "--robot", "sim", "--out", str(tmp_path / "g"),
                                               "--commands", "capture jump"], capsys)
    assert not (tmp_path / "g").exists()
    assert main(["goal", "capture", "--robot", "sim", "--out", str(tmp_path / "none"), "--commands", "z- finish",
                 "--settle", "0"]) == 1
    assert "no sub-goal captured" in capsys.readouterr().err
    (sim_schedule / "goal_02.png").rename(tmp_path / "moved.png")
    try:
        assert "goal_02.png, which does not exist" in _fails(["goal", "show", str(sim_schedule)], capsys)
    finally:
        (tmp_path / "moved.png").rename(sim_schedule / "goal_02.png")


@pytest.fixture
def bridge_process(tmp_path, make_port_base, processes):
    """`vjepa-ac bridge run --backend mujoco` in its own process on free loopback ports (left camera only)."""
    base = make_port_base()
    config = tmp_path / "bridge.yaml"
    config.write_text("camera_hz: 15\nbackend_options:\n  mujoco: {cameras: [left]}\n")
    proc = processes.start(
        [sys.executable, "-m", "vjepa_ac.cli", "bridge", "run", "--backend", "mujoco", "--config", str(config),
         "--port-base", str(base)],
        dict(os.environ, OMP_NUM_THREADS="1"), "bridge running", timeout=60,
    )
    yield base
    processes.stop(proc)


def test_capture_through_the_bridge(bridge_process, tmp_path, capsys):
    out = tmp_path / "goals"
    commands = tmp_path / "commands.txt"
    commands.write_text("capture\nz-*2 y+\ncapture\nclose\ncapture:steps=3\nfinish\n")
    # A generous frame-age bound: a loaded test machine may render a frame late (staleness is tested elsewhere).
    assert main(["goal", "capture", "--robot", "bridge", "--port-base", str(bridge_process), "--out", str(out),
                 "--commands-file", str(commands), "--max-frame-age", "3"]) == 0, capsys.readouterr().err
    schedule = load_goal_schedule(out)
    assert schedule.image_size == (180, 320) and [g.steps for g in schedule.goals] == [10, 10, 3]
    first, second, third = schedule.goals
    # The jogs went through the bridge's safety filter and interpolator: the arm moved 4 cm down, 2 cm left.
    np.testing.assert_allclose(np.subtract(second.state[:3], first.state[:3]), [0.0, 0.02, -0.04], atol=0.008)
    assert third.gripper_position > 0.5 and third.gripper == 0.5 and first.gripper == -0.5
    images = schedule.load_images()
    assert not np.array_equal(images[0], images[1])
    # Hand-guiding needs an arm that can be moved by hand; the simulated one cannot, and nothing is written.
    message = _fails(["goal", "capture", "--robot", "bridge", "--port-base", str(bridge_process), "--guide",
                      "--out", str(tmp_path / "guided"), "--commands", "capture"], capsys)
    assert "MuJoCo arm, which cannot be moved by hand" in message
    assert not (tmp_path / "guided" / "schedule.yaml").exists()


class StillRobot:
    """A robot that stays put: one image, state and clock set by the test (frames `lag` s older than the state)."""

    camera_roles = ("left",)
    control_hz = 15.0

    def __init__(self, lag: float = 0.0):
        self.lag, self.sent, self.held, self.closed = lag, [], 0, False

    def connect(self):
        pass

    def get_observation(self):
        from vjepa_ac.robot.interface import Observation

        return Observation(images={"left": np.full((24, 32, 3), 80, np.uint8)}, state=np.zeros(7),
                           joint_positions=np.zeros(7), gripper_position=0.0, timestamp=10.0,
                           image_timestamps={"left": 10.0 - self.lag})

    def send_action(self, action):
        raise AssertionError("a guided session must not send actions")

    def hold(self):
        self.held += 1

    def stop(self):
        pass

    def close(self):
        self.closed = True


def test_interactive_sessions_report_refused_commands_and_go_on(tmp_path):
    from vjepa_ac.planner.goals import GoalScheduleWriter
    from vjepa_ac.goals import GoalCapture

    lines = []
    robot = StillRobot()
    writer = GoalScheduleWriter(tmp_path, camera="left", crop="droid")
    session = GoalCapture(robot, writer, camera="left", guide=True, echo=lines.append)
    session.start()
    assert session.run(parse_commands("x+ capture finish capture"), keep_going=True) == 1
    assert any("not done: jog commands move the arm, but --guide leaves it to your hands" in line for line in lines)
    with pytest.raises(ValueError, match="--guide leaves it to your hands"):
        session.run(parse_commands("x+ capture"))
    session.close()
    assert robot.closed and robot.held == 0  # guided: never armed, so never held either
    # A stale camera: the capture is refused with the camera, its age and the bound; nothing is added.
    stale = GoalCapture(StillRobot(lag=2.0), writer, camera="left", guide=True, echo=lines.append,
                        max_frame_age_s=0.5, sleep=lambda s: None)
    with pytest.raises(ValueError, match=r"camera 'left': the newest frame is 2\.00 s old, more than the 0\.50 s"):
        stale.run(parse_commands("capture"))
    assert len(load_goal_schedule(tmp_path).goals) == 1


def test_keys_map_to_commands_on_a_terminal(monkeypatch):
    import pty
    import termios
    import threading

    from vjepa_ac.goals import terminal_commands

    master, slave = pty.openpty()
    stdin = os.fdopen(slave, "r")
    monkeypatch.setattr(sys, "stdin", stdin)
    before = termios.tcgetattr(slave)

    def type_keys():
        # Keys are typed once the session has put the terminal in cbreak mode (single key presses, no Enter).
        for _ in range(2000):
            if not termios.tcgetattr(slave)[3] & termios.ICANON:
                os.write(master, b"w?c \r")
                return
            time.sleep(0.005)
        os.write(master, b"\n")  # never in cbreak mode: end the line so that the read returns and the test fails

    typist = threading.Thread(target=type_keys, daemon=True)
    typist.start()
    try:
        lines = []
        keys = terminal_commands(echo=lines.append)
        assert [next(keys) for _ in range(4)] == [parse_command(c) for c in ("x+", "close", "capture", "finish")]
        assert len(lines) == 2 and "space capture" in lines[1]  # help at the start and for the unknown key
        keys.close()
        assert termios.tcgetattr(slave) == before  # the terminal is restored
    finally:
        typist.join(timeout=10)
        stdin.close()
        os.close(master)
