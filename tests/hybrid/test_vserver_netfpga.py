"""A hybrid router through the AM API v3: control plane in a vserver container, forwarding in
a (simulated) NetFPGA slot. The slot's route registers follow the container's route set."""
from __future__ import annotations

from tests.api.conftest import code_of
from tests.hybrid.conftest import manifest_nodes, node, request
from tests.hybrid.ofsite import NF1, VS1, OFSite, ovs, site, switch  # noqa: F401
from tests.hybrid.test_vserver_openflow import _slivers

SYNC = "geniam_sync_routes"


def test_container_router_forwarding_in_hardware(site: OFSite):
    am = site.am
    alloc = am.allocate(request(node(
        "r1", VS1, sliver_type="vserver-container",
        ifaces=(("if0", "10.72.1.1"), ("if1", "10.72.2.1")),
        ext='router="true" forwarding="hardware"',
        routes=(("10.230.0.0/16", "10.72.1.254"), ("10.231.0.0/16", "10.72.2.254")))))
    assert code_of(alloc) == 0, alloc
    placed = _slivers(am)
    assert placed["r1"][0] == VS1 and placed["r1:forwarding"][0] == NF1
    control, plane_spec = placed["r1"][1], placed["r1:forwarding"][1]
    assert plane_spec.sliver_type == "netfpga-vdp"
    urn = manifest_nodes(alloc["value"])["r1"].get("sliver_id")

    am.provision([urn])
    assert set(am.wait_for([urn, plane_spec.sliver_urn], "geni_ready").values()) == \
        {"geni_ready"}
    netfpga = am.rt.site.drivers["netfpga"]
    plane = netfpga.plane(plane_spec)
    assert {(e.prefix, e.gateway) for e in plane.read()} == {("10.230.0.0/16", "10.72.1.254"),
                                                              ("10.231.0.0/16", "10.72.2.254")}
    status = am.ok("Status", [urn], am.cred, {})["geni_slivers"]
    text = {s["geni_sliver_urn"]: s["geni_resource_status"] for s in status}[urn]
    assert "forwarding in hardware" in text

    change = [{"destination": "10.232.0.0/16", "gateway": "10.72.2.254", "interface": "r1:if1"}]
    assert code_of(am.poa([urn], SYNC, {"geniam_routes": change})) == 0
    assert set(am.wait_for([urn, plane_spec.sliver_urn], "geni_ready").values()) == \
        {"geni_ready"}
    assert {(e.prefix, e.gateway, e.device) for e in plane.read()} == {
        ("10.232.0.0/16", "10.72.2.254", "nf1")}
    assert [r.destination for r in site.vserver.control_routes(control)] == ["10.232.0.0/16"]

    assert code_of(am.poa([urn], "geni_stop")) == 0
    assert set(am.wait_for([urn, plane_spec.sliver_urn], "geni_notready").values()) == \
        {"geni_notready"}
    assert plane.read() == set()

    assert code_of(am.call("Delete", [urn], am.cred, {})) == 0
    assert netfpga.observed() == [] and _slivers(am) == {}
    assert site.vserver.control_routes(control) == ()


def test_guest_router_in_a_container_takes_no_route_pushes(site: OFSite):
    """A container forwarding for itself keeps its routes in its kernel: a route push is
    refused with BADARGS naming why, before any state changes."""
    am = site.am
    alloc = am.allocate(request(node("g1", VS1, sliver_type="vserver-container",
                                     ifaces=(("if0", "10.73.1.1"),),
                                     ext='router="true" forwarding="guest"')))
    assert code_of(alloc) == 0, alloc
    urn = manifest_nodes(alloc["value"])["g1"].get("sliver_id")
    am.provision([urn])
    assert set(am.wait_for([urn], "geni_ready").values()) == {"geni_ready"}
    refused = am.poa([urn], SYNC, {"geniam_routes": [{"destination": "10.9.0.0/16",
                                                      "gateway": "10.73.1.254"}]})
    assert code_of(refused) == 1, refused
    assert "not the control plane of a router forwarding outside" in refused["output"]
    assert am.wait_for([urn], "geni_ready") == {urn: "geni_ready"}
