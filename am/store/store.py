"""`Store`: the one object request handlers and jobs are given, a thin facade over the
repositories of am.store (one per concern), which hold every query:

  sessions.Database          engine, read/write sessions, the usage generation
  transitions.Transitions    the state machine's only writer (table in am.states)
  slices.Slices              slices, live slivers, the reaper's queries
  capacity.Capacities        capacity rows, usage, admission locks
  reservations.Reservations  reservations, claims, holds (now and over time)
  jobs.Jobs                  job rows: queue, claim, mark; the reconciler's queries
  leases.Leases              per-sliver leases of running jobs
  keys.UserKeyRepository     users' SSH keys
  audit.AuditLog             the append-only audit log
  read_models.ReadModels     the dashboard's, metrics', hosts CLI's and calendar's reads

`store.<repo>.<method>` and the same name on `Store` itself are the same call (the facade
keeps older call sites working). Callers never assign a sliver's states themselves
(`transition` does), never compare expiry times themselves (`live_clause` does), and never
touch the audit log except through `audit`. New store code goes into a new repository module,
not here.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any


from sqlalchemy import Engine

from am.states import JobState
from am.store.admission import AdmissionLock, admission_key
from am.store.audit import AuditLog, AuditRecord
from am.store.capacity import Capacities
from am.store.errors import ReservationConflict, StoreError, WindowConflict
from am.store.jobs import Jobs
from am.store.keys import UserKeyRepository
from am.store.leases import Leases
from am.store.read_models import ReadModels
from am.store.reservations import USE_TOKEN, Reservations, hold_key, peak
from am.store.sessions import USAGE_CHANGED, Database, Repository, mark_usage_changed
from am.store.slices import Slices, live_clause, slice_key
from am.store.transitions import Transitions
from am.store.types import utcnow


def _via(repo: str, name: str, owner: type) -> Callable[..., Any]:
    """`Store.<name>` calling `self.<repo>.<name>` (documented as the repository's method)."""
    target = getattr(owner, name)

    def call(self: "Store", *args: Any, **kwargs: Any) -> Any:
        return getattr(getattr(self, repo), name)(*args, **kwargs)

    call.__name__, call.__qualname__ = name, f"Store.{name}"
    call.__doc__ = target.__doc__
    return call


class Store(Repository):
    """The repositories of one database, and their methods under the old names. Its own
    `read`, `write`, `flush` and `dialect` are every repository's (`Repository`)."""

    def __init__(self, url: str):
        super().__init__(Database(url))
        self.transitions = Transitions(self.db)
        self.slices = Slices(self.db)
        self.capacity = Capacities(self.db)
        self.reservations = Reservations(self.db)
        self.jobs = Jobs(self.db)
        self.leases = Leases(self.db)
        self.keys = UserKeyRepository(self.db)
        self.audit_log = AuditLog(self.db)
        self.read_models = ReadModels(self.db)

    # ---- the database ------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.db.url

    @property
    def engine(self) -> Engine:
        return self.db.engine

    def migrate(self) -> None:
        self.db.migrate()

    def close(self) -> None:
        self.db.close()

    def ping(self) -> None:
        self.db.ping()

    def current_generation(self) -> int | None:
        return self.db.current_generation()

    usage_generation = staticmethod(Database.usage_generation)
    live_clause = staticmethod(live_clause)

    # ---- delegated to the repositories -------------------------------------------------
    transition = _via("transitions", "transition", Transitions)
    transition_many = _via("transitions", "transition_many", Transitions)
    transition_if = _via("transitions", "transition_if", Transitions)

    find_slice = _via("slices", "find_slice", Slices)
    get_or_create_slice = _via("slices", "get_or_create_slice", Slices)
    live_slivers = _via("slices", "live_slivers", Slices)
    slivers_by_urn = _via("slices", "slivers_by_urn", Slices)
    retire_empty_slices = _via("slices", "retire_empty_slices", Slices)
    add_sliver = _via("slices", "add_sliver", Slices)

    sync_capacity = _via("capacity", "sync_capacity", Capacities)
    admission_lock = _via("capacity", "admission_lock", Capacities)
    usage = _via("capacity", "usage", Capacities)
    usage_between = _via("capacity", "usage_between", Capacities)
    windows_on = _via("capacity", "windows_on", Capacities)
    capacity_rows = _via("capacity", "capacity_rows", Capacities)
    _decoded = _via("capacity", "_decoded", Capacities)
    specs_of = _via("capacity", "specs_of", Capacities)

    reserve = _via("reservations", "reserve", Reservations)
    extend = _via("reservations", "extend", Reservations)
    start_waiting = _via("reservations", "start_waiting", Reservations)
    held = _via("reservations", "held", Reservations)
    rereserve = _via("reservations", "rereserve", Reservations)
    release = _via("reservations", "release", Reservations)
    release_many = _via("reservations", "release_many", Reservations)

    add_job = _via("jobs", "add_job", Jobs)
    add_jobs = _via("jobs", "add_jobs", Jobs)

    acquire_lease = _via("leases", "acquire_lease", Leases)
    take_lease = _via("leases", "take_lease", Leases)
    drop_lease = _via("leases", "drop_lease", Leases)
    renew_lease = _via("leases", "renew_lease", Leases)
    release_lease = _via("leases", "release_lease", Leases)
    lease_holder = _via("leases", "lease_holder", Leases)

    put_user_keys = _via("keys", "put_user_keys", UserKeyRepository)
    user_keys = _via("keys", "user_keys", UserKeyRepository)

    audit = _via("audit_log", "audit", AuditLog)
    audit_batch = _via("audit_log", "audit_batch", AuditLog)
    audit_entries = _via("audit_log", "audit_entries", AuditLog)


def open_store(url: str, *, migrate: bool = False) -> Store:
    """A Store over `url` (sqlite:///path or postgresql+psycopg://...). `migrate=True` also
    brings the schema up to date."""
    store = Store(url)
    if migrate:
        store.migrate()
    return store


__all__ = ["USAGE_CHANGED", "USE_TOKEN", "AdmissionLock", "AuditRecord", "JobState",
           "ReservationConflict", "Store", "StoreError", "WindowConflict", "admission_key",
           "hold_key", "mark_usage_changed", "open_store", "peak", "slice_key", "utcnow"]
