"""Job batching: `CeleryJobQueue.submit_many` packs one call's jobs into `geni_am.run_jobs`
messages, and the batch task runs them in order with per-job retry and failure isolation.

These run the task bodies in-process against a recording `send_task` (no broker); the crash
and life-cycle tests (test_crash.py, test_lifecycle.py) run the same code through real brokers.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from am.jobs import runner
from am.jobs.celery_app import make_celery
from am.jobs.celery_queue import RUN_JOB, RUN_JOBS, CeleryJobQueue
from am.jobs.queue import JobQueue, submit_all
from am.jobs.tasks import JobRuntime, RetryPolicy, register_tasks
from tests.jobs.conftest import make_settings


class Recorder:
    """Stands in for `Celery.send_task`; `fail_on` makes the n-th call (1-based) raise."""

    def __init__(self, fail_on: set[int] = frozenset()):
        self.calls: list[tuple[str, tuple, dict]] = []
        self.fail_on = fail_on

    def __call__(self, name: str, args: tuple = (), **options):
        self.calls.append((name, tuple(args), options))
        if len(self.calls) in self.fail_on:
            raise ConnectionError("broker away")


class FakeApp:
    def __init__(self, recorder: Recorder):
        self.send_task = recorder


def test_submit_many_chunks_ids_in_order():
    sent = Recorder()
    CeleryJobQueue(FakeApp(sent), batch_size=32).submit_many(range(1, 71))
    assert [(n, a) for n, a, _ in sent.calls] == [
        (RUN_JOBS, (list(range(1, 33)),)), (RUN_JOBS, (list(range(33, 65)),)),
        (RUN_JOBS, (list(range(65, 71)),))]


def test_a_chunk_of_one_goes_as_run_job():
    sent = Recorder()
    queue = CeleryJobQueue(FakeApp(sent), batch_size=4)
    queue.submit_many([1, 2, 3, 4, 5])
    queue.submit_many([9])
    queue.submit_many([])
    assert [(n, a) for n, a, _ in sent.calls] == [
        (RUN_JOBS, ([1, 2, 3, 4],)), (RUN_JOB, (5,)), (RUN_JOB, (9,))]


@pytest.mark.parametrize("bad", [[1, 0], [1, True], [1, "2"], [None]])
def test_submit_many_refuses_bad_ids_before_sending_any(bad):
    sent = Recorder()
    with pytest.raises(ValueError, match="positive integer"):
        CeleryJobQueue(FakeApp(sent)).submit_many(bad)
    assert sent.calls == []


@pytest.mark.parametrize("size", [0, -1, 1001, True, 2.0])
def test_batch_size_is_checked(size):
    with pytest.raises(ValueError, match="batch size"):
        CeleryJobQueue(FakeApp(Recorder()), batch_size=size)


def test_broker_refusing_one_chunk_does_not_stop_the_others(caplog):
    sent = Recorder(fail_on={1})
    CeleryJobQueue(FakeApp(sent), batch_size=2).submit_many([1, 2, 3, 4])   # no exception
    assert [a for _, a, _ in sent.calls] == [([1, 2],), ([3, 4],)]
    assert "reconciler will re-send" in caplog.text


def test_submit_all_falls_back_to_submit_per_id():
    class SubmitOnly:
        def __init__(self):
            self.ids: list[int] = []

        def submit(self, job_id: int) -> None:
            if job_id == 2:
                raise ConnectionError("away")
            self.ids.append(job_id)

    q = SubmitOnly()
    submit_all(q, [1, 2, 3])
    assert q.ids == [1, 3]


def test_submit_all_prefers_submit_many_and_swallows_its_failure(caplog):
    class Many:
        def __init__(self):
            self.batches: list[list[int]] = []

        def submit(self, job_id: int) -> None:
            raise AssertionError("submit_many should have been used")

        def submit_many(self, job_ids) -> None:
            self.batches.append(list(job_ids))
            if len(self.batches) == 2:
                raise ConnectionError("away")

    q = Many()
    submit_all(q, [1, 2])
    submit_all(q, [3])          # raises inside: logged, not raised
    submit_all(q, [])           # nothing to do: not called
    assert q.batches == [[1, 2], [3]]
    assert "reconciler will resend" in caplog.text


def test_protocol_default_submit_many_submits_each():
    class Explicit(JobQueue):
        def __init__(self):
            self.ids: list[int] = []

        def submit(self, job_id: int) -> None:
            self.ids.append(job_id)

    q = Explicit()
    q.submit_many([4, 5])
    assert q.ids == [4, 5]


# ---- the run_jobs task body ---------------------------------------------------------------------
@pytest.fixture()
def batch_task(tmp_path: Path, monkeypatch):
    """(register(**kw) -> tasks, ran, sent): tasks on an embedded-broker app, with `run_job`
    replaced by `behaviour[job_id]` and `send_task` recorded."""
    ran: list[int] = []
    behaviour: dict[int, object] = {}
    sent = Recorder()
    app = make_celery(make_settings(tmp_path))
    monkeypatch.setattr(app, "send_task", sent)

    def fake_run_job(store, site, job_id, *, worker_id, lease_s, max_attempts):
        ran.append(job_id)
        action = behaviour.get(job_id)
        if isinstance(action, Exception):
            raise action
        if callable(action):
            action()

    monkeypatch.setattr(runner, "run_job", fake_run_job)
    rt = JobRuntime(store=None, site=None, aggregate=None, queue=None, worker_id="t:1")

    def register(**kw):
        return register_tasks(app, lambda: rt, retry=RetryPolicy(base_s=0.2), **kw)

    yield register, ran, sent, behaviour
    app.close()


def test_batch_runs_in_order_and_retries_only_the_transient_job(batch_task, caplog):
    register, ran, sent, behaviour = batch_task
    tasks = register()
    behaviour.update({2: runner.RetryableJobError("lease held"), 3: RuntimeError("bug"),
                      4: runner.JobNotFound(4)})
    tasks.run_jobs([1, 2, 3, 4, 5])
    assert ran == [1, 2, 3, 4, 5]               # nothing held back, nothing repeated
    assert len(sent.calls) == 1
    name, args, options = sent.calls[0]
    # the same message run_job's own first retry sends: one job, retries=1, back-off countdown
    assert (name, args, options["retries"]) == (RUN_JOB, (2,), 1)
    assert 0.1 <= options["countdown"] <= 0.2
    assert "job 3 failed unexpectedly" in caplog.text
    assert "job 4 does not exist" in caplog.text


def test_batch_retry_that_cannot_be_sent_is_left_to_the_reconciler(batch_task, caplog):
    register, ran, sent, behaviour = batch_task
    tasks = register()
    sent.fail_on = {1}
    behaviour[1] = runner.RetryableJobError("transient")
    tasks.run_jobs([1, 2])
    assert ran == [1, 2]
    assert "reconciler will re-send it" in caplog.text


@pytest.mark.parametrize("bad", ["1,2", [], [1, 0], [1, False], [1, 2.5], list(range(1, 1002)),
                                 None])
def test_malformed_batch_message_is_dropped(batch_task, caplog, bad):
    register, ran, sent, _ = batch_task
    register().run_jobs(bad)
    assert ran == [] and sent.calls == []
    assert "dropping run_jobs message" in caplog.text


def test_slow_batch_hands_its_remaining_jobs_to_other_workers(batch_task):
    register, ran, sent, behaviour = batch_task
    tasks = register(batch_handoff_s=0.05)
    behaviour[1] = lambda: time.sleep(0.08)
    tasks.run_jobs([1, 2, 3])
    assert ran == [1]
    assert [(n, a) for n, a, _ in sent.calls] == [(RUN_JOB, (2,)), (RUN_JOB, (3,))]


def test_fast_batch_or_handoff_off_runs_everything_here(batch_task):
    register, ran, sent, behaviour = batch_task
    tasks = register(batch_handoff_s=0)
    behaviour[1] = lambda: time.sleep(0.08)
    tasks.run_jobs([1, 2, 3])
    assert ran == [1, 2, 3] and sent.calls == []


def test_handoff_refused_by_the_broker_runs_the_rest_here(batch_task):
    register, ran, sent, behaviour = batch_task
    tasks = register(batch_handoff_s=0.05)
    sent.fail_on = {2}
    behaviour[1] = lambda: time.sleep(0.08)
    tasks.run_jobs([1, 2, 3])
    assert ran == [1, 2, 3]
    assert [a for _, a, _ in sent.calls] == [(2,), (3,)]


# ---- the service submits one call's jobs together -----------------------------------------------
def test_aggregate_submits_each_calls_jobs_in_one_submit_many(stack_factory):
    class Batches:
        def __init__(self):
            self.batches: list[list[int]] = []

        def submit(self, job_id: int) -> None:
            raise AssertionError("the service should use submit_many")

        def submit_many(self, job_ids) -> None:
            self.batches.append(list(job_ids))

    stack = stack_factory(worker=False)
    queue = Batches()
    stack.aggregate.queue = queue
    stack.allocate("many", n=3)
    stack.provision("many")
    stack.delete("many")
    assert [len(b) for b in queue.batches] == [3, 3]
    assert len(set(queue.batches[0] + queue.batches[1])) == 6
