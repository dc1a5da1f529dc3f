"""Emulated NetFPGA figures: forwarded throughput through one slot against a plain veth path,
and 10,000 routes synced into a slot with the card's pipeline running them.

Everything real: an emulated card process (its OVS userspace pipeline in its own namespace),
hosts as network namespaces wired to the card's ports, iperf3 for throughput. Run as root:
    .venv/bin/python bench/bench_netfpga.py [--seconds 5] [--runs 3] [--routes 10000]
Names carry the prefix `bnf`; everything is removed at the end.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from drivers import hostnet
from drivers.base import (Action, ForwardingMode, InterfaceSpec, OperationalState, ResourceKind,
                          SliverSpec)
from drivers.netfpga import NetFPGADriver
from drivers.netfpga.card import EmulatedCard
from rspec.model import Route

AUTH = "geni-am:bench"
CARD = f"urn:publicid:IDN+{AUTH}+node+nf1"


def slot_spec(name: str, ifaces: list[tuple[str, str]], routes: tuple[Route, ...]) -> SliverSpec:
    """A data plane on the card: (port, own address) per interface."""
    return SliverSpec(
        sliver_urn=f"urn:publicid:IDN+{AUTH}+sliver+{name}", slice_urn=f"urn:{name}",
        client_id=name, kind=ResourceKind.NODE, component_id=CARD, sliver_type="netfpga-vdp",
        router=True, forwarding=ForwardingMode.HARDWARE,
        interfaces=tuple(InterfaceSpec(f"{name}:if{i}", f"eth{i}", ((addr, "255.255.255.0"),),
                                       port=f"urn:publicid:IDN+{AUTH}+interface+nf1:{port}")
                         for i, (port, addr) in enumerate(ifaces)),
        routes=routes)


def wire_host(ns: str, dev: str, cidr: str, gateway: str | None) -> None:
    """A namespace holding `dev` (moved in) with one address and a default route."""
    hostnet.netns_add(ns)
    hostnet.link_move(dev, ns)
    hostnet.link_set(ns, dev, up=True)
    hostnet.addr_replace(ns, dev, cidr)
    if gateway:
        hostnet.route_replace(ns, "default", gateway=gateway)
    subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off"],
                   capture_output=True, check=False)


def iperf(client: str, server: str, address: str, seconds: float) -> float:
    """TCP throughput client -> server in Gbit/s (what the receiver got)."""
    srv = subprocess.Popen(["ip", "netns", "exec", server, "iperf3", "-s", "-1", "-p", "5299"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while ":5299" not in subprocess.run(["ip", "netns", "exec", server, "ss", "-Hltn"],
                                            capture_output=True, text=True).stdout:
            if time.monotonic() > deadline:
                raise RuntimeError("iperf3 server did not start")
            time.sleep(0.05)
        out = subprocess.run(["ip", "netns", "exec", client, "iperf3", "-c", address, "-p", "5299",
                              "-t", str(seconds), "-J"], capture_output=True, text=True,
                             timeout=seconds + 30).stdout
        result = json.loads(out)
        if "error" in result:
            raise RuntimeError(f"iperf3: {result['error']}")
        return result["end"]["sum_received"]["bits_per_second"] / 1e9
    finally:
        srv.kill()
        srv.wait()


def wait_ping(ns: str, address: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", address],
                         capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{ns} cannot reach {address}")


@contextmanager
def emulated_card(tmp: str, prefix: str, **config) -> Iterator[tuple[NetFPGADriver, EmulatedCard]]:
    driver = NetFPGADriver({"state_dir": f"{tmp}/{prefix}", "apply_timeout_s": 120.0, **config},
                           [{"name": "nf1", "extra": {"iface_prefix": prefix}}], authority=AUTH)
    card = driver.emulated_card(driver.inventory()[0])
    try:
        card.start()
        yield driver, card
    finally:
        card.stop()
        card.cleanup()
        driver.close()


def throughput(tmp: str, seconds: float, runs: int) -> tuple[float, float]:
    """(Gbit/s through one emulated slot, Gbit/s over a plain veth pair), medians."""
    spaces = ["bnfh1", "bnfh2", "bnfv1", "bnfv2"]
    try:
        with emulated_card(tmp, "bnfa") as (driver, card):
            spec = slot_spec("r", [("nf0", "10.91.1.1"), ("nf1", "10.91.2.1")],
                             (Route("10.91.1.0/24", None, "r:if0"),
                              Route("10.91.2.0/24", None, "r:if1")))
            driver.provision(spec)
            assert driver.perform(spec, Action.START.value) is OperationalState.READY
            wire_host("bnfh1", card.names.wire(0), "10.91.1.2/24", "10.91.1.1")
            wire_host("bnfh2", card.names.wire(1), "10.91.2.2/24", "10.91.2.1")
            wait_ping("bnfh1", "10.91.2.2")
            wait_ping("bnfh2", "10.91.1.2")
            slot = [iperf("bnfh1", "bnfh2", "10.91.2.2", seconds) for _ in range(runs)]
            print(f"netfpga: counters of the slot: {driver.live_status(spec)}")
        hostnet.veth_add("bnfva", "bnfvb")
        wire_host("bnfv1", "bnfva", "10.92.0.1/24", None)
        wire_host("bnfv2", "bnfvb", "10.92.0.2/24", None)
        wait_ping("bnfv1", "10.92.0.2")
        veth = [iperf("bnfv1", "bnfv2", "10.92.0.2", seconds) for _ in range(runs)]
    finally:
        for ns in spaces:
            hostnet.netns_delete(ns)
    return statistics.median(slot), statistics.median(veth)


def udp(client: str, server: str, address: str, port: int, seconds: float,
        mbps: float, servers: list[subprocess.Popen]) -> subprocess.Popen:
    """Start an iperf3 UDP stream at `mbps` (its server joins `servers`, for the caller to
    end); `udp_result` reads it."""
    servers.append(subprocess.Popen(["ip", "netns", "exec", server, "iperf3", "-s", "-1", "-p",
                                     str(port)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL))
    deadline = time.monotonic() + 10
    while f":{port}" not in subprocess.run(["ip", "netns", "exec", server, "ss", "-Hltn"],
                                          capture_output=True, text=True).stdout:
        if time.monotonic() > deadline:
            raise RuntimeError("iperf3 server did not start")
        time.sleep(0.05)
    return subprocess.Popen(["ip", "netns", "exec", client, "iperf3", "-c", address, "-p",
                             str(port), "-u", "-b", f"{mbps}M", "-t", str(seconds), "-J"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def udp_result(proc: subprocess.Popen, seconds: float) -> tuple[float, float]:
    """(received Mbit/s, loss %) of a stream `udp` started."""
    out, _ = proc.communicate(timeout=seconds + 30)
    result = json.loads(out)
    if "error" in result:
        raise RuntimeError(f"iperf3: {result['error']}")
    s = result["end"]["sum"]
    received = s["bytes"] * 8 * (1 - s["lost_percent"] / 100) / s["seconds"] / 1e6
    return received, s["lost_percent"]


def slots_forwarding(tmp: str, slots: int, seconds: float, mbps: float) -> tuple[float, float]:
    """`slots` data planes on one emulated card forwarding at once, each its own UDP stream
    of `mbps` between its own two hosts (ports 2s, 2s+1): (aggregate Mbit/s received, mean
    loss %). The card has 2 ports per slot."""
    spaces: list[str] = []
    try:
        with emulated_card(tmp, f"bnfs{slots}", ports=max(4, 2 * slots),
                           slots=max(4, slots)) as (driver, card):
            pairs = []
            for s in range(slots):
                net = [f"10.{100 + s}.1", f"10.{100 + s}.2"]
                spec = slot_spec(f"f{s}", [(f"nf{2 * s}", f"{net[0]}.1"),
                                           (f"nf{2 * s + 1}", f"{net[1]}.1")],
                                 (Route(f"{net[0]}.0/24", None, f"f{s}:if0"),
                                  Route(f"{net[1]}.0/24", None, f"f{s}:if1")))
                driver.provision(spec)
                assert driver.perform(spec, Action.START.value) is OperationalState.READY
                a, b = f"bnfs{s}a", f"bnfs{s}b"
                spaces += [a, b]
                wire_host(a, card.names.wire(2 * s), f"{net[0]}.2/24", f"{net[0]}.1")
                wire_host(b, card.names.wire(2 * s + 1), f"{net[1]}.2/24", f"{net[1]}.1")
                wait_ping(a, f"{net[1]}.2")
                wait_ping(b, f"{net[0]}.2")
                pairs.append((a, b, f"{net[1]}.2"))
            servers: list[subprocess.Popen] = []
            try:
                streams = [udp(a, b, addr, 5300 + i, seconds, mbps, servers)
                           for i, (a, b, addr) in enumerate(pairs)]
                results = [udp_result(p, seconds) for p in streams]
            finally:
                for srv in servers:
                    srv.kill()
                    srv.wait()
    finally:
        for ns in spaces:
            hostnet.netns_delete(ns)
    return sum(r[0] for r in results), statistics.mean(r[1] for r in results)


class NetFPGASlots:
    """N slots of one emulated card as N virtual routers, for bench_forwarding's mode table:
    router i (1..n) has ports nf{2i-2} (wired into namespace `src` as s<i>, address
    `src_net(i)`.2/24) and nf{2i-1} (into `dst` as d<i>, `dst_net(i)`.2/24); `setup(n)` returns
    the (source, sink) address pairs, `teardown()` stops the card (its wires go with it)."""

    def __init__(self, most: int, src: str, dst: str, src_net, dst_net, prefix: str = "bnff"):
        if not 1 <= most <= 16:
            raise ValueError("an emulated card has 1..16 slots")
        self.most, self.src, self.dst = most, src, dst
        self.src_net, self.dst_net, self.prefix = src_net, dst_net, prefix
        self.tmp = tempfile.mkdtemp(prefix="bench-netfpga-slots-")
        self._card: tuple[NetFPGADriver, EmulatedCard] | None = None

    def setup(self, n: int) -> list[tuple[str, str]]:
        self.teardown()
        driver = NetFPGADriver({"state_dir": f"{self.tmp}/nf{n}", "ports": 2 * self.most,
                                "slots": self.most},
                               [{"name": "nf1", "extra": {"iface_prefix": self.prefix}}],
                               authority=AUTH)
        card = driver.emulated_card(driver.inventory()[0])
        self._card = (driver, card)
        card.start()
        pairs = []
        for i in range(1, n + 1):
            a, b = self.src_net(i), self.dst_net(i)
            spec = slot_spec(f"fw{i}", [(f"nf{2 * i - 2}", f"{a}.1"), (f"nf{2 * i - 1}", f"{b}.1")],
                             (Route(f"{a}.0/24", None, f"fw{i}:if0"),
                              Route(f"{b}.0/24", None, f"fw{i}:if1")))
            driver.provision(spec)
            if driver.perform(spec, Action.START.value) is not OperationalState.READY:
                raise RuntimeError(f"slot for router {i} is not ready")
            for ns, port, dev, mine, far in ((self.src, 2 * i - 2, f"s{i}", a, b),
                                             (self.dst, 2 * i - 1, f"d{i}", b, a)):
                wire = card.names.wire(port)
                hostnet.link_move(wire, ns)
                hostnet.link_set(ns, wire, name=dev, up=True)
                hostnet.addr_replace(ns, dev, f"{mine}.2/24")
                hostnet.route_replace(ns, f"{far}.0/24", gateway=f"{mine}.1", dev=dev)
            pairs.append((f"{a}.2", f"{b}.2"))
        return pairs

    def teardown(self) -> None:
        if self._card is not None:
            driver, card = self._card
            self._card = None
            card.stop()
            card.cleanup()
            driver.close()


def route_sync(tmp: str, n: int) -> None:
    base = int(ipaddress.IPv4Address("11.0.0.0"))
    table = tuple(Route(f"{ipaddress.IPv4Address(base + (i << 8))}/24", "10.93.1.254", "s:if0")
                  for i in range(n))
    registers = NetFPGADriver({"state_dir": f"{tmp}/regs", "route_table_size": n,
                               "card_process": False}, [{"name": "nf1"}], authority=AUTH)
    try:
        spec = slot_spec("s", [("nf0", "10.93.1.1")], ())
        registers.provision(spec)
        registers.perform(spec, Action.START.value)
        t0 = time.perf_counter()
        registers.set_routes(spec, table)
        print(f"netfpga: {n} routes written into a slot's registers (no pipeline): "
              f"{time.perf_counter() - t0:.2f} s")
    finally:
        registers.close()
    with emulated_card(tmp, "bnfb", route_table_size=n) as (driver, card):
        spec = slot_spec("s", [("nf0", "10.93.1.1")], ())
        driver.provision(spec)
        assert driver.perform(spec, Action.START.value) is OperationalState.READY
        comp = driver.inventory()[0]
        t0 = time.perf_counter()
        driver.set_routes(spec, table)               # registers written, then the pipeline
        t_all = time.perf_counter() - t0
        flows = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "--no-stats", "dump-flows",
                                card.names.bridge, "table=2"], capture_output=True, text=True,
                               env={"OVS_RUNDIR": comp.extra["card_rundir"],
                                    "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
                               check=True).stdout
        count = len(re.findall(r"priority=1\d{3}\b", flows))     # route flows: 1000 + length
        print(f"netfpga: {n} routes synced into a slot and running in its pipeline: "
              f"{t_all:.2f} s ({count} route flows in table 2)")
        changed = table[:-100] + tuple(Route(f"12.{i}.0.0/16", "10.93.1.254", "s:if0")
                                       for i in range(100))
        t0 = time.perf_counter()
        driver.set_routes(spec, changed)
        print(f"netfpga: then 100 of them replaced (a diff): {time.perf_counter() - t0:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="iperf3 run length")
    ap.add_argument("--runs", type=int, default=3, help="iperf3 runs per path (median)")
    ap.add_argument("--routes", type=int, default=10_000)
    ap.add_argument("--slots", type=int, default=0,
                    help="also: UDP through 1..N slots at once (aggregate and loss)")
    ap.add_argument("--mbps", type=float, default=200.0, help="UDP rate per slot")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-netfpga-") as tmp:
        slot, veth = throughput(tmp, args.seconds, args.runs)
        print(f"netfpga: forwarded TCP through one emulated slot: {slot:.2f} Gbit/s; plain veth "
              f"path: {veth:.2f} Gbit/s; ratio {slot / veth:.3f}")
        route_sync(tmp, args.routes)
        for n in range(1, args.slots + 1):
            got, loss = slots_forwarding(tmp, n, args.seconds, args.mbps)
            print(f"netfpga: {n} slot(s) at once, {args.mbps:g} Mbit/s UDP each: "
                  f"{got:.0f} Mbit/s received in all, {loss:.1f}% lost")


if __name__ == "__main__":
    main()
