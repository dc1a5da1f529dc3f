"""The fake substrate's observable state: a small SQLite file shared by every process.

A real substrate outlives the process that changed it: a worker provisions, the server reads
status, a restarted AM reconciles. The fake keeps what "exists" in SQLite under its `state_dir`
for the same reason (process memory would make cross-process tests lie). Counters per sliver
survive deletion so tests can assert that a sliver was never created twice.
"""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
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
    """Transactions over the fake substrate file; one short connection per operation."""

    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / "fake-substrate.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.executescript(SCHEMA)   # idempotent; executescript manages its own transaction
        finally:
            db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    # ---- reads ----------------------------------------------------------------------------------
    def get(self, handle: str) -> SliverRow | None:
        with self._tx() as db:
            row = db.execute("SELECT handle, sliver_urn, slice_urn, client_id, component_id, kind,"
                             " state, macs FROM slivers WHERE handle = ?", (handle,)).fetchone()
        return _row(row) if row else None

    def all(self) -> list[SliverRow]:
        with self._tx() as db:
            rows = db.execute("SELECT handle, sliver_urn, slice_urn, client_id, component_id, kind,"
                              " state, macs FROM slivers ORDER BY handle").fetchall()
        return [_row(r) for r in rows]

    def counters(self, sliver_urn: str) -> FakeCounters:
        with self._tx() as db:
            row = db.execute("SELECT created, provision_calls, actions, deletes FROM counters"
                             " WHERE sliver_urn = ?", (sliver_urn,)).fetchone()
        return FakeCounters(*row) if row else FakeCounters()

    # ---- writes ---------------------------------------------------------------------------------
    def provision(self, row: SliverRow) -> tuple[SliverRow, bool]:
        """Create the sliver unless it exists; returns (current row, created now)."""
        with self._tx() as db:
            self._bump(db, row.sliver_urn, "provision_calls")
            cur = db.execute("SELECT handle, sliver_urn, slice_urn, client_id, component_id, kind,"
                             " state, macs FROM slivers WHERE handle = ?", (row.handle,)).fetchone()
            if cur:
                return _row(cur), False
            db.execute("INSERT INTO slivers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (row.handle, row.sliver_urn, row.slice_urn, row.client_id, row.component_id,
                        row.kind, row.state, json.dumps(row.macs), time.time()))
            self._bump(db, row.sliver_urn, "created")
        return row, True

    def set_state(self, handle: str, state: str, sliver_urn: str | None) -> bool:
        with self._tx() as db:
            n = db.execute("UPDATE slivers SET state = ?, updated = ? WHERE handle = ?",
                           (state, time.time(), handle)).rowcount
            if n:
                self._bump(db, sliver_urn, "actions")
        return bool(n)

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
        db.execute("INSERT INTO counters (sliver_urn) VALUES (?) ON CONFLICT DO NOTHING",
                   (sliver_urn,))
        db.execute(f"UPDATE counters SET {column} = {column} + 1 WHERE sliver_urn = ?",
                   (sliver_urn,))


def _row(r: tuple) -> SliverRow:
    return SliverRow(handle=r[0], sliver_urn=r[1], slice_urn=r[2], client_id=r[3],
                     component_id=r[4], kind=r[5], state=r[6], macs=json.loads(r[7]))
