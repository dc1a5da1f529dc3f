"""The sliver state machine: one declarative transition table.

A sliver's state is the pair (allocation state, operational state). Every write of that pair
goes through `am.store.Store.transition`, which asks `next_state` here; anything not in
`TRANSITIONS` raises `IllegalTransition`, so no code path can silently overwrite a state.
(The shape follows OpenStack ironic's `ironic/common/states.py`: states, events, and a table
of legal moves, rather than if-chains spread over the request handlers.)

Some events may lead to one of several targets (a driver reports `geni_notready` or
`geni_ready` after provisioning): such rows list every legal target and the caller names the
one it observed; a target outside the row is illegal too.
"""
from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from am.errors import GeniCode, GeniError
from drivers.base import ACTION_RESULTS, OperationalState


class Alloc(str, enum.Enum):
    UNALLOCATED = "geni_unallocated"
    ALLOCATED = "geni_allocated"
    PROVISIONED = "geni_provisioned"


#: Operational states (AM API v3 section 7): the drivers' enum, so a state a driver reports and
#: a state the table names are the same object.
Op = OperationalState


class Event(str, enum.Enum):
    ALLOCATE = "allocate"
    PROVISION = "provision"
    PROVISION_DONE = "provision_done"
    PROVISION_FAILED = "provision_failed"
    START = "start"
    START_DONE = "start_done"
    STOP = "stop"
    STOP_DONE = "stop_done"
    RESTART = "restart"
    RESTART_DONE = "restart_done"
    UPDATE_USERS = "update_users"
    UPDATE_USERS_DONE = "update_users_done"
    UPDATE_USERS_CANCEL = "update_users_cancel"
    DRIVER_ACTION = "driver_action"
    DRIVER_ACTION_DONE = "driver_action_done"
    ACTION_FAILED = "action_failed"
    SHUTDOWN = "shutdown"
    RENEW = "renew"
    DELETE = "delete"
    EXPIRE = "expire"
    FAIL = "fail"
    UPDATE = "update"
    UPDATE_COMMIT = "update_commit"
    UPDATE_DONE = "update_done"
    UPDATE_REVERT = "update_revert"


State = tuple[Alloc, Op | None]

#: The state of a sliver before Allocate and after Delete/expiry.
UNALLOCATED: State = (Alloc.UNALLOCATED, None)

_PROVISIONED_OPS = (Op.PENDING_ALLOCATION, Op.NOTREADY, Op.CONFIGURING, Op.STOPPING, Op.READY,
                    Op.READY_BUSY, Op.FAILED, Op.UPDATING_USERS, Op.UPDATING)
_LIVE: tuple[State, ...] = ((Alloc.ALLOCATED, Op.PENDING_ALLOCATION),
                            *((Alloc.PROVISIONED, op) for op in _PROVISIONED_OPS))


def _p(*ops: Op) -> tuple[State, ...]:
    return tuple((Alloc.PROVISIONED, op) for op in ops)


@dataclass(frozen=True)
class Transition:
    event: Event
    sources: tuple[State, ...]
    targets: tuple[State, ...] | None   # None: the state does not change (Renew)
    refusal: GeniCode = GeniCode.UNSUPPORTED   # the GENI code when the event is illegal here
    doc: str = ""


#: THE table. Read top to bottom it is the life of a sliver.
TRANSITIONS: tuple[Transition, ...] = (
    Transition(Event.ALLOCATE, (UNALLOCATED,), ((Alloc.ALLOCATED, Op.PENDING_ALLOCATION),),
               doc="Allocate: reserve, touch no substrate"),
    Transition(Event.PROVISION, ((Alloc.ALLOCATED, Op.PENDING_ALLOCATION),),
               _p(Op.PENDING_ALLOCATION), doc="Provision: job queued"),
    Transition(Event.PROVISION_DONE, _p(Op.PENDING_ALLOCATION),
               _p(Op.NOTREADY, Op.CONFIGURING, Op.READY),
               doc="provision job: the driver's first state"),
    Transition(Event.PROVISION_FAILED, _p(Op.PENDING_ALLOCATION), _p(Op.FAILED),
               doc="provision job failed; geni_error says why"),
    Transition(Event.START, _p(Op.NOTREADY), _p(Op.CONFIGURING), doc="POA geni_start"),
    Transition(Event.START_DONE, _p(Op.CONFIGURING), _p(Op.READY, Op.NOTREADY)),
    Transition(Event.STOP, _p(Op.READY), _p(Op.STOPPING), doc="POA geni_stop"),
    Transition(Event.STOP_DONE, _p(Op.STOPPING), _p(Op.NOTREADY)),
    Transition(Event.RESTART, _p(Op.READY, Op.FAILED), _p(Op.CONFIGURING),
               doc="POA geni_restart (also the advertised way out of geni_failed)"),
    Transition(Event.RESTART_DONE, _p(Op.CONFIGURING), _p(Op.READY)),
    Transition(Event.UPDATE_USERS, _p(Op.READY), _p(Op.UPDATING_USERS),
               refusal=GeniCode.REFUSED, doc="POA geni_update_users"),
    Transition(Event.UPDATE_USERS_DONE, _p(Op.UPDATING_USERS), _p(Op.READY)),
    Transition(Event.UPDATE_USERS_CANCEL, _p(Op.UPDATING_USERS), _p(Op.READY),
               doc="POA geni_updating_users_cancel"),
    Transition(Event.DRIVER_ACTION, _p(Op.READY), _p(Op.READY_BUSY),
               doc="POA of a driver's own action (e.g. geniam_sync_routes): ready, working"),
    Transition(Event.DRIVER_ACTION_DONE, _p(Op.READY_BUSY), _p(Op.READY, Op.NOTREADY),
               doc="the driver's action finished; the state it reports"),
    Transition(Event.ACTION_FAILED, _p(Op.CONFIGURING, Op.STOPPING, Op.UPDATING_USERS,
                                       Op.READY_BUSY),
               _p(Op.FAILED), doc="an action job failed"),
    Transition(Event.UPDATE, _p(Op.READY, Op.NOTREADY, Op.UPDATING), _p(Op.UPDATING),
               refusal=GeniCode.BUSY,
               doc="Update of a provisioned sliver: it keeps running as it was; the change "
                   "waits for Provision (geni_updating is an extension state, AM API v4)"),
    Transition(Event.UPDATE_COMMIT, _p(Op.UPDATING), _p(Op.CONFIGURING),
               doc="Provision of an updated sliver: update job queued (reconfigure in place)"),
    Transition(Event.UPDATE_DONE, _p(Op.CONFIGURING), _p(Op.READY, Op.NOTREADY),
               doc="update job: the driver's state after reconfiguring"),
    Transition(Event.UPDATE_REVERT, _p(Op.UPDATING), _p(Op.READY, Op.NOTREADY),
               doc="the pending change dropped (not provisioned in time, Shutdown, or an "
                   "Update back to the running spec): the state it had before"),
    Transition(Event.SHUTDOWN, _p(Op.NOTREADY, Op.CONFIGURING, Op.READY, Op.READY_BUSY,
                                  Op.UPDATING_USERS, Op.FAILED),
               _p(Op.STOPPING), refusal=GeniCode.REFUSED,
               doc="operator Shutdown: stop job queued"),
    Transition(Event.RENEW, _LIVE, None, doc="Renew: same state, new expiry"),
    Transition(Event.DELETE, _LIVE, (UNALLOCATED,), doc="Delete: reservation freed at once"),
    Transition(Event.EXPIRE, _LIVE, (UNALLOCATED,), doc="reaper: expiry passed"),
    Transition(Event.FAIL, _p(*_PROVISIONED_OPS), _p(Op.FAILED),
               doc="reconciler: the substrate lost it"),
)

_BY_EVENT: dict[Event, Transition] = {t.event: t for t in TRANSITIONS}
assert len(_BY_EVENT) == len(TRANSITIONS), "one row per event"


class IllegalTransition(GeniError):
    """An event that the table does not allow from the sliver's current state."""

    def __init__(self, event: Event, state: State, target: State | None = None,
                 code: GeniCode = GeniCode.UNSUPPORTED, subject: str = ""):
        self.event, self.state, self.target = event, state, target
        where = f"{subject} is " if subject else ""
        msg = f"cannot {event.value}: {where}{format_state(state)}"
        if target is not None:
            msg += f" (to {format_state(target)})"
        super().__init__(code, msg)


def format_state(state: State) -> str:
    alloc, op = state
    return alloc.value if op is None else f"{alloc.value}/{op.value}"


def as_state(allocation: str, operational: str | None) -> State:
    return Alloc(allocation), (Op(operational) if operational else None)


def next_state(state: State, event: Event, target: State | None = None, *,
               subject: str = "") -> State:
    """The state after `event`, or IllegalTransition. `target` picks among several legal ones
    (it must be given when the row lists more than one)."""
    row = _BY_EVENT[event]
    if state not in row.sources:
        raise IllegalTransition(event, state, target, row.refusal, subject)
    if row.targets is None:
        if target is not None and target != state:
            raise IllegalTransition(event, state, target, row.refusal, subject)
        return state
    if target is None:
        if len(row.targets) != 1:
            raise ValueError(f"event {event.value} needs an explicit target: one of "
                             f"{', '.join(format_state(t) for t in row.targets)}")
        return row.targets[0]
    if target not in row.targets:
        raise IllegalTransition(event, state, target, row.refusal, subject)
    return target


def allowed(state: State, event: Event) -> bool:
    return state in _BY_EVENT[event].sources


def targets(event: Event) -> tuple[State, ...]:
    """The states `event` may lead to (empty for an event that keeps the state)."""
    return _BY_EVENT[event].targets or ()


def all_states() -> tuple[State, ...]:
    return (UNALLOCATED, *_LIVE)


def live(state: State) -> bool:
    return state[0] is not Alloc.UNALLOCATED


def try_transition(state: State, event: Event, target: State | None = None) -> State | None:
    """The state after `event`, or None when the table does not allow it (no exception): for
    the "if it is still allowed, move it" decisions of jobs, reaper and reconciler."""
    row = _BY_EVENT[event]
    if state not in row.sources:
        return None
    if row.targets is None:
        return state if target in (None, state) else None
    if target is None:
        return row.targets[0] if len(row.targets) == 1 else None
    return target if target in row.targets else None


# ---- one descriptor per operational state and per action -------------------------------------
@dataclass(frozen=True)
class StateInfo:
    """An operational state (AM API v3 section 7): `transient` ("wait") states move on by
    themselves because a job is working on the sliver; stable ("final") ones need an action.
    `failed_by` is the event that fails a sliver found waiting here with no job left."""

    op: Op
    transient: bool
    failed_by: Event | None = None


OP_STATES: dict[Op, StateInfo] = {info.op: info for info in (
    StateInfo(Op.PENDING_ALLOCATION, True, Event.PROVISION_FAILED),
    StateInfo(Op.NOTREADY, False),
    StateInfo(Op.CONFIGURING, True, Event.ACTION_FAILED),
    StateInfo(Op.STOPPING, True, Event.ACTION_FAILED),
    StateInfo(Op.READY, False),
    StateInfo(Op.READY_BUSY, True, Event.ACTION_FAILED),
    StateInfo(Op.FAILED, False),
    StateInfo(Op.UPDATING_USERS, True, Event.ACTION_FAILED),
    # an extension (AM API v4 Update): the sliver runs as it was while a changed spec waits
    # for the experimenter's Provision; no job works on it, expiry of the change reverts it
    StateInfo(Op.UPDATING, False),
)}
assert set(OP_STATES) == set(Op), "one descriptor per operational state"
#: Operational states a sliver only passes through while a job works on it.
TRANSIENT: frozenset[Op] = frozenset(op for op, i in OP_STATES.items() if i.transient)
#: Operational states a sliver stays in until someone acts.
STABLE: frozenset[Op] = frozenset(op for op, i in OP_STATES.items() if not i.transient)


@dataclass(frozen=True)
class ActionInfo:
    """One kind of job on a sliver: its name in the job table, its AM API action name (None:
    not a PerformOperationalAction), the event that queues it (the sliver moves into
    `waiting`), the events that record success and failure. Delete has no waiting state: the
    sliver is unallocated when its job is queued."""

    job: str
    geni: str | None
    start: Event
    done: Event | None
    failed: Event | None
    waiting: Op | None

    @property
    def finish(self) -> Event:
        """`done` of a job that records a completion (every one but delete)."""
        if self.done is None:
            raise ValueError(f"job {self.job!r} records no completion")
        return self.done

    @property
    def result(self) -> Op | None:
        """Where a standard action leaves a healthy sliver (drivers.base.ACTION_RESULTS)."""
        return ACTION_RESULTS.get(self.geni) if self.geni else None


#: Job action of an operational action a driver advertises beyond the GENI ones.
DRIVER_ACTION = "driver_action"

JOBS: tuple[ActionInfo, ...] = (
    ActionInfo("provision", None, Event.PROVISION, Event.PROVISION_DONE, Event.PROVISION_FAILED,
               Op.PENDING_ALLOCATION),
    ActionInfo("start", "geni_start", Event.START, Event.START_DONE, Event.ACTION_FAILED,
               Op.CONFIGURING),
    ActionInfo("stop", "geni_stop", Event.STOP, Event.STOP_DONE, Event.ACTION_FAILED,
               Op.STOPPING),
    ActionInfo("restart", "geni_restart", Event.RESTART, Event.RESTART_DONE, Event.ACTION_FAILED,
               Op.CONFIGURING),
    ActionInfo("update_users", "geni_update_users", Event.UPDATE_USERS, Event.UPDATE_USERS_DONE,
               Event.ACTION_FAILED, Op.UPDATING_USERS),
    ActionInfo(DRIVER_ACTION, None, Event.DRIVER_ACTION, Event.DRIVER_ACTION_DONE,
               Event.ACTION_FAILED, Op.READY_BUSY),
    ActionInfo("update", None, Event.UPDATE_COMMIT, Event.UPDATE_DONE, Event.ACTION_FAILED,
               Op.CONFIGURING),
    ActionInfo("delete", None, Event.DELETE, None, None, None),
)
#: job action -> descriptor
JOB_ACTIONS: dict[str, ActionInfo] = {a.job: a for a in JOBS}
#: AM API action name -> descriptor (the standard actions a POA queues a job for)
ACTIONS: dict[str, ActionInfo] = {a.geni: a for a in JOBS if a.geni}
#: AM API action name -> (event that starts it, event that completes it)
ACTION_EVENTS: dict[str, tuple[Event, Event]] = {g: (a.start, a.finish) for g, a in ACTIONS.items()}
assert all(a.waiting is None or OP_STATES[a.waiting].transient for a in JOBS)
assert all(a.result is None or (Alloc.PROVISIONED, a.result) in targets(a.finish) for a in JOBS)
assert all(a.waiting is None or (Alloc.PROVISIONED, a.waiting) in targets(a.start) for a in JOBS)


# ---- jobs have a life of their own ------------------------------------------------------------
class JobState:
    """A job row's state (plain strings: they are written to the database as they are)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


#: Legal moves of a job row: claimed by a worker, handed back (retry, lease expiry or a worker
#: that stopped), finished either way; the reconciler may fail a queued job it gives up on. A
#: finished job is never reopened (a new job is queued instead).
JOB_TRANSITIONS: dict[str, frozenset[str]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.FAILED, JobState.DONE}),
    JobState.RUNNING: frozenset({JobState.RUNNING, JobState.QUEUED, JobState.DONE,
                                 JobState.FAILED}),
    JobState.DONE: frozenset(),
    JobState.FAILED: frozenset(),
}


def job_move_allowed(current: str, new: str) -> bool:
    return new in JOB_TRANSITIONS.get(current, frozenset())


def job_sources(new: str) -> tuple[str, ...]:
    """The job states a job may move to `new` from (for guarded UPDATEs)."""
    return tuple(sorted(s for s, to in JOB_TRANSITIONS.items() if new in to))


def table_markdown() -> str:
    """The table as Markdown, for docs/state.md (regenerate with `python -m am.states`)."""
    lines = ["| event | from | to | refused with |", "|---|---|---|---|"]
    for t in TRANSITIONS:
        src = _summarise(t.sources)
        dst = "(unchanged)" if t.targets is None else _summarise(t.targets)
        lines.append(f"| `{t.event.value}` | {src} | {dst} | {t.refusal.name} |")
    return "\n".join(lines)


def _summarise(states: Iterable[State]) -> str:
    states = tuple(states)
    if set(states) == set(_LIVE):
        return "any live state"
    if set(states) == set(_p(*_PROVISIONED_OPS)):
        return "geni_provisioned/any"
    return ", ".join(f"`{format_state(s)}`" for s in states)


if __name__ == "__main__":
    print(table_markdown())
