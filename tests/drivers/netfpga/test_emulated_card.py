"""The emulated NetFPGA card forwards real packets as its registers say (root: namespaces, OVS).

One card process for the module (a private OVS under a temporary directory), driven only
through the NetFPGA driver's register interface. Hosts are network namespaces wired to the
card's ports (`<prefix>p<k>`): h1 - nf-router (slot) - h2, the slot's CPU port in a control
plane namespace, and two slices on VLANs 100 and 200 of ports nf2/nf3 behind a VLAN switch
(a second private OVS: the kernel here has no 802.1Q).
"""
from __future__ import annotations

import json
import random
import re
import shutil
import string
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from drivers.base import (
    Action,
    DriverError,
    ForwardingMode,
    InterfaceSpec,
    OperationalState,
    ResourceKind,
    SliverSpec,
)
from drivers.netfpga import NetFPGADriver
from drivers.netfpga.card import EmulatedCard
from drivers.ovs import OVSInstance
from drivers.routesync import RouteTableFull
from rspec.model import Route
from tests.conftest import require_tool
from tests.support import wait_until

pytestmark = pytest.mark.root

AUTH = "geni-am:nfemu"
CARD = f"urn:publicid:IDN+{AUTH}+node+nf1"
TAG = "".join(random.choices(string.ascii_lowercase, k=3))
PFX = f"e{TAG}"                    # the card's interfaces: e<tag>p0, e<tag>br, ...
NS = f"gne{TAG}"                   # namespaces: gne<tag>h1, ...


def sh(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc


def in_ns(ns: str, *argv: str, check: bool = True, timeout: float = 30):
    return sh("ip", "netns", "exec", ns, *argv, check=check, timeout=timeout)


def ping(ns: str, dst: str, *, count: int = 1, wait: float = 1) -> tuple[int, int | None]:
    """(replies, TTL of the last reply)."""
    out = in_ns(ns, "ping", "-n", "-c", str(count), "-i", "0.05", "-W", str(wait), dst,
                check=False).stdout
    ttls = re.findall(r"ttl=(\d+)", out)
    return len(ttls), int(ttls[-1]) if ttls else None


def wait_ping(ns: str, dst: str, timeout: float = 20) -> int:
    """Ping until a reply comes (the card drops a first packet whose next hop it has yet to
    ARP for, as hardware routers do); returns the reply's TTL."""
    deadline = time.monotonic() + timeout
    while True:
        n, ttl = ping(ns, dst)
        if n:
            return ttl  # type: ignore[return-value]
        assert time.monotonic() < deadline, f"{ns} never reached {dst}"


def host(name: str, dev: str, cidr: str, gateway: str | None) -> str:
    ns = f"{NS}{name}"
    sh("ip", "netns", "add", ns)
    sh("ip", "link", "set", dev, "netns", ns)
    in_ns(ns, "ip", "link", "set", "lo", "up")
    in_ns(ns, "ip", "link", "set", dev, "up")
    in_ns(ns, "ip", "addr", "add", cidr, "dev", dev)
    in_ns(ns, "ethtool", "-K", dev, "tx", "off", check=False)
    if gateway:
        in_ns(ns, "ip", "route", "add", "default", "via", gateway)
    return ns


def count_pings(ns: str) -> int:
    """Echo requests that reached the host (an iptables counter in its namespace)."""
    out = in_ns(ns, "iptables", "-L", "INPUT", "-v", "-x", "-n").stdout
    rows = [line.split() for line in out.splitlines() if "icmptype 8" in line]
    if not rows:
        in_ns(ns, "iptables", "-A", "INPUT", "-p", "icmp", "--icmp-type", "echo-request",
              "-j", "ACCEPT")
        return 0
    return int(rows[0][0])


def iface(node: str, i: int, port: str, addr: str, vlan: int | None = None) -> InterfaceSpec:
    return InterfaceSpec(client_id=f"{node}:if{i}", name=f"eth{i}", vlan_tag=vlan,
                         port=f"urn:publicid:IDN+{AUTH}+interface+nf1:{port}",
                         ips=((addr, "255.255.255.0"),))


def router(name: str, ifaces: tuple[InterfaceSpec, ...], routes: tuple[Route, ...]) -> SliverSpec:
    return SliverSpec(sliver_urn=f"urn:publicid:IDN+{AUTH}+sliver+{name}", slice_urn=f"urn:{name}",
                      client_id=name, kind=ResourceKind.NODE, component_id=CARD,
                      sliver_type="netfpga-vdp", router=True,
                      forwarding=ForwardingMode.HARDWARE, interfaces=ifaces, routes=routes)


@dataclass
class Bench:
    driver: NetFPGADriver
    card: EmulatedCard
    a: SliverSpec            # slot of h1 - nf-router - h2 (untagged nf0, nf1)
    h1: str
    h2: str
    cp: str                  # the slot's control plane namespace (its CPU port)

    @property
    def comp(self):
        return self.driver.inventory()[0]

    def counters(self, spec: SliverSpec) -> dict[str, int]:
        _sim, tables = self.driver.card(self.comp)
        return tables.slot_counters(self.driver.slot_of(spec))

    def wait_counter(self, spec: SliverSpec, name: str, at_least: int, timeout: float = 5):
        wait_until(lambda: self.counters(spec)[name] >= at_least, f"{name} >= {at_least}",
                   timeout, detail=lambda: self.counters(spec))


ROUTES_A = (Route("10.81.1.0/24", None, "a:if0"), Route("10.81.2.0/24", None, "a:if1"))


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Iterator[Bench]:
    for tool in ("ovs-vswitchd", "ip", "ping", "ethtool", "iperf3", "iptables", "ss"):
        require_tool(tool)
    tmp = tmp_path_factory.mktemp("nfcard")
    driver = NetFPGADriver({"state_dir": str(tmp / "nf"), "route_table_size": 8},
                           [{"name": "nf1", "extra": {"iface_prefix": PFX}}], authority=AUTH)
    comp = driver.inventory()[0]
    card = driver.emulated_card(comp)
    namespaces: list[str] = []
    try:
        card.start()
        names = card.names
        a = router("a", (iface("a", 0, "nf0", "10.81.1.1"), iface("a", 1, "nf1", "10.81.2.1")),
                   ROUTES_A)
        driver.provision(a)
        assert driver.perform(a, Action.START.value) is OperationalState.READY
        slot = driver.slot_of(a)
        h1 = host("h1", names.wire(0), "10.81.1.2/24", "10.81.1.1")
        h2 = host("h2", names.wire(1), "10.81.2.2/24", "10.81.2.1")
        cp = host("cp", names.control(slot), "10.81.1.1/32", None)
        in_ns(cp, "ip", "addr", "add", "10.81.2.1/32", "dev", names.control(slot))
        in_ns(cp, "ip", "route", "add", "default", "dev", names.control(slot))
        namespaces += [h1, h2, cp]
        yield Bench(driver, card, a, h1, h2, cp)
    finally:
        card.stop()
        for ns in namespaces:
            sh("ip", "netns", "del", ns, check=False)
        card.cleanup()
        driver.close()


def test_ping_and_tcp_across_with_ttl_decremented_once(bench: Bench):
    assert wait_ping(bench.h1, "10.81.2.2") == 63           # h2's 64, less one hop
    assert ping(bench.h2, "10.81.1.2", count=3) == (3, 63)
    server = subprocess.Popen(["ip", "netns", "exec", bench.h2, "iperf3", "-s", "-1", "-p",
                               "5216"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        wait_until(lambda: ":5216" in in_ns(bench.h2, "ss", "-Hltn").stdout,
                   "the iperf3 server to listen", 10)
        client = in_ns(bench.h1, "iperf3", "-c", "10.81.2.2", "-p", "5216", "-n", "4M", "-J",
                       check=False, timeout=60)
        result = json.loads(client.stdout)
        assert "error" not in result, result.get("error")
        assert result["end"]["sum_sent"]["bytes"] >= 4 * 1024 * 1024
        assert result["end"]["sum_received"]["bytes"] > 0
    finally:
        server.kill()
        server.wait()
    bench.wait_counter(bench.a, "forwarded", 1500)
    _sim, tables = bench.driver.card(bench.comp)
    wait_until(lambda: (tables.port_counters(0)["rx_bytes"] > 2_000_000      # nf0 took it in
                        and tables.port_counters(1)["tx_bytes"] > 2_000_000),  # nf1 sent it on
               "the port counters (every 0.5 s)", 5,
               detail=lambda: (tables.port_counters(0), tables.port_counters(1)))
    status = bench.driver.live_status(bench.a)
    assert "emulated NetFPGA card nf1 slot" in status and "forwarded" in status


def test_own_address_reaches_the_control_plane(bench: Bench):
    before = bench.counters(bench.a)["to_cpu"]
    assert wait_ping(bench.h1, "10.81.1.1") == 64            # answered by the control plane
    assert ping(bench.h2, "10.81.2.1", count=2)[0] == 2
    bench.wait_counter(bench.a, "to_cpu", before + 3)


def test_no_route_is_dropped_and_counted(bench: Bench):
    wait_ping(bench.h1, "10.81.2.2")
    before = bench.counters(bench.a)["dropped_no_route"]
    assert ping(bench.h1, "10.99.0.1", count=4, wait=0.3)[0] == 0
    bench.wait_counter(bench.a, "dropped_no_route", before + 4)
    assert "4 no route" in bench.driver.live_status(bench.a) or \
        bench.counters(bench.a)["dropped_no_route"] >= before + 4


def test_ttl_one_is_dropped_and_counted(bench: Bench):
    wait_ping(bench.h1, "10.81.2.2")
    before = bench.counters(bench.a)["dropped_ttl"]
    out = in_ns(bench.h1, "ping", "-n", "-c", "2", "-i", "0.05", "-W", "0.3", "-t", "1",
                "10.81.2.2", check=False).stdout
    assert "ttl=" not in out
    bench.wait_counter(bench.a, "dropped_ttl", before + 2)


def test_route_change_is_in_force_when_the_sync_returns(bench: Bench):
    wait_ping(bench.h1, "10.81.2.2")
    bench.driver.set_routes(bench.a, ROUTES_A[:1])              # h2's subnet withdrawn
    assert ping(bench.h1, "10.81.2.2", wait=0.3)[0] == 0
    bench.driver.set_routes(bench.a, ROUTES_A)                  # and back: no waiting
    assert ping(bench.h1, "10.81.2.2", wait=3)[0] == 1


def test_route_table_full_refused_before_anything_changes(bench: Bench):
    too_many = ROUTES_A + tuple(Route(f"10.90.{i}.0/24", "10.81.2.2", "a:if1") for i in range(7))
    with pytest.raises(RouteTableFull, match="9 routes do not fit"):
        bench.driver.check_routes(bench.a, too_many)
    _sim, tables = bench.driver.card(bench.comp)
    gen = tables.pipeline().config_generation
    with pytest.raises(DriverError, match="do not fit"):
        bench.driver.set_routes(bench.a, too_many)
    assert tables.pipeline().config_generation == gen          # not one register written
    assert bench.driver.control_routes(bench.a) == ROUTES_A
    assert wait_ping(bench.h1, "10.81.2.2") == 63


def test_two_slots_on_vlans_of_one_port_stay_apart(bench: Bench, tmp_path):
    """Slices B and C use the same addresses on VLANs 100 and 200 of nf2/nf3; a VLAN switch
    (another private OVS, in a namespace of its own) gives each host its access port. B's
    traffic never reaches C."""
    names = bench.card.names
    vsw = f"{NS}vsw"
    sh("ip", "netns", "add", vsw)
    made: list[str] = [vsw]
    ovs = OVSInstance(tmp_path / "vsw", netns=vsw).start()
    try:
        client = ovs.client()
        specs = {}
        for sl, vlan in (("b", 100), ("c", 200)):
            spec = router(sl, (iface(sl, 0, "nf2", "10.82.1.1", vlan),
                               iface(sl, 1, "nf3", "10.82.2.1", vlan)),
                          (Route("10.82.1.0/24", None, f"{sl}:if0"),
                           Route("10.82.2.0/24", None, f"{sl}:if1")))
            bench.driver.provision(spec)
            assert bench.driver.perform(spec, Action.START.value) is OperationalState.READY
            specs[sl] = spec
        for side, port in ((1, 2), (2, 3)):
            br = f"{PFX}v{side}"
            client.vsctl("add-br", br, "--", "set", "bridge", br, "datapath_type=netdev")
            sh("ip", "link", "set", names.wire(port), "netns", vsw)
            in_ns(vsw, "ip", "link", "set", names.wire(port), "up")
            client.vsctl("add-port", br, names.wire(port), "--", "set", "port",
                         names.wire(port), "trunks=100,200")
            for sl, vlan in (("b", 100), ("c", 200)):
                outer, inner = f"{PFX}{sl}{side}o", f"{PFX}{sl}{side}i"
                sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
                sh("ip", "link", "set", outer, "netns", vsw)
                in_ns(vsw, "ip", "link", "set", outer, "up")
                in_ns(vsw, "ethtool", "-K", outer, "tx", "off", check=False)
                client.vsctl("add-port", br, outer, "--", "set", "port", outer, f"tag={vlan}")
                made.append(host(f"{sl}{side}", inner, f"10.82.{side}.2/24", f"10.82.{side}.1"))
        b1, b2, c1, c2 = (f"{NS}{n}" for n in ("b1", "b2", "c1", "c2"))
        assert wait_ping(b1, "10.82.2.2") == 63
        assert wait_ping(c1, "10.82.2.2") == 63
        c2_pings, b2_pings = count_pings(c2), count_pings(b2)
        b_fwd = bench.counters(specs["b"])["forwarded"]
        assert ping(b1, "10.82.2.2", count=20)[0] == 20
        bench.wait_counter(specs["b"], "forwarded", b_fwd + 40)
        assert count_pings(b2) == b2_pings + 20
        assert count_pings(c2) == c2_pings                      # not one of B's packets
        bench.driver.perform(specs["c"], Action.STOP.value)     # C's slot off: C cut, B not
        assert ping(c1, "10.82.2.2", wait=0.3)[0] == 0
        assert ping(b1, "10.82.2.2", wait=3)[0] == 1
        for spec in specs.values():
            bench.driver.delete(spec)
    finally:
        ovs.stop()
        for ns in made:
            sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(tmp_path / "vsw", ignore_errors=True)


def test_killed_card_fails_with_reason_and_a_restart_resumes_forwarding(bench: Bench):
    wait_ping(bench.h1, "10.81.2.2")
    pid = bench.card.pid()
    bench.card.kill()
    assert bench.driver.status(bench.a) is OperationalState.FAILED
    assert f"pipeline process (pid {pid}) is gone" in bench.driver.live_status(bench.a)
    [seen] = [o for o in bench.driver.observed() if o.sliver_urn == bench.a.sliver_urn]
    assert seen.state is OperationalState.FAILED and "is gone" in seen.detail
    assert ping(bench.h1, "10.81.2.2", wait=0.3)[0] == 0      # no card, no forwarding
    with pytest.raises(DriverError, match="is gone"):
        bench.driver.perform(bench.a, Action.RESTART.value)
    bench.card.start()                                          # rebuilt from the registers
    assert bench.driver.status(bench.a) is OperationalState.READY
    assert wait_ping(bench.h1, "10.81.2.2") == 63
    assert wait_ping(bench.h1, "10.81.1.1") == 64
