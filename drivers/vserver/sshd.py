"""A node sliver's sshd: its files in `<root>/.geni/ssh/` and the command one session runs.

Every connection gets a fresh `sshd -i` (inetd mode) from the sliver's gate (`sshgate.py`), so
rewriting these files is all `geni_update_users` needs. A session runs inside the sliver (its
cgroups, network namespace and root, through `services.sliver_argv`) and in a private mount
namespace of its own, where the sliver's passwd/group hide the host's and the login records
(wtmp, btmp, lastlog, utmp) are the sliver's files, so the host's accounting never sees a
sliver's uids. The namespace dies with the session: no mount is ever visible on the host.

Keys come from `<root>/.geni/users/<login>/authorized_keys` through `AuthorizedKeysCommand`
run as root, not `AuthorizedKeysFile`: sshd opens that file as the user, who may not be able to
traverse the state directory, and insists on ownership rules the driver's files do not follow.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

PRIVSEP_DIR = Path("/run/sshd")       # sshd refuses to start without it (Debian makes it at boot)
# host file -> the sliver's file bound over it in a session (only where the host has one)
ACCOUNTING = {"/var/log/wtmp": "wtmp", "/var/log/btmp": "btmp", "/var/log/lastlog": "lastlog",
              "/run/utmp": "utmp"}
SESSION_SCRIPT = """\
d=$1 sshd=$2
mount --bind "$d/passwd" /etc/passwd && mount --bind "$d/group" /etc/group || exit 1
for f in {files}; do
  if [ -e "$f" ]; then mount --bind "$d/acct/${{f##*/}}" "$f" || exit 1; fi
done
exec "$sshd" -i -e -f "$d/sshd_config"
""".format(files=" ".join(ACCOUNTING))


@dataclass(frozen=True)
class SshFiles:
    dir: Path

    @classmethod
    def of(cls, root: Path) -> SshFiles:
        return cls(root / ".geni" / "ssh")

    @property
    def config(self) -> Path:
        return self.dir / "sshd_config"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def log(self) -> Path:
        return self.dir / "sshd.log"

    @property
    def acct(self) -> Path:
        return self.dir / "acct"


def prepare(files: SshFiles, root: Path, logins: Sequence[str]) -> None:
    """Write the sliver's sshd files (the host key only once) for these logins."""
    files.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(files.dir, 0o700)             # host key, logs: root's only
    ensure_host_key(files.host_key)
    files.acct.mkdir(mode=0o755, exist_ok=True)
    for name in ACCOUNTING.values():
        path = files.acct / name
        if not path.exists():
            path.touch(mode=0o600 if name == "btmp" else 0o644)
    tmp = files.config.with_name(".sshd_config.tmp")
    tmp.write_text(config_text(files, root, logins))
    os.replace(tmp, files.config)
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)


def ensure_host_key(path: Path) -> None:
    """An ed25519 host key, made once per sliver (so its fingerprint stays across sessions)."""
    if path.exists() and path.stat().st_size > 0:
        return
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    os.replace(tmp, path)
    path.with_name(f"{path.name}.pub").write_bytes(public + b" sliver-host-key\n")


def config_text(files: SshFiles, root: Path, logins: Sequence[str]) -> str:
    keys = root / ".geni" / "users"
    return "\n".join([
        "# Written by geni-am's vserver driver at provision and geni_update_users;",
        "# each connection runs a fresh `sshd -i` with it (docs/vserver.md).",
        f"HostKey {files.host_key}",
        "UsePAM no",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin no",
        f"AllowUsers {' '.join(logins)}",
        "AuthorizedKeysFile none",
        f"AuthorizedKeysCommand /bin/cat {keys}/%u/authorized_keys",
        "AuthorizedKeysCommandUser root",
        "LoginGraceTime 30",
        "PrintMotd no",
        "PrintLastLog no",
        "UseDNS no",
        "X11Forwarding no",
        "PermitUserEnvironment no",
        f"SetEnv SLIVER_ROOT={root}",
        "Subsystem sftp internal-sftp",
        "",
    ])


def session_argv(files: SshFiles, sshd_path: str) -> list[str]:
    """What one session runs inside the sliver (wrap it in `services.sliver_argv`): sshd on the
    connection (stdin/stdout), in a private mount namespace with the sliver's accounts."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", SESSION_SCRIPT,
            "sshd-session", str(files.dir), sshd_path]


__all__ = ["ACCOUNTING", "SshFiles", "config_text", "ensure_host_key", "prepare", "session_argv"]
