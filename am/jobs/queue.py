"""What the service needs from a job queue: hand over committed jobs' ids.

The service submits only after the transaction that created the jobs has committed, so a worker
never sees a job id it cannot read. Delivery may be at-least-once: `am.jobs.runner.run_job` is
idempotent. Implementations: `am.jobs.celery_queue.CeleryJobQueue` (broker) and test doubles.

`submit_many` hands over every job of one API call at once, so a broker queue can carry several
jobs in one message (one message costs a worker more than a fast job does). Queues that only
have `submit` still work: `submit_all` falls back to one `submit` per id.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

log = logging.getLogger(__name__)


@runtime_checkable
class JobQueue(Protocol):
    def submit(self, job_id: int) -> None: ...

    def submit_many(self, job_ids: Sequence[int]) -> None:
        """Submit several committed jobs; the default submits each in order."""
        for job_id in job_ids:
            self.submit(job_id)


def submit_all(queue: object, job_ids: Sequence[int]) -> None:
    """Hand `job_ids` to `queue`: with its `submit_many` when it has one, else one `submit` per
    id. A failure is logged, never raised: the jobs are committed, and the reconciler re-sends
    whatever the broker did not take (am.jobs.runner.requeue_interrupted)."""
    ids = list(job_ids)
    if not ids:
        return
    many = getattr(queue, "submit_many", None)
    if callable(many):
        try:
            many(ids)
            return
        except Exception as exc:   # noqa: BLE001 - the broker's troubles are not the caller's
            log.warning("could not queue jobs %s now (%s); the reconciler will resend them",
                        ids, exc)
            return
    for job_id in ids:
        try:
            queue.submit(job_id)   # type: ignore[attr-defined]
        except Exception as exc:   # noqa: BLE001
            log.warning("could not queue job %d now (%s); the reconciler will resend it",
                        job_id, exc)


__all__ = ["JobQueue", "submit_all"]
