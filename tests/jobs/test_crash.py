"""Workers dying mid-job, and the broker dying mid-run: no sliver stuck, none done twice,
no job lost. The workers here are real `geni-am worker` processes (prefork pool).

A provision job provisions and then starts its sliver (start_on_provision, the default), so a
worker can die in either half: in the provision half the retry provisions (idempotently) and
starts; in the start half the provision is committed (geni_configuring) and the retry only
redoes the start."""
from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select

from am.store import Job, Sliver
from tests import services
from tests.jobs.conftest import stop_process, worker_process
from tests.support import wait_until

pytestmark = pytest.mark.slow

DONE = {"geni_ready", "geni_failed"}


@pytest.fixture(params=["embedded", pytest.param("redis", marks=pytest.mark.redis)])
def broker(request) -> str:
    return "" if request.param == "embedded" else request.getfixturevalue("redis_db")


def _running_jobs(stack) -> int:
    with stack.store.read() as s:
        return int(s.scalar(select(func.count()).select_from(Job).where(Job.state == "running")))


def _assert_settled(stack, name: str, urns: list[str]) -> dict:
    """Every sliver ready-ish or failed with a reason; the substrate created each at most once."""
    st = stack.wait_ops(name, DONE, timeout=40)
    for urn, (_, op, error) in st.items():
        if op == "geni_failed":
            assert error, f"{urn} failed without a reason"
        assert stack.fake.counters(urn).created <= 1, f"{urn} was created twice"
    return st


def _ops(stack, name: str) -> set[str | None]:
    return {op for _, op, _ in stack.status(name).values()}


@pytest.mark.parametrize("half", ["provision", "start"])
def test_worker_killed_mid_job_recovers(stack_factory, broker, half: str, tmp_path: Path):
    """SIGKILL the whole worker while a provision job is in its provision half (a job running,
    nothing provisioned yet) or in its start half (a sliver in geni_configuring); a new worker
    brings every sliver to geni_ready, creating each once."""
    stack = stack_factory(broker_url=broker, worker=False, fake={"latency_s": 0.5})
    log = tmp_path / "worker.log"
    first = worker_process(stack.settings, log)
    try:
        urns = stack.allocate("victim", n=4)
        stack.provision("victim")
        if half == "provision":
            wait_until(lambda: _running_jobs(stack) > 0, "a provision job to start", interval=0.01)
        else:
            wait_until(lambda: "geni_configuring" in _ops(stack, "victim"),
                  "a provision half to commit", interval=0.01)
        stop_process(first, signal.SIGKILL)          # the whole worker, children included
        killed_in = stack.status("victim")
        second = worker_process(stack.settings, log)
        try:
            st = _assert_settled(stack, "victim", urns)
            assert all(op == "geni_ready" for _, op, _ in st.values()), st
        finally:
            stop_process(second)
    finally:
        stop_process(first)
    for urn in urns:
        c = stack.fake.counters(urn)
        assert c.created == 1 and c.actions >= 1, (urn, c)
    if half == "provision":
        assert any(op == "geni_pending_allocation" for _, op, _ in killed_in.values()), killed_in
    # a sliver the kill caught configuring was provisioned once and only started again
    starting = [u for u, (_, op, _) in killed_in.items() if op == "geni_configuring"]
    assert starting or half == "provision", killed_in
    for urn in starting:
        assert stack.fake.counters(urn).provision_calls == 1, urn


@pytest.mark.parametrize("operation", ["provision", "perform"])
def test_crash_inside_driver_is_not_done_twice(stack_factory, redis_db, operation: str,
                                               tmp_path: Path):
    """The fake's crash switch kills the pool child right after the substrate changed, in the
    provision half (driver provision) or in the start half (driver perform geni_start): the
    message goes back to the queue (reject on worker lost), the dead child's lease is void,
    and the job converges to geni_ready without creating anything twice."""
    stack = stack_factory(broker_url=redis_db, worker=False)
    log = tmp_path / "worker.log"
    proc = worker_process(stack.settings, log)
    try:
        stack.fake.arm_crash(operation, "after")
        urns = stack.allocate("crashy", n=1)
        stack.provision("crashy")
        wait_until(lambda: b"exitcode 70" in log.read_bytes(), "the pool child's crash", 60,   # worker start under load
                   detail=lambda: log.read_text(errors="replace")[-3000:])
        stack.fake.disarm_crash()
        st = _assert_settled(stack, "crashy", urns)
        assert list(st.values())[0][1] == "geni_ready", st
        assert proc.poll() is None, "the worker process itself survives a child's crash"
    finally:
        stack.fake.disarm_crash()
        stop_process(proc)
    c = stack.fake.counters(urns[0])
    assert c.created == 1
    if operation == "provision":
        assert c.provision_calls >= 2 and c.actions == 1   # provision redone (a no-op), one start
    else:
        # the provision half had committed: only the start is redone (the crash may repeat
        # until disarmed, so the start ran at least twice), provision never again
        assert c.provision_calls == 1 and c.actions >= 2
    with stack.store.read() as s:
        assert [(j.action, j.state) for j in s.scalars(select(Job))] == [("provision", "done")]


@contextlib.contextmanager
def _private_redis(port: int, folder: Path):
    binary = shutil.which("redis-server")
    if not binary:
        pytest.fail("redis-server is not installed")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    services._wait(lambda: services._redis_pings(port), "private redis-server", proc)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


def test_redis_restarted_mid_run_loses_no_job(stack_factory, tmp_path: Path):
    """Redis (no persistence) restarts while jobs are queued in it: every queued message is
    gone, yet every sliver is provisioned, because the reconciler re-sends from the database."""
    port = services.free_port()
    url = f"redis://127.0.0.1:{port}/0"
    log = tmp_path / "worker.log"
    with _private_redis(port, tmp_path) as server:
        stack = stack_factory(broker_url=url, worker=False, nodes=8, fake={"latency_s": 0.05})
        proc = worker_process(stack.settings, log, concurrency=1)
        try:
            names = [f"r{i}" for i in range(6)]
            for name in names:
                stack.allocate(name, n=2)
            for name in names:
                stack.provision(name)
            server.kill()
            server.wait(10)
            # While Redis is down the service still answers (submit only logs).
            stack.allocate("during", n=1)
            stack.provision("during")
            with _private_redis(port, tmp_path):
                for name in names + ["during"]:
                    st = stack.wait_ops(name, {"geni_ready"}, timeout=60)
                    for urn in st:
                        assert stack.fake.counters(urn).created == 1
            with stack.store.read() as s:
                assert s.scalar(select(func.count()).select_from(Sliver)
                                .where(Sliver.operational_state != "geni_ready")) == 0
        finally:
            stop_process(proc)


def test_child_killed_mid_batch_redelivers_the_batch_without_redoing_done_jobs(
        stack_factory, redis_db, tmp_path: Path):
    """One Provision of five slivers goes as one `geni_am.run_jobs` message. The pool child dies
    (the fake's crash switch) inside the third job, after two slivers reached geni_ready: the
    whole message comes back (acks_late, reject on worker lost), the two done jobs are skipped,
    and every sliver ends geni_ready, created once."""
    stack = stack_factory(broker_url=redis_db, worker=False, fake={"latency_s": 0.1})
    log = tmp_path / "worker.log"
    # one pool child, no hand-off of a slow batch: the batch stays one message throughout
    proc = worker_process(stack.settings, log, concurrency=1, extra=("--batch-handoff-s", "0"))
    try:
        urns = stack.allocate("batch", n=5)
        stack.provision("batch")
        ready = wait_until(lambda: [u for u, (_, op, _) in stack.status("batch").items()
                               if op == "geni_ready"] or None,
                      "the first job of the batch", interval=0.01)
        stack.fake.arm_crash("provision", "after")
        wait_until(lambda: b"exitcode 70" in log.read_bytes(), "the pool child's crash", 60,   # worker start under load
                   detail=lambda: log.read_text(errors="replace")[-3000:])
        stack.fake.disarm_crash()
        before_crash = {u for u, (_, op, _) in stack.status("batch").items() if op == "geni_ready"}
        assert 0 < len(before_crash) < 5, before_crash
        st = _assert_settled(stack, "batch", urns)
        assert all(op == "geni_ready" for _, op, _ in st.values()), st
        assert proc.poll() is None
    finally:
        stack.fake.disarm_crash()
        stop_process(proc)
    # The batch message itself came back (same task id delivered twice). The reconciler may
    # also have re-sent jobs that stayed queued past its short test grace while billiard
    # noticed the dead child, as batches of their own: duplicates the done-check absorbs.
    received = re.findall(rb"Task geni_am\.run_jobs\[([0-9a-f-]+)\] received", log.read_bytes())
    assert received and received.count(received[0]) == 2, received
    for urn in urns:
        c = stack.fake.counters(urn)
        assert c.created == 1, (urn, c)
    for urn in before_crash | set(ready):
        c = stack.fake.counters(urn)
        # done before the crash: skipped when the batch came back
        assert (c.provision_calls, c.actions) == (1, 1), (urn, c)
    with stack.store.read() as s:
        assert {(j.action, j.state) for j in s.scalars(select(Job))} == {("provision", "done")}
