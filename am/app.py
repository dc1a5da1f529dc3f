"""The Flask application factory: XML-RPC endpoints for AM API v3 (`/`, `/am/3`) and v2
(`/am/2`) over one `AggregateService`.

Everything the app needs is passed in (settings, service, authorizer, audit sink): no globals,
so tests build as many apps as they like.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask

from am.api.dispatch import AuditSink
from am.api.endpoint import blueprint
from am.api.v2 import V2
from am.api.v3 import V3
from am.auth import Authorizer, CallerSource
from am.config import Settings
from am.service.contract import AggregateService


def create_app(settings: Settings, service: AggregateService, authorizer: Authorizer, *,
               audit: AuditSink | None = None, behind_proxy: bool = False,
               metrics: Any = None, call_log: bool = True) -> Flask:
    """Build the WSGI application. `behind_proxy`: every request must come from one of
    `settings.trusted_proxies` with the forwarded client certificate. `metrics`: an
    `am.metrics.AMMetrics` to count calls into and to serve at GET /metrics. `call_log`: one
    structured log record per API call (`am.logging.CallLogger`)."""
    app = Flask("geni-am")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    caller_source = CallerSource(settings.trusted_proxies, require_proxy=behind_proxy)
    v3 = V3(settings, service, authorizer).table(audit)
    v2 = V2(settings, service, authorizer).table(audit)
    app.register_blueprint(blueprint(v3, v2, caller_source, settings.max_request_bytes))
    # -- observability (am/metrics.py, am/logging.py): begin
    if call_log:
        from am.logging import CallLogger
        for table in (v3, v2):
            table.add_observer(CallLogger())
    if metrics is not None:
        for table in (v3, v2):
            table.add_observer(metrics.observe_call)
        app.register_blueprint(metrics.blueprint(authorizer, set(settings.operators),
                                                 caller_source))
    # -- observability: end
    # -- operator dashboard (am/web, docs/dashboard.md): begin
    store, site = getattr(service, "store", None), getattr(service, "site", None)
    if store is not None and site is not None:   # it reads the store: not over test doubles
        from am.web import make_dashboard
        app.register_blueprint(make_dashboard(settings, store, site, authorizer, caller_source),
                               url_prefix="/dashboard")
    # -- operator dashboard: end
    app.extensions["geni_am"] = {"settings": settings, "service": service,
                                 "authorizer": authorizer, "metrics": metrics}
    return app


# ---- the whole process: store, site, job queue, service, app ------------------------------


@dataclass
class Runtime:
    """Everything `geni-am serve` runs, built from one Settings. `close()` releases it all."""

    settings: Settings
    app: Flask
    service: AggregateService
    store: Any
    site: Any
    queue: Any
    authorizer: Authorizer
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in reversed(self.closers):
            try:
                close()
            except Exception:   # noqa: BLE001 - release the rest regardless
                logging.getLogger("am.app").exception("closing the runtime")
        self.closers.clear()


def default_job_queue(settings: Settings) -> tuple[Any, list[Callable[[], None]]]:
    """The job queue the service submits to, and its closers: publish only, start no worker.
    `geni-am serve` passes `am.jobs.runtime.serve_job_queue` instead, which also runs the
    embedded worker and the periodic timer when no broker is configured."""
    from am.jobs.celery_app import make_celery
    from am.jobs.celery_queue import CeleryJobQueue

    return CeleryJobQueue(make_celery(settings)), []


def build_runtime(settings: Settings, *, behind_proxy: bool = False,
                  job_queue: Callable[[Settings], tuple[Any, list[Callable[[], None]]]]
                  = default_job_queue) -> Runtime:
    """Open the store (migrated), load the site, connect the job queue, build the service,
    the authorizer, the audit writer and the Flask app."""
    from am.api.audit import QueuedAudit
    from am.metrics import AMMetrics
    from am.service.aggregate import Aggregate
    from am.store.store import open_store
    from drivers.inventory import InventoryError
    from drivers.registry import load_site

    closers: list[Callable[[], None]] = []
    try:
        store = open_store(settings.effective_database_url, migrate=True)
        closers.append(getattr(store, "close", lambda: None))
        site = load_site(settings.inventory or None, authority=settings.authority,
                         fake_nodes=settings.fake_nodes, state_dir=str(settings.state_path))
        closers.append(site.close)
        from am.jobs.hosts import JobRouter, removed_hosts_problem
        problem = removed_hosts_problem(store, site)
        if problem:
            raise InventoryError(problem, file=settings.inventory or None)
        queue, queue_closers = job_queue(settings)
        closers.extend(queue_closers)
        if site.hosts and hasattr(queue, "router"):   # each job to its host's queue
            queue.router = JobRouter(store, site)
        service = Aggregate(settings=settings, store=store, site=site, queue=queue)
        authorizer = Authorizer.from_settings(settings)
        audit = QueuedAudit(store)
        closers.append(audit.close)
        metrics = AMMetrics.for_app(store, authorizer, getattr(service, "hosts", None))
        app = create_app(settings, service, authorizer, audit=audit, behind_proxy=behind_proxy,
                         metrics=metrics)
    except BaseException:
        for close in reversed(closers):
            close()
        raise
    return Runtime(settings, app, service, store, site, queue, authorizer, closers)
