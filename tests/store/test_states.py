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


def test_try_transition_answers_none_where_next_state_raises():
    for state, event in itertools.product(states.all_states(), Event):
        row = ROWS[event]
        for target in (row.targets or (None,)):
            try:
                expected = states.next_state(state, event, target)
            except IllegalTransition:
                expected = None
            except ValueError:        # several targets and none named
                continue
            assert states.try_transition(state, event, target) == expected


def test_every_job_action_has_one_descriptor_used_by_the_runner():
    from am.jobs import runner
    assert set(runner.ACTIONS) == set(states.JOB_ACTIONS)
    assert runner.ACTION_JOBS == {g: a.job for g, a in states.ACTIONS.items()}
    for job in states.JOBS:
        if job.waiting is not None:      # the job's start event puts the sliver where it waits
            assert (Alloc.PROVISIONED, job.waiting) in states.targets(job.start)
            assert states.OP_STATES[job.waiting].failed_by in (job.failed, Event.ACTION_FAILED)


def test_job_states_have_their_own_table():
    J = states.JobState
    assert states.job_move_allowed(J.QUEUED, J.RUNNING)
    assert states.job_move_allowed(J.RUNNING, J.QUEUED)          # retry / lease lost
    assert states.job_move_allowed(J.RUNNING, J.DONE)
    for finished in (J.DONE, J.FAILED):                          # never reopened
        for new in (J.QUEUED, J.RUNNING, J.DONE, J.FAILED):
            assert not states.job_move_allowed(finished, new)
    assert states.job_sources(J.RUNNING) == (J.QUEUED, J.RUNNING)
