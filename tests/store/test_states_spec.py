"""The transition table checked against the AM API v3 specification, not against itself.

The facts below are copied from the specification (section 6, allocation states; section 7,
operational states and the standard actions, and 5.6/5.8 for Provision and
PerformOperationalAction). Each is checked through `am.states.next_state`, the function every
state write goes through. Where the AM allows more than the specification names, the extra
moves are listed in `EXTENSIONS` with the reason, so a new one cannot slip in unnoticed.
"""
from __future__ import annotations

import pytest

from am import states
from am.errors import GeniCode
from am.states import Event, IllegalTransition, Op

UNALLOCATED, ALLOCATED, PROVISIONED = "geni_unallocated", "geni_allocated", "geni_provisioned"

# ---- section 6: allocation states ----------------------------------------------------------
#: (from, API call, to); "same" keeps the state.
SPEC_ALLOCATION = [
    (UNALLOCATED, "Allocate", ALLOCATED),
    (ALLOCATED, "Provision", PROVISIONED),
    (ALLOCATED, "Renew", "same"),
    (PROVISIONED, "Renew", "same"),
    (ALLOCATED, "Delete", UNALLOCATED),
    (PROVISIONED, "Delete", UNALLOCATED),
    (ALLOCATED, "expiry", UNALLOCATED),
    (PROVISIONED, "expiry", UNALLOCATED),
]
CALL_EVENT = {"Allocate": Event.ALLOCATE, "Provision": Event.PROVISION, "Renew": Event.RENEW,
              "Delete": Event.DELETE, "expiry": Event.EXPIRE}

# ---- section 7: operational states ---------------------------------------------------------
#: "wait" states move on by themselves; "final" ones need an action (or an admin).
SPEC_WAIT = {"geni_pending_allocation", "geni_configuring", "geni_stopping", "geni_ready_busy",
             "geni_updating_users"}
SPEC_FINAL = {"geni_notready", "geni_ready", "geni_failed"}

#: The standard actions: action -> (legal from, states on the way, where it ends).
SPEC_ACTIONS = {
    "geni_start": ({"geni_notready"}, "geni_configuring", {"geni_ready", "geni_failed"}),
    "geni_restart": ({"geni_ready"}, "geni_configuring", {"geni_ready"}),
    "geni_stop": ({"geni_ready"}, "geni_stopping", {"geni_notready"}),
    "geni_update_users": ({"geni_ready"}, "geni_updating_users", {"geni_ready"}),
}
#: Refusal codes (5.8): an action in a state it is not legal in is UNSUPPORTED, except
#: geni_update_users, which is REFUSED.
SPEC_REFUSAL = {"geni_start": GeniCode.UNSUPPORTED, "geni_restart": GeniCode.UNSUPPORTED,
                "geni_stop": GeniCode.UNSUPPORTED, "geni_update_users": GeniCode.REFUSED}

#: Operational states this AM adds to the specification's, and why.
EXTENSION_STATES = {
    "geni_updating": "AM API v4 Update: the sliver runs as it was while a changed spec waits "
                     "for Provision; no job works on it, so it is stable",
}

#: What this AM allows beyond the specification, and why.
EXTENSIONS = {
    ("geni_restart", "geni_failed"): "restart is the advertised way out of geni_failed "
                                     "(docs/state.md), rather than an admin",
}


def s(alloc: str, op: str | None = None) -> states.State:
    return states.as_state(alloc, op)


def op_states() -> list[str]:
    return [op.value for op in Op]


@pytest.mark.parametrize("source,call,target", SPEC_ALLOCATION)
def test_allocation_transitions_of_the_spec_are_legal(source, call, target):
    for op in ([None] if source == UNALLOCATED else
               ["geni_pending_allocation"] if source == ALLOCATED else op_states()):
        if source == PROVISIONED and op is None:
            continue
        before = s(source, op)
        after = states.next_state(before, CALL_EVENT[call], subject="x")
        if target == "same":
            assert after == before
        else:
            assert after[0].value == target


def test_no_allocation_move_the_spec_does_not_name():
    named = {(a, c) for a, c, _ in SPEC_ALLOCATION}
    for state in states.all_states():
        for call, event in CALL_EVENT.items():
            if (state[0].value, call) in named:
                continue
            with pytest.raises(IllegalTransition):
                states.next_state(state, event, (states.targets(event) or (None,))[0])


def test_provision_starts_at_pending_allocation_and_moves_to_a_first_state():
    """5.6: operational state starts at geni_pending_allocation and moves to the AM's first
    advertised state (commonly geni_notready); failure is geni_failed with geni_error."""
    after_alloc = states.next_state(states.UNALLOCATED, Event.ALLOCATE)
    assert after_alloc == s(ALLOCATED, "geni_pending_allocation")
    queued = states.next_state(after_alloc, Event.PROVISION)
    assert queued == s(PROVISIONED, "geni_pending_allocation")
    firsts = {t[1].value for t in states.targets(Event.PROVISION_DONE)}
    assert "geni_notready" in firsts and firsts <= SPEC_FINAL | SPEC_WAIT - {"geni_pending_allocation"}


def test_wait_and_final_states_are_as_the_spec_says():
    assert {op.value for op in Op} == SPEC_WAIT | SPEC_FINAL | set(EXTENSION_STATES)
    assert {op.value for op in states.TRANSIENT} == SPEC_WAIT
    assert {op.value for op in states.STABLE} == SPEC_FINAL | set(EXTENSION_STATES)


@pytest.mark.parametrize("action", list(SPEC_ACTIONS))
def test_standard_actions_follow_the_spec(action):
    legal_from, via, ends = SPEC_ACTIONS[action]
    desc = states.ACTIONS[action]
    for op in op_states():
        state = s(PROVISIONED, op)
        if op in legal_from or (action, op) in EXTENSIONS:
            moving = states.next_state(state, desc.start)
            assert moving == s(PROVISIONED, via), (action, op)
            # the job's success ends in the spec's result; a failure in geni_failed
            done = {t[1].value for t in states.targets(desc.done)}
            assert ends <= done | {"geni_failed"}, (action, done)
            for end in ends - {"geni_failed"}:
                assert states.next_state(moving, desc.done, s(PROVISIONED, end))[1].value == end
            assert states.next_state(moving, Event.ACTION_FAILED) == s(PROVISIONED, "geni_failed")
        else:
            with pytest.raises(IllegalTransition) as info:
                states.next_state(state, desc.start)
            assert info.value.code == SPEC_REFUSAL[action], (action, op)


def test_no_action_before_provisioning_finishes():
    """5.8: POA is only valid once the operational state is not geni_pending_allocation."""
    for action, desc in states.ACTIONS.items():
        for state in (s(ALLOCATED, "geni_pending_allocation"),
                      s(PROVISIONED, "geni_pending_allocation")):
            with pytest.raises(IllegalTransition):
                states.next_state(state, desc.start)


def test_updating_users_cancel_returns_to_ready():
    assert states.next_state(s(PROVISIONED, "geni_updating_users"), Event.UPDATE_USERS_CANCEL) \
        == s(PROVISIONED, "geni_ready")
    for op in set(op_states()) - {"geni_updating_users"}:
        with pytest.raises(IllegalTransition):
            states.next_state(s(PROVISIONED, op), Event.UPDATE_USERS_CANCEL)


def test_extensions_are_real_and_few():
    for (action, op), why in EXTENSIONS.items():
        assert why
        assert states.allowed(s(PROVISIONED, op), states.ACTIONS[action].start)
        assert op not in SPEC_ACTIONS[action][0]
