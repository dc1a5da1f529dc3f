"""Login accounts of a node sliver: lines in its guest's own /etc/passwd and /etc/group.

The guest has its own root filesystem, so its accounts never touch the host's /etc. A login's
guest uid (and its group's gid, the same number) is the lowest free one from FIRST_UID, kept
for the sliver's life even after `geni_update_users` drops the login, so what it left behind
is never handed to another user. On the host that uid is `guest_id_base + slot * 65536 + uid`:
unique to this sliver, unprivileged, and no host account's.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from drivers.base import DriverError, UserKeys

SHELL = "/bin/sh"
FIRST_UID = 1000
LAST_UID = 60000
# the image's own accounts and groups (drivers/vserver/images.py): never a login
SYSTEM_NAMES = frozenset({"root", "sshd", "nobody", "nogroup", "tty", "daemon", "bin", "sys"})
BASE_PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
               "sshd:x:100:65534:sshd privilege separation:/run/sshd:/usr/sbin/nologin\n"
               "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
BASE_GROUP = "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n"


def check_names(users: Sequence[UserKeys]) -> None:
    """DriverError naming the first login that is no valid account name or that two users
    share."""
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


def check_logins(users: Sequence[UserKeys]) -> None:
    """`check_names`, and DriverError for root or a system account of the guest's image."""
    check_names(users)
    for user in users:
        if user.login == "root":
            raise DriverError(f"user {user.urn}: login 'root' is refused (a login is an "
                              "ordinary account of the sliver; its root runs the services)")
        if user.login in SYSTEM_NAMES:
            raise DriverError(f"user {user.urn}: login {user.login!r} is a system account of "
                              "the sliver's image, so it cannot be a login")


def assign_uids(logins: Sequence[str], *, keep: Mapping[str, int]) -> dict[str, int]:
    """A guest uid per login: the one it has (`keep`), else the lowest free from FIRST_UID.
    Includes `keep`'s logins."""
    out = dict(keep)
    used = set(keep.values())
    uid = FIRST_UID
    for login in logins:
        if login in out:
            continue
        while uid in used:
            uid += 1
        if uid > LAST_UID:
            raise DriverError(f"no free login uid left in {FIRST_UID}..{LAST_UID}")
        out[login] = uid
        used.add(uid)
    return out


def passwd_and_group(uids: Mapping[str, int]) -> tuple[str, str]:
    """The guest's /etc/passwd and /etc/group: the image's system accounts plus every login
    that has a uid (a dropped login's files still show its name)."""
    users, groups = [], []
    for login, uid in sorted(uids.items(), key=lambda kv: kv[1]):
        users.append(f"{login}:x:{uid}:{uid}:GENI user:/home/{login}:{SHELL}\n")
        groups.append(f"{login}:x:{uid}:\n")
    return BASE_PASSWD + "".join(users), BASE_GROUP + "".join(groups)


__all__ = ["FIRST_UID", "SYSTEM_NAMES", "assign_uids", "check_logins", "check_names",
           "passwd_and_group"]
