"""Provision boots a sliver to geni_ready in the same job (setting `start_on_provision`, on by
default), the way InstaGENI-style AMs behave: "Provision, Status until ready". Off, a
provisioned sliver rests in geni_notready until PerformOperationalAction geni_start."""
from __future__ import annotations

import random

import pytest

from am.config import load_settings
from am.errors import GeniCode, GeniError
from am.jobs.runner import RetryableJobError, run_job
from am.service.contract import Options
from am.store import Job
from tests.service.harness import ALICE, Harness, node_xml, request
from tests.support import slice_urn


def _seed_with_draws(rate: float, fails: tuple[bool, ...]) -> int:
    """A seed for the fake's fault injection whose successive provision/perform calls fail
    (draw < rate) exactly as `fails` says, e.g. (False, True): provision works, the start
    after it fails."""
    for seed in range(10_000):
        rng = random.Random(seed)
        if all((rng.random() < rate) is fail for fail in fails):
            return seed
    raise AssertionError(f"no seed draws {fails} at rate {rate}")


def _one(h: Harness, name: str = "demo") -> str:
    """Allocate and Provision one node; the provision job is queued, not run. Its sliver URN."""
    s = slice_urn(name)
    urn = h.am.allocate(ALICE, s, request(node_xml("a")), Options()).slivers[0].sliver_urn
    h.am.provision(ALICE, [s], Options())
    return urn


def _status(h: Harness, urn: str):
    return h.am.status(ALICE, [urn], Options()).slivers[0]


def _jobs(h: Harness) -> list[tuple[str, str, dict]]:
    with h.store.read() as session:
        return [(j.action, j.state, dict(j.args or {}))
                for j in session.query(Job).order_by(Job.id)]


def test_default_provision_job_boots_to_ready_starting_once(make):
    h = make()
    assert h.settings.start_on_provision is True
    calls: list[tuple[str, str]] = []
    perform = h.driver.perform

    def spy(spec, action):
        calls.append((spec.sliver_urn, action))
        return perform(spec, action)
    h.driver.perform = spy
    urn = _one(h)
    assert _status(h, urn).operational_status == "geni_pending_allocation"
    assert h.run_jobs() == 1                       # one job did both halves
    info = _status(h, urn)
    assert (info.allocation_status, info.operational_status) == ("geni_provisioned", "geni_ready")
    assert info.error == ""
    assert calls == [(urn, "geni_start")]
    c = h.driver.counters(urn)
    assert (c.created, c.provision_calls, c.actions) == (1, 1, 1)
    assert _jobs(h) == [("provision", "done", {"start": True})]
    assert h.queue.submitted == []
    # geni_start on a ready sliver is refused: it is already started
    with pytest.raises(GeniError) as refused:
        h.am.perform_action(ALICE, [urn], "geni_start", Options())
    assert refused.value.code == GeniCode.UNSUPPORTED and "geni_ready" in refused.value.message


def test_off_rests_in_notready_until_geni_start(make):
    h = make(settings={"start_on_provision": False})
    urn = _one(h)
    h.run_jobs()
    info = _status(h, urn)
    assert (info.allocation_status, info.operational_status) == ("geni_provisioned", "geni_notready")
    assert h.driver.counters(urn).actions == 0     # the driver was never asked to start it
    assert _jobs(h) == [("provision", "done", {})]
    h.am.perform_action(ALICE, [urn], "geni_start", Options())
    assert _status(h, urn).operational_status == "geni_configuring"
    h.run_jobs()
    assert _status(h, urn).operational_status == "geni_ready"
    assert h.driver.counters(urn).actions == 1


def test_setting_comes_from_the_environment():
    assert load_settings(env={}).start_on_provision is True
    assert load_settings(env={"GENI_AM_START_ON_PROVISION": "false"}).start_on_provision is False
    assert load_settings(env={"GENI_AM_START_ON_PROVISION": "1"}).start_on_provision is True


def test_start_failure_marks_failed_with_the_cause(make):
    rate = 0.5   # provision draws "works", the start after it draws "fails", a restart "works"
    h = make(failure_rate=rate, seed=_seed_with_draws(rate, (False, True, False)))
    urn = _one(h)
    h.run_jobs()
    info = _status(h, urn)
    assert (info.allocation_status, info.operational_status) == ("geni_provisioned", "geni_failed")
    assert "injected failure in fake perform" in info.error
    [(action, state, _)] = _jobs(h)
    assert (action, state) == ("provision", "failed")
    with h.store.read() as session:
        assert "injected failure in fake perform" in session.query(Job).one().error
    c = h.driver.counters(urn)
    assert (c.created, c.actions) == (1, 0)        # made, never started
    # geni_restart is the advertised way out of geni_failed
    h.am.perform_action(ALICE, [urn], "geni_restart", Options())
    h.run_jobs()
    info = _status(h, urn)
    assert (info.operational_status, info.error) == ("geni_ready", "")
    assert h.driver.counters(urn).created == 1


def _interrupted_after_provision_half(make) -> tuple[Harness, str, int]:
    """Provision works, then the start hits a transient driver error: the job is requeued with
    the provision half committed (geni_configuring)."""
    rate = 0.5
    h = make(transient_failure_rate=rate, seed=_seed_with_draws(rate, (False, True, False)))
    urn = _one(h)
    [job_id] = h.queue.submitted
    with pytest.raises(RetryableJobError, match="transient"):
        h.run_jobs()
    info = _status(h, urn)
    assert (info.allocation_status, info.operational_status) == ("geni_provisioned", "geni_configuring")
    assert [(a, s) for a, s, _ in _jobs(h)] == [("provision", "queued")]
    c = h.driver.counters(urn)
    assert (c.created, c.provision_calls, c.actions) == (1, 1, 0)
    return h, urn, job_id


def test_retry_after_provision_half_only_starts(make):
    h, urn, job_id = _interrupted_after_provision_half(make)
    run_job(h.store, h.site, job_id, worker_id="another-worker")
    info = _status(h, urn)
    assert (info.operational_status, info.error) == ("geni_ready", "")
    c = h.driver.counters(urn)
    assert (c.created, c.provision_calls, c.actions) == (1, 1, 1)   # provision not repeated
    assert [(a, s) for a, s, _ in _jobs(h)] == [("provision", "done")]
    with h.store.read() as session:
        assert session.query(Job).one().attempts == 2


def test_delete_while_configuring_cleans_up(make):
    h, urn, job_id = _interrupted_after_provision_half(make)
    assert h.driver.observed() != []
    deleted = h.am.delete(ALICE, [urn], Options())
    assert [i.allocation_status for i in deleted] == ["geni_unallocated"]
    assert all(u == 0 for *_, u in h.store.capacity_rows())   # capacity back at once
    run_job(h.store, h.site, job_id, worker_id="test-worker")   # the retry: nothing left to start
    h.run_jobs()                                               # the delete job
    assert h.driver.observed() == []
    c = h.driver.counters(urn)
    assert (c.created, c.actions, c.deletes) == (1, 0, 1)
    assert {(a, s) for a, s, _ in _jobs(h)} == {("provision", "done"), ("delete", "done")}
