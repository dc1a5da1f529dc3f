"""A `geni-am worker` outlives its broker: Redis is SIGKILLed while a job is in flight and started
again (empty) on the same port; the worker reconnects, the job's late acknowledgement does not
kill it (kombu 5.7's redis transport raised AttributeError "'NoneType' object has no attribute
'hostname'" there: an unrecoverable error that ended the worker), and the slice still ends
geni_ready through this same worker. And when the Celery worker process dies anyway, the
supervisor in `geni-am worker` starts a new one."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import select

from am.store import Job, JobState
from tests import support
from tests.jobs.conftest import stop_process, worker_process
from tests.services import _redis_pings, free_port

pytestmark = [pytest.mark.redis, pytest.mark.slow]


class PrivateRedis:
    """A redis-server of this test's own (no persistence), which it can kill and restart."""

    def __init__(self, port: int, folder: str):
        self.port, self.folder = port, folder
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (apt-get install redis-server)"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.folder],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        support.wait_until(lambda: _redis_pings(self.port), "redis-server to start", 20)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    with tempfile.TemporaryDirectory(prefix="geniam-13a-redis-") as folder:
        server = PrivateRedis(free_port(), folder)
        server.start()
        try:
            yield server
        finally:
            server.stop()


def _wait_log(log: Path, says: Callable[[str], bool], what: str, timeout: float) -> None:
    """`support.wait_until` on the worker's log; a timeout shows the log's end."""
    support.wait_until(lambda: says(log.read_text(errors="replace")), what, timeout,
                       detail=lambda: log.read_text(errors="replace")[-3000:])


def _job_states(stack) -> set[str]:
    with stack.store.read() as session:
        return set(session.scalars(select(Job.state)))


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def test_worker_survives_redis_kill_with_a_job_in_flight(stack_factory, tmp_path: Path):
    with private_redis() as redis_server:
        # each substrate operation takes 1.5 s: the provision job is in flight when Redis dies
        stack = stack_factory(broker_url=redis_server.url, worker=False,
                              fake={"latency_s": 1.5})
        log = tmp_path / "worker.log"
        worker = worker_process(stack.settings, log, concurrency=1)
        try:
            stack.allocate("loss", n=1)
            stack.provision("loss")
            # in flight = a pool child has claimed the job (its row is running). "received" in
            # the worker's log is not enough: a message received but not yet written to a pool
            # child is dropped by the consumer when the connection goes (Celery flushes the
            # pool's outbound queue); that job is the reconciler's to re-send, not this test's.
            support.wait_until(lambda: _job_states(stack) == {JobState.RUNNING},
                               "the provision job to be running in the worker", 60)
            redis_server.kill()
            # the worker notices the broker is gone while the job still runs; the job ends and
            # is acknowledged while Redis is still away; then Redis returns, empty
            _wait_log(log, lambda text: "Connection to broker lost" in text,
                      "the worker to notice the broker is gone", 30)
            _wait_log(log, lambda text: "succeeded in" in text or worker.poll() is not None,
                      "the job to end", 60)
            redis_server.start()
            st = stack.wait_ops("loss", {"geni_ready", "geni_failed"}, timeout=90)
            assert all(op == "geni_ready" for _, op, _ in st.values()), st
            text = log.read_text(errors="replace")
            assert "Unrecoverable error" not in text, text[-4000:]
            assert worker.poll() is None, text[-4000:]
            # and the worker still takes new work after the restart
            stack.allocate("after", n=1)
            stack.provision("after")
            st = stack.wait_ops("after", {"geni_ready", "geni_failed"}, timeout=90)
            assert all(op == "geni_ready" for _, op, _ in st.values()), st
        finally:
            stop_process(worker)


def _late_ack_after_broker_loss(transport: str | None) -> BaseException | None:
    """What Celery's consumer does when Redis dies under a received, not yet acknowledged
    message: close the broker connection (`collect`, then `close`); Redis returns empty on the
    same port; the job ends and its message is acknowledged on the old channel, whose
    connection pool is gone (the state of the worker that died). Returns what the ack raised."""
    from kombu import Connection, Exchange, Queue

    with private_redis() as server:
        queue = Queue("q13a", Exchange("q13a"), "q13a")
        with Connection(server.url) as publisher:
            publisher.Producer().publish({"job": 1}, exchange=queue.exchange,
                                         routing_key="q13a", declare=[queue])
        conn = Connection(server.url, transport=transport)
        received = []
        consumer = conn.Consumer([queue], callbacks=[lambda _body, m: received.append(m)])
        consumer.qos(prefetch_count=1)
        consumer.consume()
        conn.drain_events(timeout=10)
        message = received[0]
        server.kill()
        with contextlib.suppress(Exception):
            conn.collect(socket_timeout=0.1)
        with contextlib.suppress(Exception):
            conn.close()
        server.start()
        message.channel._disconnect_pools()   # the pool the late ack would have reused is gone
        try:
            message.ack()
        except Exception as exc:   # noqa: BLE001 - the test is about which exception
            return exc
        return None


def test_late_ack_on_a_closed_connection_is_a_connection_error():
    from kombu.transport.redis import Transport as KombuRedis

    from am.jobs.redis_transport import TRANSPORT_PATH

    # kombu's own transport: the AttributeError that Celery treats as unrecoverable
    stock = _late_ack_after_broker_loss(None)
    assert isinstance(stock, AttributeError) and "hostname" in str(stock)
    # ours: a connection error, which Celery logs ("could not ack") and survives
    ours = _late_ack_after_broker_loss(TRANSPORT_PATH)
    assert isinstance(ours, KombuRedis.connection_errors), repr(ours)


def _celery_child(supervisor: subprocess.Popen) -> int | None:
    kids = _children(supervisor.pid)
    return kids[0] if len(kids) == 1 else None


def test_supervisor_restarts_a_worker_process_that_dies(stack_factory, tmp_path: Path):
    with private_redis() as redis_server:
        stack = stack_factory(broker_url=redis_server.url, worker=False)
        log = tmp_path / "worker.log"
        supervisor = worker_process(stack.settings, log, concurrency=1)
        try:
            _wait_log(log, lambda text: text.count(" ready.") == 1, "the worker to be ready", 60)
            first = _celery_child(supervisor)
            assert first is not None
            os.kill(first, signal.SIGKILL)
            # a new Celery worker process, under the same supervisor, ready again
            _wait_log(log, lambda text: text.count(" ready.") == 2,
                      "the restarted worker to be ready", 60)
            second = _celery_child(supervisor)
            assert second is not None and second != first and supervisor.poll() is None
            assert "died (signal 9)" in log.read_text(errors="replace")
            stack.allocate("revived", n=1)
            stack.provision("revived")
            st = stack.wait_ops("revived", {"geni_ready", "geni_failed"}, timeout=60)
            assert all(op == "geni_ready" for _, op, _ in st.values()), st
        finally:
            stop_process(supervisor)
        assert supervisor.returncode == 0
        assert _celery_child(supervisor) is None
