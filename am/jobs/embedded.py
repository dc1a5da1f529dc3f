"""A real Celery worker inside the `geni-am serve` process (no broker server, no second process).

`EmbeddedWorker` runs a `celery.worker.WorkController` (threads pool, `worker_concurrency`
threads) in a daemon thread, consuming from the same broker the API publishes to, plus the
`PeriodicTimer` that queues the reaper and the reconciler. The tasks are the very ones
`geni-am worker` runs: nothing goes through `task_always_eager`.

Celery keeps its shutdown flags in module state (`celery.worker.state`), so one process hosts
at most one embedded worker at a time; `start` refuses a second.
"""
from __future__ import annotations

import logging
import threading

from celery import Celery
from celery.app.trace import trace_task_ret
from celery.concurrency.thread import TaskPool as ThreadTaskPool
from celery.worker import WorkController
from celery.worker import state as worker_state

from am.config import Settings
from am.jobs.celery_app import broker_for, worker_name
from am.jobs.celery_queue import REAP, RECONCILE, SYNC_ROUTES, CeleryJobQueue
from am.jobs.periodic import FileClaim, PeriodClaim, PeriodicTask, PeriodicTimer, RedisClaim

log = logging.getLogger(__name__)

_ACTIVE_LOCK = threading.Lock()
_active: "EmbeddedWorker | None" = None


class AppThreadPool(ThreadTaskPool):
    """Celery's threads pool, running each task against *this worker's* app.

    The stock pool calls `trace_task_ret` without an app, which then looks the task up in
    `current_app`: a thread-local that in pool threads falls back to the process's default
    app. That is right for `celery worker` (one app per process) but not for an app built from
    Settings and never made the default (tests build several): the lookup fails and the
    message is never acknowledged.
    """

    def on_apply(self, target, args=None, kwargs=None, callback=None, accept_callback=None,
                 **options):
        if target is trace_task_ret and self.app is not None:
            kwargs = {**(kwargs or {}), "app": self.app}
        return super().on_apply(target, args, kwargs, callback, accept_callback, **options)


def periodic_tasks(settings: Settings, queue: CeleryJobQueue, *,
                   reconcile_interval_s: float | None = None) -> list[PeriodicTask]:
    """The reaper every `reaper_interval_s`, the reconciler at start-up and every
    `reconcile_interval_s` (default: twice the reaper interval, at least 5 s), and the hybrid
    routers' route sync every `route_sync_interval_s` (unless that is 0)."""
    reap_every = settings.reaper_interval_s
    reconcile_every = reconcile_interval_s or max(5.0, 2 * reap_every)
    tasks = [
        PeriodicTask("reconcile", reconcile_every, lambda: queue.send_periodic(RECONCILE),
                     at_startup=True),
        PeriodicTask("reap", reap_every, lambda: queue.send_periodic(REAP)),
    ]
    if settings.route_sync_interval_s > 0:
        tasks.append(PeriodicTask("sync_routes", settings.route_sync_interval_s,
                                  lambda: queue.send_periodic(SYNC_ROUTES)))
    return tasks


def period_claim(settings: Settings, owner: str) -> PeriodClaim:
    choice = broker_for(settings)
    if choice.embedded:
        assert choice.folder is not None
        return FileClaim(choice.folder / "periodic")
    return RedisClaim(choice.url, owner)


class EmbeddedWorker:
    """Start/stop a threads-pool Celery worker and the periodic timer in this process."""

    def __init__(self, settings: Settings, app: Celery, *, concurrency: int | None = None,
                 periodic: bool = True, reconcile_interval_s: float | None = None,
                 loglevel: str = "WARNING"):
        self.settings = settings
        self.app = app
        self.concurrency = concurrency or settings.worker_concurrency
        if self.concurrency < 1:
            raise ValueError(f"worker concurrency must be >= 1, not {self.concurrency}")
        self.periodic = periodic
        self.reconcile_interval_s = reconcile_interval_s
        self.loglevel = loglevel
        self.hostname = worker_name("geni-am-embedded")
        self._worker: WorkController | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._timer: PeriodicTimer | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 30.0) -> None:
        global _active
        with _ACTIVE_LOCK:
            if _active is not None:
                raise RuntimeError("an embedded worker already runs in this process")
            _active = self
        try:
            worker_state.should_stop = None
            worker_state.should_terminate = None
            self.app.use_fast_trace_task = False   # the fast path reads process-global state
            self._worker = self.app.WorkController(
                hostname=self.hostname, pool_cls=AppThreadPool, concurrency=self.concurrency,
                loglevel=self.loglevel, ready_callback=self._on_ready,
                without_heartbeat=True, without_mingle=True, without_gossip=True,
                prefetch_multiplier=1)
            self._thread = threading.Thread(target=self._worker.start,
                                            name="geni-am-embedded-worker", daemon=True)
            self._thread.start()
            if not self._ready.wait(timeout):
                raise RuntimeError(f"embedded worker did not become ready within {timeout:.0f} s")
            if self.periodic:
                queue = CeleryJobQueue(self.app)
                self._timer = PeriodicTimer(
                    periodic_tasks(self.settings, queue,
                                   reconcile_interval_s=self.reconcile_interval_s),
                    period_claim(self.settings, self.hostname))
                self._timer.start()
            log.info("embedded worker %s ready (%d threads, broker %s)", self.hostname,
                     self.concurrency, broker_for(self.settings).kind)
        except BaseException:
            self.stop()
            raise

    def _on_ready(self, consumer: object) -> None:
        self._ready.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Warm shutdown: running jobs finish (bounded by `timeout`), queued ones stay queued."""
        global _active
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if self._thread is not None:
            worker_state.should_stop = 0      # the consumer loop raises WorkerShutdown(0)
            self._thread.join(timeout)
            if self._thread.is_alive() and self._worker is not None:
                log.warning("embedded worker did not stop within %.0f s; terminating", timeout)
                worker_state.should_terminate = 0
                self._thread.join(5.0)
            self._thread = None
        self._worker = None
        worker_state.should_stop = None
        worker_state.should_terminate = None
        with _ACTIVE_LOCK:
            if _active is self:
                _active = None

    def __enter__(self) -> "EmbeddedWorker":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["EmbeddedWorker", "period_claim", "periodic_tasks"]
