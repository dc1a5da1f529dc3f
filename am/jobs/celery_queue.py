"""`CeleryJobQueue`: the service's `JobQueue` (submit a committed job id) over a Celery broker."""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

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

    def __init__(self, app: Celery, *, batch_size: int = DEFAULT_BATCH_SIZE,
                 router: Callable[[Sequence[int]], dict[str, list[int]]] | None = None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) \
                or not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch size must be an integer in 1..{MAX_BATCH_SIZE}, "
                             f"not {batch_size!r}")
        self.app = app
        self.batch_size = batch_size
        #: job ids -> {queue: ids} (am.jobs.hosts.JobRouter) on a site of many hosts; None:
        #: every job goes to the default queue
        self.router = router

    def _routed(self, ids: list[int]) -> list[tuple[dict, list[int]]]:
        """[(send options, ids)]: one group per host queue when a router is set."""
        if self.router is None:
            return [({}, ids)]
        try:
            groups = self.router(ids)
        except Exception as exc:   # noqa: BLE001 - the database is away: the reconciler re-sends
            log.warning("jobs %s: could not route them to their hosts (%s); the reconciler "
                        "will re-send them", ids, exc)
            return []
        return [({"queue": queue}, chunk) for queue, chunk in groups.items()]

    def submit_many(self, job_ids: Sequence[int]) -> None:
        """Send `job_ids` in order, `batch_size` per message (per host queue on a site of
        many hosts). Every id is checked before any is sent, so a bad id sends nothing
        (ValueError)."""
        ids = [_check_id(job_id) for job_id in job_ids]
        for options, group in self._routed(ids):
            for start in range(0, len(group), self.batch_size):
                chunk = group[start:start + self.batch_size]
                self._send(RUN_JOB if len(chunk) == 1 else RUN_JOBS,
                           chunk[0] if len(chunk) == 1 else chunk, options)

    def _send(self, task: str, arg, options: dict) -> None:
        try:
            self.app.send_task(task, args=(arg,), **options)
        except Exception as exc:   # kombu raises OperationalError, redis ConnectionError, OSError...
            log.warning("job(s) %s: broker did not take them (%s); the reconciler will "
                        "re-send them", arg, exc)

    def submit(self, job_id: int) -> None:
        _check_id(job_id)
        for options, _ in self._routed([job_id]):
            self._send(RUN_JOB, job_id, options)

    def send_periodic(self, name: str, queue: str | None = None) -> bool:
        """Queue one run of a periodic task (one of PERIODIC_TASKS) on the site queue, or on
        `queue` (a host's own reconciler); False if the broker refused."""
        if name not in PERIODIC_TASKS:
            raise ValueError(f"unknown periodic task {name!r}")
        try:
            self.app.send_task(name, **({"queue": queue} if queue else {}))
            return True
        except Exception as exc:
            log.warning("%s: broker did not take it (%s)", name, exc)
            return False


__all__ = ["CeleryJobQueue", "DEFAULT_BATCH_SIZE", "MAX_BATCH_SIZE", "PERIODIC_TASKS",
           "RUN_JOB", "RUN_JOBS", "REAP", "RECONCILE", "SYNC_ROUTES"]
