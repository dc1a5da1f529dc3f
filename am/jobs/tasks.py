"""Celery tasks: thin shells around the idempotent job body in `am.jobs.runner`.

`register_tasks(app, runtime)` puts three tasks on an app built by `make_celery`:

  geni_am.run_job(job_id)   provision / action / delete of one sliver (`runner.run_job`)
  geni_am.reap()            expire allocations and leases (`Aggregate.reap`)
  geni_am.reconcile()       re-queue interrupted work, fail hopeless slivers, free orphans
  geni_am.sync_routes()     re-sync running hybrid routers' forwarding planes (`am.service.routesync`)

All state lives in the database; the task only decides *when* to try again. A transient driver
error (`RetryableJobError`, including "another worker holds this sliver's lease") is retried
with exponential back-off and full jitter. Anything else is recorded by the runner itself.
Because the body is idempotent and guarded by a per-sliver database lease, a message delivered
twice (redelivery after a killed worker, a re-send by the reconciler) does the work once.
"""
from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Celery, Task

from am.jobs.celery_queue import REAP, RECONCILE, RUN_JOB, SYNC_ROUTES

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

    store: Any            # am.store.Store
    site: Any             # drivers.registry.Site
    aggregate: Any        # am.service.aggregate.Aggregate (for reap)
    queue: Any            # am.jobs.queue.JobQueue (the reconciler re-sends through it)
    worker_id: str


RuntimeProvider = Callable[[], JobRuntime]


@dataclass(frozen=True)
class JobTasks:
    run_job: Task
    reap: Task
    reconcile: Task
    sync_routes: Task


def register_tasks(app: Celery, runtime: RuntimeProvider, *,
                   retry: RetryPolicy = RetryPolicy(), lease_s: float | None = None,
                   max_attempts: int | None = None, queued_grace_s: float = 60.0,
                   waiting_grace_s: float = 60.0) -> JobTasks:
    """Register the job tasks on `app`, bound to `runtime` (called lazily inside the worker).

    `lease_s` and `max_attempts` go to `runner.run_job`; the graces to the reconciler."""
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
        try:
            runner.run_job(rt.store, rt.site, job_id, worker_id=owner, lease_s=lease,
                           max_attempts=attempts)
        except runner.JobNotFound:
            log.error("job %d does not exist in the database; dropping the message", job_id)
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

    return JobTasks(run_job=run_job_task, reap=reap_task, reconcile=reconcile_task,
                    sync_routes=sync_routes_task)


__all__ = ["JobRuntime", "JobTasks", "RetryPolicy", "RuntimeProvider", "register_tasks"]
