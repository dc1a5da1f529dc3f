"""A node sliver's sshd: its configuration and host key, as files inside the guest.

Each connection to the sliver's SSH port becomes one `sshd -i` (inetd mode) started by the
guest's init, inside the guest, as the guest's root (an unprivileged host uid): so rewriting
these files is all `geni_update_users` needs. Keys are `/etc/ssh/authorized_keys/<login>`
(owned by the guest's root, so sshd's StrictModes holds and a login cannot change its own).
The host key is made once per sliver and kept on the host (root only), so its fingerprint
stays across restarts.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

CONFIG = "/etc/ssh/sshd_config_geni"
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
KEYS_DIR = "/etc/ssh/authorized_keys"
LOG = "/var/log/geni/sshd.log"


def ensure_host_key(path: Path) -> tuple[bytes, bytes]:
    """The sliver's ed25519 host key (private, public), made once and kept at `path`."""
    if not (path.exists() and path.stat().st_size > 0):
        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption())
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(private)
        os.replace(tmp, path)
    private = path.read_bytes()
    key = serialization.load_ssh_private_key(private, password=None)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH)
    return private, public + b" sliver-host-key\n"


def config_text(logins: Sequence[str]) -> str:
    return "\n".join([
        "# Written by geni-am's vserver driver at provision and geni_update_users;",
        "# each connection runs a fresh `sshd -i` with it (docs/vserver.md).",
        f"HostKey {HOST_KEY}",
        "UsePAM no",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin no",
        f"AllowUsers {' '.join(logins)}",
        f"AuthorizedKeysFile {KEYS_DIR}/%u",
        "LoginGraceTime 30",
        "PrintMotd no",
        "PrintLastLog no",
        "UseDNS no",
        "X11Forwarding no",
        "PermitUserEnvironment no",
        "PidFile none",
        "Subsystem sftp internal-sftp",
        "",
    ])


def session_argv(sshd_path: str) -> list[str]:
    """What one session runs in the guest: sshd on the connection (stdin/stdout)."""
    return [sshd_path, "-i", "-e", "-f", CONFIG]


__all__ = ["CONFIG", "HOST_KEY", "KEYS_DIR", "LOG", "config_text", "ensure_host_key",
           "session_argv"]
