"""The idempotent job body: one job = one driver call for one sliver.

Celery tasks (`am.jobs.tasks`) call `run_job`; tests call it directly as the "worker". Rules:
  * a per-sliver lease row in the database means two jobs never act on one sliver at once;
    a heartbeat renews it while the driver works, so only a crashed worker's lease expires
    and is taken over;
  * a job already done (or failed) is skipped, so at-least-once delivery is harmless;
  * every state write goes through `Store.transition` (the table in `am.states`);
  * a transient `DriverError` raises `RetryableJobError` (the Celery layer retries with back-off)
    until `max_attempts`; any other failure marks the sliver `geni_failed` with the cause;
  * each of the job's transactions is re-run on a database deadlock or serialization failure
    (`am.store.retry`); one that keeps failing so makes the whole job a `RetryableJobError`,
    never a failed sliver. Its row locks follow the store's order: sliver, job, lease;
  * a delete job always ends by removing what the driver made (driver.delete, falling back to
    `release(handle)`), whatever state the sliver record is in.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import DBAPIError

from am import states
from am.service import hybrid
from am.states import Event, Op
from am.store import Job, JobState, Slice, Sliver, SliverLease, Store, pending, spec_from_dict, utcnow
from am.store.retry import retry_transient, transient_cause
from drivers.base import DriverError, OperationalState, ProvisionResult, SliverSpec
from drivers.routesync import ROUTES_OPTION, RouteError, parse_routes_option

log = logging.getLogger(__name__)

#: Job action for an operational action a driver advertises beyond the GENI ones (its
#: `capabilities.actions`, e.g. geniam_sync_routes). The job's args carry
#: {"action": <POA action name>, "options": {<the POA options the driver takes>}}.
DRIVER_ACTION = states.DRIVER_ACTION
ACTIONS = tuple(states.JOB_ACTIONS)
#: POA action name -> job action
ACTION_JOBS = {geni: a.job for geni, a in states.ACTIONS.items()}
_GENI_ACTION = {a.job: geni for geni, a in states.ACTIONS.items()}

DEFAULT_LEASE_S = 300.0
DEFAULT_MAX_ATTEMPTS = 5


class RetryableJobError(Exception):
    """Transient: try the job again later (driver hiccup, or another worker holds the sliver)."""


#: Seconds between two looks at a sliver whose start is under way on the substrate.
DEFAULT_POLL_S = 0.3
#: Job actions whose driver may answer "under way" (their waiting state): the job then polls.
POLLED_ACTIONS = ("start", "restart")


class PollLater(Exception):
    """The job's action is under way on the substrate (a VM booting): the driver started it
    and reported the action's waiting state. The job is queued again with its lease dropped
    (the sliver stays in its waiting state, an open job still works on it) and should be run
    again after `delay_s`; that run asks the driver once more (`perform(geni_start)` on a
    booting sliver reports its progress) and records ready, or failed with the driver's
    reason. A poll is not an attempt: it does not count against `max_attempts`. The queue's
    worker sends the re-run (`am.jobs.tasks`); if that message is lost, the reconciler
    re-sends the queued job after its grace."""

    def __init__(self, job_id: int, delay_s: float = DEFAULT_POLL_S):
        super().__init__(f"job {job_id}: under way on the substrate; look again in {delay_s} s")
        self.job_id, self.delay_s = job_id, delay_s


class JobNotFound(LookupError):
    pass


@dataclasses.dataclass
class HeldLease:
    """The sliver lease a running job holds. The job's last transaction drops it together with
    the outcome (`drop`); `run_job` releases it on its own only if that never committed."""

    sliver_id: int
    owner: str
    released: bool = False

    def drop(self, store: Store, session) -> None:
        store.drop_lease(session, self.sliver_id, self.owner)


class LeaseHeartbeat:
    """Renews a held lease every `every_s` (default `lease_s / 3`) while the job's driver calls
    run, so a slow substrate operation is never mistaken for a dead worker and taken over.

    The beats come from one daemon thread per process (`_HeartbeatThread`), not one per job:
    entering and leaving the block only registers and unregisters the lease, which costs far
    less than starting and joining a thread for every job."""

    def __init__(self, store: Store, lease: HeldLease, lease_s: float,
                 every_s: float | None = None):
        self.store, self.lease, self.lease_s = store, lease, lease_s
        self.every_s = every_s if every_s is not None else lease_s / 3
        self.renewals = 0
        self.due = 0.0

    def __enter__(self) -> "LeaseHeartbeat":
        _HeartbeatThread.get().add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _HeartbeatThread.get().remove(self)

    def beat(self) -> bool:
        """Renew once; False once the lease is no longer ours (stop beating)."""
        try:
            if self.store.renew_lease(self.lease.sliver_id, self.lease.owner, self.lease_s):
                self.renewals += 1
                return True
            if not self.lease.released:
                log.warning("lease on sliver %d is no longer held by %s",
                            self.lease.sliver_id, self.lease.owner)
            return False
        except Exception as exc:   # noqa: BLE001 - a database hiccup: try next beat
            log.warning("renewing the lease on sliver %d failed: %s", self.lease.sliver_id, exc)
            return True


class _HeartbeatThread:
    """The one thread per process that renews the leases of running jobs when they are due.
    Built lazily and per process id (a forked pool child starts its own)."""

    _instance: "_HeartbeatThread | None" = None
    _instance_lock = threading.Lock()

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._cond = threading.Condition()
        self._beats: dict[int, LeaseHeartbeat] = {}
        self._thread = threading.Thread(target=self._run, name="geni-am-lease-heartbeat",
                                        daemon=True)
        self._thread.start()

    @classmethod
    def get(cls) -> "_HeartbeatThread":
        inst = cls._instance
        if inst is not None and inst.pid == os.getpid():
            return inst
        with cls._instance_lock:
            if cls._instance is None or cls._instance.pid != os.getpid():
                cls._instance = cls()
            return cls._instance

    def add(self, hb: LeaseHeartbeat) -> None:
        with self._cond:
            hb.due = time.monotonic() + hb.every_s
            self._beats[id(hb)] = hb
            self._cond.notify()

    def remove(self, hb: LeaseHeartbeat) -> None:
        with self._cond:
            self._beats.pop(id(hb), None)

    def _run(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                due = [hb for hb in self._beats.values() if hb.due <= now]
                for hb in due:
                    hb.due = now + hb.every_s
                if not due:
                    wait = min((hb.due for hb in self._beats.values()), default=now + 3600) - now
                    self._cond.wait(max(0.001, wait))
                    continue
            for hb in due:
                if not hb.beat():
                    self.remove(hb)


@dataclasses.dataclass(frozen=True)
class _Claimed:
    """What the claiming transaction read, so nothing is read twice."""

    action: str
    attempts: int
    args: dict
    spec: SliverSpec
    driver_kind: str
    facts: dict
    shut_down: bool
    state: states.State
    urn: str
    pending: dict | None = None


class _AlreadyFinished(Exception):
    """Raised inside the claiming transaction to roll it back: nothing to do."""


def run_job(store: Store, site, job_id: int, *, worker_id: str,
            lease_s: float = DEFAULT_LEASE_S, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
            heartbeat_s: float | None = None) -> None:
    """Run job `job_id` to completion (or record why it could not).

    Two database transactions in the common case: one takes the sliver's lease, marks the job
    running and reads what the driver needs; one records the outcome, finishes the job and
    drops the lease (a provision-and-start job commits the provision half in between)."""
    try:
        lease, claimed = _claim(store, job_id, worker_id, lease_s)
    except _AlreadyFinished:
        return
    except DBAPIError as exc:
        if transient_cause(exc):
            raise RetryableJobError(f"job {job_id}: {transient_cause(exc)} while claiming it") \
                from exc
        raise
    try:
        with LeaseHeartbeat(store, lease, lease_s, heartbeat_s):
            _run_claimed(store, site, job_id, claimed, lease, max_attempts=max_attempts)
    finally:
        if not lease.released:
            store.release_lease(lease.sliver_id, worker_id)


@retry_transient()
def _claim(store: Store, job_id: int, worker_id: str, lease_s: float) -> tuple[HeldLease, _Claimed]:
    """One write transaction: the job marked running, the sliver's lease (one left by a process
    killed on this host is void now, not after `lease_s`: see `_dead_local_owner`), and the
    sliver, spec and slice read. Raises JobNotFound, RetryableJobError (another live owner
    holds the sliver) or _AlreadyFinished (done or failed); both roll everything back.

    The job row is updated first: on PostgreSQL that waits for (and then sees) a concurrent
    worker finishing the same job, whose outcome and lease release commit together."""
    with store.write() as session:
        conn = session.connection()
        row = conn.execute(_CLAIM_JOB, {"job": job_id, "owner": worker_id,
                                        "now": utcnow()}).first()
        if row is None:
            if session.scalar(select(Job.id).where(Job.id == job_id)) is None:
                raise JobNotFound(f"no job {job_id}")
            raise _AlreadyFinished
        sliver_id, action, attempts, args = row
        if not store.take_lease(session, sliver_id, worker_id, job_id, lease_s):
            owner = session.scalar(select(SliverLease.owner)
                                   .where(SliverLease.sliver_id == sliver_id)) or "?"
            if not _dead_local_owner(owner):
                raise RetryableJobError(f"sliver {sliver_id} is locked by {owner}")
            store.drop_lease(session, sliver_id, owner)
            if not store.take_lease(session, sliver_id, worker_id, job_id, lease_s):
                raise RetryableJobError(f"sliver {sliver_id} is locked by another worker")
        sliver = conn.execute(_SLIVER_FOR_JOB, {"sliver": sliver_id}).one()
        spec = spec_from_dict(sliver.spec)
        users = store.user_keys(session, sliver.slice_id)
        claimed = _Claimed(
            action=action, attempts=attempts, args=dict(args or {}),
            spec=dataclasses.replace(spec, users=users) if users else spec,
            driver_kind=sliver.driver, facts=dict(sliver.facts or {}),
            shut_down=bool(sliver.shutdown),
            state=states.as_state(sliver.allocation_state, sliver.operational_state),
            urn=sliver.urn, pending=sliver.pending)
    return HeldLease(sliver_id, worker_id), claimed


def _run_claimed(store: Store, site, job_id: int, claimed: _Claimed, lease: HeldLease, *,
                 max_attempts: int) -> None:
    action, attempts, job_args, spec = claimed.action, claimed.attempts, claimed.args, claimed.spec
    driver_kind, facts, shut_down = claimed.driver_kind, claimed.facts, claimed.shut_down
    state, urn = claimed.state, claimed.urn
    if action not in ACTIONS:
        _finish(store, job_id, failed=True, error=f"unknown job action {action!r}",
                lease=lease)
        return
    if (action == "provision" and job_args.get("start")
            and state == (states.Alloc.PROVISIONED, Op.CONFIGURING)):
        # a provision-and-start job that was interrupted after the provision half committed
        # (worker killed, transient start error): only the start is left to do
        action = "start"
    driver = site.drivers.get(driver_kind)
    if driver is None:
        _fail(store, job_id, action, f"driver {driver_kind!r} is not configured at this AM",
              lease)
        return
    if action != "delete" and not _still_wanted(action, state):
        _finish(store, job_id, note=f"skipped: sliver is {states.format_state(state)}",
                lease=lease)
        return
    if shut_down and action in ("provision", "start", "restart", "update_users", "update"):
        # an operator shut the slice down: nothing may (re)gain access to the substrate
        _fail(store, job_id, action, "slice was shut down by an operator before this ran", lease)
        return
    try:
        if action == "provision":
            result = driver.provision(spec)
            hybrid.plug_control_plane(store, site, spec)   # a hybrid router's CPU port
            if _provisioned(store, job_id, result, then_start=bool(job_args.get("start")),
                            lease=lease, known=state, facts=facts):
                # start_on_provision: the provision half is committed first (Status shows
                # geni_configuring during the boot, and a retry after a crash in the start
                # never repeats the provision), then it boots through the same transitions a
                # geni_start takes
                new_state = OperationalState(driver.perform(spec, _GENI_ACTION["start"]))
                if new_state is Op.CONFIGURING:
                    _poll_again(store, job_id, lease, job_args)
                _acted(store, job_id, "start", new_state, lease,
                       known=(states.Alloc.PROVISIONED, Op.CONFIGURING))
        elif action == "delete":
            _delete(driver, spec, facts)
            _finish(store, job_id, lease=lease)
        elif action == "update":
            if not claimed.pending or not claimed.pending.get("spec"):
                _fail(store, job_id, action, "no pending update to apply", lease)
                return
            new_spec = spec_from_dict(claimed.pending["spec"])
            if spec.users:
                new_spec = dataclasses.replace(new_spec, users=spec.users)
            result = driver.update(spec, new_spec)
            _updated(store, job_id, result, lease, facts)
        elif action == DRIVER_ACTION:
            new_state = _driver_action(driver, spec, job_args)
            _acted(store, job_id, action, OperationalState(new_state), lease, known=state)
        else:
            # a poll of a start under way asks the driver as a start does: a restart's second
            # look must not restart it again
            geni = _GENI_ACTION["start" if job_args.get("poll") else action]
            new_state = OperationalState(driver.perform(spec, geni))
            if new_state is Op.CONFIGURING and action in POLLED_ACTIONS:
                _poll_again(store, job_id, lease, job_args)
            logins = driver.logins(spec) if action == "update_users" else None
            _acted(store, job_id, action, OperationalState(new_state), lease, known=state,
                   facts=None if logins is None else {**facts, "logins": _login_facts(logins)})
    except DriverError as exc:
        if exc.transient and attempts < max_attempts:
            _requeue(store, job_id, f"{exc} (attempt {attempts} of {max_attempts})", lease)
            raise RetryableJobError(f"job {job_id} ({action} {urn}): {exc}") from exc
        _fail(store, job_id, action, str(exc) or type(exc).__name__, lease)
        if action == "delete":
            _release_handle(driver, facts)
    except PollLater:
        raise                    # queued again already: the worker sends the next look
    except Exception as exc:   # noqa: BLE001 - a driver bug must not leave the sliver pending forever
        if transient_cause(exc):   # recording the outcome kept deadlocking: do the job again
            raise RetryableJobError(f"job {job_id} ({action} {urn}): "
                                    f"{transient_cause(exc)} recording its outcome") from exc
        log.exception("job %d (%s %s) crashed", job_id, action, urn)
        _fail(store, job_id, action, f"internal error: {type(exc).__name__}: {exc}", lease)
        if action == "delete":
            _release_handle(driver, facts)


def _driver_action(driver, spec: SliverSpec, args: dict) -> OperationalState:
    """A driver's own action. A route change (option geniam_routes) first replaces the
    control plane's route set (`set_routes`), then the action syncs the forwarding plane."""
    action = args.get("action")
    if not isinstance(action, str) or action not in driver.capabilities.actions:
        raise DriverError(f"driver {driver.kind} has no action {action!r}")
    options = args.get("options") or {}
    if ROUTES_OPTION in options:
        try:
            routes = parse_routes_option(options[ROUTES_OPTION])
        except RouteError as exc:
            raise DriverError(str(exc)) from None
        driver.set_routes(spec, routes)
    return OperationalState(driver.perform(spec, action))


def _still_wanted(action: str, state: states.State) -> bool:
    """Is the sliver still in the state this job was queued for? (Delete, expiry, Shutdown or
    a cancel may have moved it since; then the job has nothing to do.)"""
    alloc, op = state
    return alloc is states.Alloc.PROVISIONED and op is states.JOB_ACTIONS[action].waiting


def _delete(driver, spec: SliverSpec, facts: dict) -> None:
    driver.delete(spec)
    _release_handle(driver, facts)


def _release_handle(driver, facts: dict) -> None:
    handle = facts.get("handle")
    if not handle:
        return
    try:
        driver.release(handle)
    except Exception as exc:   # noqa: BLE001 - the reconciler will find the orphan
        log.warning("releasing %s failed: %s", handle, exc)


def _locked_sliver(session, sliver_id: int) -> Sliver:
    return session.scalars(_LOCK_SLIVER, {"sliver": sliver_id}).one()


@contextlib.contextmanager
def _outcome_tx(store: Store, lease: HeldLease) -> Iterator:
    """The job's last transaction: whatever the block records, and the lease dropped with it
    (so the outcome and the unlock commit together). `return` inside the block commits too."""
    with store.write() as session:
        yield session
        lease.drop(store, session)
    lease.released = True


def _login_facts(logins) -> list[dict]:
    return [{"hostname": l.hostname, "port": l.port, "username": l.username} for l in logins]


def _provision_facts(old: dict, result: ProvisionResult) -> dict:
    return {**old, "macs": dict(result.macs), "logins": _login_facts(result.logins),
            **({"handle": result.handle} if result.handle else {})}


@retry_transient()
def _provisioned(store: Store, job_id: int, result: ProvisionResult, *,
                 then_start: bool = False, lease: HeldLease, known: states.State,
                 facts: dict) -> bool:
    """Record the provision result. With `then_start` and a sliver that came up geni_notready,
    move it on to geni_configuring (event start), keep the lease and return True: the caller
    starts it. Otherwise this is the job's last transaction.

    `known` and `facts` are what the claim read. The common case is one conditional UPDATE
    (`Store.transition_if`); a sliver that moved meanwhile is loaded and decided on."""
    target = (states.Alloc.PROVISIONED, Op(OperationalState(result.state).value))
    with store.write() as session:
        if (known == (states.Alloc.PROVISIONED, Op.PENDING_ALLOCATION)
                and target in states.targets(Event.PROVISION_DONE)):
            starting = then_start and target[1] is Op.NOTREADY
            moved = store.transition_if(
                session, lease.sliver_id, known, Event.PROVISION_DONE, target, error="",
                values={"facts": _provision_facts(facts, result),
                        "resource_status": result.resource_status})
            if moved is not None and starting:
                moved = store.transition_if(session, lease.sliver_id, moved, Event.START,
                                            error="")
            if moved is not None:
                if not starting:
                    _mark(session, job_id, JobState.DONE)
                    lease.drop(store, session)
                return _after_provisioned(lease, starting)
        sliver = _locked_sliver(session, lease.sliver_id)
        sliver.facts = _provision_facts(sliver.facts or {}, result)
        sliver.resource_status = result.resource_status
        current = states.as_state(sliver.allocation_state, sliver.operational_state)
        starting = False
        if current != (states.Alloc.PROVISIONED, Op.PENDING_ALLOCATION):
            _mark(session, job_id, JobState.DONE,
                  f"sliver became {states.format_state(current)} meanwhile")
        elif (states.allowed(current, Event.PROVISION_DONE)
              and target in states.targets(Event.PROVISION_DONE)):
            store.transition(session, sliver, Event.PROVISION_DONE, target, error="")
            if then_start and target[1] is Op.NOTREADY:
                store.transition(session, sliver, Event.START, error="")
                starting = True
            else:
                _mark(session, job_id, JobState.DONE)
        else:
            msg = f"driver reported {result.state.value} after provisioning"
            store.transition(session, sliver, Event.PROVISION_FAILED, error=msg)
            _mark(session, job_id, JobState.FAILED, msg)
        if not starting:
            lease.drop(store, session)
    return _after_provisioned(lease, starting)


def _after_provisioned(lease: HeldLease, starting: bool) -> bool:
    """(After the commit.) The lease went with the outcome unless the start is still to come."""
    if not starting:
        lease.released = True
    return starting


@retry_transient()
def _updated(store: Store, job_id: int, result: ProvisionResult, lease: HeldLease,
             facts: dict) -> None:
    """The driver reconfigured the sliver: its pending spec becomes its spec (reservations
    shrink to what the new spec needs) and it leaves geni_configuring."""
    with _outcome_tx(store, lease) as session:
        sliver = _locked_sliver(session, lease.sliver_id)
        current = states.as_state(sliver.allocation_state, sliver.operational_state)
        if current != (states.Alloc.PROVISIONED, Op.CONFIGURING) or not sliver.pending:
            _mark(session, job_id, JobState.DONE,
                  f"sliver became {states.format_state(current)} meanwhile")
            return
        target = (states.Alloc.PROVISIONED, Op(OperationalState(result.state).value))
        if target not in states.targets(Event.UPDATE_DONE):
            msg = f"update: driver reported {result.state.value}"
            store.transition(session, sliver, Event.ACTION_FAILED, error=msg)
            _mark(session, job_id, JobState.FAILED, msg)
            return
        pending.commit(session, store, sliver, _provision_facts(facts, result),
                       result.resource_status)
        store.transition(session, sliver, Event.UPDATE_DONE, target, error="")
        _mark(session, job_id, JobState.DONE)


@retry_transient()
def _acted(store: Store, job_id: int, action: str, reported: OperationalState,
           lease: HeldLease, *, known: states.State | None = None,
           facts: dict | None = None) -> None:
    """Record an action's outcome (and the sliver's new `facts`, if given: the logins after
    geni_update_users). `known` is the sliver's state as this job last read or wrote it under
    its lease: if the sliver is still there, one conditional UPDATE records the outcome;
    otherwise it is loaded and decided on."""
    with _outcome_tx(store, lease) as session:
        if known is None or not _record_action_if(store, session, lease.sliver_id, known,
                                                  job_id, action, reported, facts):
            sliver = _locked_sliver(session, lease.sliver_id)
            if facts is not None:
                sliver.facts = {**(sliver.facts or {}), "logins": facts["logins"]}
            _record_action(store, session, sliver, job_id, action, reported)


def _record_action_if(store: Store, session, sliver_id: int, known: states.State, job_id: int,
                      action: str, reported: OperationalState, facts: dict | None) -> bool:
    """`_record_action` for a sliver still in `known`; False (nothing written) if it moved."""
    event = states.JOB_ACTIONS[action].done
    if not states.allowed(known, event):
        return False
    target = (states.Alloc.PROVISIONED, Op(reported.value))
    if target in states.targets(event):
        values = None if facts is None else {"facts": facts}
        if store.transition_if(session, sliver_id, known, event, target, error="",
                               values=values) is None:
            return False
        _mark(session, job_id, JobState.DONE)
        return True
    msg = f"{_GENI_ACTION.get(action, action)}: driver reported {reported.value}"
    if store.transition_if(session, sliver_id, known, Event.ACTION_FAILED, error=msg) is None:
        return False
    _mark(session, job_id, JobState.FAILED, msg)
    return True


def _record_action(store: Store, session, sliver: Sliver, job_id: int, action: str,
                   reported: OperationalState) -> None:
    """The action's outcome on the (locked) sliver, and the job done or failed."""
    current = states.as_state(sliver.allocation_state, sliver.operational_state)
    event = states.JOB_ACTIONS[action].done
    if not states.allowed(current, event):
        _mark(session, job_id, JobState.DONE,
              f"sliver became {states.format_state(current)} meanwhile")
        return
    target = (states.Alloc.PROVISIONED, Op(reported.value))
    if target in states.targets(event):
        store.transition(session, sliver, event, target, error="")
        _mark(session, job_id, JobState.DONE)
    else:
        msg = f"{_GENI_ACTION.get(action, action)}: driver reported {reported.value}"
        store.transition(session, sliver, Event.ACTION_FAILED, error=msg)
        _mark(session, job_id, JobState.FAILED, msg)


@retry_transient()
def _fail(store: Store, job_id: int, action: str, error: str, lease: HeldLease) -> None:
    """Permanent failure: the job fails and the sliver (if still in the job's state) goes to
    geni_failed with the cause as geni_error."""
    with _outcome_tx(store, lease) as session:
        # a delete's sliver is already unallocated (the reconciler frees leaked substrate)
        if action != "delete":
            sliver = _locked_sliver(session, lease.sliver_id)   # sliver, then job: lock order
            current = states.as_state(sliver.allocation_state, sliver.operational_state)
            # a provision-and-start job may fail in either half: pending_allocation or configuring
            for event in (Event.PROVISION_FAILED, Event.ACTION_FAILED):
                if states.allowed(current, event):
                    store.transition(session, sliver, event, error=error)
                    break
        _mark(session, job_id, JobState.FAILED, error)


def _poll_again(store: Store, job_id: int, lease: HeldLease, args: dict) -> None:
    """The driver started the action and it is under way: queue the job again as a poll (its
    args say so, the attempt is given back) and raise PollLater for the worker to re-send it."""
    _queue_poll(store, job_id, lease, {**args, "poll": True})
    raise PollLater(job_id)


@retry_transient()
def _queue_poll(store: Store, job_id: int, lease: HeldLease, args: dict) -> None:
    with _outcome_tx(store, lease) as session:
        result = session.connection().execute(_POLL_JOB, {"job": job_id, "now": utcnow(),
                                                          "args": args})
        if result.rowcount != 1:
            raise IllegalJobTransition(f"job {job_id} cannot be queued again from where it is")


@retry_transient()
def _requeue(store: Store, job_id: int, error: str, lease: HeldLease) -> None:
    with _outcome_tx(store, lease) as session:
        _mark(session, job_id, JobState.QUEUED, error, lease_owner=None)


@retry_transient()
def _finish(store: Store, job_id: int, *, lease: HeldLease, failed: bool = False,
            error: str = "", note: str = "") -> None:
    with _outcome_tx(store, lease) as session:
        _mark(session, job_id, JobState.FAILED if failed else JobState.DONE, error or note)


_KEEP = object()


class IllegalJobTransition(RuntimeError):
    """A job state write that `am.states.JOB_TRANSITIONS` does not allow (e.g. reopening a
    finished job)."""


def _mark(session, job_id: int, state: str, error: str = "", *, lease_owner=_KEEP) -> None:
    """Set the job's state (one prepared UPDATE, no ORM load), guarded by the job table: the
    UPDATE only matches a row in a state that may move to `state`."""
    params = {"job": job_id, "state": state, "error": error, "now": utcnow()}
    if lease_owner is _KEEP:
        result = session.connection().execute(_MARK_JOB[state], params)
    else:
        result = session.connection().execute(_MARK_JOB_OWNER[state],
                                              {**params, "owner": lease_owner})
    if result.rowcount != 1:
        raise IllegalJobTransition(f"job {job_id} cannot become {state} from where it is")


# The job body's statements, built once and on the tables (Core), not the mapped classes:
# constructing a statement and going through the ORM's statement layer cost more CPU than
# SQLite takes to run them, and a worker runs these hundreds of times a second.
_JOBS, _SLIVERS, _SLICES = Job.__table__, Sliver.__table__, Slice.__table__
_CLAIM_JOB = (
    update(_JOBS).where(_JOBS.c.id == bindparam("job"),
                        _JOBS.c.state.in_((JobState.QUEUED, JobState.RUNNING)))
    .values(state=JobState.RUNNING, attempts=_JOBS.c.attempts + 1,
            lease_owner=bindparam("owner"), heartbeat=bindparam("now"), updated=bindparam("now"))
    .returning(_JOBS.c.sliver_id, _JOBS.c.action, _JOBS.c.attempts, _JOBS.c.args))
_SLIVER_FOR_JOB = (
    select(_SLIVERS.c.spec, _SLIVERS.c.driver, _SLIVERS.c.facts, _SLIVERS.c.allocation_state,
           _SLIVERS.c.operational_state, _SLIVERS.c.urn, _SLIVERS.c.slice_id,
           _SLICES.c.shutdown, _SLIVERS.c.pending)
    .join(_SLICES, _SLICES.c.id == _SLIVERS.c.slice_id)
    .where(_SLIVERS.c.id == bindparam("sliver")))
#: new job state -> its UPDATE, matching only a row in a state the job table lets move there
_MARK_JOB = {new: (update(_JOBS).where(_JOBS.c.id == bindparam("job"),
                                       _JOBS.c.state.in_(states.job_sources(new)))
                   .values(state=bindparam("state"), error=bindparam("error"),
                           heartbeat=bindparam("now"), updated=bindparam("now")))
             for new in states.JOB_TRANSITIONS}
_MARK_JOB_OWNER = {new: stmt.values(lease_owner=bindparam("owner"))
                   for new, stmt in _MARK_JOB.items()}
#: a running job handed back as a readiness poll: queued, unowned, its attempt given back
_POLL_JOB = (
    update(_JOBS).where(_JOBS.c.id == bindparam("job"), _JOBS.c.state == JobState.RUNNING)
    .values(state=JobState.QUEUED, lease_owner=None, attempts=_JOBS.c.attempts - 1,
            args=bindparam("args", type_=_JOBS.c.args.type),
            error="under way on the substrate; looking again shortly",
            heartbeat=bindparam("now"), updated=bindparam("now")))
_LOCK_SLIVER = (select(Sliver).where(Sliver.id == bindparam("sliver")).with_for_update()
                .execution_options(populate_existing=True))


def requeue_interrupted(store: Store, *, now: datetime | None = None,
                        queued_grace_s: float = 60.0) -> list[int]:
    """Jobs the reconciler should send again: running under a lease that expired (or vanished:
    the worker died), and queued jobs nobody picked up within `queued_grace_s`. Running ones are
    put back to queued. Returns their ids, oldest first."""
    now = now or utcnow()
    ids: list[int] = []
    with store.write() as session:
        running = session.execute(
            select(Job, SliverLease).outerjoin(SliverLease, SliverLease.sliver_id == Job.sliver_id)
            .where(Job.state == JobState.RUNNING)).all()
        for job, lease in running:
            dead = lease is not None and lease.job_id == job.id and _dead_local_owner(lease.owner)
            if lease is None or lease.expires <= now or lease.job_id != job.id or dead:
                if dead:   # void now: the retry must not wait lease_s for the lock
                    session.delete(lease)
                job.state, job.lease_owner = JobState.QUEUED, None
                why = "its worker process is gone" if dead else "lease expired"
                job.error = (job.error + "; " if job.error else "") + f"interrupted: {why}"
                ids.append(job.id)
        stale = session.scalars(select(Job).where(
            Job.state == JobState.QUEUED,
            Job.updated <= now - timedelta(seconds=queued_grace_s))).all()
        ids.extend(j.id for j in stale if j.id not in ids)
    return sorted(ids)


def _dead_local_owner(owner: str) -> bool:
    """Whether a lease owner (`<host>:<pid>:<thread>`, see am.jobs.tasks) is a process on this
    host that no longer exists: `geni-am serve` (embedded worker) or a worker killed and
    restarted. Its leases are void at once instead of after `lease_s` (minutes), so a restarted
    AM finishes interrupted jobs right away. Anything else (another host, a live or unknown
    pid, another owner format) is left to the lease expiry."""
    host, _, rest = owner.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except OSError:          # exists but not ours (EPERM), or unknown: assume alive
        return False
    return False


__all__ = ["ACTION_JOBS", "DEFAULT_POLL_S", "DRIVER_ACTION", "HeldLease", "JobNotFound",
           "LeaseHeartbeat", "POLLED_ACTIONS", "PollLater", "RetryableJobError", "requeue_interrupted", "run_job"]
