"""Wire format: round trips, strict validation, and a fuzz of raw bytes and field values."""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vjepa_ac.robot.protocol import (
    MAX_ERROR_CHARS,
    MAX_STATE_BYTES,
    SCHEMA_VERSION,
    Command,
    CommandMode,
    MessageKind,
    ProtocolError,
    StateMessage,
    decode_command,
    decode_frame,
    decode_reply,
    decode_request,
    describe,
    encode_command,
    encode_frame,
    encode_reply,
    encode_request,
    public_session_id,
    sanitize_text,
)


def _cmd(mode=CommandMode.EE_DELTA, target=(0.01, 0.0, -0.02, 0.0, 0.05, 0.0), **kw):
    fields = {"session": "s1", "seq": 3, "t_send_ns": 123, "ttl_ms": 100, "mode": mode, "target": np.array(target),
              "gripper": 0.5, "duration_s": 0.1, "ref_state_seq": 7}
    fields.update(kw)
    return Command(MessageKind.CMD, **fields)


@pytest.mark.parametrize(
    "mode,target",
    [
        (CommandMode.EE_DELTA, [0.01, 0.0, -0.02, 0.0, 0.05, 0.0]),
        (CommandMode.EE_ABS, [0.4, 0.0, 0.5, 1.0, 0.0, 0.0, 0.0]),
        (CommandMode.JOINT_ABS, [0.0, -0.6, 0.0, -2.5, 0.0, 1.9, 0.0]),
    ],
)
def test_command_round_trip(mode, target):
    cmd = _cmd(mode, target)
    back = decode_command(encode_command(cmd))
    assert back.kind is MessageKind.CMD and back.mode is mode
    assert (back.session, back.seq, back.t_send_ns, back.ttl_ms, back.ref_state_seq) == ("s1", 3, 123, 100, 7)
    np.testing.assert_allclose(back.target, target)
    assert back.gripper == 0.5 and back.duration_s == 0.1


def test_wire_layout_follows_the_schema():
    raw = msgpack.unpackb(encode_command(_cmd()))
    assert raw["v"] == SCHEMA_VERSION and raw["kind"] == "cmd" and raw["mode"] == "ee_delta"
    assert raw["ee_delta"] == {"dpos": [0.01, 0.0, -0.02], "drot": [0.0, 0.05, 0.0], "rot_repr": "euler_xyz",
                               "frame": "base"}
    assert raw["gripper"] == {"pos": 0.5}


def test_heartbeat_and_stop_round_trip():
    for kind in (MessageKind.HEARTBEAT, MessageKind.STOP):
        back = decode_command(encode_command(Command(kind, session="abc", seq=9, t_send_ns=-5)))
        assert (back.kind, back.session, back.seq, back.t_send_ns, back.target) == (kind, "abc", 9, -5, None)


def _raw(**changes):
    msg = msgpack.unpackb(encode_command(_cmd()))
    for key, value in changes.items():
        if value is KeyError:
            msg.pop(key)
        else:
            msg[key] = value
    return msgpack.packb(msg)


@pytest.mark.parametrize(
    "changes,needle",
    [
        ({"v": 2}, "schema version"),
        ({"kind": "jump"}, "unknown kind"),
        ({"session": ""}, "session"),
        ({"seq": -1}, "seq"),
        ({"seq": 1.5}, "seq must be an integer"),
        ({"ttl_ms": 0}, "ttl_ms"),
        ({"ttl_ms": 5000}, "ttl_ms"),
        ({"mode": "torque"}, "unknown mode"),
        ({"ee_delta": {"dpos": [0, 0], "drot": [0, 0, 0]}}, "ee_delta.dpos"),
        ({"ee_delta": {"dpos": [0, 0, float("nan")], "drot": [0, 0, 0]}}, "not finite"),
        ({"ee_delta": {"dpos": [0, 0, "x"], "drot": [0, 0, 0]}}, "must be a number"),
        ({"ee_delta": {"dpos": [0, 0, 0], "drot": [0, 0, 0], "rot_repr": "axis_angle"}}, "euler_xyz"),
        ({"gripper": {"pos": float("inf")}}, "gripper.pos"),
        ({"duration_s": -1.0}, "duration_s"),
        ({"ee_delta": KeyError}, "ee_delta must be a map"),
    ],
)
def test_malformed_commands_are_named(changes, needle):
    with pytest.raises(ProtocolError, match=needle):
        decode_command(_raw(**changes))


def test_non_unit_quaternion_is_rejected_and_near_unit_is_normalized():
    with pytest.raises(ProtocolError, match="unit quaternion"):
        decode_command(encode_command(_cmd(CommandMode.EE_ABS, [0.4, 0, 0.5, 0, 0, 0, 0.1])))
    back = decode_command(encode_command(_cmd(CommandMode.EE_ABS, [0.4, 0, 0.5, 0, 0, 0, 1.1])))
    assert math.isclose(float(np.linalg.norm(back.target[3:])), 1.0)


def test_oversized_and_non_map_messages():
    with pytest.raises(ProtocolError, match="exceeds"):
        decode_command(b"\x00" * 70_000)
    with pytest.raises(ProtocolError, match="must be a map"):
        decode_command(msgpack.packb([1, 2, 3]))
    with pytest.raises(ProtocolError, match="not a msgpack"):
        decode_command(b"\xc1")


def test_state_rpc_and_frame_round_trips():
    state = StateMessage(seq=1, t_ns=2, robot_t_s=0.5, backend="mujoco", q=[0.0] * 7, dq=[0.0] * 7, tau_J=[0.0] * 7,
                         ee_pos=[0.4, 0, 0.5], ee_quat_xyzw=[1, 0, 0, 0], ee_droid=[0.4, 0, 0.5, 3.14, 0, 0],
                         gripper=0.25, robot_mode="move", watchdog="ARMED", errors=["seq 3: rejected"])
    back = StateMessage.decode(state.encode())
    assert back == state
    np.testing.assert_allclose(back.droid_state, [0.4, 0, 0.5, 3.14, 0, 0, 0.25])
    assert decode_request(encode_request(4, "arm", {"session": "x"})) == (4, "arm", {"session": "x"})
    assert decode_reply(encode_reply(4, ok=True, result={"a": 1})) == (4, True, {"a": 1})
    assert decode_reply(encode_reply(5, ok=False, error="nope")) == (5, False, "nope")
    assert decode_frame(encode_frame("left", 3, 99, b"\xff\xd8jpeg")) == ("left", 3, 99, b"\xff\xd8jpeg")


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=512))
def test_fuzz_random_bytes_never_crash_the_decoder(data):
    try:
        decode_command(data)
    except ProtocolError:
        pass


_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=8) | st.binary(max_size=8),
    lambda children: st.lists(children, max_size=8) | st.dictionaries(st.text(max_size=8), children, max_size=6),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["v", "kind", "session", "seq", "t_send_ns", "ttl_ms", "mode", "ee_delta",
                                        "ee_abs", "joint_abs", "gripper", "duration_s", "ref_state_seq"]), _values))
def test_fuzz_field_values_decode_or_raise_protocol_error(fields):
    base = msgpack.unpackb(encode_command(_cmd()))
    base.update(fields)
    try:
        cmd = decode_command(msgpack.packb(base))
    except ProtocolError:
        return
    if cmd.target is not None:
        assert np.all(np.isfinite(cmd.target))
    if cmd.gripper is not None:
        assert math.isfinite(cmd.gripper)


def _deep(levels: int) -> bytes:
    """A small command map whose `kind` is a list nested `levels` deep (packed by hand: msgpack's own packer
    recurses in Python)."""
    return b"\x82" + msgpack.packb("v") + msgpack.packb(1) + msgpack.packb("kind") + b"\x91" * levels + b"\xc0"


@pytest.mark.parametrize("levels", [5, 100, 1000, 3000])
def test_deeply_nested_messages_are_protocol_errors(levels):
    """Regression: ~1000 levels of nesting escaped as a non-protocol exception (the error text repr()'d the value)."""
    data = _deep(levels)
    assert len(data) < 4000
    with pytest.raises(ProtocolError):
        decode_command(data)
    with pytest.raises(ProtocolError):
        decode_request(data)


def test_many_values_are_refused_before_they_are_looked_at():
    msg = msgpack.unpackb(encode_command(_cmd()))
    msg["extra"] = [[0] * 8] * 200
    with pytest.raises(ProtocolError, match="more than"):
        decode_command(msgpack.packb(msg))


@pytest.mark.parametrize("version", [1.0, True, "1", [1]])
def test_schema_version_must_be_the_integer_one(version):
    """Regression: 1.0 and True compared equal to 1 and were accepted."""
    with pytest.raises(ProtocolError, match="schema version"):
        decode_command(_raw(v=version))


def test_error_texts_are_short_whatever_the_input():
    for changes in ({"kind": "k" * 65_000}, {"mode": "m" * 60_000}, {"seq": "s" * 60_000},
                    {"ee_delta": {"dpos": ["x" * 60_000] * 3, "drot": [0, 0, 0]}}):
        with pytest.raises(ProtocolError) as info:
            decode_command(_raw(**changes))
        assert len(str(info.value)) <= MAX_ERROR_CHARS


def test_sanitize_and_describe():
    assert sanitize_text("a\x00b\nc" + "x" * 500) == ("a?b?c" + "x" * 500)[:MAX_ERROR_CHARS - 3] + "..."
    assert describe("short") == "'short'" and describe("y" * 100) == "str of length 100"
    assert describe([[1]] * 10) == "list of length 10" and describe(None) == "None"


def test_public_session_id_hides_the_secret():
    secret = "0123456789abcdef0123456789abcdef"
    public = public_session_id(secret)
    assert public == public_session_id(secret) and secret not in public and len(public) == 16


def test_worst_case_state_message_fits_its_bound():
    """Regression: error texts were copied in full into every state message (megabytes after a few bad messages)."""
    worst = StateMessage(seq=2**64 - 1, t_ns=2**63 - 1, robot_t_s=1e300, backend="libfranka", q=[-1e300] * 7,
                         dq=[-1e300] * 7, tau_J=[-1e300] * 7, ee_pos=[-1e300] * 3, ee_quat_xyzw=[-1e300] * 4,
                         ee_droid=[-1e300] * 6, gripper=1.0, robot_mode="automatic_error_recovery",
                         watchdog="TRACKING", session="f" * 16, errors=["\u00e9" * MAX_ERROR_CHARS] * 16,
                         last_cmd_seq=2**64 - 1, last_rejected_seq=2**64 - 1, last_cmd_age_ms=1e300,
                         hb_age_ms=1e300, setpoint_q=[-1e300] * 7)
    assert len(worst.encode()) <= MAX_STATE_BYTES
    assert StateMessage.decode(worst.encode()) == worst
