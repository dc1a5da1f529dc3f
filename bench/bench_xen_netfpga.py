"""Xen and NetFPGA driver figures: allocate-to-ready and route sync of a 10,000-route table.

Driver level (admit -> provision -> geni_start), on libvirt's test driver, a network namespace
standing in for Dom0, and the simulated NetFPGA card. Run as root:
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
    d = NetFPGADriver({"state_dir": f"{tmp}/nf", "route_table_size": 10_000},
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


def main() -> None:
    netns = f"benchdom0-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bench_xen(tmp, netns)
            bench_netfpga(tmp)
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)


if __name__ == "__main__":
    main()
