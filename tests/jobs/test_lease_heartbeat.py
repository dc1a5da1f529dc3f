"""Lease heartbeats: a driver call slower than the lease does not hand the sliver to a second
worker while the first is alive (its heartbeat renews the lease), but once the first worker is
SIGKILLed the second takes the job over and finishes it. Real `geni-am worker` processes on
Redis; the fake substrate sleeps `latency_s` in every operation."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from sqlalchemy import select

from am.jobs.runner import HeldLease, LeaseHeartbeat
from am.store import Job, Sliver
from tests.jobs.conftest import stop_process, worker_process
from tests.support import stays, wait_until

LEASE_S = 2.0
OP_S = 3.0       # each fake operation; provision + start = 6 s, three lease lifetimes


def _job(stack, job_id: int) -> Job:
    with stack.store.read() as session:
        return session.get(Job, job_id)


def test_slow_job_keeps_its_lease_until_its_worker_dies(stack_factory, redis_db, tmp_path: Path):
    stack = stack_factory(broker_url=redis_db, worker=False, fake={"latency_s": OP_S})
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    workers = [worker_process(stack.settings, log, concurrency=1,
                              extra=("--lease-s", str(LEASE_S))) for log in logs]
    try:
        (urn,) = stack.allocate("slow", n=1)
        stack.provision("slow")
        with stack.store.read() as session:
            sliver_id = session.scalars(select(Sliver.id).where(Sliver.urn == urn)).one()
            job_id = session.scalars(select(Job.id).where(Job.sliver_id == sliver_id)).one()
        holder = wait_until(lambda: stack.store.lease_holder(sliver_id),
                            "a worker to take the job", timeout=40)[0]
        claimed = time.monotonic()
        first_group = os.getpgid(int(holder.split(":")[1]))
        assert first_group in {w.pid for w in workers}
        first = next(w for w in workers if w.pid == first_group)
        # duplicate deliveries: the first worker is busy (one slot, late acks), so the idle
        # second worker gets them and keeps trying the sliver's lock
        for _ in range(3):
            stack.jobs.queue.submit(job_id)

        # 2.25 lease lifetimes inside the slow driver calls: nobody else gets the sliver
        def held() -> bool:
            now_holder = stack.store.lease_holder(sliver_id)
            assert now_holder is not None and now_holder[0] == holder, now_holder
            assert stack.fake.counters(urn).provision_calls <= 1
            job = _job(stack, job_id)
            assert (job.state, job.attempts) == ("running", 1), (job.state, job.attempts)
            return True
        stays(held, "the first worker's lease", claimed + 2.25 * LEASE_S - time.monotonic(), 0.1)
        assert stack.fake.counters(urn).provision_calls == 1

        # the first worker dies inside the start half: the second takes the job over
        stop_process(first, signal.SIGKILL)
        st = stack.wait_ops("slow", {"geni_ready", "geni_failed"}, timeout=40)
        assert st == {urn: ("geni_provisioned", "geni_ready", "")}
        job = _job(stack, job_id)
        assert job.state == "done" and job.attempts == 2, (job.state, job.attempts, job.error)
        second_group = os.getpgid(int(job.lease_owner.split(":")[1]))
        assert second_group != first_group
        counters = stack.fake.counters(urn)
        assert counters.created == 1 and counters.provision_calls == 1, counters
    finally:
        for w in workers:
            stop_process(w)
    # periodic tasks' receipt and success are DEBUG: none in the INFO worker logs
    for log in logs:
        text = log.read_text(errors="replace")
        assert "geni_am.reconcile[" not in text, text[-2000:]


class _CountingStore:
    """Enough of a Store for LeaseHeartbeat: counts renewals, can lose the lease."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str, float]] = []
        self.times: list[float] = []
        self.held = True

    def renew_lease(self, sliver_id: int, owner: str, ttl_s: float) -> bool:
        self.times.append(time.monotonic())
        self.calls.append((sliver_id, owner, ttl_s))
        return self.held


def test_heartbeat_beats_every_third_of_the_lease_and_stops_with_the_block():
    store = _CountingStore()
    entered = time.monotonic()
    with LeaseHeartbeat(store, HeldLease(7, "w"), lease_s=0.3) as hb:
        wait_until(lambda: len(store.calls) >= 3, "the heartbeat", timeout=10.0, interval=0.01)
    beats = len(store.calls)
    assert hb.renewals == beats and store.calls[0] == (7, "w", 0.3)
    # never early: the first a third of the lease after entering, then a third apart (a
    # loaded machine may make them late, which the lease's other two thirds absorb)
    gaps = [b - a for a, b in zip([entered, *store.times], store.times)]
    assert all(g >= 0.1 - 0.005 for g in gaps), gaps
    # stopped when the block ended: no beat for three periods
    stays(lambda: len(store.calls) == beats, "no renewal after the block", duration=0.3)

    lost = _CountingStore()
    lost.held = False
    with LeaseHeartbeat(lost, HeldLease(8, "w"), lease_s=0.15):
        wait_until(lambda: len(lost.calls) >= 1, "the heartbeat", timeout=10.0, interval=0.01)
        # a lost lease is not renewed again: four more periods without a second renewal
        stays(lambda: len(lost.calls) == 1, "a single renewal of a lost lease", duration=0.2)
