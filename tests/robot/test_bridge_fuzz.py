"""Property-based fuzz of the bridge's command socket: arbitrary bytes and arbitrary field values never crash the
bridge, and nothing outside the limits ever reaches the arm (every set-point and every accepted target is checked)."""

from __future__ import annotations

import itertools
import time

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vjepa_ac.sim.backend import MujocoBackend
from vjepa_ac.robot.kinematics import ArmKinematics
from vjepa_ac.robot.bridge import Bridge
from vjepa_ac.robot.config import BridgeConfig
from vjepa_ac.robot.limits import DEFAULT_ACTION_LIMITS, PANDA


class RecordingMujoco(MujocoBackend):
    """The MuJoCo backend (physics not started, so the arm stays put) recording every set-point it receives."""

    def __init__(self) -> None:
        super().__init__(cameras=())
        self.setpoints: list[tuple[np.ndarray, np.ndarray]] = []
        self.gripper_targets: list[float] = []

    def command_joints(self, q, dq):
        self.setpoints.append((np.array(q), np.array(dq)))
        super().command_joints(q, dq)

    def set_gripper(self, position):
        self.gripper_targets.append(position)
        super().set_gripper(position)


class Rig:
    def __init__(self, bridge: Bridge, backend: RecordingMujoco, push: zmq.Socket) -> None:
        self.bridge, self.backend, self.push = bridge, backend, push
        self.seqs = itertools.count(1)
        self.sessions = (f"fuzz-{i}" for i in itertools.count())
        self.session = ""

    def rearm(self) -> None:
        """Fuzzed stops and faults end a session; like a real client, come back with a new one."""
        if self.bridge.watchdog.state.value == "FAULT":
            self.bridge.rpc("recover", {})
        self.session = next(self.sessions)
        self.bridge.rpc("arm", {"session": self.session, "t_send_ns": time.monotonic_ns()})
        self.seqs = itertools.count(1)


@pytest.fixture(scope="module")
def rig(make_link):
    backend = RecordingMujoco()
    backend.start = lambda: None  # no physics: the measured pose stays at home, so every bound is easy to check
    bridge = Bridge(BridgeConfig(link=make_link(None), camera_hz=0, state_hz=1000), backend)
    bridge.start()
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.linger = 0
    push.connect(f"tcp://127.0.0.1:{bridge.config.link.cmd_port}")
    rig = Rig(bridge, backend, push)
    rig.rearm()
    yield rig
    push.close()
    bridge.close()


small = st.floats(-0.1, 0.1)
anything = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=4),
    lambda children: st.lists(children, max_size=8) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=10,
)


@st.composite
def structured(draw, rig):
    """A well-formed command of the armed session with values near and beyond the limits, then 0-2 fields
    replaced by arbitrary values (so both the safety filter and the decoder get exercised)."""
    mode = draw(st.sampled_from(["ee_delta", "ee_abs", "joint_abs"]))
    home = [0.0, -0.628, 0.0, -2.513, 0.0, 1.885, 0.0]
    body = {
        "ee_delta": lambda: {"dpos": draw(st.lists(small, min_size=3, max_size=3)),
                             "drot": draw(st.lists(st.floats(-0.3, 0.3), min_size=3, max_size=3))},
        "ee_abs": lambda: {"pos": [0.36 + draw(small), draw(small), 0.49 + draw(small)],
                           "quat_xyzw": [1.0, draw(small), draw(small), draw(small)]},
        "joint_abs": lambda: {"q": [h + draw(st.floats(-0.8, 0.8)) for h in home]},
    }[mode]()
    msg = {
        "v": 1,
        "kind": draw(st.sampled_from(["cmd"] * 8 + ["hb", "stop"])),
        "session": rig.session,
        "seq": next(rig.seqs),
        "t_send_ns": time.monotonic_ns(),
        "ttl_ms": 500,
        "mode": mode,
        mode: body,
        "gripper": draw(st.none() | st.fixed_dictionaries({"pos": st.floats(-0.5, 1.5)})),
        "duration_s": draw(st.floats(0.0, 2.0)),
    }
    for key in draw(st.lists(st.sampled_from(sorted(msg)), max_size=2)):
        msg[key] = draw(anything)
    if draw(st.booleans()) and isinstance(msg.get(mode), dict) and msg[mode]:
        field = draw(st.sampled_from(sorted(msg[mode])))
        msg[mode][field] = draw(st.lists(st.floats(), max_size=8) | anything)
    return msgpack.packb(msg)


def own_kinematics(bridge) -> ArmKinematics:
    """Kinematics with data of its own: the bridge's thread computes with the bridge's at the same time."""
    return ArmKinematics(bridge.kinematics.model)


def check_limits(bridge, backend, accepted_before, reference_pose):
    lim = PANDA
    kinematics = own_kinematics(bridge)
    for q, dq in backend.setpoints:
        assert np.all(np.isfinite(q)) and lim.within(q) and np.all(np.abs(dq) <= lim.dq_max + 1e-9)
        pos, _ = kinematics.fk(q)
        assert np.all(pos >= DEFAULT_ACTION_LIMITS.workspace_min - 1e-6)
        assert np.all(pos <= DEFAULT_ACTION_LIMITS.workspace_max + 1e-6)
    backend.setpoints.clear()
    assert all(0.0 <= g <= 1.0 for g in backend.gripper_targets)
    if bridge.counters["accepted"] > accepted_before:
        target_pos, _ = kinematics.fk(bridge._tracker.target_q)
        # Every accepted target is within two steps of the (static) measured pose.
        assert np.linalg.norm(target_pos - reference_pose) <= 2 * DEFAULT_ACTION_LIMITS.max_translation + 1e-6


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_messages_never_crash_or_exceed_limits(rig, data):
    bridge, backend = rig.bridge, rig.backend
    if bridge.watchdog.state.value not in ("ARMED", "TRACKING", "HOLD"):
        rig.rearm()
    messages = data.draw(st.lists(st.binary(max_size=64) | structured(rig), min_size=1, max_size=4))
    accepted_before = bridge.counters["accepted"]
    home_pos, _ = own_kinematics(bridge).fk(backend.read_state().q)
    received_before = bridge.counters["messages"]
    for message in messages:
        rig.push.send(message)
    deadline = time.monotonic() + 2.0
    while bridge.counters["messages"] < received_before + len(messages) and time.monotonic() < deadline:
        bridge.step()
    bridge.step()
    assert bridge.counters["messages"] == received_before + len(messages)
    check_limits(bridge, backend, accepted_before, home_pos)


def test_the_fuzz_reached_every_outcome(rig):
    """Guards the strategy itself: some fuzzed commands were accepted, many rejected, and set-points flowed."""
    counters = rig.bridge.counters
    assert counters["accepted"] > 0 and counters["rejected"] > counters["accepted"] and counters["setpoints"] > 0
