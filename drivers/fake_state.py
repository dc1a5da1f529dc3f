"""The fake substrate's observable state: a small SQLite file shared by every process.

A real substrate outlives the process that changed it: a worker provisions, the server reads
status, a restarted AM reconciles. The fake keeps what "exists" in SQLite under its `state_dir`
for the same reason (process memory would make cross-process tests lie). Counters per sliver
survive deletion so tests can assert that a sliver was never created twice.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS slivers (
    handle        TEXT PRIMARY KEY,
    sliver_urn    TEXT,              -- NULL: an orphan nobody owns
    slice_urn     TEXT,
    client_id     TEXT,
    component_id  TEXT NOT NULL,
    kind          TEXT NOT NULL,
    state         TEXT NOT NULL,
    macs          TEXT NOT NULL DEFAULT '{}',
    updated       REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    sliver_urn       TEXT PRIMARY KEY,
    created          INTEGER NOT NULL DEFAULT 0,
    provision_calls  INTEGER NOT NULL DEFAULT 0,
    actions          INTEGER NOT NULL DEFAULT 0,
    deletes          INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass(frozen=True)
class FakeCounters:
    """How often the fake substrate really did things for one sliver."""

    created: int = 0           # times the sliver was actually created (idempotent provision: 1)
    provision_calls: int = 0   # provision() calls, including the no-op repeats
    actions: int = 0           # perform() calls that changed or kept the state
    deletes: int = 0           # delete() calls that removed something


@dataclass(frozen=True)
class SliverRow:
    handle: str
    sliver_urn: str | None
    slice_urn: str | None
    client_id: str | None
    component_id: str
    kind: str
    state: str
    macs: dict[str, str]


class FakeStateStore:
    """Transactions over the fake substrate file.

    Cheap enough not to dominate a job (the provision benchmark runs ~1,000 of these a
    second): one connection per thread, reused (never across a fork: a child opens its own),
    WAL with `synchronous=NORMAL` (a commit is durable against a killed process, which is what
    the crash tests inflict, though not against power loss: this is a fake) and one
    transaction per substrate operation."""

    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / "fake-substrate.sqlite"
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))   # SQLite's WAL files follow
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[tuple[int, sqlite3.Connection, int]] = []
        # Several processes may open one new state directory at once (AM processes starting
        # together): switching a fresh file to WAL takes SQLite's exclusive lock without waiting
        # on the busy timeout ("database is locked"), so set-up queues on the writers' flock.
        lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            db = self._connect()
            try:
                db.execute("PRAGMA journal_mode=WAL")   # persistent: set once per file
                db.executescript(SCHEMA)   # idempotent; executescript manages its transaction
            finally:
                db.close()
        finally:
            os.close(lock_fd)   # closing the descriptor releases the flock

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                             check_same_thread=False)
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _conn(self) -> tuple[sqlite3.Connection, int]:
        """This thread's connection and writer-lock descriptor (flock is per open file, so
        each thread has its own and threads exclude each other too)."""
        pid = os.getpid()
        cached = getattr(self._local, "conn", None)
        if cached is not None and cached[0] == pid:
            return cached[1], cached[2]
        # a connection inherited through fork is abandoned, not closed: closing it could
        # checkpoint or remove the WAL under the parent's feet
        db = self._connect()
        lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._local.conn = (pid, db, lock_fd)
        with self._lock:
            self._open = [o for o in self._open if o[0] == pid] + [(pid, db, lock_fd)]
        return db, lock_fd

    def close(self) -> None:
        """Close this process's connections (the driver's close)."""
        pid = os.getpid()
        with self._lock:
            mine, self._open = [o for o in self._open if o[0] == pid], []
        for _, db, lock_fd in mine:
            with contextlib.suppress(sqlite3.Error):
                db.close()
            with contextlib.suppress(OSError):
                os.close(lock_fd)
        self._local = threading.local()

    @contextmanager
    def _tx(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """A transaction; writers first queue on an flock of `<file>.lock`. SQLite's own busy
        handler polls with sleeps of 1 to 100 ms, which several worker processes writing at
        once turn into most of a job's time; the kernel lock wakes the next writer at once."""
        db, lock_fd = self._conn()
        if write:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
        try:
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            if write:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)

    # ---- reads ----------------------------------------------------------------------------------
    def get(self, handle: str) -> SliverRow | None:
        with self._tx(write=False) as db:
            row = db.execute(_SELECT + " WHERE handle = ?", (handle,)).fetchone()
        return _row(row) if row else None

    def all(self) -> list[SliverRow]:
        with self._tx(write=False) as db:
            rows = db.execute(_SELECT + " ORDER BY handle").fetchall()
        return [_row(r) for r in rows]

    def counters(self, sliver_urn: str) -> FakeCounters:
        with self._tx(write=False) as db:
            row = db.execute("SELECT created, provision_calls, actions, deletes FROM counters"
                             " WHERE sliver_urn = ?", (sliver_urn,)).fetchone()
        return FakeCounters(*row) if row else FakeCounters()

    # ---- writes ---------------------------------------------------------------------------------
    def provision(self, row: SliverRow) -> tuple[SliverRow, bool]:
        """Create the sliver unless it exists; returns (current row, created now)."""
        with self._tx() as db:
            self._bump(db, row.sliver_urn, "provision_calls")
            cur = db.execute(_SELECT + " WHERE handle = ?", (row.handle,)).fetchone()
            if cur:
                return _row(cur), False
            db.execute("INSERT INTO slivers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (row.handle, row.sliver_urn, row.slice_urn, row.client_id, row.component_id,
                        row.kind, row.state, json.dumps(row.macs), time.time()))
            self._bump(db, row.sliver_urn, "created")
        return row, True

    def change_state(self, handle: str, sliver_urn: str | None,
                     decide: Callable[[str], str]) -> str | None:
        """Read the sliver's state and set `decide(state)` in one transaction (an action);
        None if the sliver does not exist. An exception from `decide` changes nothing."""
        with self._tx() as db:
            cur = db.execute("SELECT state FROM slivers WHERE handle = ?", (handle,)).fetchone()
            if cur is None:
                return None
            new = decide(cur[0])
            db.execute("UPDATE slivers SET state = ?, updated = ? WHERE handle = ?",
                       (new, time.time(), handle))
            self._bump(db, sliver_urn, "actions")
        return new

    def reconfigure(self, handle: str, sliver_urn: str | None,
                    macs: dict[str, str]) -> str | None:
        """An in-place update: new MACs, same state and creation time (counted as an
        action); the state, or None if the sliver does not exist."""
        with self._tx() as db:
            cur = db.execute("SELECT state FROM slivers WHERE handle = ?", (handle,)).fetchone()
            if cur is None:
                return None
            db.execute("UPDATE slivers SET macs = ?, updated = ? WHERE handle = ?",
                       (json.dumps(macs), time.time(), handle))
            self._bump(db, sliver_urn, "actions")
        return cur[0]

    def set_state(self, handle: str, state: str, sliver_urn: str | None) -> bool:
        return self.change_state(handle, sliver_urn, lambda _old: state) is not None

    def remove(self, handle: str, sliver_urn: str | None) -> bool:
        with self._tx() as db:
            n = db.execute("DELETE FROM slivers WHERE handle = ?", (handle,)).rowcount
            if n:
                self._bump(db, sliver_urn, "deletes")
        return bool(n)

    @staticmethod
    def _bump(db: sqlite3.Connection, sliver_urn: str | None, column: str) -> None:
        if sliver_urn is None:
            return
        db.execute(f"INSERT INTO counters (sliver_urn, {column}) VALUES (?, 1) "
                   f"ON CONFLICT (sliver_urn) DO UPDATE SET {column} = {column} + 1",
                   (sliver_urn,))


_SELECT = ("SELECT handle, sliver_urn, slice_urn, client_id, component_id, kind, state, macs"
           " FROM slivers")


def _row(r: tuple) -> SliverRow:
    return SliverRow(handle=r[0], sliver_urn=r[1], slice_urn=r[2], client_id=r[3],
                     component_id=r[4], kind=r[5], state=r[6], macs=json.loads(r[7]))
