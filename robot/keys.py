"""CurveZMQ keys for the link: generation (`vjepa-ac bridge keygen`), loading, and socket setup.

Every bridge socket is a CURVE server; a ZAP authenticator in the bridge process admits only clients whose public
key file lies in the bridge's `authorized_keys` folder. A client needs its own secret key and the bridge's public
key. Key files are the ZeroMQ certificate format written by `zmq.auth`.
"""

from __future__ import annotations

import os
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator


class KeyFileError(RuntimeError):
    """A missing or unreadable key file."""


def generate_keypair(directory: str | Path, name: str, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write `<name>.key` (public, share it) and `<name>.key_secret` (private, mode 0600); returns both paths."""
    if not zmq.has("curve"):
        raise RuntimeError("this libzmq was built without CURVE support; install a pyzmq wheel from PyPI")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    if not overwrite and (public.exists() or secret.exists()):
        raise FileExistsError(f"{public} or {secret} exists; pass overwrite=True (--force) to replace it")
    public_str, secret_str = zmq.auth.create_certificates(str(directory), name)
    os.chmod(secret_str, 0o600)
    return Path(public_str), Path(secret_str)


def load_secret(path: str | Path) -> tuple[bytes, bytes]:
    """(public key, secret key) from a `.key_secret` file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise KeyFileError(f"secret key file not found: {path} (create one with `vjepa-ac bridge keygen`)")
    public, secret = zmq.auth.load_certificate(str(path))
    if secret is None:
        raise KeyFileError(f"{path} holds no secret key (did you pass the public .key file?)")
    return public, secret


def load_public(path: str | Path) -> bytes:
    path = Path(path).expanduser()
    if not path.is_file():
        raise KeyFileError(f"public key file not found: {path}")
    public, _ = zmq.auth.load_certificate(str(path))
    return public


def start_authenticator(context: zmq.Context, authorized_keys: str | Path) -> ThreadAuthenticator:
    """A ZAP handler admitting only CURVE clients whose public key is in `authorized_keys`."""
    folder = Path(authorized_keys).expanduser()
    if not folder.is_dir():
        raise KeyFileError(f"authorized_keys folder not found: {folder}")
    if not list(folder.glob("*.key")):
        raise KeyFileError(f"{folder} holds no client public keys (*.key); no client could connect")
    auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve(domain="*", location=str(folder))
    return auth


def make_curve_server(socket: zmq.Socket, secret_key_file: str | Path) -> None:
    public, secret = load_secret(secret_key_file)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True


def make_curve_client(socket: zmq.Socket, client_secret_file: str | Path, server_public_file: str | Path) -> None:
    public, secret = load_secret(client_secret_file)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_serverkey = load_public(server_public_file)
