"""RSpec library figures: request parse+validate, advertisement build and compression, memory.

Run: .venv/bin/python bench/bench_rspec.py
Targets (issue): request 1,000 nodes / 2,000 links <= 300 ms; advertisement 10,000 nodes
<= 500 ms; memory growing linearly with the document.
"""
from __future__ import annotations

import gc
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field

from rspec.advertisement import build_advertisement, default_opstate
from rspec.compress import compress, decompress
from rspec.model import ForwardingMode, IsolationClass
from rspec.request import parse_request

AM = "urn:publicid:IDN+bench.example.net+authority+am"


def make_request(nodes: int, links: int) -> str:
    """A request with `nodes` nodes in a ring-ish mesh of `links` point-to-point links."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<rspec type="request" '
           'xmlns="http://www.geni.net/resources/rspec/3" '
           'xmlns:geniam="http://geni-am.org/resources/rspec/ext/geniam/1">\n']
    per_node = max(1, (2 * links + nodes - 1) // nodes)
    for n in range(nodes):
        out.append(f'  <node client_id="n{n}" component_manager_id="{AM}" exclusive="false">\n'
                   '    <sliver_type name="xen-vm"><disk_image name="urn:publicid:IDN+'
                   'bench.example.net+image+deb12"/></sliver_type>\n')
        for i in range(per_node):
            out.append(f'    <interface client_id="n{n}:if{i}"><ip address="10.{n // 256}.'
                       f'{n % 256}.{i + 1}" netmask="255.255.255.0" type="ipv4"/></interface>\n')
        out.append('    <geniam:node isolation="hypervisor" cpu="0.5" memory_mb="512"/>\n'
                   '  </node>\n')
    used = [0] * nodes
    for k in range(links):
        a = k % nodes
        b = (a + 1 + k // nodes) % nodes
        ia, ib = used[a], used[b]
        used[a] += 1
        used[b] += 1
        out.append(f'  <link client_id="l{k}">\n'
                   f'    <interface_ref client_id="n{a}:if{ia}"/>\n'
                   f'    <interface_ref client_id="n{b}:if{ib}"/>\n'
                   f'    <property source_id="n{a}:if{ia}" dest_id="n{b}:if{ib}" '
                   'capacity="100000" latency="1" packet_loss="0"/>\n'
                   f'    <property source_id="n{b}:if{ib}" dest_id="n{a}:if{ia}" '
                   'capacity="100000" latency="1" packet_loss="0"/>\n'
                   '    <link_type name="lan"/>\n  </link>\n')
    out.append("</rspec>\n")
    return "".join(out)


@dataclass(frozen=True)
class _Image:
    name: str
    os: str = "Linux"
    version: str = "12"
    description: str = "Debian 12"
    default: bool = True


@dataclass(frozen=True)
class _SliverType:
    name: str
    disk_images: tuple = ()


@dataclass(frozen=True)
class _Port:
    component_id: str
    name: str
    num: int | None = None
    capacity_kbps: int | None = 1_000_000


@dataclass(frozen=True)
class _Component:
    component_id: str
    name: str
    driver: str
    isolation: IsolationClass
    sliver_types: tuple = ()
    hardware_types: tuple = ("pc",)
    forwarding_modes: tuple = ()
    capacity: dict = field(default_factory=dict)
    ports: tuple = ()
    exclusive_ok: bool = False
    dpid: str | None = None
    location: tuple | None = ("KR", 36.35, 127.38)
    extra: dict = field(default_factory=dict)


def make_components(count: int) -> list[_Component]:
    image = _Image("urn:publicid:IDN+bench.example.net+image+deb12")
    comps = []
    for i in range(count):
        kind = i % 4
        cid = f"urn:publicid:IDN+bench.example.net+node+h{i}"
        ports = tuple(_Port(f"{cid}:eth{p}", f"eth{p}", p + 1) for p in range(2))
        if kind == 3:
            dpid = ":".join(f"{(i >> s) & 0xff:02x}" for s in range(56, -1, -8))
            comps.append(_Component(f"urn:publicid:IDN+bench.example.net+datapath+{dpid}",
                                    f"sw{i}", "openflow", IsolationClass.FLOWSPACE,
                                    ports=ports, dpid=dpid, location=None))
        else:
            comps.append(_Component(
                cid, f"h{i}", ("xen", "vserver", "netfpga")[kind],
                (IsolationClass.HYPERVISOR, IsolationClass.CONTAINER, IsolationClass.HARDWARE)[kind],
                sliver_types=(_SliverType(("xen-vm", "vserver-container", "netfpga-vdp")[kind],
                                          (image,)),),
                forwarding_modes=((ForwardingMode.GUEST, ForwardingMode.DOM0),
                                  (ForwardingMode.GUEST,), (ForwardingMode.HARDWARE,))[kind],
                capacity={"cpu": 8, "memory_mb": 16384, "slots": 10}, ports=ports))
    return comps


def timed(fn, repeat: int = 5) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, result


def peak_kib(fn) -> float:
    gc.collect()
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 1024


# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork/exec.
_RSS_PROBE = """
import sys
from rspec.request import parse_request
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
doc = open(sys.argv[1], "rb").read()
before = hwm()
parse_request(doc, am_urns=[sys.argv[2]])
print(len(doc), hwm() - before)
"""


def rss_growth_kib(nodes: int) -> tuple[int, int]:
    """Peak RSS growth of one parse in a fresh interpreter (counts libxml2's C heap too)."""
    with tempfile.NamedTemporaryFile("w", suffix=".xml", encoding="utf-8") as fh:
        fh.write(make_request(nodes, 2 * nodes))
        fh.flush()
        out = subprocess.run([sys.executable, "-c", _RSS_PROBE, fh.name, AM],
                             capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), int(out[1])


def main() -> None:
    doc = make_request(1000, 2000)
    ms, req = timed(lambda: parse_request(doc, am_urns=[AM], known_sliver_types={"xen-vm"}))
    print(f"request 1,000 nodes / 2,000 links: {len(doc) / 1024:.0f} KiB, parse+validate "
          f"{ms:.0f} ms (target <= 300 ms); {len(req.nodes)} nodes, {len(req.links)} links")

    comps = make_components(10_000)
    free = {c.component_id: {"cpu": 4, "memory_mb": 8192, "slots": 3} for c in comps}
    opstate = default_opstate(["xen-vm", "vserver-container", "netfpga-vdp"])
    ms, ad = timed(lambda: build_advertisement(comps, am_urn=AM, opstate=opstate, free=free))
    cms, packed = timed(lambda: compress(ad))
    dms, _ = timed(lambda: decompress(packed, max_bytes=64 * 1024 * 1024))
    print(f"advertisement 10,000 components: build {ms:.0f} ms (target <= 500 ms), "
          f"{len(ad) / 1024 / 1024:.2f} MiB")
    print(f"  geni_compressed: {cms:.0f} ms, {len(packed) / 1024:.0f} KiB "
          f"({len(packed) / len(ad):.1%} of the text); decompress {dms:.0f} ms")
    print(f"  build + compress: {ms + cms:.0f} ms")

    print("peak memory (tracemalloc), to show linear growth:")
    for n in (250, 500, 1000):
        d = make_request(n, 2 * n)
        kib = peak_kib(lambda: parse_request(d, am_urns=[AM]))
        print(f"  request {n:>5} nodes: document {len(d) / 1024:7.0f} KiB, "
              f"parse peak {kib:8.0f} KiB, {kib * 1024 / len(d):.2f} bytes per document byte")
    for n in (500, 1000, 2000):
        size, kib = rss_growth_kib(n)
        print(f"  request {n:>5} nodes: document {size / 1024:7.0f} KiB, peak RSS growth "
              f"{kib:8.0f} KiB, {kib * 1024 / size:.1f} bytes per document byte "
              "(fresh process, libxml2 included)")
    for n in (2500, 5000, 10_000):
        c = make_components(n)
        kib = peak_kib(lambda: build_advertisement(c, am_urn=AM, opstate=opstate))
        print(f"  advertisement {n:>6} components: build peak {kib:8.0f} KiB, "
              f"{kib / n:.2f} KiB per component")


if __name__ == "__main__":
    main()
