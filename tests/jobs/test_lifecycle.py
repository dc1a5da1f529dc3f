"""Whole sliver life cycles through the service, executed by a real Celery worker.

Every test runs twice: on the embedded, server-free broker (what `geni-am serve` uses with no
broker configured) and on Redis. The worker is a real Celery WorkController (threads pool)
consuming from the broker: no `task_always_eager` anywhere.
"""
from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import func, select

from am.store import Capacity, Job, JobState, Reservation
from tests.jobs.conftest import FAST, Stack
from tests.support import wait_until

pytestmark = pytest.mark.slow

READY, NOTREADY, FAILED = "geni_ready", "geni_notready", "geni_failed"


@pytest.fixture(params=["embedded", pytest.param("redis", marks=pytest.mark.redis)])
def broker(request) -> str:
    if request.param == "embedded":
        return ""
    return request.getfixturevalue("redis_db")


def open_jobs(stack: Stack) -> int:
    with stack.store.read() as s:
        return int(s.scalar(select(func.count()).select_from(Job)
                            .where(Job.state.in_(("queued", "running")))))


def wait_jobs_settled(stack: Stack, timeout: float = 15.0) -> None:
    wait_until(lambda: open_jobs(stack) == 0, "every job to finish", timeout, 0.02)


def used_capacity(stack: Stack) -> float:
    with stack.store.read() as s:
        return float(s.scalar(select(func.coalesce(func.sum(Capacity.used), 0.0))))


def reservations(stack: Stack) -> int:
    with stack.store.read() as s:
        return int(s.scalar(select(func.count()).select_from(Reservation)))


def test_app_is_never_eager(stack_factory, broker):
    stack = stack_factory(broker_url=broker)
    conf = stack.jobs.app.conf
    assert conf.task_always_eager is False
    assert conf.task_acks_late is True and conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1 and conf.task_ignore_result is True


def test_full_life_cycle(stack_factory, broker):
    stack = stack_factory(broker_url=broker)
    urns = stack.allocate("life", n=3)
    assert used_capacity(stack) > 0
    stack.provision("life")
    stack.wait_ops("life", {READY})      # start_on_provision: the provision job booted them
    observed = {o.sliver_urn for o in stack.fake.observed()}
    assert set(urns) <= observed
    assert {stack.fake.counters(u).actions for u in urns} == {1}   # started once each
    stack.action("life", "geni_stop")
    stack.wait_ops("life", {NOTREADY})
    stack.action("life", "geni_start")
    stack.wait_ops("life", {READY})
    assert {stack.fake.counters(u).actions for u in urns} == {3}
    stack.delete("life")
    wait_until(lambda: not {o.sliver_urn for o in stack.fake.observed()} & set(urns),
               "the substrate to be cleaned after Delete", 10, 0.02)
    assert used_capacity(stack) == pytest.approx(0.0)
    assert reservations(stack) == 0
    for urn in urns:
        counters = stack.fake.counters(urn)
        assert counters.created == 1 and counters.deletes >= 1
    wait_jobs_settled(stack)
    with stack.store.read() as s:
        states = set(s.scalars(select(Job.state)))
    assert states == {"done"}


def test_transient_driver_errors_are_retried(stack_factory, broker):
    # Half of all provision/perform calls fail transiently (in either half of the
    # provision-and-start job): back-off retries get every sliver to geni_ready, and the
    # substrate creates each one exactly once.
    stack = stack_factory(broker_url=broker, fake={"transient_failure_rate": 0.5, "seed": 7},
                          policy=dataclasses.replace(FAST, max_attempts=30))
    urns = stack.allocate("flaky", n=4)
    stack.provision("flaky")
    stack.wait_ops("flaky", {READY})
    with stack.store.read() as s:
        attempts = list(s.scalars(select(Job.attempts)))
    assert max(attempts) > 1, "the seed should have produced at least one transient failure"
    for urn in urns:
        assert stack.fake.counters(urn).created == 1


def test_starts_under_way_are_polled_through_the_broker(stack_factory, broker):
    # Each start takes 6 looks (a booting VM): the worker re-sends each look with a countdown
    # instead of waiting in a pool slot; all four come up, and no look is an attempt.
    stack = stack_factory(broker_url=broker, fake={"boot_polls": 6})
    urns = stack.allocate("booting", n=4)
    stack.provision("booting")
    stack.wait_ops("booting", {READY}, timeout=60)
    wait_jobs_settled(stack)
    with stack.store.read() as s:
        assert list(s.scalars(select(Job.attempts))) == [1] * 4
    for urn in urns:
        assert stack.fake.counters(urn).created == 1


def test_permanent_failure_gives_geni_failed_with_reason(stack_factory, broker):
    stack = stack_factory(broker_url=broker, fake={"failure_rate": 1.0})
    stack.allocate("doomed", n=1)
    stack.provision("doomed")
    st = stack.wait_ops("doomed", {FAILED})
    (_, _, error), = st.values()
    assert "injected failure" in error
    wait_jobs_settled(stack)
    with stack.store.read() as s:
        assert list(s.scalars(select(Job.attempts))) == [1], "a permanent error is not retried"


def test_transient_errors_exhaust_attempts(stack_factory, broker):
    stack = stack_factory(broker_url=broker, fake={"transient_failure_rate": 1.0},
                          policy=dataclasses.replace(FAST, max_attempts=3))
    stack.allocate("hopeless", n=1)
    stack.provision("hopeless")
    st = stack.wait_ops("hopeless", {FAILED})
    (_, _, error), = st.values()
    assert "transient" in error
    wait_jobs_settled(stack)
    with stack.store.read() as s:
        assert list(s.scalars(select(Job.attempts))) == [3]


def _running_jobs(stack: Stack) -> int:
    with stack.store.read() as s:
        return int(s.scalar(select(func.count()).select_from(Job)
                            .where(Job.state == JobState.RUNNING)))


def test_delete_during_provision(stack_factory, broker):
    # Slow substrate: Delete arrives while the provision job is inside the driver. The slice
    # ends unallocated, nothing is left on the substrate, the capacity is back.
    stack = stack_factory(broker_url=broker, fake={"latency_s": 0.4})
    urns = stack.allocate("hasty", n=2)
    stack.provision("hasty")
    # a worker claimed one: it is inside the slow driver
    wait_until(lambda: _running_jobs(stack), "a worker to pick up a provision job", 10, 0.01)
    stack.delete("hasty")
    assert used_capacity(stack) == pytest.approx(0.0)
    wait_jobs_settled(stack)
    assert not {o.sliver_urn for o in stack.fake.observed()} & set(urns)
    assert reservations(stack) == 0
    for urn in urns:
        assert stack.fake.counters(urn).created <= 1


def test_allocation_left_to_expire_is_reaped(stack_factory, broker):
    stack = stack_factory(broker_url=broker, allocation_ttl_s=1, reaper_interval_s=0.3)
    before = used_capacity(stack)
    stack.allocate("forgotten", n=2)
    assert used_capacity(stack) > before
    wait_until(lambda: used_capacity(stack) <= before + 1e-9,
               "the reaper to free the expired allocation", 10)
    assert reservations(stack) == 0
    # capacity really is back: the same request fits again on a 1-node site
    stack.allocate("again", n=2)


def test_provisioned_sliver_expiry_cleans_substrate(stack_factory, broker):
    stack = stack_factory(broker_url=broker, reaper_interval_s=0.3)
    urns = stack.allocate("short", n=1)
    stack.provision("short")
    stack.wait_ops("short", {READY})
    # Shorten the lease under the service's feet, as time passing would.
    from datetime import timedelta

    from am.store import Sliver, utcnow
    with stack.store.write() as s:
        for row in s.scalars(select(Sliver).where(Sliver.urn.in_(urns))):
            row.expires = utcnow() - timedelta(seconds=1)
    wait_until(lambda: not {o.sliver_urn for o in stack.fake.observed()} & set(urns),
               "the expired sliver to leave the substrate", 10)
    assert reservations(stack) == 0


def test_serve_seam_starts_embedded_worker(tmp_path):
    """`serve_job_queue` (the job_queue seam of am.app.build_runtime): with no broker, the serve
    process gets a working queue *and* an in-process worker that builds its own runtime."""
    from am.jobs.runtime import serve_job_queue
    from am.service.aggregate import Aggregate
    from am.store import open_store
    from drivers.registry import load_site
    from tests.jobs.conftest import make_settings, write_inventory

    write_inventory(tmp_path)
    settings = make_settings(tmp_path)
    store = open_store(settings.effective_database_url, migrate=True)
    site = load_site(settings.inventory, authority=settings.authority,
                     state_dir=str(settings.state_path))
    queue, closers = serve_job_queue(settings)
    try:
        stack = Stack(settings, store, site, Aggregate(settings, store, site, queue), None)
        urns = stack.allocate("seam", n=2)
        stack.provision("seam")
        stack.wait_ops("seam", {READY})
        assert {o.sliver_urn for o in site.drivers["fake"].observed()} == set(urns)
    finally:
        for close in reversed(closers):
            close()
        site.close()
        store.close()
