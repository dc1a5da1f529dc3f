"""OpenFlow driver figures: admission against many slivers, provision/delete of many slices.

Run as root: `.venv/bin/python bench/bench_openflow.py [--slices N]`. Starts a private OVS
(userspace datapath) in a temporary directory, a bridge with 8 internal ports, and prints:
admit time against N live slivers (pure overlap check), provision time per slice (slice bridge,
patches, steering flows; controllers are not running), observed() time, delete time.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time

from drivers.base import ResourceKind, SliverSpec, Usage
from drivers.inventory import parse_inventory
from drivers.openflow import OpenFlowDriver
from drivers.ovs import OVSInstance
from rspec.model import OFController, OFDatapath, OFGroup, OFMatch, OFPort, OpenFlowSliver, PacketMatch

AUTH = "geni-am:bench"
SW = f"urn:publicid:IDN+{AUTH}+node+sw1"


def spec(i: int) -> SliverSpec:
    of = OpenFlowSliver(
        controllers=(OFController("tcp:127.0.0.1:9"),),
        groups=(OFGroup("g", (OFDatapath(SW, ports=(OFPort(1 + i % 8), OFPort(1 + (i + 1) % 8))),)),),
        matches=(OFMatch(use_groups=("g",), packet=PacketMatch(
            nw_src=(f"10.{i // 256}.{i % 256}.0/24",), dl_vlan=(100 + i % 50,))),))
    return SliverSpec(sliver_urn=f"urn:publicid:IDN+{AUTH}+sliver+s{i}",
                      slice_urn=f"urn:publicid:IDN+{AUTH}+slice+s{i}", client_id="openflow0:sw1",
                      kind=ResourceKind.FLOWSPACE, component_id=SW, openflow=of)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slices", type=int, default=30)
    n = ap.parse_args().slices
    rundir = tempfile.mkdtemp(prefix="gof-bench-")
    ovs = OVSInstance(rundir).start()
    try:
        ovs.add_bridge("gofbench", dpid="00:00:00:00:00:00:0b:01")
        client = ovs.client()
        for p in range(1, 9):
            client.vsctl("add-port", "gofbench", f"gofbp{p}", "--", "set", "interface",
                         f"gofbp{p}", "type=internal", f"ofport_request={p}")
        inv = parse_inventory(f'[drivers.openflow]\novs_db = "{ovs.db}"\n[[components]]\n'
                              'name = "sw1"\ndriver = "openflow"\n[components.extra]\n'
                              'bridge = "gofbench"\n')
        driver = OpenFlowDriver(inv.drivers["openflow"], list(inv.components["openflow"]),
                                authority=AUTH)
        driver.inventory()
        specs = [spec(i) for i in range(n)]
        live = tuple(specs[:-1])
        t = time.perf_counter()
        reps = 200
        for _ in range(reps):
            adm = driver.admit(specs[-1], Usage(SW, slivers=live))
        assert adm.ok, adm.reason
        print(f"admit against {len(live)} live slivers: "
              f"{(time.perf_counter() - t) / reps * 1000:.2f} ms")
        times = []
        t0 = time.perf_counter()
        for s in specs:
            t = time.perf_counter()
            driver.provision(s)
            times.append(time.perf_counter() - t)
        total = time.perf_counter() - t0
        print(f"provision {n} slices: {total:.2f} s total, median {statistics.median(times)*1000:.0f} ms,"
              f" max {max(times)*1000:.0f} ms per slice")
        flows = len(client.dump_flows("gofbench"))
        t = time.perf_counter()
        seen = driver.observed()
        print(f"observed(): {len(seen)} slivers, {flows} flows, {(time.perf_counter() - t)*1000:.0f} ms")
        t = time.perf_counter()
        for s in specs:
            driver.delete(s)
        print(f"delete {n} slices: {time.perf_counter() - t:.2f} s; left: {driver.observed()}")
    finally:
        ovs.stop()
        shutil.rmtree(rundir, ignore_errors=True)


if __name__ == "__main__":
    main()
