"""The driver's small on-host record of what it made, and per-sliver locks.

The AM's database is the source of truth for slivers; these JSON files only let the driver
recognise its own handiwork (`observed()` maps namespaces, veths, bridges and cgroups back to
sliver URNs) and carry a node's interface plan to a link provisioned later by another worker.
Each record is written atomically (temp file + rename). Locks are `flock`s on one file per
sliver, so they hold across worker processes and threads alike (each acquisition opens its own
file description) and vanish if a worker dies.
"""
from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class StateDir:
    def __init__(self, root: Path):
        self.root = root
        self.records = root / "slivers"
        self.locks = root / "locks"
        self.roots = root / "roots"
        self.held = root / "held"
        # root's alone: records, locks and the guests' layers (logins live inside the
        # guests and never traverse these)
        for d, mode in ((root, 0o700), (self.records, 0o700), (self.locks, 0o700),
                        (self.roots, 0o700), (self.held, 0o700)):
            d.mkdir(mode=mode, parents=True, exist_ok=True)
            if d.stat().st_mode & 0o7777 != mode:
                os.chmod(d, mode)

    # ---- records -------------------------------------------------------------------------
    def path(self, handle: str) -> Path:
        return self.records / f"{handle}.json"

    def read(self, handle: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.path(handle).read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            return None   # a torn file cannot happen (atomic rename); an edited one is ignored

    def write(self, handle: str, record: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.records, prefix=f".{handle}.")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(record, sort_keys=True))   # C encoder; dump() is pure Python
            os.replace(tmp, self.path(handle))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def remove(self, handle: str) -> None:
        self.path(handle).unlink(missing_ok=True)

    def all(self) -> dict[str, dict[str, Any]]:
        out = {}
        for p in self.records.glob("*.json"):
            rec = self.read(p.stem)
            if rec is not None:
                out[p.stem] = rec
        return out

    # ---- claims: numbers (guest id slots, SSH ports) held by slivers -------------------------
    # An index file per kind, so choosing a free number reads one file, not every record;
    # an entry whose sliver's record is gone is free. Callers hold a lock for the kind.
    def claims(self, kind: str, build: Callable[[], dict[int, str]]) -> dict[int, str]:
        """number -> handle of the live claims of `kind`; `build` makes the index from the
        records when there is none yet (a state directory from before it)."""
        try:
            index = {int(k): v for k, v in json.loads(self._claims(kind).read_text()).items()}
        except (FileNotFoundError, ValueError):
            index = build()
        return {n: h for n, h in index.items() if self.path(h).exists()}

    def set_claim(self, kind: str, index: dict[int, str], handle: str, number: int) -> None:
        """Record that `handle` holds `number` (and no other number of `kind`)."""
        index = {n: h for n, h in index.items() if h != handle}
        index[number] = handle
        tmp = self._claims(kind).with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({str(n): h for n, h in index.items()}))
        os.replace(tmp, self._claims(kind))

    def _claims(self, kind: str) -> Path:
        return self.root / f"{kind}.json"

    # ---- link ends held down (a stopped link) ----------------------------------------------
    # One empty file per end, so a node's convergence asks about its own ends only instead of
    # reading every record (which made a big topology quadratic).
    def hold(self, ends: Iterable[str], held: bool) -> None:
        for end in ends:
            if held:
                (self.held / end).touch(mode=0o600)
            else:
                (self.held / end).unlink(missing_ok=True)

    def held_down(self, ends: Iterable[str]) -> set[str]:
        return {e for e in ends if (self.held / e).exists()}

    def root_dir(self, handle: str) -> Path:
        return self.roots / handle

    # ---- locks -----------------------------------------------------------------------------
    @contextmanager
    def lock(self, handle: str) -> Iterator[None]:
        fd = os.open(self.locks / f"{handle}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @contextmanager
    def try_lock(self, handle: str) -> Iterator[bool]:
        """The sliver's lock if it is free now (True, held until the block ends), else False
        at once: someone is making, changing or removing that sliver at this moment."""
        fd = os.open(self.locks / f"{handle}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)


__all__ = ["StateDir"]
