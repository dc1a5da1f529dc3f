"""File permissions of the AM's state, whatever the umask.

The state directory holds the database (every slice, user and key), the development
authority's private keys and the slivers' records: nobody but the AM's user may read it.
Files are created with explicit modes (`private_file`, `private_dir`: 0600/0700 regardless of
the process umask, which only ever removes bits and so cannot widen them, but a umask of 0777
would leave them unusable, hence the chmod after creation), and `check_state_dir` looks at the
directory at start-up: group- or world-readable or -writable is fixed (to owner-only, keeping
the execute bit others may need to traverse it to a sliver's files), with a warning; a
directory owned by another user is refused.
"""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("am.fileperms")

OPEN_TO_OTHERS = 0o066          # read or write for group or others (execute may stay)


class StateDirError(ValueError):
    """The state directory cannot be used safely (the message says why)."""


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) as 0700 directories; an existing one is left as is."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for made in missing:
        os.chmod(made, 0o700)
    return path


def private_file(path: Path) -> Path:
    """Make sure `path` exists and is 0600 (created empty if missing; an existing file that is
    open to others is narrowed)."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return path


def write_private(path: Path, data: bytes) -> Path:
    """Write `data` to `path` atomically as a 0600 file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path


def check_state_dir(path: Path) -> list[str]:
    """Create the state directory 0700 or check an existing one; returns the warnings for what
    was fixed, raises StateDirError for what cannot be."""
    path = Path(path)
    if not path.exists():
        private_dir(path)
        return []
    try:
        st = path.stat()
    except OSError as exc:
        raise StateDirError(f"state directory {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise StateDirError(f"state directory {path} is not a directory")
    if st.st_uid != os.geteuid():
        raise StateDirError(f"state directory {path} belongs to uid {st.st_uid}, not to this "
                            f"process's user (uid {os.geteuid()}): the AM's database and keys "
                            "must be its own")
    mode = stat.S_IMODE(st.st_mode)
    if not mode & OPEN_TO_OTHERS:
        return []
    narrowed = mode & ~OPEN_TO_OTHERS
    try:
        os.chmod(path, narrowed)
    except OSError as exc:
        raise StateDirError(f"state directory {path} is open to others ({mode:04o}) and cannot "
                            f"be fixed: {exc.strerror}") from None
    warning = (f"state directory {path} was open to others ({mode:04o}); changed to "
               f"{narrowed:04o}")
    log.warning("%s", warning)
    return [warning]


__all__ = ["StateDirError", "check_state_dir", "private_dir", "private_file", "write_private"]
