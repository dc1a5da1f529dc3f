"""Placement speed: a 1,000-node unbound request onto a 5,000-component inventory (target <= 1 s).

Run: .venv/bin/python bench/bench_placement.py [--nodes 1000] [--components 5000] [--runs 5]
The inventory is the fake site (components-1 hosts of mixed isolation plus its switch) with a
third of the hosts already loaded; the request mixes sliver types, CPU/memory sizes and routers.
A second figure adds one VLAN link per pair of nodes (500 links through the switch).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from am.engine import place                                      # noqa: E402
from drivers.base import ResourceKind, SliverSpec, Usage          # noqa: E402
from drivers.fake import make_fake_site                          # noqa: E402
from rspec.model import (                                         # noqa: E402
    LinkProperty, NodeExtension, Request, RequestInterface, RequestLink, RequestNode)

TYPES = ("xen-vm", "vserver-container", "default-vm", None)


def build_request(n: int, with_links: bool) -> Request:
    nodes = []
    for i in range(n):
        ext = NodeExtension(cpu=(0.5, 1, 2)[i % 3], memory_mb=(256, 512, 1024)[i % 3],
                            router=i % 10 == 0)
        ifaces = (RequestInterface(f"n{i}:if0"),) if with_links else ()
        nodes.append(RequestNode(f"n{i}", sliver_type=TYPES[i % len(TYPES)], ext=ext,
                                 interfaces=ifaces))
    links = ()
    if with_links:
        links = tuple(RequestLink(f"l{i}", (f"n{i}:if0", f"n{i + 1}:if0"),
                                  (LinkProperty(f"n{i}:if0", f"n{i + 1}:if0", 1000),))
                      for i in range(0, n - 1, 2))
    return Request(nodes=tuple(nodes), links=links)


def existing_usage(site) -> dict[str, Usage]:
    usage = {}
    hosts = [c for c in site.components if c.capacity.get("cpu")]
    for k, comp in enumerate(hosts[::3]):
        spec = SliverSpec(sliver_urn=f"urn:x+sliver+old{k}", slice_urn="urn:x+slice+old",
                          client_id=f"old{k}", kind=ResourceKind.NODE,
                          component_id=comp.component_id, cpu=2, memory_mb=2048)
        usage[comp.component_id] = Usage(comp.component_id, {"cpu": 2, "memory_mb": 2048}, (spec,))
    return usage


def run(nodes: int, components: int, runs: int, with_links: bool) -> list[float]:
    site = make_fake_site(components - 1, isolation=["hypervisor", "container", "hardware"])
    try:
        usage = existing_usage(site)
        request = build_request(nodes, with_links)
        site.components, site.by_sliver_type   # the AM builds these once at start-up
        times = []
        for _ in range(runs):
            counter = iter(range(10**9))
            t0 = time.perf_counter()
            plan = place(request, site, usage, slice_urn="urn:publicid:IDN+bench+slice+s",
                         mint_sliver_urn=lambda cid: f"urn:publicid:IDN+bench+sliver+{next(counter)}")
            times.append(time.perf_counter() - t0)
            if plan.refusals:
                raise SystemExit(f"unexpected refusals: {plan.refusals[:3]}")
        return times
    finally:
        site.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--components", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    for with_links in (False, True):
        times = run(args.nodes, args.components, args.runs, with_links)
        label = f"{args.nodes} unbound nodes" + (f" + {args.nodes // 2} VLAN links" if with_links else "")
        print(f"place {label} onto {args.components} components: median "
              f"{statistics.median(times) * 1000:.0f} ms (min {min(times) * 1000:.0f} ms, "
              f"max {max(times) * 1000:.0f} ms, {args.runs} runs; target <= 1000 ms)")


if __name__ == "__main__":
    main()
