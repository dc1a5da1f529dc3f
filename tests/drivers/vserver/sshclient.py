"""The OpenSSH client against slivers' SSH ports: key pairs, one command, raw connections.

Every call has a timeout, so a hung login fails the test instead of blocking it."""
from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SSH_OPTS = ("-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=10")


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: str          # the authorized_keys line


def keypair(directory: Path, name: str) -> KeyPair:
    key = Ed25519PrivateKey.generate()
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                  serialization.NoEncryption()))
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return KeyPair(path, f"{public} {name}@test")


def ssh(key: KeyPair, user: str, port: int, command: str, *, host: str = "127.0.0.1",
        tty: bool = False, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    argv = ["ssh", "-i", str(key.private), "-p", str(port), *SSH_OPTS,
            *(["-tt"] if tty else []), f"{user}@{host}", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL if not tty else None,
                          input="" if tty else None)


def refused(proc: subprocess.CompletedProcess[str]) -> bool:
    """ssh's answer to a login the server did not accept."""
    return proc.returncode == 255 and "Permission denied" in proc.stderr


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=5):
            return True
    except ConnectionRefusedError:
        return False


def banner(sock: socket.socket, timeout: float = 10) -> bytes:
    """The first bytes the server sends (b"" when it closes the connection unanswered)."""
    sock.settimeout(timeout)
    return sock.recv(64)
