"""Celery tasks: thin shells around the idempotent job body in `am.jobs.runner`.

`register_tasks(app, runtime)` puts these tasks on an app built by `make_celery`:

  geni_am.run_job(job_id)   provision / action / delete of one sliver (`runner.run_job`); a
                            start under way on the substrate (a VM booting) is looked at again
                            by a re-sent run_job with a countdown (`runner.PollLater`)
  geni_am.run_jobs(ids)     several such jobs in order, in one message (`submit_many`)
  geni_am.reap()            expire allocations and leases (`Aggregate.reap`)
  geni_am.reconcile()       re-queue interrupted work, fail hopeless slivers, free orphans
  geni_am.sync_routes()     re-sync running hybrid routers' forwarding planes (`am.service.routesync`)

All state lives in the database; the task only decides *when* to try again. A transient driver
error (`RetryableJobError`, including "another worker holds this sliver's lease") is retried
with exponential back-off and full jitter. Anything else is recorded by the runner itself.
Because the body is idempotent and guarded by a per-sliver database lease, a message delivered
twice (redelivery after a killed worker, a re-send by the reconciler) does the work once.

A batch message is acknowledged when its last job finished. A transient failure of one job
does not hold back or repeat the others: that job alone is re-sent as a `run_job` message with
the usual back-off (as its first retry). A batch whose jobs turn out slow (a real substrate,
seconds per job) hands its not-yet-started jobs back to the broker as single messages after
`batch_handoff_s`, so idle workers share them instead of one pool child running them in turn.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from celery import Celery, Task

from am.jobs.celery_queue import MAX_BATCH_SIZE, REAP, RECONCILE, RUN_JOB, RUN_JOBS, SYNC_ROUTES

if TYPE_CHECKING:
    from am.jobs.hosts import HostGuard
    from am.jobs.queue import JobQueue
    from am.service.aggregate import Aggregate
    from am.store import Store
    from drivers.registry import Site

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """Back-off for transient failures: delay = uniform(0.5, 1) * min(cap, base * 2**n)."""

    max_retries: int = 8
    base_s: float = 0.2
    cap_s: float = 30.0

    def delay(self, retries: int, rng: Callable[[], float] = random.random) -> float:
        ceiling = min(self.cap_s, self.base_s * (2 ** max(0, retries)))
        return ceiling * (0.5 + 0.5 * rng())


@dataclass
class JobRuntime:
    """What the task bodies need, built once per worker process (see `am.jobs.runtime`)."""

    store: Store
    site: Site
    aggregate: Aggregate  # for reap
    queue: JobQueue       # the reconciler re-sends through it
    worker_id: str
    guard: HostGuard | None = None   # on a site of many hosts, else None


def _route(rt: JobRuntime, job_id: int) -> dict:
    """Send options keeping a re-sent job on its host's queue (none on a one-host site)."""
    router = getattr(rt.guard, "router", None)
    if router is None or not router.active:
        return {}
    from am.jobs.hosts import host_queue
    return {"queue": host_queue(router.hosts_of_jobs([job_id]).get(job_id))}


def _refused(app: Celery, rt: JobRuntime, job_id: int) -> bool:
    """True if this worker must not run the job (another host owns it): it was re-routed."""
    if rt.guard is None:
        return False
    queue = rt.guard.check(job_id)
    if queue is None:
        return False
    rt.guard.refuse(app, job_id, queue)
    return True


RuntimeProvider = Callable[[], JobRuntime]

#: A batch still running after this long re-sends its remaining jobs as single messages.
DEFAULT_BATCH_HANDOFF_S = 1.0


@dataclass(frozen=True)
class JobTasks:
    run_job: Task
    run_jobs: Task
    reap: Task
    reconcile: Task
    sync_routes: Task


def register_tasks(app: Celery, runtime: RuntimeProvider, *,
                   retry: RetryPolicy = RetryPolicy(), lease_s: float | None = None,
                   max_attempts: int | None = None, queued_grace_s: float = 60.0,
                   waiting_grace_s: float = 60.0,
                   batch_handoff_s: float = DEFAULT_BATCH_HANDOFF_S) -> JobTasks:
    """Register the job tasks on `app`, bound to `runtime` (called lazily inside the worker).

    `lease_s` and `max_attempts` go to `runner.run_job`; the graces to the reconciler;
    `batch_handoff_s` (0: never) to `geni_am.run_jobs`."""
    from am.jobs import runner

    lease = lease_s if lease_s is not None else runner.DEFAULT_LEASE_S
    attempts = max_attempts if max_attempts is not None else runner.DEFAULT_MAX_ATTEMPTS

    @app.task(name=RUN_JOB, shared=False, bind=True, acks_late=True, reject_on_worker_lost=True,
              ignore_result=True, max_retries=retry.max_retries)
    def run_job_task(self: Task, job_id: int) -> None:
        if isinstance(job_id, bool) or not isinstance(job_id, int) or job_id <= 0:
            log.error("dropping run_job message with bad job id %r", job_id)
            return
        rt = runtime()
        # One lease owner per executing thread: two pool threads of one process must not
        # both pass the per-sliver lock as "the same owner".
        owner = f"{rt.worker_id}:{threading.get_ident()}"
        if _refused(self.app, rt, job_id):
            return
        try:
            runner.run_job(rt.store, rt.site, job_id, worker_id=owner, lease_s=lease,
                           max_attempts=attempts)
        except runner.JobNotFound:
            log.error("job %d does not exist in the database; dropping the message", job_id)
        except runner.PollLater as poll:
            _send_poll(self.app, poll, rt)
        except runner.RetryableJobError as exc:
            retries = self.request.retries or 0
            if retries >= retry.max_retries:
                # Out of patience: the job stays unfinished in the database; the reconciler
                # decides (re-queue after the lease expires, or geni_failed when the runner's
                # attempt budget is spent). Nothing is lost by acknowledging this message.
                log.warning("job %d: still transient after %d retries: %s", job_id, retries, exc)
                return
            countdown = retry.delay(retries)
            log.info("job %d: transient failure (%s); retry %d in %.2f s",
                     job_id, exc, retries + 1, countdown)
            raise self.retry(exc=exc, countdown=countdown)

    @app.task(name=RUN_JOBS, shared=False, bind=True, acks_late=True,
              reject_on_worker_lost=True, ignore_result=True, max_retries=0)
    def run_jobs_task(self: Task, job_ids: list) -> None:
        ids = _batch_ids(job_ids)
        if ids is None:
            return
        rt = runtime()
        owner = f"{rt.worker_id}:{threading.get_ident()}"
        started = time.monotonic()
        may_hand_off = batch_handoff_s > 0
        for index, job_id in enumerate(ids):
            if may_hand_off and index and time.monotonic() - started > batch_handoff_s:
                if _hand_off(self.app, ids[index:], rt):
                    return
                may_hand_off = False      # the broker is away: run the rest here
            if _refused(self.app, rt, job_id):
                continue
            try:
                runner.run_job(rt.store, rt.site, job_id, worker_id=owner, lease_s=lease,
                               max_attempts=attempts)
            except runner.JobNotFound:
                log.error("job %d does not exist in the database; skipping it", job_id)
            except runner.PollLater as poll:
                _send_poll(self.app, poll, rt)
            except runner.RetryableJobError as exc:
                # Exactly what run_job's first retry does, for this job alone.
                countdown = retry.delay(0)
                log.info("job %d: transient failure (%s); retry 1 in %.2f s",
                         job_id, exc, countdown)
                try:
                    self.app.send_task(RUN_JOB, args=(job_id,), countdown=countdown, retries=1,
                                       **_route(rt, job_id))
                except Exception as send_exc:   # noqa: BLE001 - the reconciler re-sends it
                    log.warning("job %d: could not queue its retry (%s); the reconciler will "
                                "re-send it", job_id, send_exc)
            except Exception:   # noqa: BLE001 - one job's bug must not sink the batch
                log.exception("job %d failed unexpectedly; continuing with the batch", job_id)

    @app.task(name=REAP, shared=False, ignore_result=True, acks_late=True)
    def reap_task() -> int:
        from datetime import datetime, timezone

        rt = runtime()
        reaped = rt.aggregate.reap(datetime.now(timezone.utc))
        count = len(reaped) if hasattr(reaped, "__len__") else int(reaped or 0)
        if count:
            log.info("reaper: %d sliver(s) expired", count)
        return count

    @app.task(name=RECONCILE, shared=False, ignore_result=True, acks_late=True)
    def reconcile_task() -> dict:
        from am.jobs.reconcile import reconcile

        rt = runtime()
        report = reconcile(rt.store, rt.site, rt.queue, max_attempts=attempts,
                           queued_grace_s=queued_grace_s, waiting_grace_s=waiting_grace_s)
        return report.as_dict()

    @app.task(name=SYNC_ROUTES, shared=False, ignore_result=True, acks_late=True)
    def sync_routes_task() -> dict:
        from am.service.routesync import sync_all_routers

        rt = runtime()
        report = sync_all_routers(rt.store, rt.site, worker_id=f"{rt.worker_id}:routesync")
        if report.synced or report.failed:
            log.debug("route sync: %s", report.as_dict())
        return report.as_dict()

    return JobTasks(run_job=run_job_task, run_jobs=run_jobs_task, reap=reap_task,
                    reconcile=reconcile_task, sync_routes=sync_routes_task)


def _send_poll(app: Celery, poll, rt: JobRuntime | None = None) -> None:
    """A job whose action is under way on the substrate (runner.PollLater) is queued again in
    the database; send its next look with a countdown. The message waits in the broker/worker,
    not in a pool slot, so other jobs (other VMs' boots) run meanwhile. Not a retry: it does
    not count against the retry budget. A lost message is re-sent by the reconciler. On a
    site of many hosts it goes to the job's host's queue (not the site queue, where another
    host's worker would only refuse and re-route it)."""
    try:
        app.send_task(RUN_JOB, args=(poll.job_id,), countdown=poll.delay_s,
                      **(_route(rt, poll.job_id) if rt else {}))
    except Exception as exc:   # noqa: BLE001 - the job is queued; the reconciler re-sends it
        log.warning("job %d: could not queue its next look (%s); the reconciler will re-send "
                    "it", poll.job_id, exc)


def _batch_ids(job_ids: object) -> list[int] | None:
    """The ids of a well-formed `run_jobs` message, or None (logged) for a malformed one."""
    if (not isinstance(job_ids, list) or not 0 < len(job_ids) <= MAX_BATCH_SIZE
            or any(isinstance(j, bool) or not isinstance(j, int) or j <= 0 for j in job_ids)):
        log.error("dropping run_jobs message with bad job ids %.200r", job_ids)
        return None
    return job_ids


def _hand_off(app: Celery, rest: list[int], rt: JobRuntime | None = None) -> bool:
    """Send `rest` as single `run_job` messages so other workers share a slow batch; False
    (keep going here) if the broker refused any. Already-sent ones then run twice at worst,
    which the lease and the done-check make harmless."""
    try:
        for job_id in rest:
            app.send_task(RUN_JOB, args=(job_id,), **(_route(rt, job_id) if rt else {}))
    except Exception as exc:   # noqa: BLE001
        log.warning("could not hand off jobs %s (%s); running them here", rest, exc)
        return False
    log.info("slow batch: handed %d job(s) back to the queue", len(rest))
    return True


__all__ = ["DEFAULT_BATCH_HANDOFF_S", "JobRuntime", "JobTasks", "RetryPolicy", "RuntimeProvider",
           "register_tasks"]
