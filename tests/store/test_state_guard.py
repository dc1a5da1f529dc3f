"""The database itself refuses a write of a sliver's state columns that the transition table
does not allow: raw SQL that bypasses the store included, on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import insert, text
from sqlalchemy.exc import IntegrityError

from am import states
from am.states import Alloc, Event, Op
from am.store import Sliver, Store, state_guard, utcnow
from tests.store.test_store import _sliver

SET_STATE = text("UPDATE slivers SET allocation_state = :a, operational_state = :o "
                 "WHERE id = :id")


def _state(store: Store, sliver_id: int) -> tuple[str, str | None]:
    with store.engine.connect() as conn:
        return tuple(conn.execute(text("SELECT allocation_state, operational_state "
                                       "FROM slivers WHERE id = :id"), {"id": sliver_id}).one())


def _raw(store: Store, sliver_id: int, alloc: Alloc, op: Op | None) -> None:
    with store.engine.begin() as conn:
        conn.execute(SET_STATE, {"a": alloc.value, "o": op.value if op else None,
                                 "id": sliver_id})


def test_rule_table_is_the_state_machine(store: Store):
    with store.engine.connect() as conn:
        stored = state_guard.stored_pairs(conn)
    assert stored == state_guard.legal_pairs()
    # spot checks against the specification's life of a sliver (AM API v3 section 7)
    assert ("geni_allocated", "geni_pending_allocation",
            "geni_provisioned", "geni_pending_allocation") in stored
    assert ("geni_provisioned", "geni_ready", "geni_unallocated", "") in stored
    assert not any(p[:2] == ("geni_unallocated", "") and p[2] == "geni_provisioned"
                   for p in stored)


def test_raw_sql_cannot_make_an_illegal_state_change(store: Store):
    with store.write() as session:
        sliver_id = _sliver(store, session, "urn:publicid:IDN+test+sliver+g1").id
    allocated = ("geni_allocated", "geni_pending_allocation")
    # allocated straight to ready (skipping Provision): refused, nothing written
    with pytest.raises(IntegrityError, match=state_guard.MESSAGE):
        _raw(store, sliver_id, Alloc.PROVISIONED, Op.READY)
    assert _state(store, sliver_id) == allocated
    # back to unallocated is a Delete: legal; from there nothing but Allocate
    _raw(store, sliver_id, Alloc.UNALLOCATED, None)
    assert _state(store, sliver_id) == ("geni_unallocated", None)
    with pytest.raises(IntegrityError, match=state_guard.MESSAGE):
        _raw(store, sliver_id, Alloc.PROVISIONED, Op.PENDING_ALLOCATION)
    assert _state(store, sliver_id) == ("geni_unallocated", None)


def test_legal_changes_and_same_state_writes_pass(store: Store):
    with store.write() as session:
        sliver_id = _sliver(store, session, "urn:publicid:IDN+test+sliver+g2").id
    _raw(store, sliver_id, Alloc.PROVISIONED, Op.PENDING_ALLOCATION)     # Provision
    _raw(store, sliver_id, Alloc.PROVISIONED, Op.NOTREADY)               # provision done
    assert _state(store, sliver_id) == ("geni_provisioned", "geni_notready")
    with store.engine.begin() as conn:     # a state written to itself, other columns changed
        conn.execute(text("UPDATE slivers SET operational_state = operational_state, "
                          "error = 'x' WHERE id = :id"), {"id": sliver_id})
    # and the store's own writer keeps working through the trigger
    with store.write() as session:
        row = store.slices.slivers_by_urn(session, ["urn:publicid:IDN+test+sliver+g2"])[0]
        assert store.transition(session, row, Event.START) == (Alloc.PROVISIONED,
                                                                Op.CONFIGURING)
    assert states.as_state(*_state(store, sliver_id)) == (Alloc.PROVISIONED, Op.CONFIGURING)


def _insert(store: Store, urn: str, alloc: Alloc, op: Op | None) -> None:
    """A sliver row written by plain SQL, bypassing the store and the state machine."""
    with store.write() as session:
        slice_id = store.get_or_create_slice(session, "urn:publicid:IDN+test:sa+slice+Born",
                                             "urn:publicid:IDN+test+user+alice").id
    now = utcnow()
    with store.engine.begin() as conn:
        conn.execute(insert(Sliver.__table__).values(
            urn=urn, slice_id=slice_id, client_id="n", kind="node", driver="fake",
            component_id="urn:publicid:IDN+test+node+n1", sliver_type="",
            allocation_state=alloc.value, operational_state=op.value if op else None,
            expires=now + timedelta(minutes=10), error="", resource_status="", spec={},
            element_xml="", facts={}, version=1, created=now, updated=now, waiting=False,
            auto_provision=False))


def _count(store: Store, urn: str) -> int:
    with store.engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM slivers WHERE urn = :u"),
                            {"u": urn}).scalar_one()


def test_initial_states_are_the_state_machines_start(store: Store):
    with store.engine.connect() as conn:
        stored = state_guard.stored_initial_states(conn)
    assert stored == state_guard.initial_states() == {
        ("geni_unallocated", ""), ("geni_allocated", "geni_pending_allocation")}


@pytest.mark.parametrize("alloc, op", [(Alloc.PROVISIONED, Op.READY),
                                       (Alloc.PROVISIONED, Op.PENDING_ALLOCATION),
                                       (Alloc.ALLOCATED, Op.READY),
                                       (Alloc.ALLOCATED, None)])
def test_raw_sql_cannot_insert_a_sliver_in_a_later_state(store: Store, alloc, op):
    urn = f"urn:publicid:IDN+test+sliver+born-{alloc.value}-{op.value if op else 'none'}"
    with pytest.raises(IntegrityError, match=state_guard.INSERT_MESSAGE):
        _insert(store, urn, alloc, op)
    assert _count(store, urn) == 0


def test_raw_sql_can_insert_a_sliver_in_an_initial_state(store: Store):
    _insert(store, "urn:publicid:IDN+test+sliver+born-u", Alloc.UNALLOCATED, None)
    _insert(store, "urn:publicid:IDN+test+sliver+born-a", Alloc.ALLOCATED, Op.PENDING_ALLOCATION)
    assert _count(store, "urn:publicid:IDN+test+sliver+born-u") == 1
    assert _count(store, "urn:publicid:IDN+test+sliver+born-a") == 1
