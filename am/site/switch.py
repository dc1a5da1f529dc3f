"""An Open vSwitch switch for the default site: a private ovsdb-server + ovs-vswitchd under
`<site>/ovs` (userspace datapath; this host has no OVS kernel module), vswitchd in a network
namespace of its own, one bridge, and two ports wired to two small host namespaces, so an OpenFlow slice on it forwards real packets
between real endpoints (as Mininet's h1 and h2 do)."""
from __future__ import annotations

import os
import shutil
import subprocess
import time

from am.site.base import ComponentInfo, Fragment, SiteContext, SiteHelper
from drivers import hostnet
from drivers.ovs import OVSClient, OVSError, OVSInstance, missing_tools

SWITCH_NAME = "ovs1"
BRIDGE = "br-gam"                           # in the switch's own namespace
DPID = "00:00:00:00:00:00:00:01"
HOSTS = 2                                   # ports 1..HOSTS, each wired to a host namespace
HOST_NET = "10.250.{n}.0/24"                 # host n (1..HOSTS): .1/24 on its eth0


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
            if hostnet.find_link(swns, port) is None:
                for stale in (sw_tmp, host_tmp):
                    hostnet.link_delete(None, stale)
                hostnet.link_delete(netns, "eth0")
                hostnet.veth_add(sw_tmp, host_tmp)
                hostnet.link_move(host_tmp, netns)
                hostnet.link_set(netns, host_tmp, name="eth0")
                hostnet.link_move(sw_tmp, swns)
                hostnet.link_set(swns, sw_tmp, name=port)
            ctx.record.forget("ifnames", sw_tmp)
            hostnet.link_set(swns, port, up=True)
            hostnet.addr_replace(netns, "eth0", HOST_NET.format(n=num).replace(".0/24", ".1/24"))
            hostnet.link_set(netns, "eth0", up=True)
            # TCP through the userspace datapath needs TX checksums computed in software
            for ns, dev in ((netns, "eth0"), (swns, port)):
                subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off"],
                               capture_output=True, check=False, timeout=10)
            client.vsctl("--may-exist", "add-port", BRIDGE, port, "--", "set", "interface",
                         port, f"ofport_request={num}")
        wait_for_datapath(client, BRIDGE, [p[0] for p in ports])
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
            info=[ComponentInfo(SWITCH_NAME, "openflow", "real",
                                f"Open vSwitch userspace datapath in namespace {swns}, bridge "
                                f"{BRIDGE}, dpid {DPID}, ports wired to host namespaces "
                                f"({hosts}); db {ovs.db}")])

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

    def markers(self, ctx: SiteContext) -> list[str]:
        return [str(ctx.root / "ovs") + os.sep]


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
