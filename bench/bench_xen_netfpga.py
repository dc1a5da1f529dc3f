"""Xen and NetFPGA figures: allocate-to-ready and route sync of a 10,000-route table.

Two levels, on libvirt's test driver, a network namespace standing in for Dom0, and the
simulated NetFPGA card:
  * driver level (admit -> provision -> geni_start, set_routes);
  * through the AM service (Allocate -> Provision -> PerformOperationalAction geni_start ->
    Status ready, and a route change pushed with PerformOperationalAction geniam_sync_routes),
    with a SQLite store and jobs run inline, as one worker would run them.
Run as root:
    .venv/bin/python bench/bench_xen_netfpga.py
"""
from __future__ import annotations

import ipaddress
import os
import subprocess
import tempfile
import time

from drivers.base import (Action, ForwardingMode, InterfaceSpec, OperationalState, ResourceKind,
                          SliverSpec, Usage)
from drivers.netfpga import NetFPGADriver
from drivers.xen import XenDriver
from rspec.model import Route

AUTH = "geni-am:bench"


def node(name: str, comp: str, **kw) -> SliverSpec:
    return SliverSpec(sliver_urn=f"urn:publicid:IDN+{AUTH}+sliver+{name}", slice_urn="urn:s",
                      client_id=name, kind=ResourceKind.NODE,
                      component_id=f"urn:publicid:IDN+{AUTH}+node+{comp}", **kw)


def routes(n: int) -> list[Route]:
    base = int(ipaddress.IPv4Address("11.0.0.0"))
    return [Route(f"{ipaddress.IPv4Address(base + (i << 8))}/24", "10.1.0.254") for i in range(n)]


def bench_xen(tmp: str, netns: str) -> None:
    d = XenDriver({"state_dir": f"{tmp}/xen", "dom0_netns": netns, "vcpus": 64,
                   "memory_mb": 65536}, [{"name": "xen1"}], authority=AUTH)
    specs = [node(f"vm{i}", "xen1", sliver_type="xen-vm",
                  interfaces=(InterfaceSpec(f"vm{i}:if0", "eth1"),)) for i in range(50)]
    used = {"cpu": 0.0, "memory_mb": 0.0}
    t0 = time.perf_counter()
    for s in specs:
        a = d.admit(s, Usage(s.component_id, used=dict(used)))
        assert a.ok, a.reason
        for k, v in a.demand.items():
            used[k] = used.get(k, 0.0) + v
        d.provision(s)
        assert d.perform(s, Action.START.value) is OperationalState.READY
    t = time.perf_counter() - t0
    print(f"xen: allocate-to-ready for 50 VMs: {t * 1000:.1f} ms ({t / 50 * 1000:.2f} ms/VM)")
    t0 = time.perf_counter()
    for s in specs:
        d.delete(s)
    print(f"xen: delete 50 VMs: {(time.perf_counter() - t0) * 1000:.1f} ms")

    r = node("router", "xen1", sliver_type="xen-vm", router=True,
             forwarding=ForwardingMode.DOM0,
             interfaces=(InterfaceSpec("router:if0", "eth1", ips=(("10.1.0.1", "255.255.255.0"),)),))
    d.provision(r)
    d.perform(r, Action.START.value)
    table = routes(10_000)
    t0 = time.perf_counter()
    res = d.set_routes(r, table)
    t = time.perf_counter() - t0
    n = len(d.dom0_plane(r).read())
    print(f"xen dom0: sync 10,000 routes into the Dom0 namespace: {t * 1000:.0f} ms "
          f"(added {res.added}, read back {n})")
    changed = table[:9_000] + [Route(x.destination, "10.1.0.253") for x in table[9_000:]]
    t0 = time.perf_counter()
    res = d.set_routes(r, changed)
    print(f"xen dom0: resync after 1,000 next hops changed: "
          f"{(time.perf_counter() - t0) * 1000:.0f} ms (removed {res.removed}, added {res.added})")
    t0 = time.perf_counter()
    d.delete(r)
    print(f"xen dom0: delete router with 10,000 routes: {(time.perf_counter() - t0) * 1000:.0f} ms")
    d.close()


def bench_netfpga(tmp: str) -> None:
    d = NetFPGADriver({"state_dir": f"{tmp}/nf", "route_table_size": 10_000, "card_process": False},
                      [{"name": "card1"}], authority=AUTH)
    specs = [node(f"vdp{i}", "card1", sliver_type="netfpga-vdp", router=True,
                  interfaces=(InterfaceSpec(f"vdp{i}:if0", "eth1", vlan_tag=100 + i),),
                  routes=(Route("10.0.0.0/8", "192.168.0.1"),)) for i in range(4)]
    held: list[SliverSpec] = []
    t0 = time.perf_counter()
    for s in specs:
        a = d.admit(s, Usage(s.component_id, used={"vdp_slots": float(len(held))},
                             slivers=tuple(held)))
        assert a.ok, a.reason
        held.append(s)
        d.provision(s)
        assert d.perform(s, Action.START.value) is OperationalState.READY
    t = time.perf_counter() - t0
    print(f"netfpga: allocate-to-ready for 4 slots (10,000-entry tables): {t * 1000:.1f} ms")
    t0 = time.perf_counter()
    res = d.set_routes(specs[0], [Route(x.destination, x.gateway, "vdp0:if0") for x in routes(10_000)])
    t = time.perf_counter() - t0
    n = len(d.plane(specs[0]).read())
    print(f"netfpga: sync 10,000 routes into one slot through the registers: {t * 1000:.0f} ms "
          f"(added {res.added}, read back {n})")
    for s in specs:
        d.delete(s)
    d.close()


# ---- through the AM service -----------------------------------------------------------------

GA = "http://geni-am.org/resources/rspec/ext/geniam/1"


class _Inline:
    def __init__(self) -> None:
        self.store = self.site = None

    def submit(self, job_id: int) -> None:
        from am.jobs.runner import run_job
        run_job(self.store, self.site, job_id, worker_id="bench")


def _am(tmp: str, netns: str):
    from am.config import Settings
    from am.service.aggregate import Aggregate
    from am.store.store import open_store
    from drivers.registry import load_site

    inv = f"{tmp}/am-inventory.toml"
    with open(inv, "w") as f:
        f.write(f'[drivers.xen]\nstate_dir = "{tmp}/am-xen"\ndom0_netns = "{netns}"\n'
                f'vcpus = 64\nmemory_mb = 65536\n\n[drivers.netfpga]\ncard_process = false\n'
                f'state_dir = "{tmp}/am-nf"\nroute_table_size = 10000\n\n'
                '[[components]]\nname = "xen1"\ndriver = "xen"\n\n'
                '[[components]]\nname = "nf1"\ndriver = "netfpga"\n')
    settings = Settings(authority=AUTH, state_dir=f"{tmp}/am", inventory=inv)
    store = open_store(f"sqlite:///{tmp}/am.sqlite", migrate=True)
    site = load_site(inv, authority=AUTH, state_dir=f"{tmp}/am")
    queue = _Inline()
    queue.store, queue.site = store, site
    return Aggregate(settings=settings, store=store, site=site, queue=queue), site


def _request(nodes: list[str]) -> str:
    return (f'<rspec xmlns="http://www.geni.net/resources/rspec/3" xmlns:ga="{GA}" '
            f'type="request">{"".join(nodes)}</rspec>')


def _node(cid: str, comp: str, stype: str, ext: str = "", ip: str | None = None) -> str:
    iface = (f'<interface client_id="{cid}:if0"><ip address="{ip}" netmask="255.255.0.0" '
             f'type="ipv4"/></interface>') if ip else ""
    return (f'<node client_id="{cid}" component_id="urn:publicid:IDN+{AUTH}+node+{comp}" '
            f'exclusive="false"><sliver_type name="{stype}"/>{iface}'
            f'{f"<ga:node {ext}/>" if ext else ""}</node>')


def _to_ready(agg, principal, slice_urn: str, xml: str) -> list[str]:
    from am.service.contract import Options

    urns = [s.sliver_urn for s in agg.allocate(principal, slice_urn, xml, Options()).slivers]
    agg.provision(principal, urns, Options())   # inline jobs provision and start (start_on_provision)
    if not agg.settings.start_on_provision:
        agg.perform_action(principal, urns, "geni_start", Options())
    states = {s.operational_status for s in agg.status(principal, urns, Options()).slivers}
    assert states == {"geni_ready"}, states
    return urns


def bench_through_am(tmp: str, netns: str) -> None:
    from am.service.contract import Options, Principal

    agg, site = _am(tmp, netns)
    who = Principal(urn=f"urn:publicid:IDN+{AUTH}+user+bench")
    slice_urn = f"urn:publicid:IDN+{AUTH}+slice+bench"
    try:
        xml = _request([_node(f"vm{i}", "xen1", "xen-vm") for i in range(50)])
        t0 = time.perf_counter()
        vms = _to_ready(agg, who, slice_urn, xml)
        t = time.perf_counter() - t0
        print(f"AM: Allocate -> Provision -> start -> Status ready, 50 Xen VMs: {t * 1000:.0f} ms "
              f"({t / 50 * 1000:.1f} ms/VM)")
        agg.delete(who, vms, Options())

        xml = _request([_node(f"dp{i}", "nf1", "netfpga-vdp") for i in range(4)])
        t0 = time.perf_counter()
        slots = _to_ready(agg, who, slice_urn, xml)
        print(f"AM: Allocate -> Provision -> start -> Status ready, 4 NetFPGA slots: "
              f"{(time.perf_counter() - t0) * 1000:.0f} ms")
        agg.delete(who, slots, Options())

        table = [{"destination": r.destination, "gateway": "10.1.0.254"} for r in routes(10_000)]
        for label, node_xml in (
                ("Dom0 (namespace)", _node("r", "xen1", "xen-vm", 'router="true" '
                                           'forwarding="dom0"', "10.1.0.1")),
                ("a NetFPGA slot", _node("s", "nf1", "netfpga-vdp", "", "10.1.0.1"))):
            (urn,) = _to_ready(agg, who, slice_urn, _request([node_xml]))
            t0 = time.perf_counter()
            agg.perform_action(who, [urn], "geniam_sync_routes",
                               Options(extra={"geniam_routes": table}))
            (info,) = agg.status(who, [urn], Options()).slivers
            t = time.perf_counter() - t0
            assert info.operational_status == "geni_ready", info
            print(f"AM: PerformOperationalAction geniam_sync_routes, 10,000 routes into "
                  f"{label}: {t * 1000:.0f} ms")
            agg.delete(who, [urn], Options())
    finally:
        site.close()


def main() -> None:
    netns = f"benchdom0-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bench_xen(tmp, netns)
            bench_netfpga(tmp)
            bench_through_am(tmp, netns)
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)


if __name__ == "__main__":
    main()
