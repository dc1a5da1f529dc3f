"""A start under way on the substrate (a VM booting) does not hold a worker: the job starts it,
is queued again as a readiness poll (`am.jobs.runner.PollLater`) and each later look asks the
driver once; the sliver stays geni_configuring meanwhile and becomes geni_ready on the look
that sees it up. Polls are not attempts. The fake driver's `boot_polls` makes its starts take
that many looks."""
from __future__ import annotations

import pytest

from am.jobs.runner import DEFAULT_MAX_ATTEMPTS, PollLater, run_job
from am.service.contract import Options
from am.store import Job
from tests.service.harness import ALICE, Harness, node_xml, request
from tests.support import slice_urn


def _job(h: Harness, job_id: int) -> tuple[str, str, dict, int]:
    with h.store.read() as session:
        j = session.get(Job, job_id)
        return j.state, j.lease_owner, dict(j.args or {}), j.attempts


def _state(h: Harness, urn: str) -> str:
    return h.am.status(ALICE, [urn], Options()).slivers[0].operational_status


def _looks(h: Harness, job_id: int) -> int:
    """Run the job's looks until it finishes; how many raised PollLater."""
    polls = 0
    while True:
        try:
            run_job(h.store, h.site, job_id, worker_id="w")
            return polls
        except PollLater as poll:
            assert poll.job_id == job_id and poll.delay_s > 0
            polls += 1
            assert polls < 50


def test_provision_and_start_polls_until_ready_and_polls_are_not_attempts(make):
    looks = DEFAULT_MAX_ATTEMPTS + 2          # more looks than a job has attempts
    h = make(boot_polls=looks)
    s = slice_urn("poll")
    urn = h.am.allocate(ALICE, s, request(node_xml("a")), Options()).slivers[0].sliver_urn
    h.am.provision(ALICE, [s], Options())
    job_id = h.queue.submitted.pop(0)
    with pytest.raises(PollLater):
        run_job(h.store, h.site, job_id, worker_id="w")
    # the worker is free: the job is queued again, unowned, marked a poll; the sliver waits
    state, owner, args, attempts = _job(h, job_id)
    assert (state, owner, args.get("poll"), attempts) == ("queued", None, True, 0)
    assert _state(h, urn) == "geni_configuring"
    assert h.driver.counters(urn).created == 1
    assert _looks(h, job_id) == looks - 1
    assert _state(h, urn) == "geni_ready"
    assert _job(h, job_id)[0] == "done"
    assert h.driver.counters(urn).created == 1           # provisioned once for all the looks


def test_a_restart_is_polled_without_restarting_again(make):
    h = make(boot_polls=2)
    s = slice_urn("restart")
    urn = h.am.allocate(ALICE, s, request(node_xml("a")), Options()).slivers[0].sliver_urn
    h.am.provision(ALICE, [s], Options())
    assert _looks(h, h.queue.submitted.pop(0)) == 2
    assert _state(h, urn) == "geni_ready"
    asked: list[str] = []
    perform = h.driver.perform

    def recording(spec, action):
        asked.append(action)
        return perform(spec, action)
    h.driver.perform = recording
    h.am.perform_action(ALICE, [urn], "geni_restart", Options())
    assert _state(h, urn) == "geni_configuring"
    assert _looks(h, h.queue.submitted.pop(0)) == 2
    assert _state(h, urn) == "geni_ready"
    # restarted once; the looks after it ask as a start does (progress, not another restart)
    assert asked == ["geni_restart", "geni_start", "geni_start"]


def test_a_sliver_deleted_while_booting_ends_its_poll(make):
    h = make(boot_polls=5)
    s = slice_urn("gone")
    h.am.allocate(ALICE, s, request(node_xml("a")), Options())
    h.am.provision(ALICE, [s], Options())
    job_id = h.queue.submitted.pop(0)
    with pytest.raises(PollLater):
        run_job(h.store, h.site, job_id, worker_id="w")
    h.am.delete(ALICE, [s], Options())
    run_job(h.store, h.site, job_id, worker_id="w")      # the next look: nothing to wait for
    assert _job(h, job_id)[0] == "done"
