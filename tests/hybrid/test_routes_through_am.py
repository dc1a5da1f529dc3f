"""Virtual routers whose forwarding runs outside the guest, through the AM API v3: routes
appear in the forwarding plane at start, follow a change pushed with PerformOperationalAction
(geniam_sync_routes + geniam_routes), are repaired by the periodic sync, and vanish on Delete.
Dom0 is a network namespace (its tables read back with `ip`); the NetFPGA card is the
simulated one (its route registers read back)."""
from __future__ import annotations

import subprocess

from am.service.routesync import sync_all_routers
from tests.api.conftest import code_of
from tests.hybrid.conftest import CARD1, dom0_routes, node, request, sliver_urns

SYNC = "geniam_sync_routes"


def _dom0_router(am, cid: str = "r1") -> str:
    alloc = am.allocate(request(node(
        cid, ifaces=(("if0", "10.93.1.1"), ("if1", "10.93.2.1")),
        ext='router="true" forwarding="dom0"',
        routes=(("10.200.0.0/16", "10.93.1.254"), ("10.201.0.0/16", "10.93.2.254")))))
    assert code_of(alloc) == 0, alloc
    urn = sliver_urns(alloc["value"])[cid]
    am.provision([urn])                  # provisions and starts it (start_on_provision)
    assert am.wait_for([urn], "geni_ready") == {urn: "geni_ready"}
    return urn


def test_dom0_router_routes_follow_the_control_plane(am):
    urn = _dom0_router(am)
    routes = dom0_routes(am.dom0)                         # forwarding since it started
    assert {(p, g) for p, g, _t in routes} == {("10.200.0.0/16", "10.93.1.254"),
                                                ("10.201.0.0/16", "10.93.2.254")}
    (table,) = {t for _p, _g, t in routes}
    assert table != "main"                                # the router's own table (a VRF)

    change = [{"destination": "10.202.0.0/16", "gateway": "10.93.2.254", "interface": "r1:if1"},
              {"destination": "10.200.0.0/16", "gateway": "10.93.1.253"}]
    result = am.poa([urn], SYNC, {"geniam_routes": change})
    assert code_of(result) == 0, result
    assert am.wait_for([urn], "geni_ready") == {urn: "geni_ready"}
    assert {(p, g) for p, g, _t in dom0_routes(am.dom0)} == {("10.202.0.0/16", "10.93.2.254"),
                                                              ("10.200.0.0/16", "10.93.1.253")}
    dev = subprocess.run(["ip", "-n", am.dom0, "route", "show", "table", table,
                          "10.202.0.0/16"], capture_output=True, text=True).stdout
    assert "dev vr" in dev and dev.split("dev ")[1].split()[0].endswith(".1")   # out of if1

    # drift (an operator flushed the table) is repaired by the periodic sync, which changes
    # no sliver state
    subprocess.run(["ip", "-n", am.dom0, "route", "flush", "table", table], check=True)
    assert dom0_routes(am.dom0) == set()
    report = sync_all_routers(am.rt.store, am.rt.site)
    assert report.synced == [urn] and not report.failed
    assert len(dom0_routes(am.dom0)) == 2
    assert am.wait_for([urn], "geni_ready") == {urn: "geni_ready"}

    # stop empties the forwarding table; start puts the control plane's routes back
    assert code_of(am.poa([urn], "geni_stop")) == 0
    assert am.wait_for([urn], "geni_notready") == {urn: "geni_notready"}
    assert dom0_routes(am.dom0) == set()
    assert code_of(am.poa([urn], "geni_start")) == 0
    assert len(dom0_routes(am.dom0)) == 2

    assert code_of(am.call("Delete", [urn], am.cred, {})) == 0
    assert dom0_routes(am.dom0) == set()
    rules = subprocess.run(["ip", "-n", am.dom0, "rule", "show"], capture_output=True,
                           text=True).stdout
    assert f"lookup {table}" not in rules


def test_route_change_is_validated_before_anything_changes(am):
    urn = _dom0_router(am)
    assert code_of(am.poa([urn], "geni_stop")) == 0
    assert am.wait_for([urn], "geni_notready") == {urn: "geni_notready"}
    assert dom0_routes(am.dom0) == set()
    # a stopped router is not "ready": the action is refused by the state machine
    refused = am.poa([urn], SYNC, {"geniam_routes": []})
    assert code_of(refused) == 13 and "geni_notready" in refused["output"], refused
    assert code_of(am.poa([urn], "geni_start")) == 0
    for bad, why in (("10.0.0.0/8", "a list"),
                     ([{"destination": "10.1.2.3/16"}], "not an IPv4 prefix"),
                     ([{"destination": "10.9.0.0/16", "gateway": "x"}], "not an IPv4 address"),
                     ([{"destination": "10.9.0.0/16", "colour": "red"}], "unknown key"),
                     ([{"destination": "10.9.0.0/16", "interface": "r1:if7"}], "r1:if7")):
        result = am.poa([urn], SYNC, {"geniam_routes": bad})
        assert code_of(result) == 1 and why in result["output"], (bad, result)
    assert len(dom0_routes(am.dom0)) == 2                  # untouched
    assert am.wait_for([urn], "geni_ready") == {urn: "geni_ready"}
    unknown = am.poa([urn], "geniam_no_such_action")
    assert code_of(unknown) == 13 and SYNC in unknown["output"]


def test_netfpga_slot_routes_follow_the_control_plane(make_am):
    # start_on_provision off: this test watches the slot's table empty while the sliver rests
    # in geni_notready, then filled by geni_start
    am = make_am(settings={"start_on_provision": False})
    alloc = am.allocate(request(node(
        "dp1", CARD1, sliver_type="netfpga-vdp",
        ifaces=(("if0", "10.95.1.1"), ("if1", "10.95.2.1")),
        routes=(("10.210.0.0/16", "10.95.1.254"), ("10.211.0.0/16", "10.95.2.254")))))
    assert code_of(alloc) == 0, alloc
    urn = sliver_urns(alloc["value"])["dp1"]
    am.provision([urn])
    assert am.wait_for([urn], "geni_notready") == {urn: "geni_notready"}
    from tests.hybrid.test_xen_through_am import _spec
    spec = _spec(am, urn)
    plane = am.netfpga.plane(spec)
    assert plane.read() == set()
    assert code_of(am.poa([urn], "geni_start")) == 0
    assert am.wait_for([urn], "geni_ready") == {urn: "geni_ready"}
    assert {(e.prefix, e.gateway, e.device) for e in plane.read()} == {
        ("10.210.0.0/16", "10.95.1.254", "nf0"), ("10.211.0.0/16", "10.95.2.254", "nf0")}

    change = [{"destination": "10.212.0.0/16", "gateway": "10.95.2.254", "interface": "dp1:if1"}]
    assert code_of(am.poa([urn], SYNC, {"geniam_routes": change})) == 0
    assert am.wait_for([urn], "geni_ready") == {urn: "geni_ready"}
    assert {(e.prefix, e.gateway, e.device) for e in plane.read()} == {
        ("10.212.0.0/16", "10.95.2.254", "nf1")}

    too_many = [{"destination": f"10.{i}.0.0/16"} for i in range(33)]   # the table holds 32
    result = am.poa([urn], SYNC, {"geniam_routes": too_many})
    assert code_of(result) == 6 and "32 entries" in result["output"], result

    assert code_of(am.call("Delete", [urn], am.cred, {})) == 0
    assert plane.read() == set()
    assert am.netfpga.observed() == []


def test_netfpga_slot_exhaustion_and_table_limit(make_am):
    am = make_am(slots=4, route_table_size=4)
    four = [node(f"dp{i}", CARD1, sliver_type="netfpga-vdp") for i in range(4)]
    assert code_of(am.allocate(request(*four))) == 0
    fifth = am.allocate(request(node("dp4", CARD1, sliver_type="netfpga-vdp")))
    assert code_of(fifth) == 26, fifth
    assert "card nf1 has all 4 virtual data plane slots taken" in fifth["output"]

    am2 = make_am(slots=4, route_table_size=4)
    routes = tuple((f"10.{i}.0.0/16", "10.96.0.254") for i in range(5))
    big = am2.allocate(request(node("dp9", CARD1, sliver_type="netfpga-vdp",
                                    ifaces=(("if0", "10.96.0.1"),), routes=routes)))
    assert code_of(big) == 6, big                                         # TOOBIG
    assert "5 routes" in big["output"] and "holds 4" in big["output"]
    ok = am2.allocate(request(node("dp9", CARD1, sliver_type="netfpga-vdp",
                                   ifaces=(("if0", "10.96.0.1"),), routes=routes[:4])))
    assert code_of(ok) == 0, ok
