"""Login accounts of a node sliver, kept out of the host's /etc.

Containers share the host's filesystem, so host accounts (useradd) would put every sliver's
users on the host and next to each other's. Instead a sliver has its own `passwd` and `group`
files (the host's entries plus its users) in `<root>/.geni/ssh/`, which each SSH session
bind-mounts over /etc/passwd and /etc/group in a private mount namespace of its own; the host's
files are never written.

A login's uid (and its group's gid, the same number) comes from `login_uid_base` upward, unique
among all slivers of this driver (the caller holds a global lock while choosing), so two slivers'
users never own each other's files on the shared filesystem. A login keeps its uid for the
sliver's life, even after `geni_update_users` drops it, so what it left behind is never handed
to another user.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from drivers.base import DriverError, UserKeys
from drivers.vserver.config import UID_SPAN

SHELL = "/bin/sh"


@dataclass(frozen=True)
class HostAccounts:
    """The host's /etc/passwd and /etc/group: copied into each sliver's files, never changed."""

    passwd: str
    group: str

    @classmethod
    def read(cls, etc: Path = Path("/etc")) -> HostAccounts:
        try:
            return cls((etc / "passwd").read_text(), (etc / "group").read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise DriverError(f"cannot read the host's {etc}/passwd or group: {exc}") from None

    @property
    def names(self) -> set[str]:
        return {f[0] for f in _rows(self.passwd)} | {f[0] for f in _rows(self.group)}

    @property
    def ids(self) -> set[int]:
        """Every uid and gid the host uses (a sliver login must take none of them)."""
        out: set[int] = set()
        for fields in _rows(self.passwd):
            out |= _int(fields, 2) | _int(fields, 3)
        for fields in _rows(self.group):
            out |= _int(fields, 2)
        return out


def check_names(users: Sequence[UserKeys]) -> None:
    """DriverError naming the first login that is no valid account name (it also names a
    directory under `<root>/.geni/users/`) or that two users share."""
    seen: dict[str, str] = {}
    for user in users:
        login = user.login
        problem = user.login_problem()
        if problem:
            raise DriverError(problem)
        if login in seen:
            raise DriverError(f"login {login!r} is claimed by two users ({seen[login]} and "
                              f"{user.urn}); one account cannot belong to both")
        seen[login] = user.urn


def check_logins(users: Sequence[UserKeys], host: HostAccounts) -> None:
    """`check_names`, and DriverError for root or a name the host's own accounts use."""
    check_names(users)
    taken = host.names
    for user in users:
        if user.login == "root":
            raise DriverError(f"user {user.urn}: login 'root' is refused (containers share "
                              "the host's kernel: root in a sliver would be root on the host)")
        if user.login in taken:
            raise DriverError(f"user {user.urn}: login {user.login!r} is an account or group "
                              "of the host itself, so it cannot be a sliver login here")


def assign_uids(handle: str, logins: Iterable[str], *, keep: Mapping[str, int],
                taken: set[int], base: int) -> dict[str, int]:
    """A uid per login: the one it has (`keep`), else base + hash(handle, login), probing
    upward past `taken` (other slivers' uids and the host's ids). Includes `keep`'s logins."""
    out = dict(keep)
    used = set(taken) | set(keep.values())
    for login in logins:
        if login in out:
            continue
        n = int.from_bytes(hashlib.sha256(f"{handle}\0{login}".encode()).digest()[:8], "big")
        for step in range(UID_SPAN):
            uid = base + (n + step) % UID_SPAN
            if uid not in used:
                break
        else:
            raise DriverError(f"no free login uid left in {base}..{base + UID_SPAN - 1}")
        out[login] = uid
        used.add(uid)
    return out


def write_accounts(ssh_dir: Path, root: Path, uids: Mapping[str, int], logins: Sequence[str],
                   host: HostAccounts) -> None:
    """`passwd` and `group` for the sliver (host entries + every login that has a uid, so a
    dropped login's files still show its name) and a home `<root>/home/<login>` per login."""
    homes = root / "home"
    homes.mkdir(mode=0o755, exist_ok=True)
    users, groups = [], []
    for login, uid in sorted(uids.items(), key=lambda kv: kv[1]):
        users.append(f"{login}:*:{uid}:{uid}:GENI user:{homes / login}:{SHELL}\n")
        groups.append(f"{login}:x:{uid}:\n")
    for login in logins:
        home = homes / login
        home.mkdir(mode=0o700, exist_ok=True)
        os.chown(home, uids[login], uids[login])
    _atomic(ssh_dir / "passwd", _ending(host.passwd) + "".join(users), 0o644)
    _atomic(ssh_dir / "group", _ending(host.group) + "".join(groups), 0o644)


def _rows(text: str) -> list[list[str]]:
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def _int(fields: list[str], idx: int) -> set[int]:
    try:
        return {int(fields[idx])}
    except (IndexError, ValueError):
        return set()


def _ending(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


def _atomic(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


__all__ = ["HostAccounts", "assign_uids", "check_logins", "check_names",
           "write_accounts"]
