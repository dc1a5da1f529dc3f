"""Argument handling and per-method rules: URN sets, Describe/Status shapes, Renew, POA,
Shutdown, the reaper, Allocate refusals."""
from __future__ import annotations

import re

from dataclasses import replace
from datetime import timedelta

import pytest
from lxml import etree

from am.errors import GeniCode, GeniError
from am.service.contract import Options
from drivers.base import UserKeys
from tests.service.harness import ALICE, AUTH, node_xml, request
from tests.support import slice_urn

RSPEC3 = "{http://www.geni.net/resources/rspec/3}"


def _code(fn, *args) -> GeniCode:
    with pytest.raises(GeniError) as info:
        fn(*args)
    return info.value.code


def _alloc(h, name="demo", *nodes):
    return h.am.allocate(ALICE, slice_urn(name), request(*(nodes or (node_xml("a"),))), Options())


def _ready(h, name="demo"):
    _alloc(h, name)
    h.am.provision(ALICE, [slice_urn(name)], Options())
    h.run_jobs()   # start_on_provision (default): the provision job boots it to geni_ready
    assert h.am.status(ALICE, [slice_urn(name)], Options()).slivers[0].operational_status == "geni_ready"


# ---- URN sets -------------------------------------------------------------------------------
def test_bad_urn_sets(h):
    a = _alloc(h, "one").slivers[0].sliver_urn
    b = _alloc(h, "two").slivers[0].sliver_urn
    bad = [[], [slice_urn("one"), slice_urn("two")], [slice_urn("one"), a], [a, b],
           ["urn:publicid:IDN+geni-am:test:sa+user+alice"], ["not a urn"], "urn:x"]
    for urns in bad:
        assert _code(h.am.resolve_slice, urns) == GeniCode.BADARGS, urns
        assert _code(h.am.status, ALICE, urns, Options()) == GeniCode.BADARGS, urns
    unknown = f"urn:publicid:IDN+{AUTH}+sliver+feedface"
    assert _code(h.am.resolve_slice, [unknown]) == GeniCode.SEARCHFAILED
    assert _code(h.am.describe, ALICE, [a, unknown], Options()) == GeniCode.SEARCHFAILED
    assert h.am.resolve_slice([a]) == slice_urn("one")
    assert h.am.resolve_slice([slice_urn("nothing-here")]) == slice_urn("nothing-here")


# ---- Describe / Status ----------------------------------------------------------------------
def test_describe_of_an_empty_slice_is_an_empty_manifest(h):
    res = h.am.describe(ALICE, [slice_urn("empty")], Options())
    assert res.slivers == () and res.slice_urn == slice_urn("empty")
    root = etree.fromstring(res.manifest.encode())
    assert root.get("type") == "manifest" and list(root.iter(RSPEC3 + "node")) == []
    assert _code(h.am.status, ALICE, [slice_urn("empty")], Options()) == GeniCode.SEARCHFAILED


def test_status_and_describe_shapes(h):
    a = _alloc(h, "demo", node_xml("a"), node_xml("b"))
    st = h.am.status(ALICE, [slice_urn()], Options())
    assert {i.sliver_urn for i in st.slivers} == {i.sliver_urn for i in a.slivers}
    for info in st.slivers:
        assert info.error == "" and info.expires.tzinfo is not None
        assert info.allocation_status == "geni_allocated"
        assert info.operational_status == "geni_pending_allocation"
    one = a.slivers[0].sliver_urn
    d = h.am.describe(ALICE, [one], Options())
    assert [i.sliver_urn for i in d.slivers] == [one]
    nodes = list(etree.fromstring(d.manifest.encode()).iter(RSPEC3 + "node"))
    assert [n.get("sliver_id") for n in nodes] == [one]


# ---- Allocate -------------------------------------------------------------------------------
def test_allocate_refusals(h):
    s = slice_urn()
    assert _code(h.am.allocate, ALICE, s, "<rspec", Options()) == GeniCode.BADARGS
    assert _code(h.am.allocate, ALICE, "urn:publicid:IDN+x+user+bob", request(node_xml("a")),
                 Options()) == GeniCode.BADARGS
    with pytest.raises(GeniError) as info:
        h.am.allocate(ALICE, s, request(node_xml("far", component="nosuchnode")), Options())
    assert info.value.code == GeniCode.BADARGS and "far" in info.value.message
    with pytest.raises(GeniError) as past:
        h.am.allocate(ALICE, s, request(node_xml("a")), Options(end_time=h.clock.now - timedelta(1)))
    assert past.value.code == GeniCode.OUTOFRANGE
    assert h.store.capacity_rows() and all(u == 0 for *_, u in h.store.capacity_rows())
    with h.store.read() as session:
        assert h.store.find_slice(session, s) is None   # nothing half-written


def test_allocation_expiry_is_capped_by_credential_and_end_time(h):
    soon = h.clock.now + timedelta(seconds=120)
    res = h.am.allocate(replace(ALICE, credential_expires=soon), slice_urn("c"),
                        request(node_xml("a")), Options())
    assert res.slivers[0].expires == soon
    end = h.clock.now + timedelta(seconds=60)
    res = h.am.allocate(ALICE, slice_urn("e"), request(node_xml("a")), Options(end_time=end))
    assert res.slivers[0].expires == end


# ---- Renew ----------------------------------------------------------------------------------
def test_renew_edge_cases(h):
    urn = _alloc(h).slivers[0].sliver_urn
    now = h.clock.now
    assert _code(h.am.renew, ALICE, [urn], now - timedelta(seconds=1), Options()) == GeniCode.OUTOFRANGE
    too_far = now + timedelta(days=8)
    assert _code(h.am.renew, ALICE, [urn], too_far, Options()) == GeniCode.OUTOFRANGE
    alap = h.am.renew(ALICE, [urn], too_far, Options(extend_alap=True))
    assert alap[0].expires == now + timedelta(days=7)
    cred = now + timedelta(days=2)
    capped = replace(ALICE, credential_expires=cred)
    assert _code(h.am.renew, capped, [urn], now + timedelta(days=3), Options()) == GeniCode.OUTOFRANGE
    assert h.am.renew(capped, [urn], now + timedelta(days=3), Options(extend_alap=True))[0].expires == cred
    best = h.am.renew(ALICE, [urn], too_far, Options(best_effort=True))
    assert best[0].error and best[0].expires == cred          # unchanged, with the reason
    shorter = h.am.renew(ALICE, [urn], now + timedelta(hours=1), Options())
    assert shorter[0].expires == now + timedelta(hours=1)
    assert shorter[0].allocation_status == "geni_allocated"   # Renew never changes state
    h.am.delete(ALICE, [urn], Options())
    assert _code(h.am.renew, ALICE, [urn], now + timedelta(hours=2), Options()) == GeniCode.SEARCHFAILED


# ---- PerformOperationalAction ---------------------------------------------------------------
def test_poa_rules(h):
    s = slice_urn()
    _alloc(h)
    assert _code(h.am.perform_action, ALICE, [s], "geni_start", Options()) == GeniCode.UNSUPPORTED
    h.am.provision(ALICE, [s], Options())
    # still geni_pending_allocation: POA not allowed yet
    assert _code(h.am.perform_action, ALICE, [s], "geni_start", Options()) == GeniCode.UNSUPPORTED
    h.run_jobs()
    assert h.am.status(ALICE, [s], Options()).slivers[0].operational_status == "geni_ready"
    assert _code(h.am.perform_action, ALICE, [s], "geni_fly", Options()) == GeniCode.UNSUPPORTED
    # geni_ready: already started
    assert _code(h.am.perform_action, ALICE, [s], "geni_start", Options()) == GeniCode.UNSUPPORTED
    assert _code(h.am.perform_action, ALICE, [s], "geni_update_users", Options()) == GeniCode.BADARGS
    users = Options(users=(UserKeys("urn:publicid:IDN+geni-am:test:sa+user+bob", ("ssh-rsa B",)),))
    infos = h.am.perform_action(ALICE, [s], "geni_update_users", users)
    assert infos[0].operational_status == "geni_updating_users"
    h.run_jobs()
    assert h.am.status(ALICE, [s], Options()).slivers[0].operational_status == "geni_ready"
    manifest = h.am.describe(ALICE, [s], Options()).manifest
    assert "ssh-rsa B" in manifest
    # the account geni_update_users added is a login in the manifest now (the driver's logins)
    assert re.search(r'<login [^>]*username="bob"', manifest), manifest
    h.am.perform_action(ALICE, [s], "geni_stop", Options())
    h.run_jobs()
    assert h.am.status(ALICE, [s], Options()).slivers[0].operational_status == "geni_notready"
    # geni_notready: nothing to stop, no running sliver to give keys to
    assert _code(h.am.perform_action, ALICE, [s], "geni_stop", Options()) == GeniCode.UNSUPPORTED
    assert _code(h.am.perform_action, ALICE, [s], "geni_update_users", users) == GeniCode.REFUSED
    best = h.am.perform_action(ALICE, [s], "geni_stop", Options(best_effort=True))
    assert best[0].error and best[0].operational_status == "geni_notready"
    h.am.perform_action(ALICE, [s], "geni_start", Options())
    h.run_jobs()
    assert h.am.status(ALICE, [s], Options()).slivers[0].operational_status == "geni_ready"


# ---- Shutdown -------------------------------------------------------------------------------
def test_shutdown_stops_and_refuses_changes(h):
    s = slice_urn()
    _ready(h)
    urn = h.am.status(ALICE, [s], Options()).slivers[0].sliver_urn
    op = replace(ALICE, urn="urn:publicid:IDN+geni-am:test+user+operator", is_operator=True)
    assert h.am.shutdown(op, s, Options()) is True
    assert h.am.status(ALICE, [s], Options()).slivers[0].operational_status == "geni_stopping"
    h.run_jobs()
    info = h.am.status(ALICE, [s], Options()).slivers[0]
    assert info.operational_status == "geni_notready" and info.allocation_status == "geni_provisioned"
    later = h.clock.now + timedelta(days=1)
    for call in (lambda: h.am.allocate(ALICE, s, request(node_xml("z")), Options()),
                 lambda: h.am.provision(ALICE, [s], Options()),
                 lambda: h.am.perform_action(ALICE, [urn], "geni_start", Options()),
                 lambda: h.am.renew(ALICE, [s], later, Options()),
                 lambda: h.am.delete(ALICE, [urn], Options())):
        with pytest.raises(GeniError) as info:
            call()
        assert info.value.code == GeniCode.REFUSED and "shut down" in info.value.message
    assert h.am.shutdown(op, s, Options()) is True   # again: still True
    assert h.am.describe(ALICE, [s], Options()).slivers   # state kept for forensics


def test_shutdown_of_an_unknown_slice_blocks_later_allocates(h):
    assert h.am.shutdown(ALICE, slice_urn("ghost"), Options()) is True
    assert _code(h.am.allocate, ALICE, slice_urn("ghost"), request(node_xml("a")),
                 Options()) == GeniCode.REFUSED


def test_shutdown_before_provision_job_runs_keeps_substrate_untouched(h):
    s = slice_urn()
    _alloc(h)
    h.am.provision(ALICE, [s], Options())
    h.am.shutdown(ALICE, s, Options())
    h.run_jobs()
    info = h.am.status(ALICE, [s], Options()).slivers[0]
    assert info.operational_status == "geni_failed" and "shut down" in info.error
    assert h.driver.observed() == []


# ---- the reaper -----------------------------------------------------------------------------
def test_reap_expires_allocations_and_leases_and_frees_capacity(h):
    _alloc(h, "short")
    _ready(h, "long")
    assert any(u for *_, u in h.store.capacity_rows())
    assert h.am.reap(h.clock.now) == []
    h.clock.advance(601)
    # expired but not yet reaped: gone to every request already
    assert _code(h.am.status, ALICE, [slice_urn("short")], Options()) == GeniCode.SEARCHFAILED
    assert len(h.am.reap(h.clock.now)) == 1
    assert h.driver.observed() != []        # the provisioned one lives on
    h.clock.advance(7 * 24 * 3600)
    assert len(h.am.reap(h.clock.now)) == 1
    h.run_jobs()
    assert h.driver.observed() == []
    assert all(u == 0 for *_, u in h.store.capacity_rows())
    assert h.am.reap(h.clock.now) == []
    # the slice URN can start a new life
    assert h.am.allocate(ALICE, slice_urn("short"), request(node_xml("a")), Options()).slivers
