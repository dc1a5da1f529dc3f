"""Hybrid routers' OpenFlow forwarding planes: how fast routes become flows.

Run as root: `.venv/bin/python bench/bench_openflow_fib.py [--routes N]`. Starts a private OVS
(userspace datapath; no other userspace-datapath OVS may run on the host) in a temporary
directory with a bridge of two patch ports, and prints for one router's `OpenFlowPlane`: the
first sync of N routes (one `ovs-ofctl add-flows`), read() of the table, a sync changing 10% of
the routes (strict deletes + adds), and clear().
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time

from drivers.openflow.plane import FibLayout, OpenFlowPlane, RouterPort
from drivers.ovs import OVSInstance
from drivers.routesync import FibEntry, sync_plane

BRIDGE = "fibbench0"


def entries(n: int, salt: int = 0) -> set[FibEntry]:
    out = set()
    for i in range(n):
        j = i + salt
        gw, dev = ("10.255.1.254", "pa") if j % 2 else ("10.255.2.254", "pb")
        out.add(FibEntry(f"10.{j // 256 % 250}.{j % 256}.0/24", gw, dev))
    return out


def timed(label: str, fn) -> object:
    t = time.perf_counter()
    result = fn()
    print(f"{label}: {time.perf_counter() - t:.3f} s")
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--routes", type=int, default=10_000)
    n = ap.parse_args().routes
    rundir = tempfile.mkdtemp(prefix="fib-bench-")
    inst = OVSInstance(rundir)
    try:
        inst.start()
        inst.add_bridge(BRIDGE)
        c = inst.client()
        c.vsctl("add-port", BRIDGE, "pa", "--", "set", "interface", "pa", "type=patch",
                "options:peer=pb", "ofport_request=1",
                "--", "add-port", BRIDGE, "pb", "--", "set", "interface", "pb", "type=patch",
                "options:peer=pa", "ofport_request=2")
        layout = FibLayout(cookie=0x1234567800000001, metadata=1,
                           ports=(RouterPort("pa", 1, "02:00:00:00:00:0a", ("10.255.1.1",)),
                                  RouterPort("pb", 2, "02:00:00:00:00:0b", ("10.255.2.1",))),
                           neighbours={"10.255.1.254": "02:00:00:00:01:fe",
                                       "10.255.2.254": "02:00:00:00:02:fe"})
        plane = OpenFlowPlane(c, BRIDGE, layout)
        plane.bind()
        want = entries(n)
        r = timed(f"first sync of {n} routes", lambda: sync_plane(plane, want))
        print(f"  {r}")
        got = timed(f"read() of {n} route flows", plane.read)
        assert got == want, "read-back differs from what was installed"
        changed = entries(n - n // 10) | entries(n // 10, salt=n * 2)
        r = timed(f"sync changing {n // 10} routes", lambda: sync_plane(plane, changed))
        print(f"  {r}")
        assert plane.read() == changed
        timed("clear()", plane.clear)
    finally:
        inst.stop()
        shutil.rmtree(rundir, ignore_errors=True)


if __name__ == "__main__":
    main()
