"""The bridge's sockets: binding (CURVE servers when keys are configured), the receiver thread that stamps and decodes
every command as it arrives, the wake-up pair that lets a command end the loop's wait early, RPC transport and state
publishing. What a message means is decided by the bridge (`robot.bridge`), not here."""

from __future__ import annotations

import itertools
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any

import zmq

from vjepa_ac.robot.config import LinkConfig
from vjepa_ac.robot.keys import make_curve_server, start_authenticator
from vjepa_ac.robot.protocol import (
    MAX_MESSAGE_BYTES,
    Command,
    MessageKind,
    ProtocolError,
    decode_command,
    decode_request,
    describe,
    encode_reply,
    sanitize_text,
)

MAX_DRAIN = 1000
"""Upper bound on messages handled per tick (and on the receiver's queue), so a flood cannot starve the set-points."""
_SOCKET_MAX_BYTES = MAX_MESSAGE_BYTES + 1024
"""ZMQ_MAXMSGSIZE of the command and RPC sockets (room for CurveZMQ framing); a larger message drops its sender."""
_wake_ids = itertools.count()


class _Received:
    """One message as the receiver thread took it off the command socket."""

    __slots__ = ("command", "error", "sender", "t")

    def __init__(self, t: float, sender: str, command: Command | None, error: str = "") -> None:
        self.t = t
        """Bridge clock when the message left the socket."""
        self.sender = sender
        """CurveZMQ public key of the sending client ("" without CurveZMQ)."""
        self.command = command
        self.error = error


def _sender(frame: zmq.Frame) -> str:
    """The ZAP user id of a received frame: the client's CurveZMQ public key, "" on an unencrypted link."""
    try:
        return frame.get("User-Id") or ""
    except zmq.ZMQError:
        return ""


def _receive_one(sock: zmq.Socket) -> tuple[zmq.Frame, int]:
    """One message off `sock` (NOBLOCK): its first frame and its number of parts; further parts are read and dropped
    one at a time, so a many-part message costs no more memory than a single one."""
    frame = sock.recv(zmq.NOBLOCK, copy=False)
    parts = 1
    while sock.rcvmore:
        sock.recv(copy=False)
        parts += 1
    return frame, parts


class BridgeSockets:
    """The bridge's four sockets (cmd PULL, state PUB, rpc ROUTER, camera PUB) and its receiver thread.

    `open()` binds cmd, state and rpc and starts the receiver, which puts every command message on `inbox` (waiting
    for room rather than dropping: a stop must never be lost to a flood) and wakes `wait()`."""

    def __init__(self, link: LinkConfig, context: zmq.Context | None, clock: Callable[[], float],
                 stop: threading.Event) -> None:
        self.link = link
        self.clock = clock
        self._stop = stop
        # A context of its own: the ZAP authenticator is per context, so bridges in one process stay independent.
        self._owns_context = context is None
        self._context = context or zmq.Context()
        self._auth = None
        self._sockets: list[zmq.Socket] = []
        self.inbox: queue.Queue[_Received] = queue.Queue(maxsize=MAX_DRAIN)
        self.receiver_thread: threading.Thread | None = None

    def authenticate(self) -> None:
        """Start the CurveZMQ authenticator (with keys configured); before any socket is bound."""
        if self.link.curve:
            if not self.link.authorized_keys:
                raise ValueError("link.secret_key is set but link.authorized_keys is not: no client could connect")
            self._auth = start_authenticator(self._context, self.link.authorized_keys)

    def bind(self, kind: int, port: int, max_bytes: int = -1) -> zmq.Socket:
        sock = self._context.socket(kind)
        sock.linger = 0
        sock.maxmsgsize = max_bytes
        if self.link.curve:
            make_curve_server(sock, self.link.secret_key)
        sock.bind(self.link.endpoint(port))
        self._sockets.append(sock)
        return sock

    def open(self) -> None:
        """Bind the cmd, state and rpc sockets and start the receiver thread."""
        self.cmd = self.bind(zmq.PULL, self.link.cmd_port, _SOCKET_MAX_BYTES)
        self.cmd.rcvhwm = 100
        self.state = self.bind(zmq.PUB, self.link.state_port)
        self.state.sndhwm = 10
        self.rpc = self.bind(zmq.ROUTER, self.link.rpc_port, _SOCKET_MAX_BYTES)
        # The receiver thread wakes the loop through this pair when a command or stop arrives.
        wake = f"inproc://bridge-wake-{next(_wake_ids)}"
        self._wake = self._context.socket(zmq.PAIR)
        self._wake.bind(wake)
        self._wake_sender = self._context.socket(zmq.PAIR)
        self._wake_sender.connect(wake)
        self._sockets += [self._wake, self._wake_sender]
        self._poller = zmq.Poller()
        self._poller.register(self._wake, zmq.POLLIN)
        self._poller.register(self.rpc, zmq.POLLIN)
        # The receiver thread stamps arrivals; with the interpreter's default 5 ms switch interval a busy loop or
        # physics thread would delay it (and the stamp) by up to that much.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
        self.receiver_thread = threading.Thread(target=self._receive_loop, name="bridge-receiver", daemon=True)
        self.receiver_thread.start()

    def open_camera(self) -> zmq.Socket:
        camera = self.bind(zmq.PUB, self.link.camera_port)
        camera.sndhwm = 2
        return camera

    def wait(self, timeout_ms: int) -> bool:
        """Wait up to `timeout_ms` for a command or request; True if one arrived."""
        return bool(self._poller.poll(timeout_ms))

    def clear_wakeups(self) -> None:
        while self._wake.poll(0):
            self._wake.recv()

    def publish_state(self, data: bytes) -> None:
        try:
            self.state.send(data, zmq.NOBLOCK)
        except zmq.Again:
            pass

    def close(self) -> None:
        for sock in self._sockets:
            sock.close(linger=0)
        self._sockets.clear()
        if self._auth is not None:
            self._auth.stop()
        if self._owns_context:
            self._context.term()

    def _receive_loop(self) -> None:
        """Receiver thread: stamp, decode and queue every message of the command socket (the only user of it)."""
        while not self._stop.is_set():
            try:
                if not self.cmd.poll(50):
                    continue
                frame, parts = _receive_one(self.cmd)
            except zmq.Again:
                continue
            except zmq.ZMQError:
                return  # socket closed
            received = self.clock()
            if parts != 1:
                item = _Received(received, _sender(frame), None, f"multipart message of {parts} parts")
            else:
                try:
                    item = _Received(received, _sender(frame), decode_command(frame.bytes))
                except ProtocolError as exc:
                    item = _Received(received, _sender(frame), None, str(exc))
            # Wait for room rather than drop: a stop must never be lost to a flood (ZMQ's HWM then pushes back).
            while not self._stop.is_set():
                try:
                    self.inbox.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item.command is not None and item.command.kind is not MessageKind.HEARTBEAT:
                try:
                    self._wake_sender.send(b"", zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass

    def serve_rpc(self, handle: Callable[[str, dict[str, Any], float, str], Any]) -> None:
        """Answer up to 16 waiting requests with `handle(op, args, received time, sender)`; every request gets a
        reply, an error reply when `handle` raises."""
        for _ in range(16):
            try:
                identity = self.rpc.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if not self.rpc.rcvmore:
                continue  # only the routing identity: an empty message
            payload, payload_parts = _receive_one(self.rpc)
            received = self.clock()
            if payload_parts != 1:
                self.rpc.send_multipart([identity, encode_reply(0, ok=False, error="multipart requests are refused")])
                continue
            try:
                request_id, op, args = decode_request(payload.bytes)
            except ProtocolError as exc:
                self.rpc.send_multipart([identity, encode_reply(0, ok=False, error=sanitize_text(str(exc)))])
                continue
            try:
                result = handle(op, args, received, _sender(payload))
                reply = encode_reply(request_id, ok=True, result=result)
            except Exception as exc:  # noqa: BLE001 (every request gets an answer, also when the backend fails)
                reply = encode_reply(request_id, ok=False, error=sanitize_text(f"{describe(op)}: {exc}"))
            self.rpc.send_multipart([identity, reply])
