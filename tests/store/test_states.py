"""The transition table: every legal move lands in its row's targets, every other one raises."""
from __future__ import annotations

import itertools

import pytest

from am import states
from am.errors import GeniCode, GeniError
from am.states import Alloc, Event, IllegalTransition, Op, TRANSITIONS

ROWS = {t.event: t for t in TRANSITIONS}


def test_one_row_per_event_and_every_event_has_a_row():
    assert set(ROWS) == set(Event)


def test_targets_lists_each_rows_targets():
    for event, row in ROWS.items():
        assert states.targets(event) == (row.targets or ())
    assert states.targets(Event.RENEW) == ()            # keeps the state
    assert (Alloc.PROVISIONED, Op.READY) in states.targets(Event.START_DONE)


@pytest.mark.parametrize("state,event", list(itertools.product(states.all_states(), Event)))
def test_every_pair_is_legal_exactly_when_the_table_says(state, event):
    row = ROWS[event]
    if state in row.sources:
        targets = row.targets or (state,)
        for target in targets:
            assert states.next_state(state, event, target) == target
    else:
        with pytest.raises(IllegalTransition) as info:
            states.next_state(state, event, row.targets[0] if row.targets else None)
        assert isinstance(info.value, GeniError)
        assert info.value.code == row.refusal


def test_illegal_codes_follow_the_spec():
    # POA in the wrong state is UNSUPPORTED; geni_update_users in the wrong state is REFUSED
    with pytest.raises(IllegalTransition) as start:
        states.next_state((Alloc.PROVISIONED, Op.PENDING_ALLOCATION), Event.START)
    assert start.value.code == GeniCode.UNSUPPORTED
    with pytest.raises(IllegalTransition) as upd:
        states.next_state((Alloc.PROVISIONED, Op.NOTREADY), Event.UPDATE_USERS)
    assert upd.value.code == GeniCode.REFUSED
    assert "geni_provisioned/geni_notready" in upd.value.message


def test_multi_target_rows_need_a_target_inside_the_row():
    pending = (Alloc.PROVISIONED, Op.PENDING_ALLOCATION)
    with pytest.raises(ValueError):
        states.next_state(pending, Event.PROVISION_DONE)
    assert states.next_state(pending, Event.PROVISION_DONE, (Alloc.PROVISIONED, Op.READY)) \
        == (Alloc.PROVISIONED, Op.READY)
    with pytest.raises(IllegalTransition):
        states.next_state(pending, Event.PROVISION_DONE, (Alloc.PROVISIONED, Op.STOPPING))
    with pytest.raises(IllegalTransition):   # renew never changes the state
        states.next_state(pending, Event.RENEW, (Alloc.PROVISIONED, Op.READY))


def test_spec_lifecycle_path():
    s = states.UNALLOCATED
    s = states.next_state(s, Event.ALLOCATE)
    assert s == (Alloc.ALLOCATED, Op.PENDING_ALLOCATION)
    s = states.next_state(s, Event.PROVISION)
    s = states.next_state(s, Event.PROVISION_DONE, (Alloc.PROVISIONED, Op.NOTREADY))
    s = states.next_state(s, Event.START)
    s = states.next_state(s, Event.START_DONE, (Alloc.PROVISIONED, Op.READY))
    s = states.next_state(s, Event.RESTART)
    s = states.next_state(s, Event.RESTART_DONE)
    s = states.next_state(s, Event.STOP)
    s = states.next_state(s, Event.STOP_DONE)
    assert s == (Alloc.PROVISIONED, Op.NOTREADY)
    assert states.next_state(s, Event.DELETE) == states.UNALLOCATED
    with pytest.raises(IllegalTransition):
        states.next_state(states.UNALLOCATED, Event.DELETE)


def test_markdown_table_lists_every_event():
    text = states.table_markdown()
    for event in Event:
        assert f"`{event.value}`" in text
