"""The reconciler: compare the store with the substrate and repair drift.

Run at worker start-up and on a timer (`geni_am.reconcile`, see `am.jobs.periodic`). One pass:

1. **Re-queue interrupted work.** `runner.requeue_interrupted` finds running jobs whose lease
   expired (the worker died) and queued jobs nobody took (the broker lost the message: Redis
   restarted, a filesystem message eaten by a crash); they are sent again. Delivery twice is
   harmless, the job body is idempotent and leased per sliver.
2. **Give up on hopeless work.** A job interrupted `max_attempts` times (a crash loop) is not
   sent again: it fails, and its sliver goes `geni_failed` with the reason. A sliver waiting
   for a job that no longer exists (pending provisioning, or mid-action, with no open job)
   fails too. A sliver the store calls ready but the substrate no longer has goes
   `geni_failed` ("the substrate lost it").
3. **Free orphans.** Anything a driver observes that belongs to no allocated or provisioned
   sliver (`sliver_urn` None or unknown or deleted) is released.

Races are avoided by ordering, not locks: "lost" is judged on slivers read *before* the
substrate is observed (they were there when we looked), orphans on slivers read *after* it
(a sliver allocated meanwhile is never mistaken for an orphan), and every state change is
re-checked against the table in `am.states` inside its own transaction.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta


from am import states
from am.jobs.queue import submit_all
from am.states import Alloc, Event, Op
from am.store import JobState, Sliver, Store, utcnow
from drivers.base import OperationalState, SubstrateDriver

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drivers.registry import Site
    from am.jobs.queue import JobQueue

log = logging.getLogger(__name__)

#: Operational states in which the substrate must have the sliver.
_ON_SUBSTRATE = (Op.READY, Op.READY_BUSY, Op.NOTREADY)


@dataclass
class ReconcileReport:
    requeued: list[int] = field(default_factory=list)          # job ids sent again
    failed_jobs: list[int] = field(default_factory=list)       # jobs given up on
    failed_slivers: list[str] = field(default_factory=list)    # sliver URNs set geni_failed
    released: list[str] = field(default_factory=list)          # orphan handles freed
    errors: list[str] = field(default_factory=list)            # per-driver problems (logged)

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def changed(self) -> bool:
        return bool(self.requeued or self.failed_jobs or self.failed_slivers or self.released)


def reconcile(store: Store, site: Site, queue: JobQueue, *, now: datetime | None = None,
              max_attempts: int | None = None, queued_grace_s: float = 60.0,
              waiting_grace_s: float = 60.0) -> ReconcileReport:
    """One reconciliation pass (see the module docstring). `queue` has `submit(job_id)` (and
    `submit_many`, used when present: see `am.jobs.queue.submit_all`)."""
    from am.jobs import runner

    max_attempts = max_attempts or runner.DEFAULT_MAX_ATTEMPTS
    report = ReconcileReport()
    _requeue(store, queue, report, now=now, max_attempts=max_attempts,
             queued_grace_s=queued_grace_s)
    _fail_orphaned_waits(store, report, now=now or utcnow(), grace_s=waiting_grace_s)
    for kind, driver in site.drivers.items():
        if _hosted_elsewhere(site, driver):
            continue
        try:
            _check_substrate(store, kind, driver, report, site)
        except Exception as exc:   # noqa: BLE001 - one broken driver must not stop the others
            log.warning("reconcile: driver %s: %s", kind, exc)
            report.errors.append(f"{kind}: {exc}")
    if report.changed:
        log.info("reconcile: requeued %d job(s), failed %d job(s) and %d sliver(s), "
                 "released %d orphan(s)", len(report.requeued), len(report.failed_jobs),
                 len(report.failed_slivers), len(report.released))
    return report


def _hosted_elsewhere(site: Site, driver: SubstrateDriver) -> bool:
    """On a site of many hosts, a process that is no host's agent (`geni-am serve`, a worker
    without --host) never observes the substrate of components that live on hosts: their
    own workers reconcile them."""
    if not getattr(site, "hosts", None) or getattr(site, "host", None) is not None:
        return False
    comps = [c for c in site.components if c.driver == driver.kind]
    return bool(comps) and all(site.host_of(c.component_id) is not None for c in comps)


# ---- 1 + 2a: interrupted jobs ---------------------------------------------------------------
def _requeue(store: Store, queue: JobQueue, report: ReconcileReport, *, now: datetime | None,
             max_attempts: int, queued_grace_s: float) -> None:
    from am.jobs import runner

    ids = runner.requeue_interrupted(store, now=now, queued_grace_s=queued_grace_s)
    if not ids:
        return
    with store.read() as session:
        attempts = store.jobs.attempts(session, ids)
    resend: list[int] = []
    for job_id in ids:
        if attempts.get(job_id, 0) >= max_attempts:
            reason = f"gave up after {attempts[job_id]} interrupted attempts"
            if _fail_job(store, job_id, reason, report):
                log.warning("reconcile: job %d: %s", job_id, reason)
            continue
        resend.append(job_id)
    if resend:
        # as the service does: batched where the queue can (many jobs after a crash), and a
        # broker failure is logged, not raised (the jobs stay queued for the next pass)
        log.info("reconcile: re-sending job(s) %s", resend)
        submit_all(queue, resend)
        report.requeued.extend(resend)


def _fail_job(store: Store, job_id: int, reason: str, report: ReconcileReport) -> bool:
    """Fail a queued job and (if it still waits for it) its sliver, in one transaction."""
    with store.write() as session:
        job = store.jobs.get_job(session, job_id)
        if job is None or job.state != JobState.QUEUED:
            return False     # a worker took or finished it meanwhile
        job.state, job.error, job.lease_owner = JobState.FAILED, reason, None
        report.failed_jobs.append(job_id)
        if job.action == "delete":
            return True      # the sliver is already unallocated; orphans are freed below
        sliver = store.slices.sliver_by_id(session, job.sliver_id)
        # a provision-and-start job (start_on_provision) may be given up in either half:
        # pending_allocation (provision_failed) or, its provision committed, configuring
        failed = states.JOB_ACTIONS[job.action].failed
        events = ((failed, Event.ACTION_FAILED) if failed is not Event.ACTION_FAILED
                  else (failed,))
        if sliver is not None and any(_fail_sliver(store, session, sliver, event, reason)
                                      for event in events):
            report.failed_slivers.append(sliver.urn)
    return True


def _fail_sliver(store: Store, session, sliver: Sliver, event: Event, reason: str) -> bool:
    current = states.as_state(sliver.allocation_state, sliver.operational_state)
    if states.try_transition(current, event) is None:
        return False
    store.transition(session, sliver, event, error=reason)
    return True


# ---- 2b: slivers waiting for a job that does not exist ----------------------------------------
def _fail_orphaned_waits(store: Store, report: ReconcileReport, *, now: datetime,
                         grace_s: float) -> None:
    with store.write() as session:
        stuck = store.jobs.slivers_waiting_without_job(session, now - timedelta(seconds=grace_s))
        for sliver in stuck:
            op = Op(sliver.operational_state)
            event = states.OP_STATES[op].failed_by
            reason = f"no job is working on this sliver ({op.value}); gave up"
            if _fail_sliver(store, session, sliver, event, reason):
                report.failed_slivers.append(sliver.urn)
                log.warning("reconcile: %s: %s", sliver.urn, reason)


# ---- 2c + 3: substrate drift ------------------------------------------------------------------
def _check_substrate(store: Store, kind: str, driver: SubstrateDriver,
                     report: ReconcileReport, site: Site | None = None) -> None:
    """`site` (a host's part of a site of many hosts, `Site.host` set): only slivers on the
    components this process drives are expected here; other hosts reconcile their own."""
    on_substrate = [op.value for op in _ON_SUBSTRATE]
    mine = site.component if getattr(site, "host", None) else None
    with store.read() as session:
        expected = {urn for urn, component in store.slices.provisioned_on_substrate(
                        session, kind, on_substrate)
                    if mine is None or mine(component) is not None}
    observed = driver.observed()
    with store.read() as session:
        owned = store.slices.allocated_urns(session)
    seen = {o.sliver_urn for o in observed if o.sliver_urn}
    for urn in sorted(expected - seen):
        _mark_lost(store, urn, report)
    for item in observed:   # there, but the substrate says it is down (e.g. a card's pipeline)
        if item.sliver_urn in expected and item.state is OperationalState.FAILED:
            _mark_lost(store, item.sliver_urn, report,
                       reason=item.detail or "the substrate reports this sliver failed")
    for item in observed:
        if item.sliver_urn is None or item.sliver_urn not in owned:
            try:
                driver.release(item.handle)
            except Exception as exc:   # noqa: BLE001 - try again next pass
                log.warning("reconcile: releasing %s on %s failed: %s", item.handle, kind, exc)
                report.errors.append(f"{kind}: release {item.handle}: {exc}")
                continue
            log.info("reconcile: released orphan %s on %s (%s)", item.handle, kind,
                     item.sliver_urn or "owned by no sliver")
            report.released.append(item.handle)


def _mark_lost(store: Store, urn: str, report: ReconcileReport,
               reason: str = "the substrate no longer has this sliver") -> None:
    with store.write() as session:
        sliver = store.slices.lock_by_urn(session, urn)
        if sliver is None:
            return
        state = states.as_state(sliver.allocation_state, sliver.operational_state)
        if state[1] not in _ON_SUBSTRATE or state[0] is not Alloc.PROVISIONED:
            return    # deleted, or an action started, since we looked
        if _fail_sliver(store, session, sliver, Event.FAIL, reason):
            report.failed_slivers.append(urn)
            log.warning("reconcile: %s: %s", urn, reason)


__all__ = ["ReconcileReport", "reconcile"]
