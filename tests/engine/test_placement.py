"""Placement engine: bound/unbound nodes, refusals, isolation, forwarding limits, links, OpenFlow."""
from __future__ import annotations

from am.engine import place
from drivers.base import ForwardingMode, IsolationClass, LinkSpec, ResourceKind, SliverSpec, Usage
from rspec.model import (
    LinkProperty,
    NodeExtension,
    OFDatapath,
    OFGroup,
    OpenFlowSliver,
    Request,
    RequestInterface,
    RequestLink,
    RequestNode,
)
from tests.engine.conftest import SLICE, node_urn


def run(site, mint, *nodes, links=(), openflow=(), usage=None, best_effort=False):
    req = Request(nodes=tuple(nodes), links=tuple(links), openflow=tuple(openflow))
    return place(req, site, usage or {}, slice_urn=SLICE, mint_sliver_urn=mint,
                 best_effort=best_effort)


def node(cid, comp=None, stype="xen-vm", ifaces=(), **ext):
    return RequestNode(cid, component_id=node_urn(comp) if comp else None, sliver_type=stype,
                       interfaces=tuple(RequestInterface(i) for i in ifaces),
                       ext=NodeExtension(**ext))


def link(cid, *ifaces, kbps=None, tag=None):
    props = (LinkProperty(ifaces[0], ifaces[1], kbps),) if kbps else ()
    return RequestLink(cid, tuple(ifaces), props, vlan_tag=tag)


def by_client(plan):
    return {s.spec.client_id: s for s in plan.slivers}


# ---- nodes --------------------------------------------------------------------------------------

def test_bound_node_lands_on_named_component_case_insensitively(fake_site, mint):
    site = fake_site(3)
    plan = run(site, mint, RequestNode("a", component_id=node_urn("FAKE2"), sliver_type="xen-vm"))
    assert plan.ok
    (s,) = plan.slivers
    assert s.spec.component_id == node_urn("fake2")
    assert s.driver == "fake" and s.spec.kind is ResourceKind.NODE
    assert s.demand == {"cpu_milli": 1000, "memory_mb": 512}
    assert mint.calls == ["a"] and s.spec.sliver_urn.endswith("+sliver+1")


def test_typo_in_component_id_is_badargs_not_insufficient(fake_site, mint):
    site = fake_site(3)
    plan = run(site, mint, node("a", "fake1"), node("b", "fkae2"))
    assert plan.slivers == []
    (r,) = plan.refusals
    assert (r.client_id, r.code) == ("b", "BADARGS")
    assert r.reason == f"no component {node_urn('fkae2')} at this AM"
    assert mint.calls == []           # a refused request burns no sliver names


def test_unbound_nodes_spread_least_used_first_and_deterministically(fake_site, mint):
    site = fake_site(4)
    nodes = [node(f"n{i}") for i in range(4)]
    plan = run(site, mint, *nodes)
    comps = [s.spec.component_id for s in plan.slivers]
    assert sorted(comps) == sorted(node_urn(f"fake{i}") for i in range(1, 5))
    assert [s.spec.component_id for s in run(site, mint, *nodes).slivers] == comps


def test_existing_usage_steers_unbound_nodes_away(fake_site, mint):
    site = fake_site(2, cpu=4)
    busy = Usage(node_urn("fake1"), {"cpu_milli": 4000, "memory_mb": 512})
    plan = run(site, mint, node("a"), node("b"), usage={node_urn("fake1"): busy})
    assert {s.spec.component_id for s in plan.slivers} == {node_urn("fake2")}


def test_capacity_exhaustion_all_or_nothing_names_the_node(fake_site, mint):
    site = fake_site(2, cpu=2)
    plan = run(site, mint, *[node(f"n{i}", cpu=1) for i in range(5)])
    assert plan.slivers == []
    (r,) = plan.refusals
    assert r.client_id == "n4" and r.code == "INSUFFICIENT_NODES"
    assert "cpu" in r.reason and "fake" in r.reason


def test_two_nodes_of_one_request_do_not_both_take_the_last_slot(fake_site, mint):
    site = fake_site(1, cpu=4)
    used = Usage(node_urn("fake1"), {"cpu_milli": 3000})
    plan = run(site, mint, node("a", "fake1", cpu=1), node("b", "fake1", cpu=1),
               usage={node_urn("fake1"): used})
    (r,) = plan.refusals
    assert r.client_id == "b" and r.code == "INSUFFICIENT_NODES"
    assert node_urn("fake1") in r.reason and "0 of 4 cpu free" in r.reason


def test_demand_larger_than_any_component_is_toobig(fake_site, mint):
    site = fake_site(3, cpu=2)
    (r,) = run(site, mint, node("big", cpu=16)).refusals
    assert r.code == "TOOBIG" and "16 requested" in r.reason


def test_unknown_sliver_type_is_unsupported(fake_site, mint):
    site = fake_site(2)
    (r,) = run(site, mint, node("a", stype="pdp-11")).refusals
    assert (r.client_id, r.code) == ("a", "UNSUPPORTED")
    assert "pdp-11" in r.reason


def test_client_alias_runs_as_the_canonical_sliver_type(fake_site, mint):
    site = fake_site(2, sliver_types=["xen-vm"], isolation="hypervisor")
    (s,) = run(site, mint, node("a", stype="emulab-xen")).slivers
    assert s.spec.sliver_type == "xen-vm"


def test_exclusive_node_takes_a_whole_empty_component(fake_site, mint):
    site = fake_site(2)
    plan = run(site, mint, RequestNode("pc", sliver_type="raw-pc"), node("vm", "fake1"))
    slivers = by_client(plan)
    assert slivers["pc"].spec.component_id == node_urn("fake2")
    assert slivers["pc"].spec.exclusive and slivers["pc"].demand["cpu_milli"] == 8000
    plan = run(site, mint, RequestNode("pc", component_id=node_urn("fake1"), exclusive=True),
               node("vm", "fake1"))
    assert [r.client_id for r in plan.refusals] == ["vm"]


# ---- isolation ---------------------------------------------------------------------------------

def test_hypervisor_request_never_lands_on_a_container_node(fake_site, mint):
    site = fake_site(6, isolation=["container", "hypervisor"])
    containers = {c.component_id for c in site.components if c.isolation is IsolationClass.CONTAINER}
    plan = run(site, mint, *[node(f"x{i}", stype="xen-vm") for i in range(6)],
               *[node(f"v{i}", stype="vserver-container", isolation=IsolationClass.HYPERVISOR)
                 for i in range(3)])
    assert plan.ok and len(plan.slivers) == 9
    assert not {s.spec.component_id for s in plan.slivers} & containers
    # a plain container request may use the container nodes
    plan = run(site, mint, *[node(f"c{i}", stype="vserver-container") for i in range(6)])
    assert {s.spec.component_id for s in plan.slivers} & containers


def test_hypervisor_request_bound_to_a_container_node_is_refused(fake_site, mint):
    site = fake_site(2, isolation=["container", "hypervisor"])
    (r,) = run(site, mint, node("a", "fake1", stype=None, isolation=IsolationClass.HYPERVISOR)).refusals
    assert r.code == "UNSUPPORTED"
    (r,) = run(site, mint, node("b", "fake1", stype="xen-vm")).refusals
    assert r.code == "UNSUPPORTED" and "xen-vm" in r.reason


def test_no_component_strong_enough(fake_site, mint):
    site = fake_site(3, isolation="container")
    (r,) = run(site, mint, node("a", stype=None, isolation=IsolationClass.HYPERVISOR)).refusals
    assert r.code == "UNSUPPORTED" and "hypervisor" in r.reason


# ---- forwarding ---------------------------------------------------------------------------------

def test_eleventh_guest_router_on_one_host_is_refused(fake_site, mint):
    site = fake_site(1)
    routers = [node(f"r{i}", "fake1", router=True, forwarding=ForwardingMode.GUEST, cpu=0.1,
                    memory_mb=64) for i in range(11)]
    plan = run(site, mint, *routers)
    (r,) = plan.refusals
    assert r.client_id == "r10" and r.code == "INSUFFICIENT_NODES"
    assert "limit is 10" in r.reason and "dom0" in r.reason
    best = run(site, mint, *routers, best_effort=True)
    assert len(best.slivers) == 10 and [x.client_id for x in best.refusals] == ["r10"]
    assert all(s.demand["guest_routers"] == 1.0 for s in best.slivers)


def test_dom0_forwarding_is_not_limited(fake_site, mint):
    site = fake_site(1)
    routers = [node(f"r{i}", "fake1", router=True, forwarding=ForwardingMode.GUEST, cpu=0.1,
                    memory_mb=64) for i in range(10)]
    routers += [node(f"d{i}", "fake1", router=True, forwarding=ForwardingMode.DOM0, cpu=0.1,
                     memory_mb=64) for i in range(5)]
    plan = run(site, mint, *routers)
    assert plan.ok and len(plan.slivers) == 15
    assert all("guest_routers" not in s.demand for s in plan.slivers if s.spec.client_id[0] == "d")


def test_router_without_mode_gets_the_best_forwarding_offered(fake_site, mint):
    # best forwarding performance first (am.engine.nodes.FORWARDING_PREFERENCE): Dom0 before
    # the guest, so the guest limit never bites a router that left the mode open
    site = fake_site(1)
    routers = [node(f"r{i}", "fake1", router=True, cpu=0.1, memory_mb=64) for i in range(12)]
    plan = run(site, mint, *routers)
    modes = [by_client(plan)[f"r{i}"].spec.forwarding for i in range(12)]
    assert modes == [ForwardingMode.DOM0] * 12
    assert all("guest_routers" not in s.demand for s in plan.slivers)


def test_forwarding_mode_nobody_offers_is_unsupported(fake_site, mint):
    site = fake_site(2)
    (r,) = run(site, mint, node("r", router=True, forwarding=ForwardingMode.HARDWARE)).refusals
    assert r.code == "UNSUPPORTED" and "hardware forwarding" in r.reason


# ---- links ---------------------------------------------------------------------------------------

def test_two_ends_on_one_host_make_a_veth_and_three_a_bridge(fake_site, mint):
    site = fake_site(2)
    plan = run(site, mint, node("a", "fake1", ifaces=["a:0", "a:1"]), node("b", "fake1", ifaces=["b:0"]),
               node("c", "fake1", ifaces=["c:0"]),
               links=[link("l1", "a:0", "b:0"), RequestLink("lan", ("a:1", "c:0"))])
    assert plan.ok
    s = by_client(plan)
    l1 = s["l1"].spec
    assert l1.kind is ResourceKind.LINK and l1.link.mode == "veth"
    assert l1.component_id == node_urn("fake1") and s["l1"].claims == ()
    assert [e.sliver_urn for e in l1.link.ends] == [s["a"].spec.sliver_urn, s["b"].spec.sliver_urn]
    a_ifaces = s["a"].spec.interfaces
    assert [i.name for i in a_ifaces] == ["eth1", "eth2"]
    assert [i.link_client_id for i in a_ifaces] == ["l1", "lan"]
    assert len({i.mac for i in a_ifaces}) == 2 and all(i.mac.startswith("02:") for i in a_ifaces)
    plan3 = run(site, mint, *[node(n, "fake2", ifaces=[f"{n}:0"]) for n in "xyz"],
                links=[link("br", "x:0", "y:0", "z:0")])
    assert by_client(plan3)["br"].spec.link.mode == "bridge"


def test_macs_are_derived_from_the_sliver_urn(fake_site, mint):
    site = fake_site(1)
    req = [node("a", "fake1", ifaces=["a:0"])]
    m1 = run(site, mint, *req).slivers[0].spec.interfaces[0].mac
    m2 = run(site, mint, *req).slivers[0].spec.interfaces[0].mac
    assert m1 != m2          # new sliver URN, new MAC
    from am.engine import mac_for
    assert mac_for("urn:x", "a:0") == mac_for("urn:x", "a:0")


def test_ends_on_two_hosts_make_a_vlan_through_the_switch(fake_site, mint):
    site = fake_site(2)
    plan = run(site, mint, node("a", "fake1", ifaces=["a:0"]), node("b", "fake2", ifaces=["b:0"]),
               node("c", "fake1", ifaces=["c:0"]), node("d", "fake2", ifaces=["d:0"]),
               links=[link("l1", "a:0", "b:0", kbps=100_000), link("l2", "c:0", "d:0")])
    assert plan.ok
    s = by_client(plan)
    l1, l2 = s["l1"], s["l2"]
    assert l1.spec.component_id == node_urn("fake-switch") and l1.spec.link.mode == "vlan"
    assert l1.spec.link.vlan_tag != l2.spec.link.vlan_tag
    assert l1.claims == (f"vlan:{l1.spec.link.vlan_tag}",)
    assert l1.demand == {"kbps:port1": 100_000.0, "kbps:port2": 100_000.0}
    a0 = s["a"].spec.interfaces[0]
    assert a0.vlan_tag == l1.spec.link.vlan_tag
    assert a0.port == "urn:publicid:IDN+geni-am:test+interface+fake1:eth1"


def test_a_link_through_a_switch_that_is_not_an_openflow_switch_is_refused(fake_site, mint):
    # the fake site's switch is a VLAN switch of the fake driver: it cannot carry a link's ends
    # as ports (a real one is tested in tests/hybrid/test_vms_through_am.py)
    site = fake_site(2)
    nodes = (node("a", "fake1", ifaces=["a:0"]), node("b", "fake2", ifaces=["b:0"]))
    for name in ("fake-switch", "nope"):
        plan = run(site, mint, *nodes, links=[RequestLink("l1", ("a:0", "b:0"), switch=name)])
        (r,) = plan.refusals
        assert (r.client_id, r.code) == ("l1", "BADARGS")
        assert f"{name!r} is not an OpenFlow switch of this aggregate (switches: none)" in r.reason


def test_requested_vlan_tag_is_honoured_or_refused(fake_site, mint):
    site = fake_site(2)
    nodes = (node("a", "fake1", ifaces=["a:0"]), node("b", "fake2", ifaces=["b:0"]))
    (s,) = [x for x in run(site, mint, *nodes, links=[link("l", "a:0", "b:0", tag=321)]).slivers
            if x.spec.kind is ResourceKind.LINK]
    assert s.spec.link.vlan_tag == 321
    held = SliverSpec("urn:old", "urn:other", "old", ResourceKind.LINK, node_urn("fake-switch"),
                      link=LinkSpec(ends=(), vlan_tag=321, mode="vlan"))
    usage = {node_urn("fake-switch"): Usage(node_urn("fake-switch"), {}, (held,))}
    plan = run(site, mint, *nodes, links=[link("l", "a:0", "b:0", tag=321)], usage=usage)
    (r,) = plan.refusals
    assert (r.client_id, r.code) == ("l", "VLAN_UNAVAILABLE") and "321" in r.reason


def test_bandwidth_admitted_against_site_link_capacity(fake_site, mint):
    site = fake_site(2, link_kbps=150_000)
    nodes = (node("a", "fake1", ifaces=["a:0", "a:1"]), node("b", "fake2", ifaces=["b:0", "b:1"]))
    plan = run(site, mint, *nodes, links=[link("l1", "a:0", "b:0", kbps=100_000),
                                          link("l2", "a:1", "b:1", kbps=100_000)])
    (r,) = plan.refusals
    assert (r.client_id, r.code) == ("l2", "INSUFFICIENT_BANDWIDTH")
    assert "50000 kbps free" in r.reason and "fake1:eth1" in r.reason
    plan = run(site, mint, node("c", "fake1", ifaces=["c:0"]), node("d", "fake2", ifaces=["d:0"]),
               links=[link("big", "c:0", "d:0", kbps=200_000)])
    assert plan.refusals[0].code == "INSUFFICIENT_BANDWIDTH"


# ---- best effort / all-or-nothing --------------------------------------------------------------

def test_best_effort_places_what_fits_and_names_the_missing_end(fake_site, mint):
    site = fake_site(2)
    nodes = (node("a", "fake1", ifaces=["a:0"]), node("b", "nosuch", ifaces=["b:0"]),
             node("c", "fake2", ifaces=["c:0"]))
    links = [link("ab", "a:0", "b:0")]
    strict = run(site, mint, *nodes, links=links)
    assert strict.slivers == [] and [(r.client_id, r.code) for r in strict.refusals] == [("b", "BADARGS")]
    best = run(site, mint, *nodes, links=links, best_effort=True)
    assert sorted(by_client(best)) == ["a", "c"]
    assert [r.client_id for r in best.refusals] == ["b", "ab"]
    assert "end node b" in best.refusals[1].reason
    assert mint.calls == ["a", "c"]


def test_all_or_nothing_lists_every_real_cause(fake_site, mint):
    site = fake_site(2, cpu=2)
    plan = run(site, mint, node("t", "typo"), node("big", cpu=64), node("ok"),
               node("weird", stype="quantum"))
    assert plan.slivers == []
    assert [(r.client_id, r.code) for r in plan.refusals] == [
        ("t", "BADARGS"), ("big", "TOOBIG"), ("weird", "UNSUPPORTED")]


def test_dangling_interface_reference_is_badargs(fake_site, mint):
    site = fake_site(1)
    (r,) = run(site, mint, node("a", ifaces=["a:0"]), links=[link("l", "a:0", "ghost:0")]).refusals
    assert (r.client_id, r.code) == ("l", "BADARGS") and "ghost:0" in r.reason


# ---- OpenFlow -------------------------------------------------------------------------------------

def test_openflow_sliver_becomes_flowspace_on_named_datapaths(fake_site, mint):
    site = fake_site(2)
    of = OpenFlowSliver(groups=(OFGroup("g", (OFDatapath(node_urn("fake-switch")),)),))
    (s,) = run(site, mint, openflow=[of]).slivers
    assert s.spec.kind is ResourceKind.FLOWSPACE and s.spec.openflow is of
    assert s.spec.component_id == node_urn("fake-switch")
    bad = OpenFlowSliver(groups=(OFGroup("g", (OFDatapath(node_urn("nosw")),)),))
    (r,) = run(site, mint, openflow=[bad]).refusals
    assert (r.client_id, r.code) == ("openflow0", "BADARGS")
    host = OpenFlowSliver(groups=(OFGroup("g", (OFDatapath(node_urn("fake1")),)),))
    assert run(site, mint, openflow=[host]).refusals[0].code == "UNSUPPORTED"


def test_genilib_raw_alias_is_accepted_and_placed_as_raw_pc(fake_site, mint):
    """geni-lib's RawPC asks for sliver type "raw"; the fake site advertises "raw-pc"."""
    from am.engine import place
    from rspec.model import Request, RequestNode
    site = fake_site(2)
    assert "raw" in site.accepted_sliver_types() and "raw" not in site.sliver_types()
    plan = place(Request(nodes=(RequestNode(client_id="pc", sliver_type="raw"),)), site, {},
                 slice_urn="urn:publicid:IDN+geni-am+slice+s", mint_sliver_urn=mint)
    assert plan.ok and plan.slivers[0].spec.client_id == "pc"


# ---- links between hosts ------------------------------------------------------------------------

def _two_hosts(site, monkeypatch, *, addresses=("192.0.2.1", "192.0.2.2")):
    """fake1 on hostA, fake2 on hostB (fake3 on hostC with a third address); the driver able
    to tunnel (its admission takes a tunnel half, as the container driver's does)."""
    import dataclasses

    from drivers.base import Admission
    from drivers.inventory import HostDecl
    drv = site.drivers["fake"]
    monkeypatch.setattr(drv, "capabilities", dataclasses.replace(drv.capabilities, tunnels=True))
    real = drv._admit_link
    monkeypatch.setattr(drv, "_admit_link", lambda comp, spec, usage: Admission.accept()
                        if spec.link.mode == "tunnel" else real(comp, spec, usage))
    names = ("hostA", "hostB", "hostC")[:len(addresses)]
    site.hosts = {h: HostDecl(h, a) for h, a in zip(names, addresses)}
    site.host_map = {node_urn(f"fake{i + 1}").lower(): (h,) for i, h in enumerate(names)}


def test_a_link_across_two_hosts_is_a_tunnel_half_on_each(fake_site, mint, monkeypatch):
    site = fake_site(2)
    _two_hosts(site, monkeypatch)
    plan = run(site, mint, node("a", "fake1", ifaces=["a:0"]), node("b", "fake2", ifaces=["b:0"]),
               links=[link("x", "a:0", "b:0", kbps=5000)])
    assert plan.ok, plan.refusals
    halves = [s for s in plan.slivers if s.spec.kind is ResourceKind.LINK]
    assert sorted(h.spec.component_id for h in halves) == [node_urn("fake1"), node_urn("fake2")]
    assert {h.spec.client_id for h in halves} == {"x"}
    assert len({h.spec.sliver_urn for h in halves}) == 2
    tunnels = {h.spec.component_id: h.spec.params["tunnel"] for h in halves}
    assert (tunnels[node_urn("fake1")]["local"], tunnels[node_urn("fake1")]["remote"]) == \
        ("192.0.2.1", "192.0.2.2")
    assert (tunnels[node_urn("fake2")]["local"], tunnels[node_urn("fake2")]["remote"]) == \
        ("192.0.2.2", "192.0.2.1")
    for h in halves:     # each half knows both ends (its driver builds only its own)
        assert h.spec.link.mode == "tunnel" and h.spec.link.capacity_kbps == 5000
        assert {e.sliver_urn for e in h.spec.link.ends} == \
            {s.spec.sliver_urn for s in plan.slivers if s.spec.kind is ResourceKind.NODE}


def test_hosts_without_addresses_get_no_tunnel(fake_site, mint, monkeypatch):
    site = fake_site(2)
    _two_hosts(site, monkeypatch, addresses=("192.0.2.1", None))
    plan = run(site, mint, node("a", "fake1", ifaces=["a:0"]), node("b", "fake2", ifaces=["b:0"]),
               links=[link("x", "a:0", "b:0")])
    assert not any(s.spec.link is not None and s.spec.link.mode == "tunnel"
                   for s in plan.slivers)


def test_a_lan_over_three_hosts_is_a_half_per_host_meshed(fake_site, mint, monkeypatch):
    """Five ends on three hosts: one half per host holding that host's ends, each naming the
    two other hosts (a full mesh, one VNI); shaped at each end as a LAN within one host."""
    site = fake_site(3)
    _two_hosts(site, monkeypatch, addresses=("192.0.2.1", "192.0.2.2", "192.0.2.3"))
    nodes = [node(f"{c}{i}", f"fake{n}", ifaces=[f"{c}{i}:0"])
             for n, c in ((1, "a"), (2, "b"), (3, "c")) for i in (1, 2)][:5]
    plan = run(site, mint, *nodes, links=[link("lan", *(f"{n.client_id}:0" for n in nodes),
                                               kbps=3000)])
    assert plan.ok, plan.refusals
    halves = {h.spec.component_id: h.spec for h in plan.slivers
              if h.spec.kind is ResourceKind.LINK}
    assert set(halves) == {node_urn("fake1"), node_urn("fake2"), node_urn("fake3")}
    t = {c: s.params["tunnel"] for c, s in halves.items()}
    assert (t[node_urn("fake1")]["local"], t[node_urn("fake1")]["remotes"]) == \
        ("192.0.2.1", ["192.0.2.2", "192.0.2.3"])
    assert t[node_urn("fake3")]["remote_hosts"] == ["hostA", "hostB"]
    for s in halves.values():
        assert s.link.mode == "tunnel" and s.link.capacity_kbps == 3000 and len(s.link.ends) == 5


def test_a_switch_port_as_a_link_end_is_refused_naming_the_link(fake_site, mint):
    site = fake_site(1)
    port = "urn:publicid:IDN+geni-am:test+interface+fake-switch:port1"
    sw = RequestNode("sw", component_id=node_urn("fake-switch"),
                     interfaces=(RequestInterface("sw:p1", component_id=port),))
    plan = run(site, mint, node("a", "fake1", ifaces=["a:0"]), sw,
               links=[link("l", "a:0", "sw:p1")])
    assert plan.slivers == [] and mint.calls == []
    (r,) = plan.refusals
    assert (r.client_id, r.code) == ("l", "UNSUPPORTED")
    assert r.reason.startswith("link l: interface sw:p1 is port port1 of switch fake-switch, "
                               "and a switch port is not a link end at this AM"), r.reason
