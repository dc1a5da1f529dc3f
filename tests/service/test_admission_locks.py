"""The pieces under Allocate's race-free admission (am.service.admission, Store.admission_lock):
per-component locks on PostgreSQL (the whole database on SQLite), a placement kept when
nothing changed, placed again when something did, and an Allocate whose new placement moved
onto a component another transaction holds starting over and waiting for it."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from am.engine import Placement, PlannedSliver
from am.service import admission
from am.service.admission import Planned, StartOver, allocate_locked, settle
from am.store import Store
from am.store.store import admission_key, mark_usage_changed
from drivers.base import ResourceKind, SliverSpec
from tests import support

X = "urn:publicid:IDN+geni-am:test+node+x"
Y = "urn:publicid:IDN+geni-am:test+node+y"
Z = "urn:publicid:IDN+geni-am:test+node+z"


def on(*components: str) -> Placement:
    return Placement(slivers=[PlannedSliver(SliverSpec(
        sliver_urn=f"urn:publicid:IDN+geni-am:test+sliver+{i}", slice_urn="s", client_id=f"n{i}",
        kind=ResourceKind.NODE, component_id=c), "fake") for i, c in enumerate(components)])


def generation(store: Store) -> int | None:
    with store.read() as session:
        return store.usage_generation(session)


def bump(store: Store) -> None:
    """Commit a usage change (as a concurrent Allocate or Delete would)."""
    with store.write() as session:
        mark_usage_changed(session)


class Placer:
    """A `place` callback that counts its calls and answers `placement`."""

    def __init__(self, placement: Placement):
        self.placement = placement
        self.calls = 0

    def __call__(self, usage) -> Placement:
        self.calls += 1
        return self.placement


def test_lock_keys_ignore_case_and_differ_per_component():
    assert admission_key(X) == admission_key(X.upper()) == admission_key(f" {X} ")
    assert len({admission_key(c) for c in (X, Y, Z)}) == 3


def test_component_locks(store: Store):
    with store.write() as first:
        lock = store.admission_lock(first)
        lock.acquire([Y])
        assert lock.covers([Y])
        if store.dialect != "postgresql":    # SQLite: the write transaction holds everything
            assert lock.whole_database and lock.covers([X, Z]) and lock.try_acquire([X])
            return
        assert not lock.covers([X])
        with store.write() as second:
            other = store.admission_lock(second)
            assert not other.try_acquire([Y])      # held by the first transaction
            assert other.try_acquire([X, Z]) and other.covers([X, Z])
            assert not other.covers([Y])
    with store.write() as third:                   # both committed: everything is free again
        assert store.admission_lock(third).try_acquire([X, Y, Z])


def test_locks_are_waited_for_in_key_order_only(store: Store):
    if store.dialect != "postgresql":
        return
    low, high = sorted((X, Y, Z), key=admission_key)[0], sorted((X, Y, Z), key=admission_key)[-1]
    with store.write() as session:
        lock = store.admission_lock(session)
        lock.acquire([high])
        with pytest.raises(ValueError, match="key order"):
            lock.acquire([low])


def test_unchanged_usage_keeps_the_placement(store: Store):
    bump(store)
    planned = Planned(on(X), generation(store))
    placer = Placer(on(Y))
    with store.write() as session:
        lock = store.admission_lock(session)
        lock.acquire([X])
        assert settle(store, session, lock, planned, placer) is planned.placement
    assert placer.calls == 0


def test_changed_usage_places_again_and_locks_the_new_components(store: Store):
    bump(store)
    planned = Planned(on(X), generation(store))
    bump(store)                                     # something committed since the snapshot
    placer = Placer(on(Y))
    with store.write() as session:
        lock = store.admission_lock(session)
        lock.acquire([X])
        assert settle(store, session, lock, planned, placer) is placer.placement
        assert lock.covers([Y])
    assert placer.calls == 1


def test_a_refusal_under_the_lock_propagates(store: Store):
    planned = Planned(on(X), None)                 # no generation: always placed again

    def refuse(usage):
        raise LookupError("refused")

    with pytest.raises(LookupError), store.write() as session:
        lock = store.admission_lock(session)
        lock.acquire([X])
        settle(store, session, lock, planned, refuse)


def _wait_for_advisory_waiter(store: Store, deadline_s: float = 30.0) -> None:
    """Until some transaction waits for an advisory lock (the Allocate started over)."""
    def waiting() -> int:
        with store.engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                     "AND NOT granted")).scalar()
    support.wait_until(waiting, "a transaction to wait for an advisory lock", deadline_s, 0.01)


def test_moved_onto_a_held_component_starts_over_and_waits(store: Store, monkeypatch):
    """The snapshot placed on X; meanwhile usage changed and the new placement is on Y, which
    another transaction holds: the Allocate rolls back, waits for Y in order, then writes."""
    if store.dialect != "postgresql":
        return
    bump(store)
    planned = Planned(on(X), generation(store))
    bump(store)
    placer = Placer(on(Y))
    written: list[Placement] = []
    errors: list[BaseException] = []
    starts = []
    real_settle = admission.settle

    def counting_settle(*args):
        try:
            return real_settle(*args)
        except StartOver:
            starts.append(1)
            raise

    def run() -> None:
        try:
            allocate_locked(store, planned, placer,
                            lambda session, placement: written.append(placement))
        except BaseException as exc:   # noqa: BLE001 - reported below
            errors.append(exc)

    monkeypatch.setattr(admission, "settle", counting_settle)
    with store.write() as holder:
        store.admission_lock(holder).acquire([Y])
        thread = threading.Thread(target=run)
        thread.start()
        _wait_for_advisory_waiter(store)
        assert written == []                       # it cannot write while Y is held
    thread.join(30)
    assert errors == []
    assert starts == [1]
    assert written == [placer.placement]


def test_holding_every_component_waits_for_admissions_and_holds_new_ones_off(store: Store):
    """The last resort (`acquire_all`) is one exclusive lock: it waits for an admission in
    progress, and a new admission on any component waits for it."""
    if store.dialect != "postgresql":
        with store.write() as session:     # SQLite: the write transaction is the lock already
            lock = store.admission_lock(session)
            lock.acquire_all()
            assert lock.covers([X, Y, Z])
        return
    order: list[str] = []

    def in_thread(name: str, take) -> threading.Thread:
        def run() -> None:
            with store.write() as session:
                take(store.admission_lock(session))
                order.append(name)
        thread = threading.Thread(target=run)
        thread.start()
        return thread

    with store.write() as holder:
        store.admission_lock(holder).acquire([X])
        everything = in_thread("all", lambda lock: lock.acquire_all())
        _wait_for_advisory_waiter(store)
        assert order == []                          # waits for the admission on X
    everything.join(30)
    assert order == ["all"]

    with store.write() as holder:
        lock = store.admission_lock(holder)
        lock.acquire_all()
        assert lock.covers([X, Y, Z]) and lock.try_acquire([Z])
        other = in_thread("y", lambda lock: lock.acquire([Y]))
        _wait_for_advisory_waiter(store)
        assert order == ["all"]                     # Y is held off as well
    other.join(30)
    assert order == ["all", "y"]
    with store.write() as session:                  # acquire_all only as the first lock
        lock = store.admission_lock(session)
        lock.acquire([X])
        with pytest.raises(ValueError, match="first"):
            lock.acquire_all()
