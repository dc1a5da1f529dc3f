"""Forwarding through N virtual routers on one host at once, the background article's Figure 7
measured here: shared by `geni-am calibrate forwarding` (which prints the `guest_router_limit`
setting) and bench/bench_forwarding.py (which adds more modes and draws the plot).

For each mode and each N, N routers are set up on this host, each between its own subnet in a
source namespace and its own subnet in a sink namespace; iperf3 pushes a UDP load through all
N at once (one client and one server per router); a `Point` is the aggregate rate delivered
and the loss at that N:

  guest  each router is a QEMU VM booted by the Xen driver (guest forwarding: the packets go
         through the VM's virtio NICs and its kernel), on a private libvirtd
  dom0   each router is a routing table of its own in a namespace standing in for Dom0, entered
         by policy rules from its interfaces (the driver's Dom0 plane, drivers/xen/dom0.py)

`knee(points, max_loss)` is the calibrated limit: the largest N up to which, at every measured
N, every router still delivered at least (100 - max_loss) % of its offered load.
Needs root (namespaces, bridges, libvirtd) and iperf3.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from drivers import hostnet
from drivers.base import (ForwardingMode, InterfaceSpec, OperationalState, ResourceKind,
                          SliverSpec)
from drivers.images import debs
from drivers.images.store import ImageStore
from drivers.routesync import FibEntry
from drivers.xen.dom0 import Dom0Plane, IpCommand
from drivers.xen.driver import XenDriver
from drivers.xen.images import ensure_image
from drivers.xen.libvirtd import PrivateLibvirtd

AUTH = "geni-am:fwbench"
PREFIX = "gfw"                   # every namespace and interface this bench makes
SRC, DST = f"{PREFIX}src", f"{PREFIX}dst"


def src_net(i: int) -> str:
    return f"10.150.{i}"


def dst_net(i: int) -> str:
    return f"10.151.{i}"


@dataclass(frozen=True)
class Path_:
    source: str          # address in SRC the client binds
    sink: str            # address in DST the server listens on


@dataclass
class Mode:
    name: str
    label: str
    setup: Callable[[int], list[Path_]]
    teardown: Callable[[], None]
    started: float = 0.0


@dataclass
class Point:
    mode: str
    n: int
    offered_mbit: float
    delivered_mbit: float
    loss_pct: float
    per_router: list[float] = field(default_factory=list)


# ---- the two sides ------------------------------------------------------------------------------

def ends_up() -> None:
    for ns in (SRC, DST):
        hostnet.netns_delete(ns)
        hostnet.netns_add(ns)


def ends_down() -> None:
    for ns in (SRC, DST):
        hostnet.netns_delete(ns)


def side(ns: str, dev: str, peer: str, cidr: str, route: str, via: str) -> None:
    """A veth from namespace `ns` (dev, address cidr, route to the far subnet) to the root
    namespace (peer)."""
    hostnet.link_delete(None, peer)
    hostnet.veth_add(dev, peer)
    hostnet.link_move(dev, ns)
    hostnet.addr_replace(ns, dev, cidr)
    hostnet.link_set(ns, dev, up=True)
    hostnet.link_set(None, peer, up=True)
    hostnet.route_replace(ns, route, gateway=via, dev=dev)


# ---- dom0 mode ------------------------------------------------------------------------------------

DOM0 = f"{PREFIX}dom0"


def dom0_setup(n: int) -> list[Path_]:
    ends_up()
    hostnet.netns_delete(DOM0)
    hostnet.netns_add(DOM0)
    hostnet.sysctl_set(DOM0, "net.ipv4.ip_forward", "1")
    ip = IpCommand(DOM0)
    paths = []
    for i in range(1, n + 1):
        a, b = f"{PREFIX}ra{i}", f"{PREFIX}rb{i}"
        side(SRC, f"s{i}", a, f"{src_net(i)}.2/24", f"{dst_net(i)}.0/24", f"{src_net(i)}.1")
        side(DST, f"d{i}", b, f"{dst_net(i)}.2/24", f"{src_net(i)}.0/24", f"{dst_net(i)}.1")
        for dev, cidr in ((a, f"{src_net(i)}.1/24"), (b, f"{dst_net(i)}.1/24")):
            hostnet.link_move(dev, DOM0)
            hostnet.addr_replace(DOM0, dev, cidr)
            hostnet.link_set(DOM0, dev, up=True)
        plane = Dom0Plane(ip, 1000 + i, (a, b))
        plane.bind()
        plane.install([FibEntry(f"{src_net(i)}.0/24", None, a),
                       FibEntry(f"{dst_net(i)}.0/24", None, b)])
        paths.append(Path_(f"{src_net(i)}.2", f"{dst_net(i)}.2"))
    return paths


def dom0_teardown() -> None:
    hostnet.netns_delete(DOM0)
    ends_down()


# ---- guest mode -----------------------------------------------------------------------------------

class GuestRouters:
    """Up to `most` router VMs, booted once through the Xen driver and reused for every N."""

    def __init__(self, most: int, memory_mb: int):
        self.most, self.memory_mb = most, memory_mb
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-"))
        self.daemon: PrivateLibvirtd | None = None
        self.driver: XenDriver | None = None
        self.specs: list[SliverSpec] = []
        self.boot_s = 0.0

    def _spec(self, i: int) -> SliverSpec:
        host = f"urn:publicid:IDN+{AUTH}+node+vmhost"
        ifaces = (InterfaceSpec(f"r{i}:a", "eth1", ((f"{src_net(i)}.1", "255.255.255.0"),),
                                link_client_id=f"a{i}"),
                  InterfaceSpec(f"r{i}:b", "eth2", ((f"{dst_net(i)}.1", "255.255.255.0"),),
                                link_client_id=f"b{i}"))
        return SliverSpec(sliver_urn=f"urn:publicid:IDN+{AUTH}+sliver+r{i}",
                          slice_urn=f"urn:publicid:IDN+{AUTH}+slice+fw", client_id=f"r{i}",
                          kind=ResourceKind.NODE, component_id=host, sliver_type="xen-vm",
                          router=True, forwarding=ForwardingMode.GUEST, interfaces=ifaces,
                          memory_mb=self.memory_mb)

    def boot(self) -> None:
        store = ImageStore(debs.cache_dir().parent / "vm-images")
        ensure_image(store)
        self.daemon = PrivateLibvirtd(self.tmp / "libvirt").start(timeout=60)
        self.driver = XenDriver({"uri": self.daemon.uri, "image_store": str(store.root),
                                 "domain_type": "qemu", "state_dir": str(self.tmp / "xen"),
                                 "ifname_prefix": PREFIX, "memory_mb": 65536, "vcpus": 64,
                                 "boot_timeout_s": 600},
                                [{"name": "vmhost"}], authority=AUTH)
        self.specs = [self._spec(i) for i in range(1, self.most + 1)]
        t0 = time.monotonic()
        for s in self.specs:
            self.driver.provision(s)
        with ThreadPoolExecutor(4) as pool:
            states = list(pool.map(self.driver.wait_ready, self.specs))
        assert all(st is OperationalState.READY for st in states), states
        self.boot_s = time.monotonic() - t0
        print(f"guest: {self.most} router VMs booted to GENI-READY in {self.boot_s:.1f} s",
              flush=True)

    def setup(self, n: int) -> list[Path_]:
        if self.driver is None:
            self.boot()
        assert self.driver is not None
        ends_up()
        paths = []
        for i in range(1, n + 1):
            spec = self.specs[i - 1]
            br_a = self.driver._iface_bridge(spec, spec.interfaces[0])
            br_b = self.driver._iface_bridge(spec, spec.interfaces[1])
            side(SRC, f"s{i}", f"{PREFIX}sa{i}", f"{src_net(i)}.2/24", f"{dst_net(i)}.0/24",
                 f"{src_net(i)}.1")
            side(DST, f"d{i}", f"{PREFIX}db{i}", f"{dst_net(i)}.2/24", f"{src_net(i)}.0/24",
                 f"{dst_net(i)}.1")
            hostnet.link_set(None, f"{PREFIX}sa{i}", master=br_a)
            hostnet.link_set(None, f"{PREFIX}db{i}", master=br_b)
            paths.append(Path_(f"{src_net(i)}.2", f"{dst_net(i)}.2"))
        return paths

    def teardown_ends(self) -> None:
        ends_down()

    def close(self) -> None:
        ends_down()
        if self.driver is not None:
            for s in self.specs:
                self.driver.delete(s)
            self.driver.close()
        if self.daemon is not None:
            self.daemon.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


# ---- the load ---------------------------------------------------------------------------------------

def _listening(ports: list[int]) -> bool:
    out = subprocess.run(["ip", "netns", "exec", DST, "ss", "-Hltn"], capture_output=True,
                         text=True).stdout
    return all(f":{p} " in out for p in ports)


def _one_run(paths: list[Path_], rate_mbit: float, seconds: float) -> list[dict | None]:
    iperf = shutil.which("iperf3")
    if iperf is None:
        raise SystemExit("iperf3 is not installed (apt-get install iperf3)")
    ports = [5201 + n for n in range(len(paths))]
    servers = [subprocess.Popen(["ip", "netns", "exec", DST, iperf, "-s", "-1", "-B", p.sink,
                                 "-p", str(port)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL) for p, port in zip(paths, ports)]
    deadline = time.monotonic() + 30
    while not _listening(ports) and time.monotonic() < deadline:
        time.sleep(0.1)
    clients = [subprocess.Popen(
        ["ip", "netns", "exec", SRC, iperf, "-c", p.sink, "-B", p.source, "-p", str(port),
         "-u", "-b", f"{rate_mbit}M", "-t", str(seconds), "-J", "--connect-timeout", "10000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for p, port in zip(paths, ports)]
    out: list[dict | None] = []
    for c in clients:
        text, _ = c.communicate(timeout=seconds + 90)
        try:
            doc = json.loads(text)
            out.append(None if doc.get("error") else doc["end"]["sum"])
        except (ValueError, KeyError):
            out.append(None)
    for s in servers:
        try:
            s.wait(timeout=10)
        except subprocess.TimeoutExpired:
            s.kill()
            s.wait()
    return out


def measure(mode: str, paths: list[Path_], rate_mbit: float, seconds: float) -> Point:
    """iperf3 UDP through every path at once; delivered = sent x (1 - loss). A run in which a
    client could not even reach its server (iperf3's control connection) is run again once;
    a second failure counts as nothing delivered."""
    warm = [subprocess.Popen(["ip", "netns", "exec", SRC, "ping", "-c", "2", "-W", "5", "-I",
                              p.source, p.sink], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL) for p in paths]
    for w in warm:                   # ARP resolved on every hop before the clock starts
        w.wait(timeout=30)
    sums = _one_run(paths, rate_mbit, seconds)
    if any(s is None for s in sums):
        print(f"{mode}: {sum(s is None for s in sums)} iperf3 client(s) failed; running again",
              flush=True)
        sums = _one_run(paths, rate_mbit, seconds)
    per_router, losses = [], []
    for end in sums:
        if end is None:
            per_router.append(0.0)
            losses.append(100.0)
            continue
        lost = float(end.get("lost_percent", 100.0))
        per_router.append(float(end["bits_per_second"]) * (1 - lost / 100) / 1e6)
        losses.append(lost)
    return Point(mode, len(paths), rate_mbit * len(paths), sum(per_router),
                 sum(losses) / len(losses), per_router)


# ---- the calibrated figure ----------------------------------------------------------------------

def knee(points: Iterable[Point], max_loss: float) -> int:
    """The largest N up to which, at every measured N (in order), every router delivered at
    least (100 - max_loss) % of its offered load; 0 when even the smallest N fell short. A
    point measured beyond the first one that fell short does not count (a lucky run past the
    knee is not a capacity)."""
    if not 0 <= max_loss < 100:
        raise ValueError(f"the loss threshold must be 0 <= loss < 100 %, not {max_loss:g}")
    best = 0
    for p in sorted(points, key=lambda p: p.n):
        if p.n <= 0:
            raise ValueError(f"a point at N = {p.n}: N counts routers (1 or more)")
        each = p.offered_mbit / p.n
        floor = each * (1 - max_loss / 100)
        if len(p.per_router) != p.n or any(r < floor for r in p.per_router):
            break
        best = p.n
    return best


def run_modes(wanted: dict[str, Mode], counts: Iterable[int], rate_mbit: float, seconds: float,
              report: Callable[[Point], None] = lambda p: None) -> dict[str, list[Point]]:
    """Measure each mode at each N (in increasing order), tearing down between points."""
    results: dict[str, list[Point]] = {}
    for name, mode in wanted.items():
        results[name] = []
        for n in sorted(set(counts)):
            paths = mode.setup(n)
            point = measure(name, paths, rate_mbit, seconds)
            mode.teardown()
            results[name].append(point)
            report(point)
    return results


def describe(point: Point) -> str:
    return (f"{point.mode:6} N={point.n:2}  offered {point.offered_mbit:7.1f} Mbit/s  delivered "
            f"{point.delivered_mbit:7.1f} Mbit/s  loss {point.loss_pct:5.1f} %  (per router min "
            f"{min(point.per_router, default=0.0):.1f})")


def write_json(results: dict[str, list[Point]], out: Path, **meta) -> None:
    out.write_text(json.dumps({**meta, "points": {k: [p.__dict__ for p in v]
                                                  for k, v in results.items()}}, indent=1))


def plot(results: dict[str, list[Point]], labels: dict[str, str], limit: int, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for mode, pts in results.items():
        ns = [p.n for p in pts]
        ax1.plot(ns, [p.delivered_mbit for p in pts], marker="o", label=labels[mode])
        ax2.plot(ns, [p.loss_pct for p in pts], marker="o", label=labels[mode])
    first = next(iter(results.values()))
    ax1.plot([p.n for p in first], [p.offered_mbit for p in first], "k:", label="offered load")
    ax1.set_xlabel("virtual routers forwarding at once (N)")
    ax1.set_ylabel("aggregate delivered (Mbit/s)")
    ax1.set_title("Aggregate forwarding rate")
    ax2.set_xlabel("virtual routers forwarding at once (N)")
    ax2.set_ylabel("loss (%)")
    ax2.set_title("Loss")
    if limit:
        ax2.axvline(limit, color="grey", linestyle="--")
        ax2.text(limit, ax2.get_ylim()[1] * 0.9, f" guest_router_limit = {limit}", color="grey")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    fig.suptitle("Virtual routers on one host: " + " vs ".join(results) +
                 " forwarding (UDP, iperf3)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)



__all__ = ["GuestRouters", "Mode", "Path_", "Point", "describe", "dom0_setup", "dom0_teardown",
           "ends_down", "ends_up", "knee", "measure", "plot", "run_modes", "side", "src_net",
           "dst_net", "write_json"]
