"""vserver driver speed: provision 20 containers + 19 links (a chain) to all-ready, then delete
to clean (targets on 2 cores: <= 10 s and <= 5 s). Runs as root on this host.

Run: .venv/bin/python bench/bench_vserver.py [--nodes 20] [--workers 2] [--runs 3]
Slivers are provisioned by `--workers` threads in shuffled order (node and link slivers mixed,
as concurrent job workers would), every link shaped to 100 Mbit/s; "ready" means every
sliver's status is geni_ready and the chain's two ends ping each other end to end.
"""
from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drivers import hostnet                                               # noqa: E402
from drivers.base import (InterfaceSpec, LinkEnd, LinkSpec, OperationalState,  # noqa: E402
                          ResourceKind, SliverSpec)
from drivers.vserver import VServerDriver                                 # noqa: E402
from rspec.model import Route                                             # noqa: E402

AUTH = "geni-am:bench"
COMP = f"urn:publicid:IDN+{AUTH}+node+vs1"
SLICE = f"urn:publicid:IDN+{AUTH}+slice+bench"


def chain_specs(n: int, run: int) -> tuple[list[SliverSpec], list[SliverSpec]]:
    """n nodes in a line, link i joins node i and i+1 on 10.(i/250).(i%250).0/24; every inner
    node routes; each node has a route to every subnet through its neighbours."""
    def urn(name):
        return f"urn:publicid:IDN+{AUTH}+sliver+r{run}{name}"

    def net(i):
        return f"10.{100 + i // 250}.{i % 250}"

    nodes = []
    for i in range(n):
        ifaces, routes = [], []
        if i > 0:
            ifaces.append(InterfaceSpec(f"n{i}:left", "eth1", ((f"{net(i - 1)}.2", "255.255.255.0"),),
                                        link_client_id=f"l{i - 1}"))
            routes += [Route(f"{net(j)}.0/24", f"{net(i - 1)}.1") for j in range(i - 1)]
        if i < n - 1:
            ifaces.append(InterfaceSpec(f"n{i}:right", "eth2", ((f"{net(i)}.1", "255.255.255.0"),),
                                        link_client_id=f"l{i}"))
            routes += [Route(f"{net(j)}.0/24", f"{net(i)}.2") for j in range(i + 1, n - 1)]
        nodes.append(SliverSpec(urn(f"n{i}"), SLICE, f"n{i}", ResourceKind.NODE, COMP,
                                sliver_type="vserver-container", cpu=0.05, memory_mb=64,
                                router=0 < i < n - 1, interfaces=tuple(ifaces), routes=tuple(routes)))
    links = []
    for i in range(n - 1):
        ends = (LinkEnd(urn(f"n{i}"), f"n{i}", f"n{i}:right", COMP),
                LinkEnd(urn(f"n{i + 1}"), f"n{i + 1}", f"n{i + 1}:left", COMP))
        links.append(SliverSpec(urn(f"l{i}"), SLICE, f"l{i}", ResourceKind.LINK, COMP,
                                link=LinkSpec(ends=ends, capacity_kbps=100_000, mode="veth")))
    return nodes, links


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    state = tempfile.mkdtemp(prefix="bench-vserver-")
    drv = VServerDriver({"name_prefix": "bv", "state_dir": state, "cpu": 2, "memory_mb": 4096},
                        [{"name": "vs1", "driver": "vserver"}], authority=AUTH)
    prov, dele = [], []
    for run in range(args.runs):
        nodes, links = chain_specs(args.nodes, run)
        specs = nodes + links
        random.Random(run).shuffle(specs)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.workers) as pool:
            results = list(pool.map(drv.provision, specs))
        assert all(r.state is OperationalState.READY for r in results)
        assert all(drv.status(s) is OperationalState.READY for s in specs)
        last = f"10.{100 + (args.nodes - 2) // 250}.{(args.nodes - 2) % 250}.2"
        ok = subprocess.run(drv.sliver_argv(nodes[0].sliver_urn, ["ping", "-c1", "-W2", last]),
                            capture_output=True).returncode == 0
        t1 = time.perf_counter()
        if not ok:
            sys.exit(f"run {run}: end-to-end ping over {args.nodes} containers failed")
        with ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(drv.delete, specs))
        left = [n for n in hostnet.netns_list() if n.startswith("bv-")]
        left += [li.name for li in hostnet.links(None) if drv.naming.is_ours_ifname(li.name)]
        left += sorted(n for n in drv.cgroups.names() if drv.naming.is_node(n))
        t2 = time.perf_counter()
        if left or drv.observed():
            sys.exit(f"run {run}: delete left {left} {drv.observed()}")
        prov.append(t1 - t0)
        dele.append(t2 - t1)
        print(f"run {run}: provision {args.nodes} containers + {len(links)} links to all-ready "
              f"(end-to-end ping ok) {t1 - t0:.2f} s; delete to clean {t2 - t1:.2f} s")
    print(f"median over {args.runs} runs ({args.workers} workers): provision "
          f"{statistics.median(prov):.2f} s (target <= 10 s), delete {statistics.median(dele):.2f} s "
          f"(target <= 5 s)")


if __name__ == "__main__":
    main()
