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

import dataclasses
import logging
import os
import socket
import threading
import time
from datetime import datetime, timedelta

from sqlalchemy.exc import DBAPIError

from am import states
from am.service import hybrid
from am.states import Op
from am.store import JobState, Store, spec_from_dict, utcnow
from am.jobs.task import (
    DEFAULT_POLL_S,
    POLLED_ACTIONS,
    AlreadyFinished,
    HeldLease,
    JobNotFound,
    PollLater,
    RetryableJobError,
    SliverTask,
)
from am.store.jobs import IllegalJobTransition, Jobs
from am.store.retry import transient_cause
from drivers.base import (
    DriverError,
    OperationalState,
    ProvisionResult,
    SliverSpec,
    SubstrateDriver,
)
from drivers.routesync import ROUTES_OPTION, RouteError, RoutesDriver, parse_routes_option

from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from drivers.registry import Site

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


def run_job(store: Store, site: Site, job_id: int, *, worker_id: str,
            lease_s: float = DEFAULT_LEASE_S, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
            heartbeat_s: float | None = None) -> None:
    """Run job `job_id` to completion (or record why it could not).

    Two database transactions in the common case: one takes the sliver's lease, marks the job
    running and reads what the driver needs; one records the outcome, finishes the job and
    drops the lease (a provision-and-start job commits the provision half in between)."""
    try:
        task = SliverTask.claim(store, job_id, worker_id, lease_s,
                                lease_taken=_lease_taker(store, worker_id, lease_s))
    except AlreadyFinished:
        return
    except DBAPIError as exc:
        if transient_cause(exc):
            raise RetryableJobError(f"job {job_id}: {transient_cause(exc)} while claiming it") \
                from exc
        raise
    try:
        with LeaseHeartbeat(store, task.lease, lease_s, heartbeat_s):
            _run_claimed(task, site, max_attempts=max_attempts)
    finally:
        task.close()


def _lease_taker(store: Store, worker_id: str, lease_s: float):
    """Take the sliver's lease in the claim's transaction. One left by a process killed on
    this host is void now, not after `lease_s` (see `_dead_local_owner`); another live owner
    makes the job a RetryableJobError (everything rolls back)."""
    def take(session, sliver_id: int, job_id: int) -> None:
        leases = store.leases
        if leases.take_lease(session, sliver_id, worker_id, job_id, lease_s):
            return
        owner = store.jobs.lease_owner(session, sliver_id) or "?"
        if not _dead_local_owner(owner):
            raise RetryableJobError(f"sliver {sliver_id} is locked by {owner}")
        leases.drop_lease(session, sliver_id, owner)
        if not leases.take_lease(session, sliver_id, worker_id, job_id, lease_s):
            raise RetryableJobError(f"sliver {sliver_id} is locked by another worker")
    return take


def _run_claimed(task: SliverTask, site: Site, *, max_attempts: int) -> None:
    claimed = task.claimed
    action, attempts, job_args, spec = claimed.action, claimed.attempts, claimed.args, claimed.spec
    driver_kind, facts, shut_down = claimed.driver_kind, claimed.facts, claimed.shut_down
    state, urn, job_id = claimed.state, claimed.urn, task.job_id
    if action not in ACTIONS:
        task.finish(failed=True, error=f"unknown job action {action!r}")
        return
    if (action == "provision" and job_args.get("start")
            and state == (states.Alloc.PROVISIONED, Op.CONFIGURING)):
        # a provision-and-start job that was interrupted after the provision half committed
        # (worker killed, transient start error): only the start is left to do
        action = "start"
    driver = site.drivers.get(driver_kind)
    if driver is None:
        task.failed(action, f"driver {driver_kind!r} is not configured at this AM")
        return
    if action != "delete" and not _still_wanted(action, state):
        task.finish(note=f"skipped: sliver is {states.format_state(state)}")
        return
    if shut_down and action in ("provision", "start", "restart", "update_users", "update"):
        # an operator shut the slice down: nothing may (re)gain access to the substrate
        task.failed(action, "slice was shut down by an operator before this ran")
        return
    try:
        if action == "provision":
            result = driver.provision(spec)
            hybrid.plug_control_plane(task.store, site, spec)   # a hybrid router's CPU port
            if task.provisioned(result, _provision_facts(facts, result),
                                then_start=bool(job_args.get("start"))):
                # start_on_provision: the provision half is committed first (Status shows
                # geni_configuring during the boot, and a retry after a crash in the start
                # never repeats the provision), then it boots through the same transitions a
                # geni_start takes
                new_state = OperationalState(driver.perform(spec, _GENI_ACTION["start"]))
                if new_state is Op.CONFIGURING:
                    task.poll_again(job_args)
                task.acted("start", new_state, known=(states.Alloc.PROVISIONED, Op.CONFIGURING))
        elif action == "delete":
            _delete(driver, spec, facts)
            task.finish()
        elif action == "update":
            if not claimed.pending or not claimed.pending.get("spec"):
                task.failed(action, "no pending update to apply")
                return
            new_spec = spec_from_dict(claimed.pending["spec"])
            if spec.users:
                new_spec = dataclasses.replace(new_spec, users=spec.users)
            result = driver.update(spec, new_spec)
            task.updated(result, _provision_facts(facts, result))
        elif action == DRIVER_ACTION:
            new_state = _driver_action(driver, spec, job_args)
            task.acted(action, OperationalState(new_state), known=state)
        else:
            # a poll of a start under way asks the driver as a start does: a restart's second
            # look must not restart it again
            geni = _GENI_ACTION["start" if job_args.get("poll") else action]
            new_state = OperationalState(driver.perform(spec, geni))
            if new_state is Op.CONFIGURING and action in POLLED_ACTIONS:
                task.poll_again(job_args)
            logins = driver.logins(spec) if action == "update_users" else None
            task.acted(action, new_state, known=state,
                       facts=None if logins is None else {**facts,
                                                          "logins": _login_facts(logins)})
    except DriverError as exc:
        if exc.transient and attempts < max_attempts:
            task.requeue(f"{exc} (attempt {attempts} of {max_attempts})")
            raise RetryableJobError(f"job {job_id} ({action} {urn}): {exc}") from exc
        task.failed(action, str(exc) or type(exc).__name__)
        if action == "delete":
            _release_handle(driver, facts)
    except PollLater:
        raise                    # queued again already: the worker sends the next look
    except Exception as exc:   # noqa: BLE001 - a driver bug must not leave the sliver pending forever
        if transient_cause(exc):   # recording the outcome kept deadlocking: do the job again
            raise RetryableJobError(f"job {job_id} ({action} {urn}): "
                                    f"{transient_cause(exc)} recording its outcome") from exc
        log.exception("job %d (%s %s) crashed", job_id, action, urn)
        task.failed(action, f"internal error: {type(exc).__name__}: {exc}")
        if action == "delete":
            _release_handle(driver, facts)


def _driver_action(driver: SubstrateDriver, spec: SliverSpec, args: dict) -> OperationalState:
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
        cast(RoutesDriver, driver).set_routes(spec, routes)   # capabilities.routes drivers
    return OperationalState(driver.perform(spec, action))


def _still_wanted(action: str, state: states.State) -> bool:
    """Is the sliver still in the state this job was queued for? (Delete, expiry, Shutdown or
    a cancel may have moved it since; then the job has nothing to do.)"""
    alloc, op = state
    return alloc is states.Alloc.PROVISIONED and op is states.JOB_ACTIONS[action].waiting


def _delete(driver: SubstrateDriver, spec: SliverSpec, facts: dict) -> None:
    driver.delete(spec)
    _release_handle(driver, facts)


def _release_handle(driver: SubstrateDriver, facts: dict) -> None:
    handle = facts.get("handle")
    if not handle:
        return
    try:
        driver.release(handle)
    except Exception as exc:   # noqa: BLE001 - the reconciler will find the orphan
        log.warning("releasing %s failed: %s", handle, exc)


def _login_facts(logins) -> list[dict]:
    return [{"hostname": l.hostname, "port": l.port, "username": l.username} for l in logins]


def _provision_facts(old: dict, result: ProvisionResult) -> dict:
    return {**old, "macs": dict(result.macs), "logins": _login_facts(result.logins),
            **({"handle": result.handle} if result.handle else {})}


#: the job's state write, guarded by the job state table (IllegalJobTransition otherwise)
_mark = Jobs.mark


def requeue_interrupted(store: Store, *, now: datetime | None = None,
                        queued_grace_s: float = 60.0) -> list[int]:
    """Jobs the reconciler should send again: running under a lease that expired (or vanished:
    the worker died), and queued jobs nobody picked up within `queued_grace_s`. Running ones are
    put back to queued. Returns their ids, oldest first."""
    now = now or utcnow()
    ids: list[int] = []
    with store.write() as session:
        for job, lease in store.jobs.running_with_leases(session):
            dead = lease is not None and lease.job_id == job.id and _dead_local_owner(lease.owner)
            if lease is None or lease.expires <= now or lease.job_id != job.id or dead:
                if dead:   # void now: the retry must not wait lease_s for the lock
                    store.leases.void_lease(session, lease)
                job.state, job.lease_owner = JobState.QUEUED, None
                why = "its worker process is gone" if dead else "lease expired"
                job.error = (job.error + "; " if job.error else "") + f"interrupted: {why}"
                ids.append(job.id)
        stale = store.jobs.queued_before(session, now - timedelta(seconds=queued_grace_s))
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


__all__ = ["ACTION_JOBS", "DEFAULT_POLL_S", "DRIVER_ACTION", "HeldLease", "IllegalJobTransition",
           "JobNotFound", "LeaseHeartbeat", "POLLED_ACTIONS", "PollLater", "RetryableJobError",
           "requeue_interrupted", "run_job"]
