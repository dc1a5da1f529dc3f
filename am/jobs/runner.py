"""The idempotent job body: one job = one driver call for one sliver.

Celery tasks (`am.jobs.tasks`) call `run_job`; tests call it directly as the "worker". Rules:
  * a per-sliver lease row in the database means two jobs never act on one sliver at once;
    a crashed worker's lease is taken over once it expires;
  * a job already done (or failed) is skipped, so at-least-once delivery is harmless;
  * every state write goes through `Store.transition` (the table in `am.states`);
  * a transient `DriverError` raises `RetryableJobError` (the Celery layer retries with back-off)
    until `max_attempts`; any other failure marks the sliver `geni_failed` with the cause;
  * a delete job always ends by removing what the driver made (driver.delete, falling back to
    `release(handle)`), whatever state the sliver record is in.
"""
from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta

from sqlalchemy import select

from am import states
from am.states import Event, Op
from am.store import Job, JobState, Slice, Sliver, SliverLease, Store, spec_from_dict, utcnow
from drivers.base import DriverError, OperationalState, ProvisionResult, SliverSpec

log = logging.getLogger(__name__)

ACTIONS = ("provision", "start", "stop", "restart", "update_users", "delete")
#: POA action name -> job action
ACTION_JOBS = {"geni_start": "start", "geni_stop": "stop", "geni_restart": "restart",
               "geni_update_users": "update_users"}
_DONE_EVENT = {"start": Event.START_DONE, "stop": Event.STOP_DONE, "restart": Event.RESTART_DONE,
               "update_users": Event.UPDATE_USERS_DONE}
_GENI_ACTION = {v: k for k, v in ACTION_JOBS.items()}

DEFAULT_LEASE_S = 300.0
DEFAULT_MAX_ATTEMPTS = 5


class RetryableJobError(Exception):
    """Transient: try the job again later (driver hiccup, or another worker holds the sliver)."""


class JobNotFound(LookupError):
    pass


def run_job(store: Store, site, job_id: int, *, worker_id: str,
            lease_s: float = DEFAULT_LEASE_S, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> None:
    """Run job `job_id` to completion (or record why it could not)."""
    with store.read() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id}")
        if job.state in (JobState.DONE, JobState.FAILED):
            return
        sliver_id = job.sliver_id
    if not store.acquire_lease(sliver_id, worker_id, job_id, lease_s):
        holder = store.lease_holder(sliver_id)
        raise RetryableJobError(f"sliver {sliver_id} is locked by {holder[0] if holder else '?'}")
    try:
        _run_locked(store, site, job_id, worker_id=worker_id, max_attempts=max_attempts)
    finally:
        store.release_lease(sliver_id, worker_id)


def _run_locked(store: Store, site, job_id: int, *, worker_id: str, max_attempts: int) -> None:
    with store.write() as session:
        job = session.get(Job, job_id)
        if job is None or job.state in (JobState.DONE, JobState.FAILED):
            return   # another worker finished it between our read and our lease
        job.state, job.attempts = JobState.RUNNING, job.attempts + 1
        job.lease_owner, job.heartbeat = worker_id, utcnow()
        action, attempts = job.action, job.attempts
        sliver = session.get(Sliver, job.sliver_id)
        spec = _spec_for_driver(store, session, sliver)
        driver_kind, facts = sliver.driver, dict(sliver.facts or {})
        shut_down = session.get(Slice, sliver.slice_id).shutdown
        state = states.as_state(sliver.allocation_state, sliver.operational_state)
        urn = sliver.urn
    if action not in ACTIONS:
        _finish(store, job_id, failed=True, error=f"unknown job action {action!r}")
        return
    driver = site.drivers.get(driver_kind)
    if driver is None:
        _fail(store, job_id, action, f"driver {driver_kind!r} is not configured at this AM")
        return
    if action != "delete" and not _still_wanted(action, state):
        _finish(store, job_id, note=f"skipped: sliver is {states.format_state(state)}")
        return
    if shut_down and action in ("provision", "start", "restart", "update_users"):
        # an operator shut the slice down: nothing may (re)gain access to the substrate
        _fail(store, job_id, action, "slice was shut down by an operator before this ran")
        return
    try:
        if action == "provision":
            result = driver.provision(spec)
            _provisioned(store, job_id, result)
        elif action == "delete":
            _delete(driver, spec, facts)
            _finish(store, job_id)
        else:
            new_state = driver.perform(spec, _GENI_ACTION[action])
            _acted(store, job_id, action, OperationalState(new_state))
    except DriverError as exc:
        if exc.transient and attempts < max_attempts:
            _requeue(store, job_id, f"{exc} (attempt {attempts} of {max_attempts})")
            raise RetryableJobError(f"job {job_id} ({action} {urn}): {exc}") from exc
        _fail(store, job_id, action, str(exc) or type(exc).__name__)
        if action == "delete":
            _release_handle(driver, facts)
    except Exception as exc:   # noqa: BLE001 - a driver bug must not leave the sliver pending forever
        log.exception("job %d (%s %s) crashed", job_id, action, urn)
        _fail(store, job_id, action, f"internal error: {type(exc).__name__}: {exc}")
        if action == "delete":
            _release_handle(driver, facts)


def _spec_for_driver(store: Store, session, sliver: Sliver) -> SliverSpec:
    """The stored spec with the slice's current SSH keys (geni_users can change after Allocate)."""
    spec = spec_from_dict(sliver.spec)
    users = store.user_keys(session, sliver.slice_id)
    return dataclasses.replace(spec, users=users) if users else spec


_WAITING_IN = {"provision": Op.PENDING_ALLOCATION, "start": Op.CONFIGURING,
               "restart": Op.CONFIGURING, "stop": Op.STOPPING, "update_users": Op.UPDATING_USERS}


def _still_wanted(action: str, state: states.State) -> bool:
    """Is the sliver still in the state this job was queued for? (Delete, expiry, Shutdown or
    a cancel may have moved it since; then the job has nothing to do.)"""
    alloc, op = state
    return alloc is states.Alloc.PROVISIONED and op is _WAITING_IN[action]


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


def _locked_sliver(session, job: Job) -> Sliver:
    return session.scalars(select(Sliver).where(Sliver.id == job.sliver_id).with_for_update()
                           .execution_options(populate_existing=True)).one()


def _provisioned(store: Store, job_id: int, result: ProvisionResult) -> None:
    with store.write() as session:
        job = session.get(Job, job_id)
        sliver = _locked_sliver(session, job)
        sliver.facts = {**(sliver.facts or {}),
                        "macs": dict(result.macs),
                        "logins": [{"hostname": l.hostname, "port": l.port, "username": l.username}
                                   for l in result.logins],
                        **({"handle": result.handle} if result.handle else {})}
        sliver.resource_status = result.resource_status
        current = states.as_state(sliver.allocation_state, sliver.operational_state)
        if current != (states.Alloc.PROVISIONED, Op.PENDING_ALLOCATION):
            _mark(job, JobState.DONE, f"sliver became {states.format_state(current)} meanwhile")
            return
        target = (states.Alloc.PROVISIONED, Op(OperationalState(result.state).value))
        if states.allowed(current, Event.PROVISION_DONE) and target in _targets(Event.PROVISION_DONE):
            store.transition(session, sliver, Event.PROVISION_DONE, target, error="")
            _mark(job, JobState.DONE)
        else:
            msg = f"driver reported {result.state.value} after provisioning"
            store.transition(session, sliver, Event.PROVISION_FAILED, error=msg)
            _mark(job, JobState.FAILED, msg)


def _acted(store: Store, job_id: int, action: str, reported: OperationalState) -> None:
    with store.write() as session:
        job = session.get(Job, job_id)
        sliver = _locked_sliver(session, job)
        current = states.as_state(sliver.allocation_state, sliver.operational_state)
        event = _DONE_EVENT[action]
        if not states.allowed(current, event):
            _mark(job, JobState.DONE, f"sliver became {states.format_state(current)} meanwhile")
            return
        target = (states.Alloc.PROVISIONED, Op(reported.value))
        if target in _targets(event):
            store.transition(session, sliver, event, target, error="")
            _mark(job, JobState.DONE)
        else:
            msg = f"{_GENI_ACTION[action]}: driver reported {reported.value}"
            store.transition(session, sliver, Event.ACTION_FAILED, error=msg)
            _mark(job, JobState.FAILED, msg)


def _targets(event: Event) -> tuple[states.State, ...]:
    row = next(t for t in states.TRANSITIONS if t.event is event)
    return row.targets or ()


def _fail(store: Store, job_id: int, action: str, error: str) -> None:
    """Permanent failure: the job fails and the sliver (if still in the job's state) goes to
    geni_failed with the cause as geni_error."""
    with store.write() as session:
        job = session.get(Job, job_id)
        _mark(job, JobState.FAILED, error)
        if action == "delete":
            return   # the sliver is already unallocated; the reconciler frees leaked substrate
        sliver = _locked_sliver(session, job)
        current = states.as_state(sliver.allocation_state, sliver.operational_state)
        event = Event.PROVISION_FAILED if action == "provision" else Event.ACTION_FAILED
        if states.allowed(current, event):
            store.transition(session, sliver, event, error=error)


def _requeue(store: Store, job_id: int, error: str) -> None:
    with store.write() as session:
        job = session.get(Job, job_id)
        _mark(job, JobState.QUEUED, error)
        job.lease_owner = None


def _finish(store: Store, job_id: int, *, failed: bool = False, error: str = "",
            note: str = "") -> None:
    with store.write() as session:
        _mark(session.get(Job, job_id), JobState.FAILED if failed else JobState.DONE, error or note)


def _mark(job: Job, state: str, error: str = "") -> None:
    job.state, job.error, job.heartbeat = state, error, utcnow()


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
            if lease is None or lease.expires <= now or lease.job_id != job.id:
                job.state, job.lease_owner = JobState.QUEUED, None
                job.error = (job.error + "; " if job.error else "") + "interrupted: lease expired"
                ids.append(job.id)
        stale = session.scalars(select(Job).where(
            Job.state == JobState.QUEUED,
            Job.updated <= now - timedelta(seconds=queued_grace_s))).all()
        ids.extend(j.id for j in stale if j.id not in ids)
    return sorted(ids)


__all__ = ["ACTION_JOBS", "JobNotFound", "RetryableJobError", "requeue_interrupted", "run_job"]
