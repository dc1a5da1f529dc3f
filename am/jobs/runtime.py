"""Wiring of the job layer: the Celery app with its tasks, per process, from `Settings`.

`JobSystem` is what `geni-am serve` and `geni-am worker` hold: the app, the queue the service
submits to, and (serve with no broker configured) the embedded worker.

Worker processes build their `JobRuntime` (store, site, aggregate) lazily and *per process id*:
a prefork child never uses the database engine or driver state of the parent it was forked
from. The serve process hands its own runtime to the embedded worker instead, so the API and
the worker threads share one engine and one site.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from celery import Celery

from am.config import Settings
from am.jobs.celery_app import DEFAULT_QUEUE, broker_for, make_celery
from am.jobs.celery_queue import DEFAULT_BATCH_SIZE, CeleryJobQueue
from am.jobs.tasks import DEFAULT_BATCH_HANDOFF_S, JobRuntime, JobTasks, RetryPolicy, register_tasks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobPolicy:
    """Timing of job execution and repair (defaults suit production; tests shorten them)."""

    lease_s: float = 300.0            # per-sliver lock; a dead worker's is taken over after this
    max_attempts: int = 5             # driver attempts (and interruptions) before geni_failed
    queued_grace_s: float = 60.0      # a queued job nobody took for this long is sent again
    waiting_grace_s: float = 60.0     # a sliver waiting this long with no open job fails
    reconcile_interval_s: float | None = None   # None: max(5, 2 * reaper_interval_s)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    batch_size: int = DEFAULT_BATCH_SIZE      # job ids per run_jobs message (submit_many)
    batch_handoff_s: float = DEFAULT_BATCH_HANDOFF_S   # a slower batch spreads out; 0: never


def build_process_runtime(settings: Settings, queue: CeleryJobQueue, *,
                          host: str | None = None) -> JobRuntime:
    """Open the store and the site for this process (a `geni-am worker` process or child).
    With `host` (`geni-am worker --host`), only that host's part of the site is loaded, and
    on a site of many hosts jobs are routed to, and checked against, their hosts' queues."""
    from am.jobs.hosts import HostGuard, JobRouter
    from am.service.aggregate import Aggregate
    from am.store import open_store
    from drivers.registry import load_site

    store = open_store(settings.effective_database_url)
    site = load_site(settings.inventory or None, authority=settings.authority,
                     fake_nodes=settings.fake_nodes, state_dir=str(settings.state_path),
                     host=host)
    guard = None
    if site.hosts:
        router = JobRouter(store, site)
        queue.router = router
        guard = HostGuard(router, host)
    aggregate = Aggregate(settings, store, site, queue)
    return JobRuntime(store=store, site=site, aggregate=aggregate, queue=queue,
                      worker_id=f"{socket.gethostname()}:{os.getpid()}", guard=guard)


class PerProcessRuntime:
    """A `RuntimeProvider` that builds one runtime per process id, on first use."""

    def __init__(self, factory: Callable[[], JobRuntime]):
        self._factory = factory
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._runtime: JobRuntime | None = None

    def __call__(self) -> JobRuntime:
        pid = os.getpid()
        if self._pid != pid:
            with self._lock:
                if self._pid != pid:
                    if self._runtime is not None:
                        # Inherited through fork: forget the parent's pooled connections
                        # without closing them under the parent's feet.
                        engine = getattr(self._runtime.store, "engine", None)
                        if engine is not None:
                            engine.dispose(close=False)
                    self._runtime = self._factory()
                    self._pid = pid
        assert self._runtime is not None
        return self._runtime

    def close(self) -> None:
        with self._lock:
            rt, self._runtime, self._pid = self._runtime, None, None
        if rt is not None and rt.site is not None:
            rt.site.close()
        if rt is not None and rt.store is not None:
            rt.store.close()


class JobSystem:
    """The app, its tasks and the queue, for one process.

    By default each process builds its own runtime from the settings (a `geni-am worker`).
    The serve process calls `use_runtime` with the store, site and aggregate it already has,
    then `start_embedded_worker()` when no broker is configured.
    """

    def __init__(self, settings: Settings, *, policy: JobPolicy = JobPolicy(),
                 queue_name: str = DEFAULT_QUEUE, host: str | None = None):
        self.settings = settings
        self.policy = policy
        self.host = host
        self.app: Celery = make_celery(settings, queue=queue_name)
        self.queue = CeleryJobQueue(self.app, batch_size=policy.batch_size)
        self._per_process = PerProcessRuntime(
            lambda: build_process_runtime(settings, self.queue, host=host))
        self._fixed: JobRuntime | None = None
        self.tasks: JobTasks = register_tasks(
            self.app, self.runtime, retry=policy.retry, lease_s=policy.lease_s,
            max_attempts=policy.max_attempts, queued_grace_s=policy.queued_grace_s,
            waiting_grace_s=policy.waiting_grace_s, batch_handoff_s=policy.batch_handoff_s)
        self._embedded = None

    def runtime(self) -> JobRuntime:
        """The runtime the tasks run with (the `RuntimeProvider` given to the tasks)."""
        return self._fixed if self._fixed is not None else self._per_process()

    def use_runtime(self, runtime: JobRuntime) -> None:
        """Run tasks in this process with an existing store/site/aggregate (the serve process)."""
        self._fixed = runtime

    @property
    def embedded_broker(self) -> bool:
        return broker_for(self.settings).embedded

    def start_embedded_worker(self, *, periodic: bool = True, concurrency: int | None = None):
        """Start the in-process worker (threads) and the periodic timer; returns it."""
        from am.jobs.embedded import EmbeddedWorker

        if self._embedded is not None:
            raise RuntimeError("the embedded worker is already running")
        worker = EmbeddedWorker(self.settings, self.app, concurrency=concurrency,
                                periodic=periodic,
                                reconcile_interval_s=self.policy.reconcile_interval_s)
        worker.start()
        self._embedded = worker
        return worker

    def close(self) -> None:
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None
        self._per_process.close()
        self.app.close()


__all__ = ["JobPolicy", "JobSystem", "PerProcessRuntime", "build_process_runtime", "resend_lost_jobs",
           "serve_job_queue"]


def serve_job_queue(settings: Settings) -> tuple[CeleryJobQueue, list[Callable[[], None]]]:
    """The `job_queue` seam of `am.app.build_runtime` for `geni-am serve`.

    Returns the queue the service submits to and the closers to run at shutdown. With no
    broker configured it also starts the embedded worker (threads) and the periodic timer in
    this process; the worker opens its own store and site on first use (the store is already
    migrated by then). With Redis configured, serve only publishes: `geni-am worker` processes
    execute.
    """
    jobs = JobSystem(settings)
    if jobs.embedded_broker:
        try:
            jobs.start_embedded_worker()
            resent = resend_lost_jobs(jobs)
            if resent:
                log.info("re-sent %d job(s) interrupted by the previous run", len(resent))
        except BaseException:
            jobs.close()
            raise
    return jobs.queue, [jobs.close]


def resend_lost_jobs(jobs: JobSystem) -> list[int]:
    """The embedded broker deletes a message when a consumer claims it, so what a killed
    `geni-am serve` had claimed but not finished is gone from the broker while the database
    still shows those jobs queued (or running under the dead process). Send them all again at
    start-up rather than after the reconciler's grace period (a minute or more): a duplicate
    delivery is harmless, jobs are idempotent and leased per sliver."""
    from am.jobs.runner import requeue_interrupted

    ids = requeue_interrupted(jobs.runtime().store, queued_grace_s=0)
    for job_id in ids:
        jobs.queue.submit(job_id)
    return ids
