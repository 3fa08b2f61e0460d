"""libfranka backend plumbing against a small in-memory stand-in with pylibfranka's API names that records every
command (fast, no server); tests/robot/test_libfranka_sim.py runs the backend against franka-sim over the real
protocol."""

from __future__ import annotations

import sys
import time
import types

import numpy as np
import pytest

from vjepa_ac.robot.backends.libfranka import (
    JointFollower,
    LibfrankaBackend,
    LibfrankaConfig,
    active_errors,
    robot_mode_name,
)


def _fake_pylibfranka() -> types.ModuleType:
    """pylibfranka's names for the parts the backend uses; the control loop runs at an accelerated 0.2 ms."""
    mod = types.ModuleType("pylibfranka")
    mod.commands = []
    mod.events = []

    class Duration:
        def __init__(self, seconds):
            self.seconds = seconds

        def to_sec(self):
            return self.seconds

    class Errors:
        joint_reflex = False
        cartesian_reflex = False

    class State:
        def __init__(self, q, mode="RobotMode.Move", reflex=False):
            self.q = self.q_d = list(q)
            self.dq = [0.0] * 7
            self.tau_J = [1.0] * 7
            self.time = Duration(12.5)
            self.robot_mode = mode
            self.current_errors = Errors()
            self.current_errors.joint_reflex = reflex

    class JointPositions:
        def __init__(self, q):
            self.q, self.motion_finished = q, False

    class Control:
        def __init__(self, robot):
            self.robot = robot

        def readOnce(self):
            time.sleep(0.0002)
            if mod.reflex_after is not None and len(mod.commands) >= mod.reflex_after:
                self.robot.reflex = True
                raise RuntimeError('motion aborted by reflex! ["joint_reflex"]')
            return State(self.robot.q), Duration(0.001)

        def writeOnce(self, command):
            mod.commands.append((list(command.q), command.motion_finished))
            self.robot.q = list(command.q)

    class Robot:
        def __init__(self, ip, realtime):
            mod.events.append(("robot", ip, realtime))
            self.q = [0.0, 0.0, 0.0, -1.57, 0.0, 1.57, 0.785]
            self.reflex = False

        def start_joint_position_control(self, mode):
            mod.events.append(("control", mode))
            return Control(self)

        def read_once(self):
            if self.reflex:
                return State(self.q, "RobotMode.Reflex", reflex=True)
            return State(self.q, "RobotMode.Idle")

        def automatic_error_recovery(self):
            mod.events.append(("recover",))
            self.reflex = False
            mod.reflex_after = None

    mod.reflex_after = None
    mod.Robot = Robot
    mod.JointPositions = JointPositions
    mod.ControllerMode = types.SimpleNamespace(JointImpedance="joint_impedance")
    mod.RealtimeConfig = types.SimpleNamespace(kEnforce="enforce", kIgnore="ignore")
    return mod


@pytest.fixture
def fake(monkeypatch):
    mod = _fake_pylibfranka()
    monkeypatch.setitem(sys.modules, "pylibfranka", mod)
    return mod


def _wait(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.005)
    return predicate()


def test_control_loop_follows_set_points_within_limits_and_stops_at_rest(fake):
    cfg = LibfrankaConfig(robot_ip="10.0.0.2", gripper=False, control_priority=None)
    backend = LibfrankaBackend(cfg)
    backend.start()
    assert fake.events[0] == ("robot", "10.0.0.2", "enforce")
    idle = backend.read_state()
    assert idle.robot_mode == "idle" and not idle.fault and idle.robot_t_s == 12.5
    backend.command_joints(np.zeros(7), np.zeros(7))  # not armed: nothing is commanded
    backend.activate()
    assert ("control", "joint_impedance") in fake.events
    target = np.asarray(idle.q) + np.array([0.05, -0.05, 0, 0, 0, 0, 0])
    backend.command_joints(target, np.zeros(7))
    assert _wait(lambda: len(fake.commands) > 10 and np.allclose(fake.commands[-1][0], target, atol=1e-3))
    assert backend.read_state().robot_mode == "move"
    backend.stop(target)
    qs = np.array([q for q, _ in fake.commands])
    assert fake.commands[-1][1] is True and not any(done for _, done in fake.commands[:-1])
    np.testing.assert_allclose(qs[0], idle.q, atol=1e-9)  # the first command is where the arm is
    v = np.diff(qs, axis=0) / 0.001
    a = np.diff(v, axis=0) / 0.001
    assert np.all(np.abs(v) <= np.asarray(cfg.filter_velocity) + 1e-9)
    assert np.all(np.abs(a) <= cfg.filter_acceleration + 1e-6)
    assert np.all(np.abs(np.diff(a, axis=0)) / 0.001 <= cfg.filter_jerk + 1e-3)
    assert np.all(np.abs(v[-1]) < 1e-3)


def test_reflex_reports_fault_and_recovery_restarts(fake):
    backend = LibfrankaBackend(LibfrankaConfig(gripper=False, realtime_ignore=True, control_priority=None))
    backend.start()
    assert fake.events[0][2] == "ignore"
    fake.reflex_after = 20
    backend.activate()
    assert _wait(lambda: backend.read_state().fault)
    state = backend.read_state()
    assert state.robot_mode == "reflex" and state.errors == ("joint_reflex",)
    backend.command_joints(np.zeros(7), np.zeros(7))  # the loop ended: dropped, not raised
    backend.recover()
    assert ("recover",) in fake.events and not backend.read_state().fault
    backend.activate()
    assert _wait(lambda: backend.read_state().robot_mode == "move")
    backend.close()


def test_follower_limits_hold_for_any_target_sequence():
    rng = np.random.default_rng(0)
    follower = JointFollower(np.zeros(7), np.full(7, 1.0), 4.5, 2000.0, 25.0)
    qs = [follower.q.copy()]
    for k in range(3000):
        if k % 50 == 0:
            target, velocity = rng.uniform(-1, 1, 7), rng.uniform(-1, 1, 7)
        qs.append(follower.step(target, velocity, 0.001).copy())
    v = np.diff(np.array(qs), axis=0) / 0.001
    a = np.diff(v, axis=0) / 0.001
    assert np.abs(v).max() <= 1.0 + 1e-9 and np.abs(a).max() <= 4.5 + 1e-6
    assert np.abs(np.diff(a, axis=0)).max() / 0.001 <= 2000.0 + 1e-3


def test_helpers():
    assert robot_mode_name("RobotMode.kReflex") == "reflex"
    assert robot_mode_name(types.SimpleNamespace(name="kAutomaticErrorRecovery")) == "automatic_error_recovery"
    assert robot_mode_name("move") == "move"
    assert active_errors(None) == ()


def test_missing_library_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "pylibfranka", None)
    with pytest.raises(ImportError, match="pip install pylibfranka"):
        LibfrankaBackend().start()
    with pytest.raises(ValueError):
        LibfrankaConfig(library="polymetis")
