"""Periodic tasks (reconciler, reaper, route sync) run every few seconds on every worker; their
"received" and "succeeded" lines are DEBUG, while job tasks keep INFO and failures keep
WARNING and up."""
from __future__ import annotations

import logging

from celery.app.trace import LOG_FAILURE, LOG_RECEIVED, LOG_SUCCESS

from am.jobs.celery_app import quiet_periodic_task_logs
from am.jobs.celery_queue import RECONCILE, RUN_JOB, SYNC_ROUTES


def _log(level: int, fmt: str, name: str, logger: str = "celery.app.trace") -> None:
    context = {"id": "abc", "name": name, "return_value": "{}", "runtime": 0.01,
               "description": "raised unexpected", "exc": "boom", "args": "()", "kwargs": "{}"}
    logging.getLogger(logger).log(level, fmt, context, extra={"data": context})


def test_periodic_success_is_debug_and_failures_stay(caplog):
    quiet_periodic_task_logs()
    quiet_periodic_task_logs()          # idempotent: one filter per logger
    assert sum(type(f).__name__ == "QuietPeriodicTasks"
               for f in logging.getLogger("celery.app.trace").filters) == 1
    caplog.set_level(logging.INFO, logger="celery.app.trace")
    caplog.set_level(logging.INFO, logger="celery.worker.strategy")
    _log(logging.INFO, LOG_SUCCESS, RECONCILE)
    _log(logging.INFO, LOG_SUCCESS, SYNC_ROUTES)
    _log(logging.INFO, LOG_RECEIVED, RECONCILE, logger="celery.worker.strategy")
    _log(logging.INFO, LOG_SUCCESS, RUN_JOB)
    _log(logging.ERROR, LOG_FAILURE, RECONCILE)
    seen = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert seen == [("INFO", "Task geni_am.run_job[abc] succeeded in 0.01s: {}"),
                    ("ERROR", "Task geni_am.reconcile[abc] raised unexpected: boom")]

    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="celery.app.trace")
    _log(logging.INFO, LOG_SUCCESS, RECONCILE)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("DEBUG", "Task geni_am.reconcile[abc] succeeded in 0.01s: {}")]
