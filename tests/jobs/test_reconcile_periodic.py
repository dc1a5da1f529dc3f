"""The reconciler's repairs, the period claims, the queue adapter and the worker command."""
from __future__ import annotations

import subprocess
import sys
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from am.config import ConfigError, Settings
from am.jobs.celery_app import broker_for, make_celery
from am.jobs.celery_queue import CeleryJobQueue
from am.jobs.periodic import FileClaim, PeriodicTask, PeriodicTimer, RedisClaim
from am.jobs.reconcile import reconcile
from am.jobs.tasks import RetryPolicy
from am.store import Job, Sliver, SliverLease, utcnow
from tests.jobs.conftest import REPO


class ListQueue:
    def __init__(self) -> None:
        self.sent: list[int] = []

    def submit(self, job_id: int) -> None:
        self.sent.append(job_id)


def _provisioned(stack, name: str, n: int = 1) -> list[str]:
    """Allocate + provision with no worker, then run the jobs inline as a worker would."""
    from am.jobs.runner import run_job

    urns = stack.allocate(name, n=n)
    stack.provision(name)
    with stack.store.read() as s:
        ids = list(s.scalars(select(Job.id).where(Job.state == "queued")))
    for job_id in ids:
        run_job(stack.store, stack.site, job_id, worker_id="inline")
    return urns


def test_orphans_are_released_and_owned_slivers_kept(stack_factory):
    stack = stack_factory(worker=False)
    urns = _provisioned(stack, "keep")
    comp = stack.site.components[0].component_id
    orphan = stack.fake.make_orphan(comp)
    report = reconcile(stack.store, stack.site, ListQueue())
    assert report.released == [orphan]
    left = {o.sliver_urn for o in stack.fake.observed()}
    assert left == set(urns)


def test_lost_sliver_is_marked_failed_with_reason(stack_factory):
    stack = stack_factory(worker=False)
    urns = _provisioned(stack, "lost")
    from drivers.fake import handle_for
    stack.fake.release(handle_for(urns[0]))        # the substrate forgets it
    report = reconcile(stack.store, stack.site, ListQueue())
    assert report.failed_slivers == urns
    (_, op, error), = stack.status("lost").values()
    assert op == "geni_failed" and "no longer has" in error


def test_interrupted_job_is_resent_then_given_up(stack_factory):
    stack = stack_factory(worker=False)
    stack.allocate("stuck", n=1)
    stack.provision("stuck")
    with stack.store.write() as s:
        job = s.scalars(select(Job)).one()
        job.state, job.attempts, job.lease_owner = "running", 1, "dead-worker"
        s.add(SliverLease(sliver_id=job.sliver_id, owner="dead-worker", job_id=job.id,
                          expires=utcnow() - timedelta(seconds=1)))
        job_id = job.id
    queue = ListQueue()
    report = reconcile(stack.store, stack.site, queue, max_attempts=3)
    assert report.requeued == [job_id] and queue.sent == [job_id]
    # interrupted again and again: at max_attempts the sliver fails instead of looping forever
    with stack.store.write() as s:
        s.execute(update(Job).values(state="running", attempts=3, lease_owner="dead-worker"))
    report = reconcile(stack.store, stack.site, ListQueue(), max_attempts=3)
    assert report.failed_jobs == [job_id]
    (_, op, error), = stack.status("stuck").values()
    assert op == "geni_failed" and "interrupted" in error


def test_provision_and_start_job_given_up_in_its_start_half_fails_the_sliver(stack_factory):
    """A provision job (start_on_provision) whose provision half committed (the sliver is
    geni_configuring) and that is then interrupted again and again: giving up fails the sliver
    at once with the reason, from geni_configuring, not only after the orphaned-wait grace."""
    from am.states import Alloc, Event, Op

    stack = stack_factory(worker=False)
    stack.allocate("halfway", n=1)
    stack.provision("halfway")
    with stack.store.write() as s:
        job = s.scalars(select(Job)).one()
        assert job.action == "provision" and job.args == {"start": True}
        sliver = s.get(Sliver, job.sliver_id)
        stack.store.transition(s, sliver, Event.PROVISION_DONE, (Alloc.PROVISIONED, Op.NOTREADY))
        stack.store.transition(s, sliver, Event.START)
        job.state, job.attempts, job.lease_owner = "running", 3, "dead-worker"
        s.add(SliverLease(sliver_id=job.sliver_id, owner="dead-worker", job_id=job.id,
                          expires=utcnow() - timedelta(seconds=1)))
        job_id = job.id
    report = reconcile(stack.store, stack.site, ListQueue(), max_attempts=3,
                       waiting_grace_s=3600)
    assert report.failed_jobs == [job_id] and len(report.failed_slivers) == 1
    (_, op, error), = stack.status("halfway").values()
    assert op == "geni_failed" and "interrupted" in error


def test_queued_job_lost_by_broker_is_resent_after_grace(stack_factory):
    stack = stack_factory(worker=False)
    stack.allocate("lostmsg", n=1)
    stack.provision("lostmsg")
    queue = ListQueue()
    assert reconcile(stack.store, stack.site, queue, queued_grace_s=60).requeued == []
    with stack.store.write() as s:
        s.execute(update(Job).values(updated=utcnow() - timedelta(seconds=120)))
    report = reconcile(stack.store, stack.site, queue, queued_grace_s=60)
    assert len(report.requeued) == 1 and queue.sent == report.requeued


def test_resends_go_as_one_batch_and_a_refusing_broker_does_not_stop_the_pass(stack_factory):
    stack = stack_factory(worker=False)
    urns = _provisioned(stack, "keep2")
    stack.allocate("lost2", n=2)
    stack.provision("lost2")
    with stack.store.write() as s:
        s.execute(update(Job).where(Job.state == "queued")
                  .values(updated=utcnow() - timedelta(seconds=120)))
        waiting = sorted(s.scalars(select(Job.id).where(Job.state == "queued")))
    assert len(waiting) == 2

    class BatchQueue(ListQueue):
        def submit_many(self, job_ids) -> None:
            self.sent.append(list(job_ids))

    batched = BatchQueue()
    report = reconcile(stack.store, stack.site, batched, queued_grace_s=60)
    assert report.requeued == waiting and batched.sent == [waiting]

    class DownQueue:
        def submit(self, job_id: int) -> None:
            raise ConnectionError("broker down")

    orphan = stack.fake.make_orphan(stack.site.components[0].component_id)
    report = reconcile(stack.store, stack.site, DownQueue(), queued_grace_s=0)
    assert report.requeued == waiting           # still queued in the database for next time
    assert report.released == [orphan]          # the rest of the pass ran
    assert {o.sliver_urn for o in stack.fake.observed()} == set(urns)


def test_file_claim_lets_one_contender_win_per_period(tmp_path):
    claims = [FileClaim(tmp_path) for _ in range(8)]
    wins: list[bool] = []
    barrier = threading.Barrier(len(claims))

    def contend(claim: FileClaim) -> None:
        barrier.wait()
        wins.append(claim.claim("reap", 30.0))

    threads = [threading.Thread(target=contend, args=(c,)) for c in claims]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1


def test_redis_claim_lets_one_contender_win_per_period(redis_db):
    claims = [RedisClaim(redis_db, f"w{i}") for i in range(5)]
    assert [c.claim("reconcile", 30.0) for c in claims].count(True) == 1
    for c in claims:
        c.close()


def test_periodic_timer_runs_startup_task_despite_claim(tmp_path):
    FileClaim(tmp_path).claim("reconcile", 60.0)        # another worker ran it just now
    ran: list[str] = []
    timer = PeriodicTimer([PeriodicTask("reconcile", 60.0, lambda: ran.append("r"), at_startup=True),
                           PeriodicTask("reap", 60.0, lambda: ran.append("p"))],
                          FileClaim(tmp_path))
    FileClaim(tmp_path).claim("reap", 60.0)
    timer.tick()
    timer.tick()
    assert ran == ["r"]


def test_retry_policy_backs_off_with_jitter_and_cap():
    policy = RetryPolicy(base_s=0.5, cap_s=4.0)
    assert policy.delay(0, rng=lambda: 1.0) == 0.5
    assert policy.delay(3, rng=lambda: 1.0) == 4.0
    assert policy.delay(10, rng=lambda: 0.0) == 2.0


def test_bad_broker_url_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unsupported scheme"):
        make_celery(Settings(state_dir=str(tmp_path), broker_url="amqp://guest@localhost//"))
    assert broker_for(Settings(state_dir=str(tmp_path))).embedded


def test_queue_rejects_bad_ids_and_survives_broker_down(tmp_path):
    from tests.services import free_port

    app = make_celery(Settings(state_dir=str(tmp_path), broker_url=f"redis://127.0.0.1:{free_port()}/0"))
    queue = CeleryJobQueue(app)
    for bad in (0, -1, "3", True, None):
        with pytest.raises(ValueError):
            queue.submit(bad)
    queue.submit(1)     # nobody listens on that port: logged, not raised
    queue.submit_many([1, 2, 3])    # one batch message: logged, not raised


@pytest.mark.slow
def test_worker_command_refuses_bad_input_without_traceback(tmp_path):
    for args, message in ((["--broker", "amqp://x"], "unsupported scheme"),
                          (["--concurrency", "0"], "must be > 0"),
                          (["--batch-handoff-s", "-1"], "must be >= 0"),
                          (["--batch-handoff-s", "nan"], "must be >= 0"),
                          (["--database", "mysql://x/y", "--state-dir", str(tmp_path)], "database")):
        proc = subprocess.run([sys.executable, "-m", "am", "worker", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0
        assert message in proc.stderr and "Traceback" not in proc.stderr
