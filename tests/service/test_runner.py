"""The job body: idempotence, the per-sliver lease, transient retries, failures, requeueing."""
from __future__ import annotations

from datetime import timedelta

import pytest

from am.jobs.runner import JobNotFound, RetryableJobError, requeue_interrupted, run_job
from am.service.contract import Options
from am.store import Job, utcnow
from tests.service.harness import ALICE, Harness, node_xml, request
from tests.support import slice_urn


def _provisioned(h) -> int:
    h.am.allocate(ALICE, slice_urn(), request(node_xml("a")), Options())
    h.am.provision(ALICE, [slice_urn()], Options())
    return h.queue.submitted[-1]


def _job(h, job_id) -> Job:
    with h.store.read() as session:
        return session.get(Job, job_id)


def test_done_jobs_are_skipped_and_provision_is_idempotent(h):
    job_id = _provisioned(h)
    run_job(h.store, h.site, job_id, worker_id="w1")
    run_job(h.store, h.site, job_id, worker_id="w2")   # redelivered message
    job = _job(h, job_id)
    assert job.state == "done" and job.attempts == 1
    urn = h.am.status(ALICE, [slice_urn()], Options()).slivers[0].sliver_urn
    assert h.driver.counters(urn).provision_calls == 1   # the redelivery did not call the driver
    with pytest.raises(JobNotFound):
        run_job(h.store, h.site, 999999, worker_id="w1")


def test_a_finished_job_is_never_reopened(h):
    """Job state writes pass the job table (am.states.JOB_TRANSITIONS): done is final."""
    from am.jobs.runner import IllegalJobTransition, _mark
    job_id = _provisioned(h)
    run_job(h.store, h.site, job_id, worker_id="w1")
    with pytest.raises(IllegalJobTransition), h.store.write() as session:
        _mark(session, job_id, "queued")
    assert _job(h, job_id).state == "done"


def test_a_held_lease_makes_the_job_retryable(h):
    job_id = _provisioned(h)
    job = _job(h, job_id)
    assert h.store.acquire_lease(job.sliver_id, "other-worker", 0, ttl_s=60)
    with pytest.raises(RetryableJobError, match="other-worker"):
        run_job(h.store, h.site, job_id, worker_id="w1")
    assert _job(h, job_id).state == "queued"
    h.store.release_lease(job.sliver_id, "other-worker")
    run_job(h.store, h.site, job_id, worker_id="w1")
    assert _job(h, job_id).state == "done"
    assert h.store.lease_holder(job.sliver_id) is None


def test_transient_errors_retry_then_fail_when_attempts_run_out(store, tmp_path):
    h = Harness(store, tmp_path, transient_failure_rate=1.0, seed=3)
    try:
        job_id = _provisioned(h)
        for attempt in range(1, 3):
            with pytest.raises(RetryableJobError):
                run_job(h.store, h.site, job_id, worker_id="w", max_attempts=3)
            job = _job(h, job_id)
            assert (job.state, job.attempts) == ("queued", attempt)
            assert "transient" in job.error
            assert h.am.status(ALICE, [slice_urn()], Options()).slivers[0].operational_status \
                == "geni_pending_allocation"
        run_job(h.store, h.site, job_id, worker_id="w", max_attempts=3)
        assert _job(h, job_id).state == "failed"
        info = h.am.status(ALICE, [slice_urn()], Options()).slivers[0]
        assert info.operational_status == "geni_failed" and "transient" in info.error
    finally:
        h.close()


def test_delete_while_provision_pending_leaves_nothing_behind(h):
    job_id = _provisioned(h)
    h.am.delete(ALICE, [slice_urn()], Options())
    h.run_jobs()   # provision job is skipped (sliver gone), delete job cleans
    assert _job(h, job_id).state == "done"
    assert h.driver.observed() == []


def test_requeue_interrupted_finds_dead_workers_and_lost_messages(h):
    job_id = _provisioned(h)
    job = _job(h, job_id)
    # a worker took the job and died: running, lease expired
    with h.store.write() as session:
        row = session.get(Job, job_id)
        row.state, row.lease_owner = "running", "dead-worker"
    taken = utcnow() - timedelta(seconds=60)
    assert h.store.acquire_lease(job.sliver_id, "dead-worker", job_id, ttl_s=30, now=taken)
    assert requeue_interrupted(h.store, now=taken + timedelta(seconds=10),
                               queued_grace_s=3600) == []   # lease still valid then
    assert requeue_interrupted(h.store, queued_grace_s=3600) == [job_id]
    assert _job(h, job_id).state == "queued"
    # queued and never picked up
    assert requeue_interrupted(h.store, now=utcnow() + timedelta(seconds=120),
                               queued_grace_s=60) == [job_id]
    run_job(h.store, h.site, job_id, worker_id="w-new", lease_s=60)   # takes the stale lease over
    assert _job(h, job_id).state == "done"
