"""OpenFlowPlane and the openflow-fib rules: flow generation (longest-prefix priorities, the
router's cookie, next hops) as pure code, and longest-prefix match on a real OVS datapath."""
from __future__ import annotations

import re

import pytest

from drivers.base import (
    Component,
    ComponentPort,
    InterfaceSpec,
    IsolationClass,
    ResourceKind,
    SliverSpec,
    Usage,
)
from drivers.openflow.fib import admit_fib, check_fib_routes, fib_entries
from drivers.openflow.plane import FIB_TABLE, ROUTE_PRIORITY, FibLayout, OpenFlowPlane, RouterPort
from drivers.ovs import FlowEntry
from drivers.routesync import FibEntry, RouteError, RouteTableFull, sync_plane
from rspec.model import OFController, OFDatapath, OFGroup, OFMatch, OFPort, OpenFlowSliver
from rspec.model import PacketMatch, Route
from tests.hybrid.ofsite import BRIDGE, ovs, switch  # noqa: F401

COOKIE = 0xABCDEF0112345678
NEIGHBOURS = {"10.1.0.254": "02:00:00:00:01:fe", "10.2.0.254": "02:00:00:00:02:fe",
              "10.2.0.9": "02:00:00:00:02:09"}
PORTS = (RouterPort("p1", 1, "02:aa:00:00:00:01", ("10.1.0.1",)),
         RouterPort("p2", 2, "02:aa:00:00:00:02", ("10.2.0.1",)))
LAYOUT = FibLayout(cookie=COOKIE, metadata=0x12345678, ports=PORTS, neighbours=NEIGHBOURS)
SW = "urn:publicid:IDN+geni-am:test+node+sw1"


def test_route_flows_carry_cookie_priority_by_prefix_and_next_hop():
    short = LAYOUT.route_flow(FibEntry("10.0.0.0/8", "10.1.0.254", "p1"))
    long = LAYOUT.route_flow(FibEntry("10.2.3.0/24", "10.2.0.254", "p2"))
    host = LAYOUT.route_flow(FibEntry("10.2.0.9/32", None, "p2"))
    assert short.startswith(f"cookie=0x{COOKIE:016x},table={FIB_TABLE},"
                            f"priority={ROUTE_PRIORITY + 8},metadata=0x12345678,ip,"
                            "nw_dst=10.0.0.0/8,actions=dec_ttl,")
    assert f"priority={ROUTE_PRIORITY + 24}" in long and f"priority={ROUTE_PRIORITY + 32}" in host
    assert "mod_dl_src:02:aa:00:00:00:02,mod_dl_dst:02:00:00:00:02:fe,output:2" in long
    assert "load:0xa0200fe->NXM_NX_REG0[]" in long       # the gateway, for read()
    assert "load:0x0->NXM_NX_REG0[]" in host and "mod_dl_dst:02:00:00:00:02:09" in host
    # a strict delete: a loose one would take the longer prefixes under 10.0.0.0/8 too
    assert LAYOUT.delete_line(FibEntry("10.0.0.0/8", "10.1.0.254", "p1")).startswith(
        f"delete_strict cookie=0x{COOKIE:016x}/-1,table={FIB_TABLE},priority=1008,")


def test_ingress_steers_only_the_routers_ports_and_answers_arp():
    flows = LAYOUT.ingress_flows()
    assert len(flows) == 4
    assert f"cookie=0x{COOKIE:016x},priority=200,in_port=1,dl_dst=02:aa:00:00:00:01,ip," \
           f"actions=write_metadata:0x12345678,goto_table:{FIB_TABLE}" in flows
    arp = [f for f in flows if "arp_tpa=10.2.0.1" in f]
    assert len(arp) == 1 and "in_port=2" in arp[0] and "load:0x2->NXM_OF_ARP_OP[]" in arp[0]


def test_parse_gives_back_the_entry():
    for entry in (FibEntry("10.2.3.0/24", "10.2.0.254", "p2"), FibEntry("10.2.0.9/32", None, "p2")):
        line = LAYOUT.route_flow(entry)
        head, actions = line.split(",actions=")
        prio = int(head.split("priority=")[1].split(",")[0])
        match = head.split(f"priority={prio},")[1]
        flow = FlowEntry(cookie=COOKIE, table=FIB_TABLE, priority=prio, match=match,
                         actions=actions, n_packets=0)
        assert LAYOUT.parse(flow) == entry
    other = FlowEntry(cookie=COOKIE + 1, table=FIB_TABLE, priority=1, match="ip,nw_dst=10.0.0.0/8",
                      actions="output:1", n_packets=0)
    assert LAYOUT.parse(other) is None


def test_unknown_next_hops_are_refused():
    with pytest.raises(RouteError, match="10.9.9.9 is not in the datapath's neighbour table"):
        LAYOUT.route_flow(FibEntry("10.9.0.0/16", "10.9.9.9", "p1"))
    with pytest.raises(RouteError, match="has no gateway"):
        LAYOUT.route_flow(FibEntry("10.2.0.0/16", None, "p2"))
    with pytest.raises(RouteError, match="no port 'p9'"):
        LAYOUT.route_flow(FibEntry("10.2.0.0/16", "10.2.0.254", "p9"))


def _comp(**extra) -> Component:
    ports = tuple(ComponentPort(f"{SW}:p{n}", f"p{n}", n) for n in (1, 2, 3))
    return Component(component_id=SW, name="sw1", driver="openflow",
                     isolation=IsolationClass.FLOWSPACE, ports=ports,
                     capacity={"fib_flows": 20.0}, extra={"neighbours": NEIGHBOURS, **extra})


def _router(name: str, n_ifaces: int = 2, routes=()) -> SliverSpec:
    ifaces = tuple(InterfaceSpec(client_id=f"{name}:if{i}", name=f"eth{i}",
                                 ips=((f"10.{i + 1}.0.1", "255.255.255.0"),))
                   for i in range(n_ifaces))
    return SliverSpec(sliver_urn=f"urn:publicid:IDN+geni-am:test+sliver+{name}",
                      slice_urn="urn:publicid:IDN+geni-am:test+slice+s", client_id=f"{name}:forwarding",
                      kind=ResourceKind.NODE, component_id=SW, sliver_type="openflow-fib",
                      router=True, interfaces=ifaces, routes=tuple(routes),
                      params={"control_client_id": name})


def test_fib_admission_claims_ports_and_counts_flows():
    comp = _comp()
    adm = admit_fib(comp, _router("r1"), Usage(SW), table_size=8)
    assert adm.ok and adm.claims == ("port:p1", "port:p2") and adm.demand == {"fib_flows": 8.0}
    taken = admit_fib(comp, _router("r2", 1), Usage(SW, slivers=(_router("r1"),)), 8)
    assert not taken.ok and taken.reason_code == "UNAVAILABLE" and "port 1" in taken.reason
    full = admit_fib(comp, _router("r2", 1), Usage(SW, used={"fib_flows": 16.0}), 8)
    assert not full.ok and full.reason_code == "INSUFFICIENT_NODES"
    of = OpenFlowSliver(controllers=(OFController(url="tcp:127.0.0.1:6633"),),
                        groups=(OFGroup(name="g", datapaths=(OFDatapath(
                            component_id=SW, ports=(OFPort(num=2),)),)),),
                        matches=(OFMatch(use_groups=("g",), packet=PacketMatch()),))
    fs = SliverSpec(sliver_urn="urn:x+sliver+fs", slice_urn="urn:x+slice+o", client_id="of",
                    kind=ResourceKind.FLOWSPACE, component_id=SW, openflow=of)
    clash = admit_fib(comp, _router("r3"), Usage(SW, slivers=(fs,)), 8)
    assert not clash.ok and "slice flowspace" in clash.reason
    lone = admit_fib(comp, _router("r3", 1), Usage(SW, slivers=(fs,)), 8)
    assert lone.ok                                     # port 1 is not in the flowspace
    bare = admit_fib(comp, SliverSpec(**{**_router("r4").__dict__, "params": {}}), Usage(SW), 8)
    assert not bare.ok and bare.reason_code == "UNSUPPORTED"


def test_route_checks_and_egress_choice():
    comp = _comp()
    spec = _router("r1")
    routes = check_fib_routes(comp, spec, [Route("10.7.0.0/16", "10.2.0.254")], 8)
    assert fib_entries(comp, spec, routes) == {FibEntry("10.7.0.0/16", "10.2.0.254", "p2")}
    with pytest.raises(RouteTableFull):
        check_fib_routes(comp, spec, [Route(f"10.7.{i}.0/24", "10.2.0.254") for i in range(9)], 8)
    with pytest.raises(RouteError, match="next hop 10.2.0.77"):
        check_fib_routes(comp, spec, [Route("10.7.0.0/16", "10.2.0.77")], 8)


def test_longest_prefix_wins_on_the_datapath(switch):   # noqa: F811
    """Overlapping routes on a real OVS: a packet takes its longest matching prefix, and a
    route change is a diff that leaves the other router's flows alone."""
    client = switch.client()
    ports = client.ofports(BRIDGE)
    layout = FibLayout(cookie=COOKIE, metadata=0x12345678, neighbours=NEIGHBOURS,
                       ports=(RouterPort("gfrv1", ports["gfrv1"], "02:aa:00:00:00:01"),
                              RouterPort("gfrv2", ports["gfrv2"], "02:aa:00:00:00:02")))
    plane = OpenFlowPlane(client, BRIDGE, layout)
    other = OpenFlowPlane(client, BRIDGE, FibLayout(
        cookie=COOKIE + 1, metadata=1, neighbours=NEIGHBOURS,
        ports=(RouterPort("gfrv1", ports["gfrv1"], "02:bb:00:00:00:01"),)))
    try:
        plane.bind()
        other.bind()
        other.install([FibEntry("10.9.0.0/16", "10.1.0.254", "gfrv1")])
        want = {FibEntry("10.0.0.0/8", "10.1.0.254", "gfrv1"),
                FibEntry("10.2.3.0/24", "10.2.0.254", "gfrv2")}
        assert sync_plane(plane, want).added == 2
        assert plane.read() == want

        def out_port(dst: str, via: str = "gfrv1") -> int:
            """The OpenFlow port the route flow matched by a packet to `dst` coming in on
            `via` outputs to (0: dropped)."""
            mac = next(p.mac for p in layout.ports if p.name == via)
            trace = client.run(["ovs-appctl", "-t", str(switch.rundir / "ovs-vswitchd.ctl"),
                                "ofproto/trace", BRIDGE,
                                f"in_port={ports[via]},dl_dst={mac},ip,"
                                f"nw_dst={dst},nw_ttl=64"])
            if trace.rsplit("Datapath actions:", 1)[1].strip() == "drop":
                return 0
            outs = re.findall(r"^\s*output:(\d+)", trace, re.M)
            assert len(outs) == 1, trace
            return int(outs[0])

        assert out_port("10.2.3.4") == ports["gfrv2"]     # the /24
        assert out_port("10.2.4.4", "gfrv2") == ports["gfrv1"]     # only the /8
        assert out_port("11.0.0.1") == 0                  # no route
        result = sync_plane(plane, {FibEntry("10.0.0.0/8", "10.1.0.254", "gfrv1")})
        assert (result.added, result.removed, result.kept) == (0, 1, 1)
        assert out_port("10.2.3.4", "gfrv2") == ports["gfrv1"]
        assert other.read() == {FibEntry("10.9.0.0/16", "10.1.0.254", "gfrv1")}
        plane.clear()
        assert plane.read() == set() and len(other.read()) == 1
    finally:
        plane.clear()
        other.clear()


@pytest.mark.parametrize("config,extra,message", [
    ({}, {"neighbours": {"10.0.0.1": "01:00:00:00:00:01"}}, "not a unicast MAC"),
    ({}, {"neighbours": {"10.0.0.300": "02:00:00:00:00:01"}}, "not an IPv4 address"),
    ({"fib_routes": 0}, {}, "positive integer"),
    ({"fib_routes": 10, "fib_flows": 5}, {}, "exceeds fib_flows"),
])
def test_inventory_mistakes_are_named(config, extra, message):
    from drivers.inventory import InventoryError
    from drivers.openflow import OpenFlowDriver

    comp = {"name": "sw1", "driver": "openflow", "extra": {"bridge": "br0", **extra}}
    with pytest.raises(InventoryError, match=message):
        OpenFlowDriver({"ovs_db": "unix:/nonexistent/db.sock", **config}, [comp],
                       authority="geni-am:test")
