"""The whole life of a slice on a fake site, with run_job as the worker."""
from __future__ import annotations

from datetime import timedelta

import pytest
from lxml import etree

from am.errors import GeniCode, GeniError
from am.service.contract import Options
from am.store import Job, Reservation, Sliver
from drivers.base import UserKeys
from tests.service.harness import ALICE, two_nodes_and_link
from tests.support import slice_urn

RSPEC3 = "{http://www.geni.net/resources/rspec/3}"
KEYS = (UserKeys("urn:publicid:IDN+geni-am:test:sa+user+alice", ("ssh-ed25519 AAAAC3Nz alice",)),)


def _used(h) -> dict[tuple[str, str], float]:
    return {(c, r): u for c, r, _, u in h.store.capacity_rows() if u}


def _states(infos) -> set[tuple[str, str | None]]:
    return {(i.allocation_status, i.operational_status) for i in infos}


def test_full_life_cycle(h):
    s = slice_urn()
    alloc = h.am.allocate(ALICE, s, two_nodes_and_link(), Options())
    assert len(alloc.slivers) == 3
    assert _states(alloc.slivers) == {("geni_allocated", "geni_pending_allocation")}
    assert all(i.expires == h.clock.now + timedelta(seconds=600) for i in alloc.slivers)
    root = etree.fromstring(alloc.manifest.encode())
    assert {n.get("client_id") for n in root.iter(RSPEC3 + "node")} == {"a", "b"}
    assert all(n.get("sliver_id") in {i.sliver_urn for i in alloc.slivers}
               for n in root.iter(RSPEC3 + "node"))
    assert _used(h)   # capacity is reserved at Allocate
    assert h.queue.submitted == []   # ... and no substrate touched
    assert h.driver.observed() == []

    prov = h.am.provision(ALICE, [s], Options(users=KEYS))
    assert _states(prov.slivers) == {("geni_provisioned", "geni_pending_allocation")}
    assert all(i.expires == h.clock.now + timedelta(days=7) for i in prov.slivers)
    assert len(h.queue.submitted) == 3
    with h.store.read() as session:   # the link's job goes first (its nodes converge once)
        kinds = [session.get(Sliver, session.get(Job, j).sliver_id).kind
                 for j in h.queue.submitted]
    assert kinds == ["link", "node", "node"]
    assert h.run_jobs() == 3
    # start_on_provision (the default): each provision job also booted its sliver, once
    status = h.am.status(ALICE, [s], Options())
    assert status.slice_urn == s
    assert _states(status.slivers) == {("geni_provisioned", "geni_ready")}
    assert all(i.error == "" for i in status.slivers)
    assert len(h.driver.observed()) == 3
    assert {h.driver.counters(i.sliver_urn).actions for i in status.slivers} == {1}
    assert h.queue.submitted == []   # no separate start job

    # stop and start again: ready -> stopping -> notready -> configuring -> ready
    h.am.perform_action(ALICE, [s], "geni_stop", Options())
    assert _states(h.am.status(ALICE, [s], Options()).slivers) == {("geni_provisioned", "geni_stopping")}
    h.run_jobs()
    assert _states(h.am.status(ALICE, [s], Options()).slivers) == {("geni_provisioned", "geni_notready")}
    h.am.perform_action(ALICE, [s], "geni_start", Options())
    assert _states(h.am.status(ALICE, [s], Options()).slivers) == {("geni_provisioned", "geni_configuring")}
    h.run_jobs()
    assert _states(h.am.status(ALICE, [s], Options()).slivers) == {("geni_provisioned", "geni_ready")}
    assert {h.driver.counters(i.sliver_urn).created for i in status.slivers} == {1}

    desc = h.am.describe(ALICE, [s], Options())
    node = next(etree.fromstring(desc.manifest.encode()).iter(RSPEC3 + "node"))
    login = node.find(f"{RSPEC3}services/{RSPEC3}login")
    assert login is not None and login.get("username") == "alice"
    assert "ssh-ed25519 AAAAC3Nz alice" in desc.manifest

    one = alloc.slivers[1].sliver_urn
    infos = h.am.perform_action(ALICE, [one], "geni_restart", Options())
    assert [(i.sliver_urn, i.operational_status) for i in infos] == [(one, "geni_configuring")]
    h.run_jobs()
    assert h.am.status(ALICE, [one], Options()).slivers[0].operational_status == "geni_ready"

    later = h.clock.now + timedelta(days=3)
    renewed = h.am.renew(ALICE, [s], later, Options())
    assert {i.expires for i in renewed} == {later}

    deleted = h.am.delete(ALICE, [s], Options())
    assert {i.allocation_status for i in deleted} == {"geni_unallocated"}
    assert {i.expires for i in deleted} == {later}    # the previous expiry
    assert _used(h) == {}                              # capacity back at once
    h.run_jobs()
    assert h.driver.observed() == []                   # substrate cleaned by delete jobs
    with pytest.raises(GeniError) as gone:
        h.am.status(ALICE, [s], Options())
    assert gone.value.code == GeniCode.SEARCHFAILED
    assert h.am.delete(ALICE, [s], Options()) == []    # idempotent
    again = h.am.delete(ALICE, [one], Options())
    assert [(i.sliver_urn, i.allocation_status) for i in again] == [(one, "geni_unallocated")]
    with h.store.read() as session:
        assert session.query(Reservation).count() == 0
        assert {j.state for j in session.query(Job)} == {"done"}


def test_repeated_allocates_into_one_slice(h):
    from tests.service.harness import node_xml, request
    s = slice_urn()
    first = h.am.allocate(ALICE, s, request(node_xml("a")), Options())
    second = h.am.allocate(ALICE, s.replace("geni-am:test:sa", "GENI-AM:Test:SA").replace("demo", "DeMo"),
                           request(node_xml("b")), Options())
    assert second.slice_urn == first.slice_urn == s   # case-insensitive slice match
    assert len(h.am.status(ALICE, [s], Options()).slivers) == 2
    # Provision by slice URN takes only what is still allocated
    h.am.provision(ALICE, [first.slivers[0].sliver_urn], Options())
    prov = h.am.provision(ALICE, [s], Options())
    assert [i.sliver_urn for i in prov.slivers] == [second.slivers[0].sliver_urn]
    with pytest.raises(GeniError) as nothing:
        h.am.provision(ALICE, [s], Options())
    assert nothing.value.code == GeniCode.UNSUPPORTED


def test_provision_best_effort_reports_per_sliver(h):
    from tests.service.harness import node_xml, request
    s = slice_urn()
    a = h.am.allocate(ALICE, s, request(node_xml("a"), node_xml("b")), Options())
    ua, ub = (i.sliver_urn for i in a.slivers)
    h.am.provision(ALICE, [ua], Options())
    with pytest.raises(GeniError) as strict:
        h.am.provision(ALICE, [ua, ub], Options())
    assert strict.value.code == GeniCode.UNSUPPORTED
    with h.store.read() as session:   # all-or-nothing: b untouched
        assert session.query(Sliver).filter_by(urn=ub).one().allocation_state == "geni_allocated"
    res = h.am.provision(ALICE, [ua, ub], Options(best_effort=True))
    by = {i.sliver_urn: i for i in res.slivers}
    assert by[ua].error and "cannot provision" in by[ua].error
    assert by[ub].allocation_status == "geni_provisioned" and by[ub].error == ""


def test_provision_failure_marks_geni_failed_with_the_cause(store, tmp_path):
    from tests.service.harness import Harness, node_xml, request
    h = Harness(store, tmp_path, failure_rate=1.0, seed=1)
    try:
        s = slice_urn()
        h.am.allocate(ALICE, s, request(node_xml("a")), Options())
        h.am.provision(ALICE, [s], Options())
        h.run_jobs()
        info = h.am.status(ALICE, [s], Options()).slivers[0]
        assert info.operational_status == "geni_failed"
        assert "injected failure" in info.error
    finally:
        h.close()
