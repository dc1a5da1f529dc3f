"""A hybrid router through the AM API v3: control plane in a vserver container, forwarding as
OpenFlow flows on a private OVS. The flows follow the control plane's routes (start, route
change, stop, delete) and really forward: host 1 pings host 2 through the router."""
from __future__ import annotations

import subprocess

from sqlalchemy import select

from am.store import Sliver, spec_from_dict
from drivers.openflow.plane import FIB_TABLE, ROUTE_PRIORITY
from tests.api.conftest import code_of
from tests.hybrid.conftest import manifest_nodes, node, request
from tests.hybrid.ofsite import SW1, VS1, XEN1, OFSite, host_ns, ovs, site, switch  # noqa: F401

SYNC = "geniam_sync_routes"
ROUTER = node("r1", VS1, sliver_type="vserver-container",
              ifaces=(("if0", "10.71.1.1"), ("if1", "10.71.2.1")),
              ext='router="true" forwarding="openflow"',
              routes=(("10.71.1.0/24", "10.71.1.2"), ("10.71.2.0/24", "10.71.2.2")))


def _slivers(am) -> dict[str, tuple[str, object]]:
    with am.rt.store.read() as session:
        rows = session.scalars(select(Sliver).where(
            Sliver.allocation_state != "geni_unallocated")).all()
        return {r.client_id: (r.component_id, spec_from_dict(r.spec)) for r in rows}


def _ping(src: int, dst: str) -> bool:
    return subprocess.run(["ip", "netns", "exec", host_ns(src), "ping", "-c", "1", "-W", "1",
                           dst], capture_output=True, timeout=10).returncode == 0


def _routes(site: OFSite, cookie: int) -> set[tuple[str, int, str]]:
    """(nw_dst, priority, output) of the router's route flows on the switch."""
    out = set()
    for f in site.flows(cookie):
        if f.table == FIB_TABLE:
            dst = next(p.split("=", 1)[1] for p in f.match.split(",") if p.startswith("nw_dst="))
            out.add((dst, f.priority, f.actions.rsplit("output:", 1)[1]))
    return out


def test_container_router_forwarding_in_openflow(site: OFSite):
    am = site.am
    alloc = am.allocate(request(ROUTER))
    assert code_of(alloc) == 0, alloc
    placed = _slivers(am)
    assert placed["r1"][0] == VS1 and placed["r1:forwarding"][0] == SW1
    control, fib = placed["r1"][1], placed["r1:forwarding"][1]
    assert fib.sliver_type == "openflow-fib"
    assert control.params["forwarding_sliver"] == fib.sliver_urn
    urn = manifest_nodes(alloc["value"])["r1"].get("sliver_id")
    assert urn == control.sliver_urn
    cookie = site.openflow.naming.fib_cookie(site.openflow.naming.tag(fib.sliver_urn))

    am.provision([urn])
    assert set(am.wait_for([urn, fib.sliver_urn], "geni_ready").values()) == {"geni_ready"}
    # the routes are flows: longest prefix by priority, out of the port of the next hop
    assert _routes(site, cookie) == {("10.71.1.0/24", ROUTE_PRIORITY + 24, "1"),
                                     ("10.71.2.0/24", ROUTE_PRIORITY + 24, "2")}
    # the container itself does not forward: ip_forward stays 0, no routes in its kernel
    handle = site.vserver.node_handle(urn)
    fwd = subprocess.run(["ip", "netns", "exec", handle, "sysctl", "-n", "net.ipv4.ip_forward"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert fwd == "0"
    assert "10.71.2.0" not in subprocess.run(["ip", "-n", handle, "route"], capture_output=True,
                                             text=True, check=True).stdout
    # and packets really cross the switch through the router's flows
    assert _ping(1, "10.71.2.2") and _ping(2, "10.71.1.2")

    # a route change reaches the switch; the control plane holds the new set
    change = [{"destination": "10.71.1.0/24", "gateway": "10.71.1.2", "interface": "r1:if0"},
              {"destination": "10.71.2.2/32", "interface": "r1:if1"}]
    assert code_of(am.poa([urn], SYNC, {"geniam_routes": change})) == 0
    assert set(am.wait_for([urn, fib.sliver_urn], "geni_ready").values()) == {"geni_ready"}
    assert _routes(site, cookie) == {("10.71.1.0/24", ROUTE_PRIORITY + 24, "1"),
                                     ("10.71.2.2", ROUTE_PRIORITY + 32, "2")}
    assert [r.destination for r in site.vserver.control_routes(control)] == \
        ["10.71.1.0/24", "10.71.2.2/32"]
    assert _ping(1, "10.71.2.2")

    # a next hop the switch cannot reach is refused before anything changes
    bad = [{"destination": "10.9.0.0/16", "gateway": "10.71.2.77"}]
    refused = am.poa([urn], SYNC, {"geniam_routes": bad})
    assert code_of(refused) == 1 and "10.71.2.77" in refused["output"], refused
    assert len(_routes(site, cookie)) == 2

    # the periodic sync repairs drift: a flushed route flow comes back
    from am.service.routesync import sync_all_routers
    site.ovs.client().ofctl("del-flows", "gfrbr0", f"table={FIB_TABLE},ip,nw_dst=10.71.2.2")
    assert len(_routes(site, cookie)) == 1
    report = sync_all_routers(am.rt.store, am.rt.site)
    assert report.failed == {} and fib.sliver_urn in report.synced, report
    assert len(_routes(site, cookie)) == 2

    # stopped: no flows at all, and no forwarding
    assert code_of(am.poa([urn], "geni_stop")) == 0
    assert set(am.wait_for([urn, fib.sliver_urn], "geni_notready").values()) == {"geni_notready"}
    assert site.flows(cookie) == []
    assert not _ping(1, "10.71.2.2")
    assert code_of(am.poa([urn], "geni_start")) == 0
    assert set(am.wait_for([urn, fib.sliver_urn], "geni_ready").values()) == {"geni_ready"}
    assert len(_routes(site, cookie)) == 2

    assert code_of(am.call("Delete", [urn], am.cred, {})) == 0
    assert site.flows(cookie) == []
    assert site.openflow.observed() == []
    assert _slivers(am) == {}


def test_router_ports_are_not_for_flowspaces(site: OFSite):
    """The FIB claims its ports: a flowspace over them is refused, and a second router cannot
    take them either; the refusal names the port and the holder."""
    am = site.am
    assert code_of(am.allocate(request(ROUTER))) == 0
    flowspace = (
        '<rspec xmlns="http://www.geni.net/resources/rspec/3" '
        'xmlns:openflow="http://www.geni.net/resources/rspec/ext/openflow/3" type="request">'
        '<openflow:sliver description="t" email="a@b.c">'
        '<openflow:controller url="tcp:127.0.0.1:6633" type="primary"/>'
        f'<openflow:group name="g"><openflow:datapath component_id="{SW1}" '
        'component_manager_id="urn:publicid:IDN+geni-am:test+authority+am"/></openflow:group>'
        '<openflow:match><openflow:use-group name="g"/>'
        '<openflow:packet><openflow:dl_type value="0x800"/></openflow:packet></openflow:match>'
        '</openflow:sliver></rspec>')
    refused = am.allocate(flowspace)
    assert code_of(refused) == 11, refused     # UNAVAILABLE: the ports are held
    assert "forwards for a virtual router" in refused["output"], refused
    second = am.allocate(request(ROUTER.replace('"r1', '"r2')))
    assert code_of(second) == 11, second       # UNAVAILABLE: the same ports
    assert "no forwarding plane for router r2" in second["output"], second


def test_openflow_fib_is_not_a_node_type(site: OFSite):
    am = site.am
    refused = am.allocate(request(node("x", SW1, sliver_type="openflow-fib")))
    assert code_of(refused) == 13, refused           # UNSUPPORTED
    assert "forwarding planes of hybrid routers" in refused["output"]


def test_switch_advertises_router_forwarding(site: OFSite):
    """The datapath advertises the openflow forwarding mode and its FIB capacity; the
    opstate section lists the openflow-fib sliver type's states."""
    from lxml import etree

    from tests.api.conftest import RSPEC_V
    from tests.hybrid.conftest import GA

    am = site.am
    root = etree.fromstring(am.ok("ListResources", am.cred,
                                  {"geni_rspec_version": RSPEC_V}).encode())
    of = "http://www.geni.net/resources/rspec/ext/openflow/3"
    dp = next(d for d in root.iter(f"{{{of}}}datapath") if d.get("component_id") == SW1)
    ext = dp.find(f"{{{GA}}}component")
    assert ext.get("forwarding_modes") == "openflow"
    caps = {c.get("resource"): (c.get("total"), c.get("free"))
            for c in ext.iter(f"{{{GA}}}capacity")}
    assert caps["fib_flows"] == ("64", "64")
    opstate = "http://www.geni.net/resources/rspec/ext/opstate/1"
    assert "openflow-fib" in {t.get("name") for t in root.iter(f"{{{opstate}}}sliver_type")}

    assert code_of(am.allocate(request(ROUTER))) == 0       # a router reserves its table
    root = etree.fromstring(am.ok("ListResources", am.cred,
                                  {"geni_rspec_version": RSPEC_V}).encode())
    dp = next(d for d in root.iter(f"{{{of}}}datapath") if d.get("component_id") == SW1)
    caps = {c.get("resource"): c.get("free") for c in dp.iter(f"{{{GA}}}capacity")}
    assert caps["fib_flows"] == "48"


def test_xen_router_forwarding_in_openflow(site: OFSite):
    """The same pairing with the control plane in a Xen VM: the VM's routes become flows,
    and stop/delete take them away."""
    am = site.am
    alloc = am.allocate(request(ROUTER.replace(VS1, XEN1).replace("vserver-container", "xen-vm")))
    assert code_of(alloc) == 0, alloc
    placed = _slivers(am)
    assert placed["r1"][0] == XEN1 and placed["r1:forwarding"][0] == SW1
    fib = placed["r1:forwarding"][1]
    urn = manifest_nodes(alloc["value"])["r1"].get("sliver_id")
    cookie = site.openflow.naming.fib_cookie(site.openflow.naming.tag(fib.sliver_urn))
    am.provision([urn])
    assert set(am.wait_for([urn, fib.sliver_urn], "geni_ready").values()) == {"geni_ready"}
    assert {d for d, _p, _o in _routes(site, cookie)} == {"10.71.1.0/24", "10.71.2.0/24"}
    assert _ping(1, "10.71.2.2")
    assert code_of(am.poa([urn], "geni_stop")) == 0
    assert set(am.wait_for([urn, fib.sliver_urn], "geni_notready").values()) == {"geni_notready"}
    assert site.flows(cookie) == []
    assert code_of(am.call("Delete", [urn], am.cred, {})) == 0
    assert site.openflow.observed() == [] and _slivers(am) == {}
