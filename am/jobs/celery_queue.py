"""`CeleryJobQueue`: the service's `JobQueue` (submit a committed job id) over a Celery broker."""
from __future__ import annotations

import logging

from celery import Celery

log = logging.getLogger(__name__)

RUN_JOB = "geni_am.run_job"
REAP = "geni_am.reap"
RECONCILE = "geni_am.reconcile"
SYNC_ROUTES = "geni_am.sync_routes"
#: Tasks the periodic timer queues (their success is logged at DEBUG: see celery_app)
PERIODIC_TASKS = (REAP, RECONCILE, SYNC_ROUTES)


class CeleryJobQueue:
    """Send one `geni_am.run_job` message per job.

    The service calls `submit` after the job's database transaction committed, so the job is
    already durable: if the broker cannot take the message (Redis down), the failure is logged
    and swallowed, and the reconciler re-sends the job from the database later. An API call
    must not fail, or block for long, because the broker is briefly away.
    """

    def __init__(self, app: Celery):
        self.app = app

    def submit(self, job_id: int) -> None:
        if isinstance(job_id, bool) or not isinstance(job_id, int) or job_id <= 0:
            raise ValueError(f"job id must be a positive integer, not {job_id!r}")
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


__all__ = ["CeleryJobQueue", "PERIODIC_TASKS", "RUN_JOB", "REAP", "RECONCILE", "SYNC_ROUTES"]
