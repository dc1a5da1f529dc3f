"""Throughput of a cross-host link (VXLAN tunnel) against a plain veth, with iperf3.

Two simulated hosts (network namespaces) joined by a veth at MTU 1500 (the site network), each
with one "container" namespace. The tunnel path is built as the container driver builds a
cross-host link's halves (docs/hosts.md): on each host a bridge holding the container's veth
end and a VXLAN device (one VNI, local/remote = the hosts' addresses, UDP 4789), the link's
interfaces at MTU 1450. The plain path is one veth between the two containers (MTU 1500), as
a link within one host. Unshaped (no tbf), so the figures are what the kernel path costs.
Root; it makes and removes its own namespaces (`bt<random>...`).

    .venv/bin/python bench/bench_tunnel.py [--seconds 5]
"""
from __future__ import annotations

import argparse
import json
import random
import string
import subprocess
import time


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def ipn(ns: str, *argv: str) -> None:
    sh("ip", "-n", ns, *argv)


def iperf(server_ns: str, client_ns: str, address: str, seconds: float) -> float:
    """Gbit/s received, one TCP stream, `seconds` long."""
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                out = sh("ip", "netns", "exec", client_ns, "iperf3", "-J", "-c", address,
                         "-t", str(seconds))
                break
            except subprocess.CalledProcessError:    # the server is not listening yet
                time.sleep(0.1)
        else:
            raise RuntimeError("iperf3 server never answered")
        return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9
    finally:
        server.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    tag = "bt" + "".join(random.choices(string.ascii_lowercase, k=4))
    ha, hb, ca, cb, pa, pb = (f"{tag}{x}" for x in ("ha", "hb", "ca", "cb", "pa", "pb"))
    spaces = [ha, hb, ca, cb, pa, pb]
    try:
        for ns in spaces:
            sh("ip", "netns", "add", ns)
            ipn(ns, "link", "set", "lo", "up")
        # the site network between the hosts
        sh("ip", "link", "add", "phy0", "netns", ha, "type", "veth", "peer", "name", "phy0",
           "netns", hb)
        for ns, addr in ((ha, "192.0.2.1/24"), (hb, "192.0.2.2/24")):
            ipn(ns, "addr", "add", addr, "dev", "phy0")
            ipn(ns, "link", "set", "phy0", "up")
        # tunnel: container end -> bridge -> vxlan, on each host
        for host, cont, local, remote, ip in ((ha, ca, "192.0.2.1", "192.0.2.2", "10.9.0.1/24"),
                                              (hb, cb, "192.0.2.2", "192.0.2.1", "10.9.0.2/24")):
            ipn(host, "link", "add", "br0", "type", "bridge")
            ipn(host, "link", "add", "vx0", "type", "vxlan", "id", "42", "local", local,
                "remote", remote, "dstport", "4789")
            ipn(host, "link", "add", "port0", "type", "veth", "peer", "name", "eth0",
                "netns", cont)
            for dev in ("vx0", "port0"):
                ipn(host, "link", "set", dev, "mtu", "1450", "master", "br0", "up")
            ipn(host, "link", "set", "br0", "up")
            ipn(cont, "link", "set", "eth0", "mtu", "1450", "up")
            ipn(cont, "addr", "add", ip, "dev", "eth0")
        # plain: one veth between two containers
        sh("ip", "link", "add", "eth0", "netns", pa, "type", "veth", "peer", "name", "eth0",
           "netns", pb)
        for ns, ip in ((pa, "10.9.1.1/24"), (pb, "10.9.1.2/24")):
            ipn(ns, "addr", "add", ip, "dev", "eth0")
            ipn(ns, "link", "set", "eth0", "up")
        sh("ip", "netns", "exec", ca, "ping", "-c", "1", "-W", "5", "10.9.0.2")
        veth = iperf(pb, pa, "10.9.1.2", args.seconds)
        tunnel = iperf(cb, ca, "10.9.0.2", args.seconds)
        load = open("/proc/loadavg").read().split()[0]
        print(f"plain veth:   {veth:.2f} Gbit/s")
        print(f"VXLAN tunnel: {tunnel:.2f} Gbit/s (MTU 1450, over a 1500 veth)")
        print(f"ratio tunnel/veth: {tunnel / veth:.2f}  (one TCP stream, {args.seconds:g} s each, "
              f"load average {load})")
    finally:
        for ns in spaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


if __name__ == "__main__":
    main()
