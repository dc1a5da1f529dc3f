"""`CeleryJobQueue`: the service's `JobQueue` (submit a committed job id) over a Celery broker."""
from __future__ import annotations

import logging
from collections.abc import Sequence

from celery import Celery

log = logging.getLogger(__name__)

RUN_JOB = "geni_am.run_job"
RUN_JOBS = "geni_am.run_jobs"
#: Job ids per `geni_am.run_jobs` message, by default. A message costs a worker ~1-1.5 ms
#: (pool hand-off, Redis pipelines) against ~2 ms for a fast job; 32 makes that noise while a
#: batch of slow jobs is still spread out again by the worker (see tasks.run_jobs_task).
DEFAULT_BATCH_SIZE = 32
#: The most ids a worker accepts in one message (a bigger one is malformed, not a batch).
MAX_BATCH_SIZE = 1000
REAP = "geni_am.reap"
RECONCILE = "geni_am.reconcile"
SYNC_ROUTES = "geni_am.sync_routes"
#: Tasks the periodic timer queues (their success is logged at DEBUG: see celery_app)
PERIODIC_TASKS = (REAP, RECONCILE, SYNC_ROUTES)


def _check_id(job_id: object) -> int:
    if isinstance(job_id, bool) or not isinstance(job_id, int) or job_id <= 0:
        raise ValueError(f"job id must be a positive integer, not {job_id!r}")
    return job_id


class CeleryJobQueue:
    """Send jobs to the workers: `submit` one `geni_am.run_job(job_id)` message, `submit_many`
    one `geni_am.run_jobs([ids])` message per `batch_size` jobs (a chunk of one goes as
    `run_job`).

    The service submits after the jobs' database transaction committed, so they are already
    durable: if the broker cannot take a message (Redis down), the failure is logged and
    swallowed, and the reconciler re-sends the jobs from the database later. An API call must
    not fail, or block for long, because the broker is briefly away.
    """

    def __init__(self, app: Celery, *, batch_size: int = DEFAULT_BATCH_SIZE):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) \
                or not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch size must be an integer in 1..{MAX_BATCH_SIZE}, "
                             f"not {batch_size!r}")
        self.app = app
        self.batch_size = batch_size

    def submit_many(self, job_ids: Sequence[int]) -> None:
        """Send `job_ids` in order, `batch_size` per message. Every id is checked before any
        is sent, so a bad id sends nothing (ValueError)."""
        ids = [_check_id(job_id) for job_id in job_ids]
        for start in range(0, len(ids), self.batch_size):
            chunk = ids[start:start + self.batch_size]
            if len(chunk) == 1:
                self.submit(chunk[0])
                continue
            try:
                self.app.send_task(RUN_JOBS, args=(chunk,))
            except Exception as exc:   # see submit
                log.warning("jobs %s: broker did not take them (%s); the reconciler will "
                            "re-send them", chunk, exc)

    def submit(self, job_id: int) -> None:
        _check_id(job_id)
        try:
            self.app.send_task(RUN_JOB, args=(job_id,))
        except Exception as exc:   # kombu raises OperationalError, redis ConnectionError, OSError...
            log.warning("job %d: broker did not take it (%s); the reconciler will re-send it",
                        job_id, exc)

    def send_periodic(self, name: str) -> bool:
        """Queue one run of a periodic task (one of PERIODIC_TASKS); False if the broker refused."""
        if name not in PERIODIC_TASKS:
            raise ValueError(f"unknown periodic task {name!r}")
        try:
            self.app.send_task(name)
            return True
        except Exception as exc:
            log.warning("%s: broker did not take it (%s)", name, exc)
            return False


__all__ = ["CeleryJobQueue", "DEFAULT_BATCH_SIZE", "MAX_BATCH_SIZE", "PERIODIC_TASKS",
           "RUN_JOB", "RUN_JOBS", "REAP", "RECONCILE", "SYNC_ROUTES"]
