"""`Store`: sessions, the one state-writing function, reservations, leases and the audit log.

Request handlers and jobs use `read()` / `write()` sessions and the helpers here; they never
assign a sliver's states themselves (`transition` does, through `am.states`), never compare
expiry times themselves (`live_clause` does), and never touch the audit log except through
`audit` (there is deliberately no method that updates or deletes an audit entry).
"""
from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from am import states
from am.states import Alloc, Event, JobState, State
from am.store.codec import spec_from_dict
from am.store.database import WRITE_OPTION, make_engine
from am.store.models import (
    AuditEntry,
    Capacity,
    Claim,
    Hold,
    Job,
    Reservation,
    Slice,
    Sliver,
    SliverLease,
    UsageGeneration,
    UserKey,
)
from am.store.types import utcnow
from drivers.base import Component, SliverSpec, Usage, UserKeys


class StoreError(Exception):
    """Something in the store failed in a way the caller can explain."""


class ReservationConflict(StoreError):
    """A reservation or claim lost to a concurrent (or earlier) one; nothing was written."""

    def __init__(self, component_id: str, what: str, kind: str):
        self.component_id, self.what, self.kind = component_id, what, kind   # kind: capacity|claim
        super().__init__(f"{what} on {component_id} was taken by a concurrent request")


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

    def _enter(self, conn) -> None:
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


class WindowConflict(ReservationConflict):
    """A reservation that would overlap another's window on the same component; `at` is when
    the other window starts (the latest time this one could end instead)."""

    def __init__(self, component_id: str, what: str, kind: str, starts: datetime,
                 ends: datetime, at: datetime):
        super().__init__(component_id, what, kind)
        self.starts, self.ends, self.at = starts, ends, at
        self.args = (f"{what} on {component_id} is reserved from {_iso(starts)} to "
                     f"{_iso(ends)} by another reservation",)

    def __str__(self) -> str:
        return self.args[0]


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def hold_key(component_id: str, token: str) -> int:
    """The `holds.key` of a token on a component: 63 bits of a keyed hash (a collision only
    makes two tokens conflict, never lets two holders share one)."""
    digest = hashlib.blake2b(f"{component_id.strip().lower()}\0{token}".encode(), digest_size=8,
                             person=b"geniam-holds").digest()
    return int.from_bytes(digest, "big", signed=True)


#: The hold every node sliver has on its component: shared, or exclusive.
USE_TOKEN = "use"


def peak(intervals: Iterable[tuple[datetime, datetime, float]], start: datetime,
         end: datetime, extra: float = 0.0, limit: float | None = None
         ) -> tuple[float, datetime | None, tuple[datetime, datetime] | None]:
    """The most held at once in [start, end) by `intervals` (begin, end, amount), and (when
    `limit` is given) the first time the held amount plus `extra` exceeds it and the interval
    that tipped it over. Half-open: an interval ending when another begins never overlaps it."""
    events: list[tuple[datetime, int, float, tuple[datetime, datetime]]] = []
    for b, e, amount in intervals:
        b, e = max(b, start), min(e, end)
        if b < e and amount:
            events.append((b, 1, amount, (b, e)))
            events.append((e, 0, -amount, (b, e)))
    events.sort(key=lambda ev: (ev[0], ev[1]))     # ends before begins at the same instant
    held = top = 0.0
    first: datetime | None = None
    culprit = None
    for t, _, amount, iv in events:
        held += amount
        top = max(top, held)
        if first is None and limit is not None and held + extra > limit + 1e-6:
            first, culprit = t, iv
    return top, first, culprit


@dataclass(frozen=True)
class AuditRecord:
    ts: datetime
    caller_urn: str
    tool_urn: str | None
    method: str
    target: str
    outcome: int
    message: str
    duration_ms: float


# session.info flag: this write transaction changed what the advertisement derives from
USAGE_CHANGED = "geniam_usage_changed"


def mark_usage_changed(session: Session) -> None:
    """Have `Store.write` bump the usage generation when this transaction commits."""
    session.info[USAGE_CHANGED] = True


_GENERATION_Q = select(UsageGeneration.generation).where(UsageGeneration.id == 1)


def _fresh_generation() -> int:
    """Start value for a re-created counter row: microseconds since the epoch, far above any
    generation a cache may hold from before the row disappeared (a TRUNCATE in tests)."""
    return time.time_ns() // 1000


def slice_key(urn: str) -> str:
    """Slice URNs match case-insensitively (authority and name are case-insensitive in GENI)."""
    return urn.strip().lower()


class Store:
    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(**{WRITE_OPTION: True}),
                                   expire_on_commit=False)
        # decoded SliverSpec per (sliver URN, row version): an Update may change a sliver's
        # spec, and every write of the row bumps its version; see usage()
        self._specs: dict[tuple[str, int], SliverSpec] = {}

    # ---- lifecycle ---------------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the schema to the newest revision (alembic upgrade head)."""
        from am.store.migrate import upgrade
        upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only look; objects stay readable (detached) after the block."""
        with self._read() as session:
            yield session

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises. A
        transaction that changed usage (`mark_usage_changed`) bumps the usage generation as its
        last statement, so the counter row is the last lock it takes (no lock-order cycles)."""
        with self._write() as session, session.begin():
            yield session
            if session.info.pop(USAGE_CHANGED, False):
                session.flush()
                self._bump_generation(session)

    # ---- the usage generation ----------------------------------------------------------
    def _bump_generation(self, session: Session) -> None:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as upsert
        else:
            from sqlalchemy.dialects.sqlite import insert as upsert
        stmt = upsert(UsageGeneration).values(id=1, generation=_fresh_generation())
        session.execute(stmt.on_conflict_do_update(
            index_elements=[UsageGeneration.id],
            set_={"generation": UsageGeneration.generation + 1}))

    def current_generation(self) -> int | None:
        """`usage_generation` on a bare pooled connection, without an ORM session: the whole
        cost of validating a cached advertisement."""
        with self.engine.connect() as conn:
            return conn.execute(_GENERATION_Q).scalar()

    @staticmethod
    def usage_generation(session: Session) -> int | None:
        """The current usage generation (one primary-key read), None if the row is missing.
        Read it *before* the data it validates: a later statement can only see newer data."""
        return session.scalar(_GENERATION_Q)

    # ---- the state machine's only writer -----------------------------------------------
    def transition(self, session: Session, sliver: Sliver, event: Event,
                   target: State | None = None, *, error: str | None = None,
                   flush: bool = True) -> State:
        """Move `sliver` by `event` as the table in am.states allows, or raise
        IllegalTransition (a GeniError) and change nothing. `flush=False` leaves the UPDATE to
        the caller's next flush (a request moving many slivers writes them together)."""
        current = states.as_state(sliver.allocation_state, sliver.operational_state)
        new = states.next_state(current, event, target, subject=f"sliver {sliver.urn}")
        if (current[0] is Alloc.UNALLOCATED) != (new[0] is Alloc.UNALLOCATED):
            mark_usage_changed(session)   # the set of live slivers (usage) changes
        sliver.allocation_state = new[0].value
        sliver.operational_state = new[1].value if new[1] is not None else None
        if error is not None:
            sliver.error = error
        if flush:
            session.flush()
        return new

    def transition_many(self, session: Session, rows: Sequence[Sliver], event: Event) -> None:
        """`transition` by `event` for many loaded (and locked) slivers at once: every move is
        checked by the state machine first (IllegalTransition for the first refused, nothing
        written), then one UPDATE per chunk of slivers sharing a (from, to) pair of states
        instead of one per sliver. The loaded objects are kept in step with what was written.
        A Delete of 10,000 slivers is then a handful of statements."""
        groups: dict[tuple[State, State], list[Sliver]] = {}
        for row in rows:
            current = states.as_state(row.allocation_state, row.operational_state)
            new = states.next_state(current, event, None, subject=f"sliver {row.urn}")
            groups.setdefault((current, new), []).append(row)
        if any((old[0] is Alloc.UNALLOCATED) != (new[0] is Alloc.UNALLOCATED)
               for old, new in groups):
            mark_usage_changed(session)
        session.flush()   # the caller's pending changes first, in the usual order
        table, now = Sliver.__table__, utcnow()
        for (old, new), members in groups.items():
            op_was = (table.c.operational_state.is_(None) if old[1] is None
                      else table.c.operational_state == old[1].value)
            op_new = new[1].value if new[1] is not None else None
            for chunk in _chunks(members, _CHUNK):
                done = session.connection().execute(
                    update(table)
                    .where(table.c.id.in_([r.id for r in chunk]),
                           table.c.allocation_state == old[0].value, op_was)
                    .values(allocation_state=new[0].value, operational_state=op_new,
                            version=table.c.version + 1, updated=now)).rowcount
                if done != len(chunk):
                    raise StoreError(f"{len(chunk) - done} sliver(s) changed under a locked "
                                     f"{event.value}")
            for row in members:
                set_committed_value(row, "allocation_state", new[0].value)
                set_committed_value(row, "operational_state", op_new)
                set_committed_value(row, "version", row.version + 1)
                set_committed_value(row, "updated", now)

    def transition_if(self, session: Session, sliver_id: int, expected: State, event: Event,
                      target: State | None = None, *, error: str | None = None,
                      values: Mapping[str, object] | None = None) -> State | None:
        """`transition` for a sliver the caller has not loaded: one conditional UPDATE that
        moves it by `event` only if it is still in `expected` (the state the caller read under
        its lease), together with the column `values` given. Returns the new state, or None
        (nothing changed) when the row has moved on meanwhile: the caller then loads it and
        decides with `transition`. Illegal moves raise IllegalTransition, as `transition` does.

        This is the job runner's hot path: no ORM load, flush or identity map, and the
        compare-and-set on the state is also the lock (PostgreSQL re-checks the WHERE after
        waiting for a concurrent writer of the row)."""
        if expected[1] is None:
            return None
        new = states.next_state(expected, event, target, subject=f"sliver {sliver_id}")
        if (expected[0] is Alloc.UNALLOCATED) != (new[0] is Alloc.UNALLOCATED):
            mark_usage_changed(session)
        params: dict[str, object] = {
            "sliver": sliver_id, "from_alloc": expected[0].value, "from_op": expected[1].value,
            "allocation_state": new[0].value,
            "operational_state": new[1].value if new[1] is not None else None,
            **({"error": error} if error is not None else {}), **(values or {})}
        keys = tuple(sorted(k for k in params if k in _SETTABLE))
        stmt = _CAS_SLIVER.get(keys)
        if stmt is None:
            unknown = set(values or ()) - _SETTABLE
            if unknown:
                raise ValueError(f"transition_if cannot set {sorted(unknown)}")
            table = Sliver.__table__
            stmt = (update(table)
                    .where(table.c.id == bindparam("sliver"),
                           table.c.allocation_state == bindparam("from_alloc"),
                           table.c.operational_state == bindparam("from_op"))
                    .values({**{k: bindparam(k) for k in keys},
                             "version": table.c.version + 1, "updated": bindparam("now")}))
            _CAS_SLIVER[keys] = stmt
        params["now"] = utcnow()
        if session.connection().execute(stmt, params).rowcount != 1:
            return None
        return new

    # ---- queries -----------------------------------------------------------------------
    @staticmethod
    def live_clause(now: datetime) -> ColumnElement[bool]:
        """THE definition of a live sliver for requests: allocated or provisioned and not past
        its expiry. An expired sliver the reaper has not reached yet is gone to every caller."""
        return and_(Sliver.allocation_state != Alloc.UNALLOCATED.value, Sliver.expires > now)

    def find_slice(self, session: Session, urn: str, *, for_update: bool = False) -> Slice | None:
        """The live slice record for `urn` (case-insensitive). `for_update` locks it so the
        reaper cannot retire it under a concurrent writer."""
        query = select(Slice).where(Slice.urn_key == slice_key(urn), Slice.incarnation == 0)
        if for_update:
            query = query.with_for_update()
        return session.scalars(query).first()

    def get_or_create_slice(self, session: Session, urn: str, owner_urn: str) -> Slice:
        found = self.find_slice(session, urn, for_update=True)
        if found is not None:
            return found
        try:
            with session.begin_nested():
                new = Slice(urn=urn, urn_key=slice_key(urn), owner_urn=owner_urn, incarnation=0)
                session.add(new)
                session.flush()
            return new
        except IntegrityError:      # a concurrent Allocate created it first
            found = self.find_slice(session, urn, for_update=True)
            if found is None:
                raise
            return found

    def live_slivers(self, session: Session, now: datetime, *, slice_id: int | None = None,
                     urns: Sequence[str] | None = None, for_update: bool = False) -> list[Sliver]:
        query = select(Sliver).where(self.live_clause(now))
        if slice_id is not None:
            query = query.where(Sliver.slice_id == slice_id)
        if urns is not None:
            query = query.where(Sliver.urn.in_(list(urns)))
        if for_update:
            query = query.with_for_update()
        return list(session.scalars(query.order_by(Sliver.id)))

    def slivers_by_urn(self, session: Session, urns: Sequence[str]) -> list[Sliver]:
        """Slivers with these URNs in any state (for URN resolution, not for acting on)."""
        return list(session.scalars(select(Sliver).where(Sliver.urn.in_(list(urns)))))

    # ---- capacity, reservations, claims ------------------------------------------------
    def sync_capacity(self, components: Iterable[Component]) -> list[str]:
        """Record each component's capacities (keeping what is used). Returns warnings for
        resources whose new capacity is below what live reservations already use (the
        capacity is kept at the used amount until those slivers go).

        Several processes starting at once on a new database may insert the same rows: the
        loser of that race rolls back and syncs again against the winner's rows."""
        components = list(components)
        for attempt in range(3):
            try:
                return self._sync_capacity_once(components)
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _sync_capacity_once(self, components: list[Component]) -> list[str]:
        warnings: list[str] = []
        with self.write() as session:
            existing = {(c.component_id, c.resource): c for c in session.scalars(select(Capacity))}
            for comp in components:
                for resource, amount in comp.capacity.items():
                    row = existing.get((comp.component_id, resource))
                    if row is None:
                        session.add(Capacity(component_id=comp.component_id, resource=resource,
                                             capacity=float(amount), used=0.0))
                        mark_usage_changed(session)
                        continue
                    if float(amount) < row.used:
                        warnings.append(f"{comp.component_id} {resource}: capacity {amount} "
                                        f"is below the {row.used} already reserved")
                    kept = max(float(amount), row.used)
                    if row.capacity != kept:
                        row.capacity = kept
                        mark_usage_changed(session)
        return warnings

    def admission_lock(self, session: Session) -> AdmissionLock:
        """Per-component admission locks for this write transaction (see `AdmissionLock`)."""
        return AdmissionLock(session, whole_database=self.dialect != "postgresql")

    def reserve(self, session: Session, sliver: Sliver, demand: Mapping[str, float],
                claims: Iterable[str], *, now: datetime | None = None) -> None:
        """Reserve `demand` on the sliver's component and take its claims, or raise
        ReservationConflict (the caller's transaction must then roll back). Over time too:
        from now (or its window's start) to its expiry, nothing may overlap a reservation
        window it conflicts with (`WindowConflict`). A `waiting` sliver (advance reservation)
        holds its demand and claims only in its window."""
        comp = sliver.component_id
        mark_usage_changed(session)
        now = now or utcnow()
        start = sliver.starts if sliver.waiting and sliver.starts else now
        holds = self._holds_of(sliver, claims)
        if sliver.waiting:
            self._note_waiting(session)
        if self._windows_matter(session, sliver):
            self._check_windows(session, sliver, demand, holds, start, sliver.expires)
        for resource, amount in sorted(demand.items()):
            if amount <= 0:
                continue
            if sliver.waiting:      # held in its window only: not in what is used now
                session.add(Reservation(sliver_id=sliver.id, component_id=comp,
                                        resource=resource, amount=float(amount)))
                continue
            try:
                with session.begin_nested():
                    result = session.execute(
                        update(Capacity)
                        .where(Capacity.component_id == comp, Capacity.resource == resource)
                        .values(used=Capacity.used + float(amount)))
            except IntegrityError:
                raise ReservationConflict(comp, f"{resource} capacity", "capacity") from None
            if result.rowcount == 0:
                raise StoreError(f"component {comp} has no recorded {resource!r} capacity "
                                 "(inventory not synchronised)")
            session.add(Reservation(sliver_id=sliver.id, component_id=comp, resource=resource,
                                    amount=float(amount)))
        if not sliver.waiting:
            for token in sorted(set(claims)):
                try:
                    with session.begin_nested():
                        session.add(Claim(component_id=comp, token=token, sliver_id=sliver.id))
                        session.flush()
                except IntegrityError:
                    raise ReservationConflict(comp, f"claim {token!r}", "claim") from None
        try:
            with session.begin_nested():
                for token, shared in holds:
                    session.add(Hold(sliver_id=sliver.id, component_id=comp, token=token,
                                     key=hold_key(comp, token), shared=shared, starts=start,
                                     ends=sliver.expires))
                session.flush()
        except IntegrityError:     # PostgreSQL's exclusion constraint: a racing window
            raise ReservationConflict(comp, "a reservation window", "claim") from None
        session.flush()

    @staticmethod
    def _holds_of(sliver: Sliver, claims: Iterable[str]) -> list[tuple[str, bool]]:
        """(token, shared) the sliver holds on its component over time: its claims, and a
        node's use of its component (exclusive or shared)."""
        holds = [(t, False) for t in sorted(set(claims))]
        if sliver.kind == "node":
            holds.append((USE_TOKEN, not bool((sliver.spec or {}).get("exclusive"))))
        return holds

    _WAITING_KEY = "geniam_any_waiting"

    @classmethod
    def _note_waiting(cls, session: Session) -> None:
        """This transaction now holds an advance reservation (see `_windows_matter`)."""
        session.info[cls._WAITING_KEY] = (session.get_transaction(), True)

    @classmethod
    def _windows_matter(cls, session: Session, sliver: Sliver) -> bool:
        """Whether `_check_windows` can find anything for this sliver. A live sliver can only
        run into advance reservations (what live slivers hold now is settled by capacity and
        claims), so with none in the database, its window checks are skipped: one query per
        transaction instead of several per sliver (Provision of a 1,000-sliver slice)."""
        if sliver.waiting:
            return True
        txn = session.get_transaction()
        cached = session.info.get(cls._WAITING_KEY)
        if cached is not None and cached[0] is txn:
            return cached[1]
        any_waiting = session.scalar(
            select(Sliver.id).where(Sliver.waiting.is_(True),
                                    Sliver.allocation_state != Alloc.UNALLOCATED.value)
            .limit(1)) is not None
        session.info[cls._WAITING_KEY] = (txn, any_waiting)
        return any_waiting

    def _check_windows(self, session: Session, sliver: Sliver, demand: Mapping[str, float],
                       holds: Sequence[tuple[str, bool]], start: datetime,
                       end: datetime, *, counted: bool = False) -> None:
        """WindowConflict if the sliver, held over [start, end), would overlap a window it
        conflicts with: a hold on the same token (unless both shared), or more of a resource
        than the component has at some instant. A sliver holding now is checked against
        advance reservations only (what is held now is `Capacity.used`, under its CHECK;
        `counted`: the sliver's own demand is already in it)."""
        comp = sliver.component_id
        for token, shared in holds:
            query = (select(Hold.starts, Hold.ends).where(
                Hold.key == hold_key(comp, token), Hold.starts < end, Hold.ends > start,
                Hold.sliver_id != sliver.id).order_by(Hold.starts).limit(1))
            if shared:
                query = query.where(Hold.shared.is_(False))
            other = session.execute(query).first()
            if other is not None:
                what = ("exclusive use" if token == USE_TOKEN else f"claim {token!r}")
                raise WindowConflict(comp, what, "claim", other[0], other[1],
                                     max(other[0], start))
        wanted = {r: a for r, a in demand.items() if a > 0}
        if not wanted:
            return
        caps = dict(session.execute(select(Capacity.resource, Capacity.capacity).where(
            Capacity.component_id == comp, Capacity.resource.in_(list(wanted)))).all())
        rows = session.execute(
            select(Reservation.resource, Reservation.amount,
                   func.coalesce(Sliver.starts, Sliver.created), Sliver.expires)
            .join(Sliver, Sliver.id == Reservation.sliver_id)
            .where(Reservation.component_id == comp, Reservation.resource.in_(list(wanted)),
                   Sliver.allocation_state != Alloc.UNALLOCATED.value, Sliver.id != sliver.id,
                   Sliver.expires > start, func.coalesce(Sliver.starts, Sliver.created) < end,
                   *(() if sliver.waiting else (Sliver.waiting.is_(True),)))).all()
        if not rows:
            return
        for resource, amount in sorted(wanted.items()):
            cap = caps.get(resource)
            if cap is None:
                continue
            base = 0.0 if sliver.waiting else float(session.scalar(
                select(Capacity.used).where(Capacity.component_id == comp,
                                            Capacity.resource == resource)) or 0.0)
            if counted:
                base -= amount
            ivs = [(b, e, a) for r, a, b, e in rows if r == resource]
            _, first, culprit = peak(ivs, start, end, extra=amount + base, limit=cap)
            if first is not None and culprit is not None:
                raise WindowConflict(comp, f"{resource} capacity", "capacity", culprit[0],
                                     culprit[1], first)

    def extend(self, session: Session, sliver: Sliver, expires: datetime,
               now: datetime | None = None) -> None:
        """Move the sliver's expiry to `expires` with its holds; a later expiry must not run
        into a window it conflicts with (WindowConflict, whose `at` is the latest end that
        would fit). The caller sets `sliver.expires` after this returns."""
        now = now or utcnow()
        if expires > sliver.expires and self._windows_matter(session, sliver):
            demand, claims = self.held(session, sliver)
            self._check_windows(session, sliver, demand, self._holds_of(sliver, claims),
                                max(sliver.expires, now), expires,
                                counted=not sliver.waiting)
        # Core, not ORM: no autoflush or session synchronisation per sliver (no Hold is loaded)
        session.connection().execute(update(Hold.__table__)
                                     .where(Hold.__table__.c.sliver_id == sliver.id)
                                     .values(ends=expires))

    def start_waiting(self, session: Session, sliver: Sliver) -> None:
        """An advance reservation's window began: what it holds in its window it now holds
        like any live sliver (`Capacity.used`, claims)."""
        mark_usage_changed(session)
        for res in session.scalars(select(Reservation).where(Reservation.sliver_id == sliver.id)):
            try:
                with session.begin_nested():
                    session.execute(update(Capacity)
                                    .where(Capacity.component_id == res.component_id,
                                           Capacity.resource == res.resource)
                                    .values(used=Capacity.used + res.amount))
            except IntegrityError:
                raise ReservationConflict(res.component_id, f"{res.resource} capacity",
                                          "capacity") from None
        for token in session.scalars(select(Hold.token).where(Hold.sliver_id == sliver.id,
                                                              Hold.token != USE_TOKEN)):
            session.add(Claim(component_id=sliver.component_id, token=token,
                              sliver_id=sliver.id))
        sliver.waiting = False
        session.flush()

    @staticmethod
    def held(session: Session, sliver: Sliver) -> tuple[dict[str, float], tuple[str, ...]]:
        """What the sliver holds now: amount per resource, and its claim tokens."""
        demand: dict[str, float] = {}
        for resource, amount in session.execute(select(Reservation.resource, Reservation.amount)
                                                .where(Reservation.sliver_id == sliver.id)):
            demand[resource] = demand.get(resource, 0.0) + amount
        claims = set(session.scalars(select(Hold.token).where(
            Hold.sliver_id == sliver.id, Hold.token != USE_TOKEN)))
        claims.update(session.scalars(select(Claim.token).where(Claim.sliver_id == sliver.id)))
        return demand, tuple(sorted(claims))

    def rereserve(self, session: Session, sliver: Sliver, demand: Mapping[str, float],
                  claims: Iterable[str]) -> None:
        """Make the sliver hold exactly `demand` and `claims` on its (current) component:
        an Update changing what a sliver needs, or a commit or revert of one. Raises
        ReservationConflict like `reserve` (the caller's transaction must roll back)."""
        self.release(session, sliver)
        self.reserve(session, sliver, demand, claims)

    def release_many(self, session: Session, slivers: Sequence[Sliver]) -> None:
        """`release` for many slivers at once (idempotent): their reservations summed per
        component and resource and given back with one UPDATE each, in (component, resource)
        order (the one order every writer updates capacity rows in), and their reservation,
        claim and hold rows deleted by sliver id in chunks."""
        if not slivers:
            return
        mark_usage_changed(session)
        session.flush()
        waiting = {s.id for s in slivers if s.waiting}
        back: dict[tuple[str, str], float] = {}
        ids = sorted(s.id for s in slivers)
        for chunk in _chunks(ids, _CHUNK):
            for sliver_id, comp, resource, amount in session.execute(
                    select(Reservation.sliver_id, Reservation.component_id,
                           Reservation.resource, Reservation.amount)
                    .where(Reservation.sliver_id.in_(chunk))):
                if sliver_id not in waiting:
                    back[(comp, resource)] = back.get((comp, resource), 0.0) + amount
        conn = session.connection()
        for (comp, resource), amount in sorted(back.items()):
            conn.execute(update(Capacity.__table__)
                         .where(Capacity.__table__.c.component_id == comp,
                                Capacity.__table__.c.resource == resource)
                         .values(used=Capacity.__table__.c.used - amount))
        for model in (Reservation, Claim, Hold):
            table = model.__table__
            for chunk in _chunks(ids, _CHUNK):
                conn.execute(delete(table).where(table.c.sliver_id.in_(chunk)))

    def release(self, session: Session, sliver: Sliver) -> None:
        """Give back everything the sliver holds (idempotent)."""
        mark_usage_changed(session)
        for res in session.scalars(select(Reservation).where(Reservation.sliver_id == sliver.id)):
            if not sliver.waiting:
                session.execute(update(Capacity)
                                .where(Capacity.component_id == res.component_id,
                                       Capacity.resource == res.resource)
                                .values(used=Capacity.used - res.amount))
            session.delete(res)
        session.execute(delete(Claim).where(Claim.sliver_id == sliver.id))
        session.execute(delete(Hold).where(Hold.sliver_id == sliver.id))
        session.flush()

    def usage(self, session: Session, component_ids: Iterable[str] | None = None) -> dict[str, Usage]:
        """What is reserved per component, as the engine's admission checks want it. It counts
        every sliver that still holds a reservation (an expired one until the reaper frees it),
        so it agrees with the CHECK constraint that guards the same numbers.

        Cost: two narrow queries (used amounts; URN, component and slice of live slivers). A
        sliver's spec changes only by an Update, so decoded specs are kept per sliver URN and
        row version and only new or rewritten slivers' specs are read and decoded. Full scans (no
        `component_ids`) replace the kept set with exactly the live slivers, so it stays bounded.
        (Keyed by URN and row version: an Update rewrites a spec under the same URN.)"""
        ids = None if component_ids is None else list(component_ids)
        used: dict[str, dict[str, float]] = {}
        cap_q = select(Capacity.component_id, Capacity.resource, Capacity.used).where(
            Capacity.used > 1e-9)
        if ids is not None:
            cap_q = cap_q.where(Capacity.component_id.in_(ids))
        for component_id, resource, amount in session.execute(cap_q):
            used.setdefault(component_id, {})[resource] = amount
        live_q = (select(Sliver.id, Sliver.urn, Sliver.component_id, Slice.urn, Sliver.version)
                  .join(Slice)
                  .where(Sliver.allocation_state != Alloc.UNALLOCATED.value,
                         Sliver.waiting.is_(False))
                  .order_by(Sliver.id))
        if ids is not None:
            live_q = live_q.where(Sliver.component_id.in_(ids))
        live = session.execute(live_q).all()
        known = self._specs
        missing = [row[0] for row in live if (row[1], row[4]) not in known]
        fresh: dict[tuple[str, int], SliverSpec] = {}
        by_id = {row[0]: (row[1], row[4]) for row in live}
        for chunk in range(0, len(missing), 500):
            for row_id, spec in session.execute(select(Sliver.id, Sliver.spec).where(
                    Sliver.id.in_(missing[chunk:chunk + 500]))):
                fresh[by_id[row_id]] = spec_from_dict(spec)
        specs: dict[str, list[SliverSpec]] = {}
        exclusive: dict[str, str] = {}
        for _, urn, component_id, slice_urn, version in live:
            spec = known.get((urn, version)) or fresh[(urn, version)]
            specs.setdefault(component_id, []).append(spec)
            if spec.exclusive:
                exclusive[component_id] = slice_urn
        if ids is None:   # a full scan knows every live sliver: keep exactly those
            self._specs = {(urn, v): known.get((urn, v)) or fresh[(urn, v)]
                           for _, urn, _, _, v in live}
        keys = set(used) | set(specs) | (set(ids) if ids is not None else set())
        return {cid: Usage(component_id=cid, used=used.get(cid, {}), slivers=tuple(specs.get(cid, ())),
                           exclusive_holder=exclusive.get(cid)) for cid in keys}

    def usage_between(self, session: Session, start: datetime, end: datetime) -> dict[str, Usage]:
        """What is held at the busiest instant of [start, end) per component and resource,
        and the specs of every sliver whose time overlaps it: the usage an advance
        reservation for that window is admitted against (drivers' own checks run on it as on
        `usage`). A live sliver counts from when it was made (or its window's start) to its
        expiry."""
        begins = func.coalesce(Sliver.starts, Sliver.created)
        overlap = (Sliver.allocation_state != Alloc.UNALLOCATED.value, Sliver.expires > start,
                   begins < end)
        per: dict[tuple[str, str], list[tuple[datetime, datetime, float]]] = {}
        for comp, resource, amount, b, e in session.execute(
                select(Reservation.component_id, Reservation.resource, Reservation.amount,
                       begins, Sliver.expires)
                .join(Sliver, Sliver.id == Reservation.sliver_id).where(*overlap)):
            per.setdefault((comp, resource), []).append((b, e, amount))
        used: dict[str, dict[str, float]] = {}
        for (comp, resource), ivs in per.items():
            used.setdefault(comp, {})[resource] = peak(ivs, start, end)[0]
        live = session.execute(select(Sliver.id, Sliver.urn, Sliver.component_id, Slice.urn,
                                      Sliver.version).join(Slice).where(*overlap)
                               .order_by(Sliver.id)).all()
        specs: dict[str, list[SliverSpec]] = {}
        exclusive: dict[str, str] = {}
        for spec, (_, _, comp, slice_urn, _) in zip(self._decoded(session, live), live):
            specs.setdefault(comp, []).append(spec)
            if spec.exclusive:
                exclusive[comp] = slice_urn
        return {cid: Usage(component_id=cid, used=used.get(cid, {}),
                           slivers=tuple(specs.get(cid, ())), exclusive_holder=exclusive.get(cid))
                for cid in set(used) | set(specs)}

    @staticmethod
    def windows_on(session: Session, component_ids: Iterable[str], start: datetime,
                   end: datetime) -> list[tuple[str, datetime, datetime]]:
        """(component, from, until) of the live slivers on these components whose time
        overlaps [start, end), earliest first (to name them in a refusal)."""
        begins = func.coalesce(Sliver.starts, Sliver.created)
        return [tuple(r) for r in session.execute(
            select(Sliver.component_id, begins, Sliver.expires).where(
                Sliver.component_id.in_(list(component_ids)),
                Sliver.allocation_state != Alloc.UNALLOCATED.value,
                Sliver.expires > start, begins < end).order_by(begins).limit(5))]

    def _decoded(self, session: Session, live) -> list[SliverSpec]:
        """The specs of `live` rows (id, urn, component, slice urn, version), from the kept
        decoded specs where possible; the ones decoded here are kept too."""
        known = self._specs
        missing = [row[0] for row in live if (row[1], row[4]) not in known]
        fresh: dict[int, SliverSpec] = {}
        for chunk in range(0, len(missing), 500):
            for row_id, spec in session.execute(select(Sliver.id, Sliver.spec).where(
                    Sliver.id.in_(missing[chunk:chunk + 500]))):
                fresh[row_id] = spec_from_dict(spec)
        for row in live:     # kept like usage()'s (bounded: a full scan replaces the set)
            if row[0] in fresh:
                known[(row[1], row[4])] = fresh[row[0]]
        return [known.get((row[1], row[4])) or fresh[row[0]] for row in live]

    def capacity_rows(self) -> list[tuple[str, str, float, float]]:
        with self.read() as session:
            return [(c.component_id, c.resource, c.capacity, c.used)
                    for c in session.scalars(select(Capacity).order_by(Capacity.component_id,
                                                                       Capacity.resource))]

    # ---- jobs and per-sliver leases ---------------------------------------------------
    def add_job(self, session: Session, sliver: Sliver, action: str,
                args: Mapping | None = None, *, flush: bool = True) -> Job:
        """Queue a job row. `flush=False` leaves the INSERT to the caller's next flush, so a
        request queueing a job per sliver writes them all in one multi-row statement (read
        the ids after that flush)."""
        job = Job(sliver_id=sliver.id, action=action, state=JobState.QUEUED, attempts=0,
                  args=dict(args or {}))
        session.add(job)
        if flush:
            session.flush()
        return job

    @staticmethod
    def add_jobs(session: Session, sliver_ids: Sequence[int], action: str) -> list[int]:
        """Queue one `action` job per sliver in multi-row INSERTs (no ORM objects); returns
        the job ids (in no particular order)."""
        if not sliver_ids:
            return []
        now = utcnow()
        table = Job.__table__
        result = session.connection().execute(
            insert(table).returning(table.c.id),
            [{"sliver_id": sid, "action": action, "state": JobState.QUEUED, "attempts": 0,
              "args": {}, "created": now, "updated": now} for sid in sliver_ids])
        return [row[0] for row in result]

    def acquire_lease(self, sliver_id: int, owner: str, job_id: int, ttl_s: float,
                      now: datetime | None = None) -> bool:
        """Take the sliver's lock for `owner`, or take over one whose lease expired (a crashed
        worker). False when another live owner holds it."""
        with self.write() as session:
            return self.take_lease(session, sliver_id, owner, job_id, ttl_s, now)

    @staticmethod
    def take_lease(session: Session, sliver_id: int, owner: str, job_id: int | None,
                   ttl_s: float, now: datetime | None = None) -> bool:
        """`acquire_lease` inside the caller's write transaction (a job claims the lease and
        marks itself running in one commit)."""
        now = now or utcnow()
        taken = session.connection().execute(_take_lease_stmt(session.bind.dialect.name), {
            "sliver": sliver_id, "owner": owner, "job": job_id, "now": now,
            "until": now + timedelta(seconds=ttl_s)})
        return taken.first() is not None

    @staticmethod
    def drop_lease(session: Session, sliver_id: int, owner: str) -> bool:
        """`release_lease` inside the caller's write transaction (a job records its outcome
        and lets go of the sliver in one commit). True if `owner` held it."""
        return session.connection().execute(_DROP_LEASE, {"sliver": sliver_id,
                                                          "owner": owner}).rowcount == 1

    def renew_lease(self, sliver_id: int, owner: str, ttl_s: float) -> bool:
        now = utcnow()
        with self.write() as session:
            res = session.execute(update(SliverLease)
                                  .where(SliverLease.sliver_id == sliver_id,
                                         SliverLease.owner == owner)
                                  .values(expires=now + timedelta(seconds=ttl_s)))
            session.execute(update(Job).where(Job.lease_owner == owner, Job.state == JobState.RUNNING)
                            .values(heartbeat=now))
            return res.rowcount == 1

    def release_lease(self, sliver_id: int, owner: str) -> None:
        with self.write() as session:
            session.execute(delete(SliverLease).where(SliverLease.sliver_id == sliver_id,
                                                      SliverLease.owner == owner))

    def lease_holder(self, sliver_id: int) -> tuple[str, datetime] | None:
        with self.read() as session:
            lease = session.get(SliverLease, sliver_id)
            return None if lease is None else (lease.owner, lease.expires)

    # ---- users' SSH keys --------------------------------------------------------------
    def put_user_keys(self, session: Session, slice_id: int, users: Iterable[UserKeys]) -> None:
        """geni_users semantics: listed users' keys are replaced, unlisted users untouched."""
        for user in users:
            session.execute(delete(UserKey).where(UserKey.slice_id == slice_id,
                                                  UserKey.user_urn == user.urn))
            for key in dict.fromkeys(user.keys):
                session.add(UserKey(slice_id=slice_id, user_urn=user.urn, key=key))
        session.flush()

    def user_keys(self, session: Session, slice_id: int) -> tuple[UserKeys, ...]:
        by_user: dict[str, list[str]] = {}
        for user_urn, key in session.connection().execute(_USER_KEYS, {"slice": slice_id}):
            by_user.setdefault(user_urn, []).append(key)
        return tuple(UserKeys(urn=u, keys=tuple(k)) for u, k in by_user.items())

    # ---- audit log (append-only) -------------------------------------------------------
    def audit(self, *, caller_urn: str, method: str, target: str, outcome: int,
              message: str = "", duration_ms: float = 0.0, tool_urn: str | None = None,
              ts: datetime | None = None) -> None:
        """Append one entry. There is no way to change or remove entries through the store,
        and the database rejects UPDATE/DELETE on the table (triggers in the migration)."""
        with self.write() as session:
            session.add(AuditEntry(ts=ts or utcnow(), caller_urn=caller_urn, tool_urn=tool_urn,
                                   method=method, target=target[:4000], outcome=int(outcome),
                                   message=message[:4000], duration_ms=float(duration_ms)))

    def audit_batch(self, records: Sequence[AuditRecord]) -> None:
        """Append several entries in one transaction with one multi-row INSERT (the API's
        background audit writer drains its queue with this: one commit per batch, no ORM
        unit of work per entry)."""
        if not records:
            return
        with self.write() as session:
            session.execute(insert(AuditEntry.__table__), [
                {"ts": r.ts, "caller_urn": r.caller_urn, "tool_urn": r.tool_urn,
                 "method": r.method, "target": r.target[:4000], "outcome": int(r.outcome),
                 "message": r.message[:4000], "duration_ms": float(r.duration_ms)}
                for r in records])

    def audit_entries(self, *, limit: int = 100, caller_urn: str | None = None) -> list[AuditRecord]:
        with self.read() as session:
            query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
            if caller_urn is not None:
                query = query.where(AuditEntry.caller_urn == caller_urn)
            return [AuditRecord(e.ts, e.caller_urn, e.tool_urn, e.method, e.target, e.outcome,
                                e.message, e.duration_ms) for e in session.scalars(query)]

    # ---- maintenance -------------------------------------------------------------------
    def retire_empty_slices(self, session: Session) -> int:
        """Retire live slice records with no live sliver (and not shut down), so the URN can
        be used again by a new slice of the same name. Returns how many."""
        has_live = (select(func.count(Sliver.id))
                    .where(Sliver.slice_id == Slice.id,
                           Sliver.allocation_state != Alloc.UNALLOCATED.value)
                    .scalar_subquery())
        candidates = session.scalars(select(Slice.id).where(
            Slice.incarnation == 0, Slice.shutdown.is_(False), has_live == 0)).all()
        retired = 0
        for slice_id in candidates:
            # lock first, then count again in a fresh statement: a concurrent Allocate that
            # held the lock has committed its slivers by now and is counted
            row = session.scalars(select(Slice).where(Slice.id == slice_id, Slice.incarnation == 0)
                                  .with_for_update().execution_options(populate_existing=True)).first()
            if row is None or row.shutdown:
                continue
            live = session.scalar(select(func.count(Sliver.id)).where(
                Sliver.slice_id == slice_id, Sliver.allocation_state != Alloc.UNALLOCATED.value))
            if live == 0:
                row.incarnation = row.id
                retired += 1
        session.flush()
        return retired

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("select 1"))


#: ids per IN (...) list: well under SQLite's 32,766 bound parameters, and small statements
_CHUNK = 500


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


_TAKE_LEASE: dict[str, object] = {}
# Core statements on the tables (not the mapped classes): the ORM's bulk-statement layer
# costs more CPU than SQLite takes to run them, and a worker runs these for every job.
_LEASES = SliverLease.__table__
_DROP_LEASE = delete(_LEASES).where(_LEASES.c.sliver_id == bindparam("sliver"),
                                    _LEASES.c.owner == bindparam("owner"))
_USER_KEYS = (select(UserKey.__table__.c.user_urn, UserKey.__table__.c.key)
              .where(UserKey.__table__.c.slice_id == bindparam("slice"))
              .order_by(UserKey.__table__.c.id))
#: Columns `transition_if` may set beside the state; the statement per set of keys, built once.
_SETTABLE = frozenset({"allocation_state", "operational_state", "error", "resource_status",
                       "facts"})
_CAS_SLIVER: dict[tuple[str, ...], object] = {}


def _take_lease_stmt(dialect: str):
    """The lease upsert, built once per dialect (a job runs it every time): insert, or take
    over a lease that expired or is already ours; a live lease of another owner matches
    neither and returns no row."""
    stmt = _TAKE_LEASE.get(dialect)
    if stmt is None:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as upsert
        else:
            from sqlalchemy.dialects.sqlite import insert as upsert
        stmt = (upsert(_LEASES)
                .values(sliver_id=bindparam("sliver"), owner=bindparam("owner"),
                        job_id=bindparam("job"), expires=bindparam("until"))
                .on_conflict_do_update(
                    index_elements=[_LEASES.c.sliver_id],
                    set_={"owner": bindparam("owner"), "job_id": bindparam("job"),
                          "expires": bindparam("until")},
                    where=(_LEASES.c.expires <= bindparam("now"))
                    | (_LEASES.c.owner == bindparam("owner")))
                .returning(_LEASES.c.sliver_id))
        _TAKE_LEASE[dialect] = stmt
    return stmt


def open_store(url: str, *, migrate: bool = False) -> Store:
    """A Store over `url` (sqlite:///path or postgresql+psycopg://...). `migrate=True` also
    brings the schema up to date."""
    store = Store(url)
    if migrate:
        store.migrate()
    return store
