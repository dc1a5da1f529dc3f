"""Stitched two-aggregate slice: time from the first Allocate to both ends pinging, and the
share of each phase. Runs as root on this host.

Run: .venv/bin/python bench/bench_stitch.py [--runs 3]
Set-up (not timed): two `geni-am serve` processes on one machine (tests/site/stitch_sites.py),
each with a container host and an OVS bridge, their edge ports joined by a veth (at the second
aggregate the edge is on its OpenFlow switch, reached over a site wire). Each run
stitches a one-link two-node slice through `am.client.stitch` and times: Allocate at the first
aggregate (it picks the tag), Allocate at the second (the tag carried), Provision at both,
waiting until every sliver at both is geni_ready (Status polled every 0.1 s), and the first
ping answered end to end (node at a -> node at b). The slice is deleted between runs.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.site.stitch_sites import (SIDES, node_netns, ping, ready, slice_urn,  # noqa: E402
                                     two_aggregates, two_node_request)

PHASES = ("allocate a", "allocate b", "provision a+b", "until ready", "first ping")


def one_run(sites, run: int) -> dict[str, float]:
    from rspec.stitching import manifest_tags, with_suggested

    name = f"bench{run}"
    urn = slice_urn(name)
    clients = [sites[s].client(name) for s in SIDES]
    xml = two_node_request(10 + run, "any")
    times: dict[str, float] = {}
    t = time.perf_counter()
    res = clients[0].allocate(urn, xml)                        # the first hop's aggregate
    tag = manifest_tags(res["geni_rspec"])["lnk"]["a-edge"]
    times["allocate a"] = time.perf_counter() - t
    t = time.perf_counter()
    clients[1].allocate(urn, with_suggested(xml, "lnk", str(tag)))
    times["allocate b"] = time.perf_counter() - t
    t = time.perf_counter()
    for c in clients:
        c.provision(urn)
    times["provision a+b"] = time.perf_counter() - t
    t = time.perf_counter()
    while not all(ready(c, urn) for c in clients):
        time.sleep(0.1)
    times["until ready"] = time.perf_counter() - t
    t = time.perf_counter()
    ns_a = node_netns(sites["a"], clients[0], urn)
    deadline = time.monotonic() + 60
    while not ping(ns_a, f"10.77.{10 + run}.2", count=1):
        if time.monotonic() > deadline:
            raise SystemExit(f"run {run}: no ping answer within 60 s")
    times["first ping"] = time.perf_counter() - t
    for c in clients:
        c.delete(urn)
        c.close()
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    print("setting up two aggregates (not timed) ...", file=sys.stderr)
    with two_aggregates() as sites:
        results = []
        for run in range(args.runs):
            times = one_run(sites, run)
            total = sum(times.values())
            results.append((total, times))
            print(f"run {run + 1}: {total:.2f} s  " +
                  "  ".join(f"{k} {v:.2f}" for k, v in times.items()), file=sys.stderr)
    totals = [r[0] for r in results]
    print(f"\nstitched two-AM slice, first Allocate -> both ends pinging, {args.runs} runs: "
          f"median {statistics.median(totals):.2f} s (min {min(totals):.2f}, "
          f"max {max(totals):.2f})\n")
    print("| phase | median s | share of the total |")
    print("|---|---|---|")
    med_total = sum(statistics.median(r[1][p] for r in results) for p in PHASES)
    for phase in PHASES:
        med = statistics.median(r[1][phase] for r in results)
        print(f"| {phase} | {med:.2f} | {100 * med / med_total:.0f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
