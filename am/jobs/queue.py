"""What the service needs from a job queue: hand over a committed job's id.

The service calls `submit` only after the transaction that created the job has committed, so a
worker never sees a job id it cannot read. Delivery may be at-least-once: `am.jobs.runner.run_job`
is idempotent. Implementations: `am.jobs.celery_queue.CeleryJobQueue` (broker) and test doubles.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class JobQueue(Protocol):
    def submit(self, job_id: int) -> None: ...


__all__ = ["JobQueue"]
