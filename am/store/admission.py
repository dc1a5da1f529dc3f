"""Per-component admission locks (PostgreSQL advisory locks; SQLite's write lock covers all)."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session


def admission_key(component_id: str) -> int:
    """The PostgreSQL advisory-lock key of one component's admission: 64 bits of a keyed hash
    of its URN (URNs compare case-insensitively). A collision only makes two components share
    a lock; it never breaks the lock order, which is by key."""
    digest = hashlib.blake2b(component_id.strip().lower().encode(), digest_size=8,
                             person=b"geniam-admission").digest()
    return int.from_bytes(digest, "big", signed=True)


_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
_LOCK_SHARED = text("SELECT pg_advisory_xact_lock_shared(:key)")
_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(:key)")
#: Taken before any component's key: shared by every Allocate, exclusive by one that must hold
#: every component at once (`AdmissionLock.acquire_all`), which is then one lock, not one per
#: component (a big site's components would overflow PostgreSQL's lock table).
_EVERY_COMPONENT_KEY = admission_key("geni-am:admission:every-component")


class AdmissionLock:
    """The components whose admission one write transaction has serialised.

    Admission reads live slivers and decides in Python; no constraint sees that two
    overlapping flowspaces, or a router's port and a flowspace on it, conflict. So Allocate
    holds a lock per component it places on while it reads that component's usage and
    writes its slivers: a second Allocate on the same component waits for the first to commit
    and then admits against its slivers. On PostgreSQL these are transaction-scoped advisory
    locks (`pg_advisory_xact_lock`), taken in key order so two Allocates never deadlock, and
    released by COMMIT or ROLLBACK. On SQLite the write transaction already holds the whole
    database (BEGIN IMMEDIATE), which covers every component: nothing more is taken."""

    def __init__(self, session: Session, *, whole_database: bool):
        self._session = session
        self.whole_database = whole_database
        self._held: set[int] = set()
        self._entered = False

    def covers(self, component_ids: Iterable[str]) -> bool:
        return self.whole_database or all(admission_key(c) in self._held for c in component_ids)

    def _enter(self, conn: Connection) -> None:
        """The shared every-component lock, before any component key (so `acquire_all`,
        which takes it exclusively, waits for every other admission and none waits for it)."""
        if not self._entered:
            conn.execute(_LOCK_SHARED, {"key": _EVERY_COMPONENT_KEY})
            self._entered = True

    def acquire_all(self) -> None:
        """Hold the admission of every component: one exclusive lock, as the transaction's
        first (the last resort of an Allocate whose placement keeps moving)."""
        if self.whole_database:
            return
        if self._entered:
            raise ValueError("acquire_all must be the transaction's first admission lock")
        self._session.connection().execute(_LOCK, {"key": _EVERY_COMPONENT_KEY})
        self._entered = True
        self.whole_database = True          # covers every component from here on

    def acquire(self, component_ids: Iterable[str]) -> None:
        """Wait for the locks of `component_ids`. Only as the transaction's first locks (or
        with keys above every key held): waiting in key order is what rules out deadlock."""
        if self.whole_database:
            return
        keys = sorted({admission_key(c) for c in component_ids} - self._held)
        if self._held and keys and keys[0] < max(self._held):
            raise ValueError("admission locks must be acquired in key order")
        conn = self._session.connection()
        self._enter(conn)
        for key in keys:
            conn.execute(_LOCK, {"key": key})
            self._held.add(key)

    def try_acquire(self, component_ids: Iterable[str]) -> bool:
        """Take the locks of `component_ids` that are free now, never waiting (so in any
        order); False if one is held by another transaction (those taken stay held)."""
        if self.whole_database:
            return True
        conn = self._session.connection()
        self._enter(conn)
        for key in sorted({admission_key(c) for c in component_ids} - self._held):
            if not conn.execute(_TRY_LOCK, {"key": key}).scalar():
                return False
            self._held.add(key)
        return True

