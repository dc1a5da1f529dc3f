"""The Celery application, built from `Settings` (never a module-level app with baked-in config).

Two brokers, one task code path:
  * `broker_url = redis://...`: production. Several `geni-am worker` processes on several
    machines share one Redis (and one database).
  * `broker_url = ""`: embedded. Kombu's `filesystem://` transport under `<state_dir>/broker`:
    no server, works across processes on one machine (so an external `geni-am worker` pointed
    at the same state directory also works), and measured at ~900 tasks/s here. `memory://`
    would only reach workers inside the one process and loses everything on exit.

The database is the source of truth for every job: tasks record their outcome there, so no
result backend is configured (`task_ignore_result`). A message lost by the broker (Redis
restarted without persistence, a filesystem message eaten by a crash) is re-sent by the
reconciler, which re-queues jobs the database still shows as unfinished.
"""
from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from celery import Celery

from am.config import ConfigError, Settings
from am.jobs.celery_queue import PERIODIC_TASKS
from am.jobs.fs_transport import TRANSPORT_PATH
from am.jobs.redis_transport import TRANSPORT_PATH as REDIS_TRANSPORT_PATH

DEFAULT_QUEUE = "geni-am"

#: Seconds an idle embedded (filesystem) consumer sleeps between directory scans. The default
#: of 1 s would add up to a second to every job's latency; a directory listing every 20 ms is cheap.
EMBEDDED_POLL_INTERVAL_S = 0.005


@dataclass(frozen=True)
class BrokerChoice:
    """Which broker a Settings object selects, resolved once."""

    url: str
    embedded: bool
    folder: Path | None = None     # embedded only: the broker's directory

    @property
    def kind(self) -> str:
        return "filesystem" if self.embedded else urlsplit(self.url).scheme


def broker_for(settings: Settings) -> BrokerChoice:
    """Resolve `settings.broker_url`: empty means embedded; only Redis is supported otherwise
    (the reaper's claim and the tests are built for it), so anything else is a ConfigError."""
    url = settings.broker_url.strip()
    if not url:
        folder = settings.state_path / "broker"
        return BrokerChoice(url="filesystem://localhost/", embedded=True, folder=folder)
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss", "redis+socket"):
        raise ConfigError(f"setting 'broker_url': unsupported scheme {scheme!r} in {url!r} "
                          "(use redis://host:port/db, or leave it empty for the embedded broker)")
    return BrokerChoice(url=url, embedded=False)


def embedded_folders(folder: Path) -> dict[str, str]:
    """Create the embedded broker's directories and return the transport options naming them.

    Messages go into `queue/` and are claimed by an atomic rename into `processed/` (same file
    system, so exactly one consumer wins; see am/jobs/fs_transport.py).
    """
    paths = {name: folder / name for name in ("queue", "processed", "control")}
    for path in paths.values():
        path.mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(paths["queue"]),
        "data_folder_out": str(paths["queue"]),
        "processed_folder": str(paths["processed"]),
        "control_folder": str(paths["control"]),
    }


class QuietPeriodicTasks(logging.Filter):
    """Celery logs "Task ... received" and "Task ... succeeded" at INFO for every task; for the
    periodic ones (reconciler, reaper, route sync: several a minute on every worker) that is
    noise. Their receipt and success are demoted to DEBUG; failures keep their level
    (WARNING and up)."""

    def filter(self, record: logging.LogRecord) -> bool:
        data = getattr(record, "data", None)
        if (record.levelno == logging.INFO and isinstance(data, dict)
                and data.get("name") in PERIODIC_TASKS):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


_QUIET_LOGGERS = ("celery.app.trace", "celery.worker.strategy")


def quiet_periodic_task_logs() -> None:
    """Install `QuietPeriodicTasks` on Celery's task loggers (once per process)."""
    for name in _QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, QuietPeriodicTasks) for f in logger.filters):
            logger.addFilter(QuietPeriodicTasks())


def make_celery(settings: Settings, *, queue: str = DEFAULT_QUEUE,
                main: str = "geni-am") -> Celery:
    """A Celery app configured from `settings`; register tasks with `am.jobs.tasks.register_tasks`."""
    quiet_periodic_task_logs()
    choice = broker_for(settings)
    app = Celery(main, set_as_current=False)
    transport_options: dict[str, object]
    if choice.embedded:
        assert choice.folder is not None
        transport_options = {**embedded_folders(choice.folder),
                             "polling_interval": EMBEDDED_POLL_INTERVAL_S}
    else:
        transport_options = {
            # Redelivery of a dead worker's message is the reconciler's job (database leases,
            # seconds); Redis's own visibility timeout stays long so a slow provision is never
            # handed to a second worker while the first is still at it.
            "visibility_timeout": 3600,
            "socket_connect_timeout": 2,
            "socket_timeout": 10,
            "retry_on_timeout": True,
            "health_check_interval": 10,
        }
    app.conf.update(
        broker_url=choice.url,
        broker_transport=(TRANSPORT_PATH if choice.embedded
                          else REDIS_TRANSPORT_PATH if choice.kind == "redis" else None),
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,          # a worker waits for Redis to come back
        result_backend=None,
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=queue,
        task_default_exchange=queue,
        task_default_routing_key=queue,
        task_acks_late=True,                         # a job is done when it finished, not when taken
        task_reject_on_worker_lost=True,             # a killed child's message goes back to the queue
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_always_eager=False,                     # never: the same code runs through a real broker
        # Publishing must not hang an API request when Redis is down: try briefly, then the
        # caller logs and the reconciler re-sends the job from the database later.
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.1,
                                   "interval_step": 0.2, "interval_max": 0.5},
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_enable_remote_control=not choice.embedded,
        worker_send_task_events=False,
        task_send_sent_event=False,
        enable_utc=True,
        timezone="UTC",
    )
    return app


def worker_name(prefix: str = "geni-am") -> str:
    """A node name unique on this machine: `<prefix>-<pid>@<host>`."""
    return f"{prefix}-{os.getpid()}@{socket.gethostname()}"


__all__ = ["BrokerChoice", "DEFAULT_QUEUE", "QuietPeriodicTasks", "broker_for", "embedded_folders",
           "make_celery", "quiet_periodic_task_logs", "worker_name"]
