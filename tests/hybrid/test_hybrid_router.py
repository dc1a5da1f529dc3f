"""A hybrid virtual router through the AM API v3: control plane in a Xen VM, forwarding in a
NetFPGA slot. One request node becomes two slivers that live and die together; the slot's
route registers follow the control plane's routes."""
from __future__ import annotations

from am.store import Sliver, spec_from_dict
from sqlalchemy import select

from tests.api.conftest import code_of
from tests.hybrid.conftest import CARD1, XEN1, manifest_nodes, node, request

SYNC = "geniam_sync_routes"


def _slivers(am) -> dict[str, tuple[str, object]]:
    """client_id -> (component, spec) of every live sliver."""
    with am.rt.store.read() as session:
        rows = session.scalars(select(Sliver).where(
            Sliver.allocation_state != "geni_unallocated")).all()
        return {r.client_id: (r.component_id, spec_from_dict(r.spec)) for r in rows}


def test_xen_control_plane_netfpga_forwarding(am):
    alloc = am.allocate(request(node(
        "r1", ifaces=(("if0", "10.97.1.1"), ("if1", "10.97.2.1")),
        ext='router="true" forwarding="hardware"',
        routes=(("10.220.0.0/16", "10.97.1.254"), ("10.221.0.0/16", "10.97.2.254")))))
    assert code_of(alloc) == 0, alloc
    placed = _slivers(am)
    assert placed["r1"][0] == XEN1 and placed["r1:forwarding"][0] == CARD1
    control, plane_spec = placed["r1"][1], placed["r1:forwarding"][1]
    assert control.params["forwarding_sliver"] == plane_spec.sliver_urn
    assert plane_spec.params["control_sliver"] == control.sliver_urn
    assert plane_spec.sliver_type == "netfpga-vdp"
    urn = manifest_nodes(alloc["value"])["r1"].get("sliver_id")
    assert urn == control.sliver_urn

    # the router's URN provisions both halves, and each job starts its half
    # (start_on_provision): the slot forwards the control plane's routes
    am.provision([urn])
    assert set(am.wait_for([urn, plane_spec.sliver_urn], "geni_ready").values()) == \
        {"geni_ready"}
    plane = am.netfpga.plane(plane_spec)
    assert {(e.prefix, e.gateway) for e in plane.read()} == {("10.220.0.0/16", "10.97.1.254"),
                                                              ("10.221.0.0/16", "10.97.2.254")}
    status = am.ok("Status", [urn], am.cred, {})["geni_slivers"][0]
    assert "forwarding in hardware" in status["geni_resource_status"]

    # stopped, the router forwards nothing; started again, the slot gets the routes back
    assert code_of(am.poa([urn], "geni_stop")) == 0
    assert set(am.wait_for([urn, plane_spec.sliver_urn], "geni_notready").values()) == \
        {"geni_notready"}
    assert plane.read() == set()
    assert code_of(am.poa([urn], "geni_start")) == 0
    assert set(am.wait_for([urn, plane_spec.sliver_urn], "geni_ready").values()) == \
        {"geni_ready"}
    assert len(plane.read()) == 2

    change = [{"destination": "10.222.0.0/16", "gateway": "10.97.2.254", "interface": "r1:if1"}]
    assert code_of(am.poa([urn], SYNC, {"geniam_routes": change})) == 0
    assert set(am.wait_for([urn, plane_spec.sliver_urn], "geni_ready").values()) == \
        {"geni_ready"}
    assert {(e.prefix, e.gateway, e.device) for e in plane.read()} == {
        ("10.222.0.0/16", "10.97.2.254", "nf1")}
    assert [r.destination for r in am.xen.control_routes(control)] == ["10.222.0.0/16"]

    assert code_of(am.call("Delete", [urn], am.cred, {})) == 0
    assert plane.read() == set()
    assert am.netfpga.observed() == [] and am.xen.observed() == []
    assert _slivers(am) == {}


def test_hybrid_router_needs_a_free_slot(make_am):
    am = make_am(slots=1)
    assert code_of(am.allocate(request(node("dp", CARD1, sliver_type="netfpga-vdp")))) == 0
    refused = am.allocate(request(node("r1", ifaces=(("if0", "10.98.1.1"),),
                                       ext='router="true" forwarding="hardware"')))
    assert code_of(refused) == 26, refused
    assert "no forwarding plane for router r1" in refused["output"]
    assert set(_slivers(am)) == {"dp"}          # the control plane was not kept either
