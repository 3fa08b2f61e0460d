"""libfranka backend plumbing. pylibfranka needs a real arm (and a PREEMPT_RT host), so these tests run the backend
against a small in-memory stand-in module with pylibfranka's API names; it records what the backend asks for."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from robot.backends.libfranka import (
    LibfrankaBackend,
    LibfrankaConfig,
    active_errors,
    robot_mode_name,
)


def _fake_pylibfranka() -> types.ModuleType:
    mod = types.ModuleType("pylibfranka")
    mod.targets = []
    mod.events = []

    class Result:
        def __init__(self, handler=None, error_message=None):
            self.handler, self.error_message = handler, error_message

    class Handler:
        class Configuration:
            def __init__(self, maximum_joint_velocities, goal_tolerance):
                self.maximum_joint_velocities, self.goal_tolerance = maximum_joint_velocities, goal_tolerance

        class JointPositionTarget:
            def __init__(self, joint_positions):
                self.joint_positions = joint_positions

        @staticmethod
        def configure(robot, configuration):
            mod.events.append(("configure", configuration.maximum_joint_velocities))
            return Result(handler=Handler())

        def set_joint_position_target(self, target):
            mod.targets.append(target.joint_positions)
            return Result()

        def stop_control(self):
            mod.events.append(("stop_control",))

    class Errors:
        joint_reflex = True
        cartesian_reflex = False

    class State:
        q = [0.1] * 7
        dq = [0.0] * 7
        tau_J = [1.0] * 7
        time = 12.5
        robot_mode = "RobotMode.kUserStopped"
        current_errors = Errors()

    class Robot:
        def __init__(self, ip, realtime):
            mod.events.append(("robot", ip, realtime))

        def read_once(self):
            return State()

        def automatic_error_recovery(self):
            mod.events.append(("recover",))

    mod.Robot = Robot
    mod.AsyncPositionControlHandler = Handler
    mod.RealtimeConfig = types.SimpleNamespace(kEnforce="enforce", kIgnore="ignore")
    return mod


@pytest.fixture
def fake(monkeypatch):
    mod = _fake_pylibfranka()
    monkeypatch.setitem(sys.modules, "pylibfranka", mod)
    return mod


def test_pylibfranka_path(fake):
    backend = LibfrankaBackend(LibfrankaConfig(robot_ip="10.0.0.2", gripper=False))
    backend.start()
    assert fake.events[:2] == [("robot", "10.0.0.2", "enforce"), ("configure", [0.655] * 4 + [1.315] * 3)]
    backend.command_joints(np.arange(7) * 0.1, np.zeros(7))
    assert fake.targets == [pytest.approx((np.arange(7) * 0.1).tolist())]
    state = backend.read_state()
    assert state.robot_mode == "user_stopped" and state.fault and state.errors == ("joint_reflex",)
    assert state.robot_t_s == 12.5 and state.q.shape == (7,)
    backend.stop(state.q)
    backend.command_joints(np.zeros(7), np.zeros(7))  # after a stop nothing reaches the arm
    assert len(fake.targets) == 1
    backend.recover()
    backend.activate()
    assert ("recover",) in fake.events and fake.events.count(("stop_control",)) == 1
    assert sum(e[0] == "configure" for e in fake.events) == 2


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
