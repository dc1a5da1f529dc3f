"""An Open vSwitch switch for the default site: a private ovsdb-server + ovs-vswitchd under
`<site>/ovs` (userspace datapath; this host has no OVS kernel module), one bridge, and two
ports wired to two small host namespaces, so an OpenFlow slice on it forwards real packets
between real endpoints (as Mininet's h1 and h2 do)."""
from __future__ import annotations

import os
import shutil
import subprocess
import time

from am.site.base import ComponentInfo, Fragment, SiteContext, SiteHelper
from drivers import hostnet
from drivers.ovs import OVSError, OVSInstance, missing_tools

SWITCH_NAME = "ovs1"
DPID = "00:00:00:00:00:00:00:01"
HOSTS = 2                                   # ports 1..HOSTS, each wired to a host namespace
HOST_NET = "10.250.{n}.0/24"                 # host n (1..HOSTS): .1/24 on its eth0


class OVSSwitch(SiteHelper):
    name = "openflow switch"

    def _names(self, ctx: SiteContext) -> tuple[str, list[tuple[str, str, str]]]:
        """The bridge, and per port (switch-side veth, host-side veth, host namespace)."""
        p = ctx.prefix("s")
        return f"{p}br", [(f"{p}p{n}", f"{p}h{n}", f"{p}-h{n}") for n in range(1, HOSTS + 1)]

    def missing(self, ctx: SiteContext) -> list[str]:
        out = [f"{t} (apt-get install openvswitch-switch)" for t in missing_tools()]
        out += [f"{t} (iproute2/procps)" for t in hostnet.missing_tools()]
        if shutil.which("ethtool") is None:
            out.append("ethtool (apt-get install ethtool)")
        return out

    def start(self, ctx: SiteContext) -> Fragment:
        ovs = OVSInstance(ctx.dir("ovs"))
        bridge, ports = self._names(ctx)
        ctx.record.note("ifnames", bridge)          # the userspace bridge's tap device
        ovs.start()
        client = ovs.client()
        if bridge not in client.bridges():
            ovs.add_bridge(bridge, dpid=DPID)
        for num, (sw_end, host_end, netns) in enumerate(ports, start=1):
            ctx.record.note("netns", netns)
            ctx.record.note("ifnames", sw_end)
            hostnet.netns_add(netns)
            if hostnet.find_link(None, sw_end) is None:
                if hostnet.find_link(None, host_end) is not None:
                    hostnet.link_delete(None, host_end)
                if hostnet.find_link(netns, "eth0") is None:
                    hostnet.veth_add(sw_end, host_end)
                    hostnet.link_move(host_end, netns)
                    hostnet.link_set(netns, host_end, name="eth0")
            hostnet.link_set(None, sw_end, up=True)
            hostnet.addr_replace(netns, "eth0", HOST_NET.format(n=num).replace(".0/24", ".1/24"))
            hostnet.link_set(netns, "eth0", up=True)
            hostnet.link_set(netns, "lo", up=True)
            # TCP through the userspace datapath needs TX checksums computed in software
            for ns, dev in ((netns, "eth0"), (None, sw_end)):
                subprocess.run(([] if ns is None else ["ip", "netns", "exec", ns])
                               + ["ethtool", "-K", dev, "tx", "off"],
                               capture_output=True, check=False, timeout=10)
            client.vsctl("--may-exist", "add-port", bridge, sw_end, "--", "set", "interface",
                         sw_end, f"ofport_request={num}")
        _wait_for_datapath(client, bridge, [p[0] for p in ports])
        ports_table = [{"name": sw_end, "num": num} for num, (sw_end, _, _) in
                       enumerate(ports, start=1)]
        hosts = ", ".join(f"{sw}: {ns} {HOST_NET.format(n=n).replace('.0/24', '.1')}"
                          for n, (sw, _, ns) in enumerate(ports, start=1))
        return Fragment(
            drivers={"openflow": {"ovs_db": ovs.db, "name_prefix": ctx.prefix("o")}},
            components=[{"name": SWITCH_NAME, "driver": "openflow", "isolation": "flowspace",
                         "sliver_types": ["openflow-flowspace"],
                         "hardware_types": ["openflow-switch"],
                         "forwarding_modes": ["openflow"], "dpid": DPID,
                         "ports": ports_table, "vlan_range": [100, 199],
                         "extra": {"bridge": bridge}}],
            info=[ComponentInfo(SWITCH_NAME, "openflow", "real",
                                f"Open vSwitch userspace datapath, bridge {bridge}, dpid {DPID}, "
                                f"ports wired to host namespaces ({hosts}); db {ovs.db}")])

    def stop(self, ctx: SiteContext) -> None:
        rundir = ctx.root / "ovs"
        if rundir.is_dir():
            try:
                OVSInstance(rundir).stop()
            except OVSError:
                pass
        _, ports = self._names(ctx)
        for sw_end, _, netns in ports:
            if hostnet.find_link(None, sw_end) is not None:
                hostnet.link_delete(None, sw_end)
            ctx.record.forget("ifnames", sw_end)
            hostnet.netns_delete(netns)
            ctx.record.forget("netns", netns)

    def markers(self, ctx: SiteContext) -> list[str]:
        return [str(ctx.root / "ovs") + os.sep]


def _wait_for_datapath(client, bridge: str, ports: list[str], timeout_s: float = 60.0) -> None:
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


__all__ = ["OVSSwitch"]
