"""Wire format of the workstation <-> bridge link: msgpack maps with a schema version, session, seq, ttl, timestamps.

Three message families travel over ZMQ:

* commands (workstation PUSH -> bridge PULL): `kind` is "cmd" (a target), "hb" (heartbeat) or "stop";
* state (bridge PUB -> workstation SUB): one `StateMessage` per publish tick;
* RPC (DEALER -> ROUTER): `{"v", "id", "op", "args"}` requests and `{"v", "id", "ok", "result" | "error"}` replies.

Decoding is strict: anything malformed raises `ProtocolError` with a message naming the field, never a crash inside
the bridge. The cost is bounded before any value is touched: the byte size, then the nesting depth and the number of
items of the unpacked structure (walked without recursion); error texts describe offending values by type and size,
never by an unbounded `repr`. Timestamps are the sender's monotonic clock in ns; the receiver never compares them with
its own clock.

The `session` field of commands is a per-session secret that only the armed client knows: the bridge publishes
`public_session_id(session)` (a one-way digest) in its state messages, never the session itself.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

SCHEMA_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024
"""Commands, heartbeats and RPC requests are tiny; anything larger is refused before unpacking."""
MAX_DEPTH = 4
"""Deepest nesting of maps and lists in any command or request (a command needs 3: message, body, vector)."""
MAX_ITEMS = 512
"""Most maps, lists, keys and values in one command or request."""
MAX_ERROR_CHARS = 160
"""Longest error text the bridge keeps or publishes."""
MAX_STATE_BYTES = 8 * 1024
"""Upper bound of an encoded state message (16 bounded error texts and the fixed fields fit with room to spare)."""
MAX_TTL_MS = 1000
MAX_DURATION_S = 10.0
_MAX_SEQ = 2**64 - 1
_MAX_SESSION_LEN = 64
_MAX_REPLY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class LinkAddress:
    """Where the bridge's four sockets are: the bridge binds them (`robot.config.LinkConfig`), a client connects to
    them (`robot.client.ClientConfig`). By default the four ports are consecutive from a port base."""

    host: str = "127.0.0.1"
    """Address to bind (bridge: the robot-network NIC in production) or to connect to (client)."""
    cmd_port: int = 5555
    state_port: int = 5556
    rpc_port: int = 5557
    camera_port: int = 5558

    def endpoint(self, port: int) -> str:
        return f"tcp://{self.host}:{port}"

    def with_port_base(self, base: int):
        """The same address with the cmd, state, rpc and camera ports at base, base+1, base+2, base+3."""
        return dataclasses.replace(self, cmd_port=base, state_port=base + 1, rpc_port=base + 2, camera_port=base + 3)


class ProtocolError(ValueError):
    """A message that does not follow the schema; the text names the offending field."""


class MessageKind(str, enum.Enum):
    CMD = "cmd"
    HEARTBEAT = "hb"
    STOP = "stop"


class CommandMode(str, enum.Enum):
    EE_DELTA = "ee_delta"
    """DROID delta action: Δxyz in the base frame and the Euler "xyz" angles of the left-multiplied rotation delta."""
    EE_ABS = "ee_abs"
    """Absolute flange pose: position [3] and quaternion (x, y, z, w) in the base frame."""
    JOINT_ABS = "joint_abs"
    """Absolute joint angles [7]."""


_TARGET_SIZE = {CommandMode.EE_DELTA: 6, CommandMode.EE_ABS: 7, CommandMode.JOINT_ABS: 7}


@dataclass(frozen=True)
class Command:
    """One decoded workstation message. For heartbeats and stops only the header fields are meaningful."""

    kind: MessageKind
    session: str
    seq: int
    t_send_ns: int
    ttl_ms: int = 0
    mode: CommandMode | None = None
    target: np.ndarray | None = None
    """ee_delta: [dx, dy, dz, rx, ry, rz]; ee_abs: [x, y, z, qx, qy, qz, qw]; joint_abs: q [7]."""
    gripper: float | None = None
    """Absolute gripper target, 0 = open .. 1 = closed, or None to leave the gripper alone."""
    duration_s: float = 0.0
    """Requested time to reach the target; the bridge lengthens it to respect speed limits."""
    ref_state_seq: int | None = None
    """Seq of the state message the plan was computed from, if the sender knows it."""


def encode_command(cmd: Command) -> bytes:
    msg: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "kind": cmd.kind.value,
        "session": cmd.session,
        "seq": int(cmd.seq),
        "t_send_ns": int(cmd.t_send_ns),
    }
    if cmd.kind is MessageKind.CMD:
        if cmd.mode is None or cmd.target is None:
            raise ProtocolError("a cmd needs a mode and a target")
        target = [float(x) for x in np.asarray(cmd.target, dtype=np.float64).ravel()]
        if cmd.mode is CommandMode.EE_DELTA:
            body: dict[str, Any] = {"dpos": target[:3], "drot": target[3:], "rot_repr": "euler_xyz", "frame": "base"}
        elif cmd.mode is CommandMode.EE_ABS:
            body = {"pos": target[:3], "quat_xyzw": target[3:]}
        else:
            body = {"q": target}
        msg.update(
            ttl_ms=int(cmd.ttl_ms),
            mode=cmd.mode.value,
            duration_s=float(cmd.duration_s),
            gripper=None if cmd.gripper is None else {"pos": float(cmd.gripper)},
            ref_state_seq=cmd.ref_state_seq,
        )
        msg[cmd.mode.value] = body
    return msgpack.packb(msg, use_bin_type=True)


def sanitize_text(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """`text` cut to `limit` characters with control characters replaced, safe to log and publish."""
    text = text[: limit + 1]
    cleaned = "".join(c if c.isprintable() else "?" for c in text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


def describe(value: object) -> str:
    """A short description of any decoded value for error texts: short scalars verbatim, everything else by type and
    size (no `repr` of containers, so no recursion and no unbounded output)."""
    if value is None or isinstance(value, (bool, int, float)):
        return sanitize_text(repr(value), 40)
    if isinstance(value, (str, bytes)):
        return sanitize_text(repr(value), 40) if len(value) <= 24 else f"{type(value).__name__} of length {len(value)}"
    if isinstance(value, (list, tuple, dict)):
        return f"{type(value).__name__} of length {len(value)}"
    return type(value).__name__


def public_session_id(session: str) -> str:
    """The published name of a session: a digest from which the session secret cannot be recovered."""
    return hashlib.sha256(session.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def check_structure(value: object, max_depth: int = MAX_DEPTH, max_items: int = MAX_ITEMS) -> None:
    """Raise `ProtocolError` if `value` nests maps / lists deeper than `max_depth` or holds more than `max_items`
    containers, keys and values in all. Iterative: the cost is bounded by `max_items`, whatever the input."""
    stack = [(value, 1)]
    items = 0
    while stack:
        node, depth = stack.pop()
        items += 1
        if items > max_items:
            raise ProtocolError(f"message has more than {max_items} values")
        if isinstance(node, (dict, list, tuple)):
            if depth > max_depth:
                raise ProtocolError(f"message nests deeper than {max_depth} levels")
            children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
            if len(children) + items > max_items:
                raise ProtocolError(f"message has more than {max_items} values")
            stack.extend((child, depth + 1) for child in children)


def _unpack(data: object, max_bytes: int) -> Any:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"message must be bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise ProtocolError(f"message of {len(data)} bytes exceeds the {max_bytes}-byte limit")
    try:
        # The C unpacker refuses long arrays and maps itself and nests at most 1024 levels deep on its own stack;
        # depth and the total count are checked right after.
        return msgpack.unpackb(bytes(data), raw=False, strict_map_key=True, max_array_len=MAX_ITEMS,
                               max_map_len=MAX_ITEMS, max_ext_len=0)
    except Exception as exc:  # noqa: BLE001 (msgpack raises several unrelated types for corrupt input)
        raise ProtocolError(sanitize_text(f"not a msgpack message: {type(exc).__name__}: {exc}")) from None


def _check_version(msg: dict) -> None:
    version = msg.get("v")
    # `type(...) is int`: 1.0 and True compare equal to 1 but are not the schema version.
    if type(version) is not int or version != SCHEMA_VERSION:
        raise ProtocolError(f"schema version {describe(version)} is not supported (expected {SCHEMA_VERSION})")


def _unpack_map(
    data: bytes, max_bytes: int = MAX_MESSAGE_BYTES, max_depth: int = MAX_DEPTH, max_items: int = MAX_ITEMS
) -> dict:
    msg = _unpack(data, max_bytes)
    check_structure(msg, max_depth, max_items)
    if not isinstance(msg, dict):
        raise ProtocolError(f"message must be a map, got {type(msg).__name__}")
    _check_version(msg)
    return msg


def _int_field(msg: dict, key: str, lo: int, hi: int) -> int:
    value = msg.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"{key} must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ProtocolError(f"{key}={describe(value)} is outside [{lo}, {hi}]")
    return value


def _float_field(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError(f"{key} must be a number, got {type(value).__name__}")
    result = float(value)
    if not math.isfinite(result):
        raise ProtocolError(f"{key} is not finite: {result}")
    return result


def _vector(value: object, key: str, size: int) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != size:
        raise ProtocolError(f"{key} must be a list of {size} numbers, got {describe(value)}")
    return [_float_field(x, f"{key}[{i}]") for i, x in enumerate(value)]


def _map_field(msg: dict, key: str) -> dict:
    value = msg.get(key)
    if not isinstance(value, dict):
        raise ProtocolError(f"{key} must be a map, got {type(value).__name__}")
    return value


def _enum_field(cls: type[enum.Enum], msg: dict, key: str) -> Any:
    value = msg.get(key)
    if isinstance(value, str):
        for member in cls:
            if member.value == value:
                return member
    raise ProtocolError(f"unknown {key} {describe(value)} (expected one of {', '.join(m.value for m in cls)})")


def decode_command(data: bytes) -> Command:
    """Parse and validate one workstation message (cmd, hb or stop)."""
    msg = _unpack_map(data)
    kind = _enum_field(MessageKind, msg, "kind")
    session = msg.get("session")
    if not isinstance(session, str) or not 0 < len(session) <= _MAX_SESSION_LEN:
        raise ProtocolError(f"session must be a non-empty string of at most {_MAX_SESSION_LEN} characters")
    header = {
        "kind": kind,
        "session": session,
        "seq": _int_field(msg, "seq", 0, _MAX_SEQ),
        "t_send_ns": _int_field(msg, "t_send_ns", -(2**63), 2**63 - 1),
    }
    if kind is not MessageKind.CMD:
        return Command(**header)
    mode = _enum_field(CommandMode, msg, "mode")
    body = _map_field(msg, mode.value)
    if mode is CommandMode.EE_DELTA:
        if body.get("rot_repr", "euler_xyz") != "euler_xyz" or body.get("frame", "base") != "base":
            raise ProtocolError("ee_delta supports only rot_repr 'euler_xyz' in frame 'base'")
        target = _vector(body.get("dpos"), "ee_delta.dpos", 3) + _vector(body.get("drot"), "ee_delta.drot", 3)
    elif mode is CommandMode.EE_ABS:
        target = _vector(body.get("pos"), "ee_abs.pos", 3) + _vector(body.get("quat_xyzw"), "ee_abs.quat_xyzw", 4)
        norm = math.sqrt(sum(x * x for x in target[3:]))
        if not 0.5 < norm < 1.5:
            raise ProtocolError(f"ee_abs.quat_xyzw has norm {norm:.3g}; expected a unit quaternion")
        target[3:] = [x / norm for x in target[3:]]
    else:
        target = _vector(body.get("q"), "joint_abs.q", _TARGET_SIZE[mode])
    gripper_msg = msg.get("gripper")
    gripper = None
    if gripper_msg is not None:
        if not isinstance(gripper_msg, dict):
            raise ProtocolError("gripper must be a map {pos} or nil")
        gripper = _float_field(gripper_msg.get("pos"), "gripper.pos")
    ref = msg.get("ref_state_seq")
    duration = _float_field(msg.get("duration_s", 0.0), "duration_s")
    if not 0.0 <= duration <= MAX_DURATION_S:
        raise ProtocolError(f"duration_s={duration} is outside [0, {MAX_DURATION_S}]")
    return Command(
        **header,
        ttl_ms=_int_field(msg, "ttl_ms", 1, MAX_TTL_MS),
        mode=mode,
        target=np.asarray(target, dtype=np.float64),
        gripper=gripper,
        duration_s=duration,
        ref_state_seq=None if ref is None else _int_field(msg, "ref_state_seq", 0, _MAX_SEQ),
    )


@dataclass
class StateMessage:
    """What the bridge publishes every state tick (robot base frame, flange = DROID end effector)."""

    seq: int
    t_ns: int
    robot_t_s: float
    backend: str
    q: list[float]
    dq: list[float]
    tau_J: list[float]
    ee_pos: list[float]
    ee_quat_xyzw: list[float]
    ee_droid: list[float]
    """xyz + Euler "xyz" of the flange (the first six entries of the DROID state)."""
    gripper: float
    robot_mode: str
    watchdog: str
    session: str | None = None
    """`public_session_id` of the armed session (the session secret itself is never published)."""
    errors: list[str] = field(default_factory=list)
    """Recent rejections and faults, newest last."""
    last_cmd_seq: int | None = None
    """Seq of the newest accepted command of the current session."""
    last_rejected_seq: int | None = None
    """Seq of the newest rejected command of the current session."""
    last_cmd_age_ms: float | None = None
    hb_age_ms: float | None = None
    setpoint_q: list[float] | None = None
    """The joint set-point most recently sent to the arm."""

    def encode(self) -> bytes:
        payload = {"v": SCHEMA_VERSION, **self.__dict__}
        return msgpack.packb(payload, use_bin_type=True)

    @classmethod
    def decode(cls, data: bytes) -> StateMessage:
        msg = _unpack_map(data, MAX_STATE_BYTES)
        msg.pop("v")
        known = set(cls.__dataclass_fields__)
        try:
            return cls(**{k: v for k, v in msg.items() if k in known})
        except TypeError as exc:
            raise ProtocolError(f"state message is missing fields: {exc}") from None

    @property
    def droid_state(self) -> np.ndarray:
        """The 7-D DROID state (flange xyz, Euler xyz, gripper)."""
        return np.asarray([*self.ee_droid, self.gripper], dtype=np.float64)


def encode_request(request_id: int, op: str, args: dict | None = None) -> bytes:
    return msgpack.packb({"v": SCHEMA_VERSION, "id": request_id, "op": op, "args": args or {}}, use_bin_type=True)


def decode_request(data: bytes) -> tuple[int, str, dict]:
    msg = _unpack_map(data)
    request_id = _int_field(msg, "id", 0, _MAX_SEQ)
    op = msg.get("op")
    args = msg.get("args", {})
    if not isinstance(op, str) or not isinstance(args, dict):
        raise ProtocolError("rpc request needs a string op and a map of args")
    return request_id, op, args


def encode_reply(request_id: int, *, ok: bool, result: Any = None, error: str = "") -> bytes:
    msg = {"v": SCHEMA_VERSION, "id": request_id, "ok": ok}
    msg.update({"result": result} if ok else {"error": error})
    return msgpack.packb(msg, use_bin_type=True)


def decode_reply(data: bytes) -> tuple[int, bool, Any]:
    """(request id, ok, result or error text); replies (status, config) may be larger and deeper than requests."""
    msg = _unpack_map(data, _MAX_REPLY_BYTES, max_depth=8, max_items=8192)
    request_id = _int_field(msg, "id", 0, _MAX_SEQ)
    ok = bool(msg.get("ok"))
    return request_id, ok, msg.get("result") if ok else str(msg.get("error", ""))


def encode_frame(role: str, seq: int, t_ns: int, jpeg: bytes) -> bytes:
    """One camera frame as a single message (so a subscriber can drain to the newest frame per role)."""
    return msgpack.packb({"v": SCHEMA_VERSION, "role": role, "seq": seq, "t_ns": t_ns, "jpeg": jpeg}, use_bin_type=True)


def decode_frame(data: bytes) -> tuple[str, int, int, bytes]:
    """(role, seq, t_ns, jpeg bytes); frames may exceed the command size limit."""
    try:
        msg = msgpack.unpackb(bytes(data), raw=False)
    except Exception as exc:  # noqa: BLE001 (as in _unpack_map)
        raise ProtocolError(f"not a msgpack frame: {exc}") from None
    if not isinstance(msg, dict) or msg.get("v") != SCHEMA_VERSION or not isinstance(msg.get("jpeg"), bytes):
        raise ProtocolError("malformed camera frame")
    return str(msg.get("role")), int(msg.get("seq", 0)), int(msg.get("t_ns", 0)), msg["jpeg"]
