"""An Open vSwitch switch for the default site: a private ovsdb-server + ovs-vswitchd under
`<site>/ovs` (userspace datapath; this host has no OVS kernel module), vswitchd in a network
namespace of its own, one bridge, and two ports wired to two small host namespaces, so an OpenFlow slice on it forwards real packets
between real endpoints (as Mininet's h1 and h2 do).

The same vswitchd carries the site's edge port for stitching (docs/stitching.md): a second
bridge, `br-edge`, not the openflow driver's, with port `edge1` wired to a namespace that
stands for the example peer aggregate (`urn:publicid:IDN+peer.example.net+authority+am`; no
aggregate runs there). A stitched link from container host vs1 leaves `edge1` tagged; the
frames can be watched arriving in that namespace."""
from __future__ import annotations

import os
import shutil
import subprocess
import time

from am.site.base import ComponentInfo, Fragment, SiteContext, SiteHelper
from am.site.containers import NODE_NAME
from drivers import hostnet
from drivers.ovs import OVSClient, OVSError, OVSInstance, missing_tools

SWITCH_NAME = "ovs1"
BRIDGE = "br-gam"                           # in the switch's own namespace
DPID = "00:00:00:00:00:00:00:01"
HOSTS = 2                                   # ports 1..HOSTS, each wired to a host namespace
HOST_NET = "10.250.{n}.0/24"                 # host n (1..HOSTS): .1/24 on its eth0
EDGE_BRIDGE, EDGE_PORT = "br-edge", "edge1"   # the stitching edge port (not the switch's)
PEER_AM = "urn:publicid:IDN+peer.example.net+authority+am"      # an example, not a real AM
PEER_PORT = "urn:publicid:IDN+peer.example.net+interface+sw1:edge1"
EDGE_VLANS = [2000, 2009]


def switch_netns(ctx: SiteContext) -> str:
    """The namespace the switch's ovs-vswitchd (and so every port of its bridge) lives in."""
    return f"{ctx.prefix('s')}-sw"


def switch_client(ctx: SiteContext) -> OVSClient:
    """An ovs-vsctl client of the site's switch."""
    return OVSInstance(ctx.root / "ovs", netns=switch_netns(ctx)).client()


def ovs_missing() -> list[str]:
    """What a site part built on a private Open vSwitch needs and this host lacks."""
    out = [f"{t} (apt-get install openvswitch-switch)" for t in missing_tools()]
    out += [f"{t} (iproute2/procps)" for t in hostnet.missing_tools()]
    if shutil.which("ethtool") is None:
        out.append("ethtool (apt-get install ethtool)")
    return out


class OVSSwitch(SiteHelper):
    name = "openflow switch"
    letters = "so"

    def _names(self, ctx: SiteContext) -> tuple[str, list[tuple[str, str, str, str]]]:
        """The switch's namespace, and per port (its name on the bridge, the two veth ends'
        names while they are in the root namespace, the host namespace it is wired to)."""
        p = ctx.prefix("s")
        return switch_netns(ctx), [(f"port{n}", f"{p}p{n}", f"{p}h{n}", f"{p}-h{n}")
                                   for n in range(1, HOSTS + 1)]

    def missing(self, ctx: SiteContext) -> list[str]:
        return ovs_missing()

    def start(self, ctx: SiteContext) -> Fragment:
        # vswitchd runs in a namespace of its own: the userspace datapath makes a tap device
        # named "ovs-netdev" (and one per bridge), which two OVS instances in one namespace
        # (another AM's, a test's, the system's) would fight over
        swns, ports = self._names(ctx)
        ctx.record.note("netns", swns)
        hostnet.netns_add(swns)
        ovs = OVSInstance(ctx.dir("ovs"), netns=swns)
        ovs.start()
        client = ovs.client()
        if BRIDGE not in client.bridges():
            ovs.add_bridge(BRIDGE, dpid=DPID)
        for num, (port, sw_tmp, host_tmp, netns) in enumerate(ports, start=1):
            ctx.record.note("netns", netns)
            ctx.record.note("ifnames", sw_tmp)
            hostnet.netns_add(netns)
            _plug(swns, port, sw_tmp, host_tmp, netns)
            ctx.record.forget("ifnames", sw_tmp)
            hostnet.addr_replace(netns, "eth0", HOST_NET.format(n=num).replace(".0/24", ".1/24"))
            client.vsctl("--may-exist", "add-port", BRIDGE, port, "--", "set", "interface",
                         port, f"ofport_request={num}")
        edge = self._edge(ctx, swns, ovs, client)
        wait_for_datapath(client, BRIDGE, [p[0] for p in ports])
        wait_for_datapath(client, EDGE_BRIDGE, [EDGE_PORT])
        ports_table = [{"name": port, "num": num} for num, (port, *_) in enumerate(ports, 1)]
        hosts = ", ".join(f"{port}: {ns} {HOST_NET.format(n=n).replace('.0/24', '.1')}"
                          for n, (port, _, _, ns) in enumerate(ports, start=1))
        return Fragment(
            drivers={"openflow": {"ovs_db": ovs.db, "name_prefix": ctx.prefix("o"),
                                  "ovs_netns": swns}},
            components=[{"name": SWITCH_NAME, "driver": "openflow", "isolation": "flowspace",
                         "sliver_types": ["openflow-flowspace"],
                         "hardware_types": ["openflow-switch"],
                         "forwarding_modes": ["openflow"], "dpid": DPID,
                         "ports": ports_table, "vlan_range": [100, 199],
                         "extra": {"bridge": BRIDGE}}],
            edges=[edge],
            info=[ComponentInfo(SWITCH_NAME, "openflow", "real",
                                f"Open vSwitch userspace datapath in namespace {swns}, bridge "
                                f"{BRIDGE}, dpid {DPID}, ports wired to host namespaces "
                                f"({hosts}); db {ovs.db}; stitching edge port "
                                f"{NODE_NAME}:{EDGE_PORT} on bridge {EDGE_BRIDGE}, VLANs "
                                f"{EDGE_VLANS[0]}-{EDGE_VLANS[1]}, to example peer "
                                f"{PEER_AM} (its end in namespace {self._peer(ctx)})")])

    def _peer(self, ctx: SiteContext) -> str:
        return f"{ctx.prefix('s')}-peer"

    def _edge(self, ctx: SiteContext, swns: str, ovs: OVSInstance, client: OVSClient) -> dict:
        """The edge port: `edge1` on bridge br-edge, a veth whose far end is eth0 of the peer
        namespace; its `[[edges]]` table (on container host vs1, the vserver driver plugs
        stitched links into br-edge)."""
        peer, p = self._peer(ctx), ctx.prefix("s")
        ctx.record.note("netns", peer)
        hostnet.netns_add(peer)
        if EDGE_BRIDGE not in client.bridges():
            ovs.add_bridge(EDGE_BRIDGE)
        ctx.record.note("ifnames", f"{p}e1")
        _plug(swns, EDGE_PORT, f"{p}e1", f"{p}e2", peer)
        ctx.record.forget("ifnames", f"{p}e1")
        client.vsctl("--may-exist", "add-port", EDGE_BRIDGE, EDGE_PORT)
        return {"name": EDGE_PORT, "component": NODE_NAME, "port": EDGE_PORT,
                "remote_aggregate": PEER_AM, "remote_port": PEER_PORT,
                "vlan_range": EDGE_VLANS, "capacity_kbps": 100_000, "ovs_db": ovs.db,
                "bridge": EDGE_BRIDGE, "netns": swns}

    def stop(self, ctx: SiteContext) -> None:
        swns, ports = self._names(ctx)
        rundir = ctx.root / "ovs"
        if rundir.is_dir():
            try:
                OVSInstance(rundir, netns=swns).stop()
            except OVSError:
                pass
        for _, sw_tmp, _, netns in ports:
            hostnet.link_delete(None, sw_tmp)
            ctx.record.forget("ifnames", sw_tmp)
            hostnet.netns_delete(netns)
            ctx.record.forget("netns", netns)
        hostnet.netns_delete(swns)
        ctx.record.forget("netns", swns)
        hostnet.netns_delete(self._peer(ctx))
        ctx.record.forget("netns", self._peer(ctx))

    def markers(self, ctx: SiteContext) -> list[str]:
        return [str(ctx.root / "ovs") + os.sep]


def _plug(swns: str, port: str, sw_tmp: str, far_tmp: str, far_ns: str) -> None:
    """A veth from the switch's namespace (named `port` there) to `eth0` of namespace
    `far_ns`, made unless it is there (temporary names `sw_tmp`, `far_tmp` in the root
    namespace meanwhile); both ends up."""
    if hostnet.find_link(swns, port) is None:
        for stale in (sw_tmp, far_tmp):
            hostnet.link_delete(None, stale)
        hostnet.link_delete(far_ns, "eth0")
        hostnet.veth_add(sw_tmp, far_tmp)
        hostnet.link_move(far_tmp, far_ns)
        hostnet.link_set(far_ns, far_tmp, name="eth0")
        hostnet.link_move(sw_tmp, swns)
        hostnet.link_set(swns, sw_tmp, name=port)
    for ns, dev in ((swns, port), (far_ns, "eth0")):
        hostnet.link_set(ns, dev, up=True)
        # TCP through the userspace datapath needs TX checksums computed in software
        subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off"],
                       capture_output=True, check=False, timeout=10)


def wait_for_datapath(client: OVSClient, bridge: str, ports: list[str],
                      timeout_s: float = 60.0) -> None:
    """ovs-vswitchd applies the database asynchronously: wait until the bridge has its
    datapath id and every port its OpenFlow number, so the driver reads a finished switch."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.dpid(bridge)
            if set(ports) <= set(client.ofports(bridge)):
                return
        except OVSError:
            pass
        if time.monotonic() > deadline:
            raise OVSError(f"bridge {bridge} did not come up within {timeout_s:g} s")
        time.sleep(0.05)


__all__ = ["BRIDGE", "SWITCH_NAME", "OVSSwitch", "ovs_missing", "switch_client",
           "switch_netns", "wait_for_datapath"]
