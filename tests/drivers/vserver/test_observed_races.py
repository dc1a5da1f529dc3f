"""`observed()` while jobs run: a sliver being made is never reported as debris or as an orphan
nobody owns (the reconciler releases those, and once took a container being provisioned for
one: its provision committed geni_ready, the release then removed it, and the next pass marked
the sliver lost, "the substrate no longer has this sliver")."""
from __future__ import annotations

import threading

import pytest

from drivers import hostnet
from drivers.base import OperationalState
from tests.drivers.vserver.helpers import node

pytestmark = pytest.mark.root


def _nobodys(driver) -> list:
    return [o for o in driver.observed() if o.sliver_urn is None]


def test_a_node_whose_job_is_still_making_it_is_not_debris(driver, monkeypatch):
    """The job has written the record (first, under the node's lock) and not yet made the
    namespace: the reconciler looks now."""
    spec = node("mk1", [])
    handle = driver.node_handle(spec.sliver_urn)
    reached, go = threading.Event(), threading.Event()
    limit = driver._limit

    def slow_limit(*args, **kw):        # the step after the record, before the namespace
        reached.set()
        assert go.wait(60)
        return limit(*args, **kw)

    monkeypatch.setattr(driver, "_limit", slow_limit)
    result: list = []
    job = threading.Thread(target=lambda: result.append(driver.provision(spec)))
    job.start()
    try:
        assert reached.wait(60)
        assert not hostnet.netns_exists(handle) and driver.state.read(handle) is not None
        seen = {o.handle: o for o in driver.observed()}
        assert seen[handle].sliver_urn == spec.sliver_urn
        assert seen[handle].state is not OperationalState.FAILED
        assert _nobodys(driver) == []
    finally:
        go.set()
        job.join(120)
    assert result and result[0].state is OperationalState.READY
    assert [(o.sliver_urn, o.state) for o in driver.observed()] == \
        [(spec.sliver_urn, OperationalState.READY)]


def test_what_a_job_makes_while_the_substrate_is_listed_is_owned(driver, monkeypatch):
    """A provision runs between the reconciler's reading of the records and its listing of
    the namespaces: its record is written before its namespace is made, so a listing that
    sees the namespace is followed by records that name it."""
    spec = node("mk2", [])
    listing = hostnet.netns_list
    made: list = []

    def list_while_a_job_runs():
        if not made:
            made.append(driver.provision(spec))
        return listing()

    monkeypatch.setattr(hostnet, "netns_list", list_while_a_job_runs)
    seen = driver.observed()
    assert made and hostnet.netns_exists(driver.node_handle(spec.sliver_urn))
    assert [o for o in seen if o.sliver_urn is None] == []
    assert [(o.sliver_urn, o.state) for o in seen] == [(spec.sliver_urn, OperationalState.READY)]
