"""A hybrid virtual router's forwarding plane as OpenFlow flows on an AM-owned datapath.

The router (control plane in a Xen VM or a container) owns some ports of the physical bridge
outright (`port:<name>` claims; no flowspace may include them). Its flows carry a cookie of
its own (`Naming.fib_cookie`), so `read()` and `clear()` see exactly this router's flows:

  table 0, priority 210  in_port=<p>,arp,arp_op=1,arp_tpa=<router address on p>
                         -> answer the ARP request with the router port's MAC (in_port)
  table 0, priority 200  in_port=<p>,dl_dst=<router MAC on p>,ip
                         -> write_metadata:<router tag>, goto_table:40
  table 40, priority 1000+<prefix length>   metadata=<router tag>,ip,nw_dst=<prefix>
                         -> dec_ttl, load <next hop IPv4> into reg0, dl_src=<out port MAC>,
                            dl_dst=<next hop MAC>, output:<out port>

Priority grows with the prefix length, so the switch's highest-priority match is the longest
prefix match. reg0 carries the next hop's address purely so `read()` can give back the route's
gateway exactly (the MAC alone would be ambiguous behind a proxy ARP).

Next-hop MACs come from a static neighbour table the operator writes in the datapath's
inventory (`extra.neighbours`, IPv4 -> MAC): the AM has no presence on the data path to ARP
from, and the machines wired to a switch port are the operator's knowledge. A route whose next
hop (its gateway; for a gatewayless /32 host route, the destination) is not in the table is
refused (`RouteError`) before anything is installed.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from drivers.openflow.naming import cookie_match
from drivers.ovs import FlowEntry, OVSClient
from drivers.routesync import FibEntry, RouteError

FIB_TABLE = 40
ROUTE_PRIORITY = 1000          # + prefix length: longest prefix wins
INGRESS_PRIORITY = 200         # above slice steering (100), below nothing of the AM's
ARP_PRIORITY = 210
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_NW_DST_RE = re.compile(r"(?:^|,)nw_dst=([0-9.]+(?:/[0-9.]+)?)")
_OUTPUT_RE = re.compile(r"(?:^|,)output:(\d+)")
_REG0_RE = re.compile(r"(?:load:|set_field:)(0x[0-9a-f]+)->(?:NXM_NX_REG0\[\]|reg0)")


@dataclass(frozen=True)
class RouterPort:
    """A datapath port the router owns: its name, OpenFlow number, MAC and addresses."""

    name: str
    ofport: int
    mac: str
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class FibLayout:
    """Everything needed to turn FIB entries into flows and back; pure."""

    cookie: int
    metadata: int
    ports: tuple[RouterPort, ...]
    neighbours: Mapping[str, str] = field(default_factory=dict)   # IPv4 -> MAC

    def port(self, name: str | None) -> RouterPort:
        for p in self.ports:
            if p.name == name:
                return p
        raise RouteError(f"the forwarding plane has no port {name!r} (it has "
                         f"{', '.join(p.name for p in self.ports) or 'none'})")

    def next_hop(self, entry: FibEntry) -> tuple[str, str]:
        """(next hop IPv4, its MAC) of an entry; RouteError when the MAC is unknown."""
        if entry.gateway is not None:
            hop = entry.gateway
        elif entry.network.prefixlen == 32:
            hop = str(entry.network.network_address)
        else:
            raise RouteError(f"route to {entry.prefix} has no gateway: an OpenFlow forwarding "
                             "plane forwards to a next hop (give a gateway, or a /32 host route)")
        mac = self.neighbours.get(hop)
        if mac is None:
            raise RouteError(f"route to {entry.prefix}: next hop {hop} is not in the datapath's "
                             "neighbour table (inventory extra.neighbours)")
        return hop, mac

    def check(self, entries: Iterable[FibEntry]) -> None:
        for e in entries:
            self.port(e.device)
            self.next_hop(e)

    def _head(self, entry: FibEntry) -> str:
        net = entry.network
        return (f"cookie=0x{self.cookie:016x},table={FIB_TABLE},"
                f"priority={ROUTE_PRIORITY + net.prefixlen},metadata=0x{self.metadata:x},"
                f"ip,nw_dst={net.with_prefixlen}")

    def route_flow(self, entry: FibEntry) -> str:
        out = self.port(entry.device)
        hop, mac = self.next_hop(entry)
        gw = int(ipaddress.IPv4Address(entry.gateway)) if entry.gateway else 0
        return (f"{self._head(entry)},actions=dec_ttl,load:0x{gw:x}->NXM_NX_REG0[],"
                f"mod_dl_src:{out.mac},mod_dl_dst:{mac},output:{out.ofport}")

    def delete_line(self, entry: FibEntry) -> str:
        """A strict delete (a loose one would also take every longer prefix under it)."""
        head = self._head(entry).replace(f"cookie=0x{self.cookie:016x}",
                                         f"cookie=0x{self.cookie:016x}/-1")
        return f"delete_strict {head}"

    def ingress_flows(self) -> list[str]:
        c = f"cookie=0x{self.cookie:016x}"
        out = []
        for p in self.ports:
            out.append(f"{c},priority={INGRESS_PRIORITY},in_port={p.ofport},dl_dst={p.mac},ip,"
                       f"actions=write_metadata:0x{self.metadata:x},goto_table:{FIB_TABLE}")
            mac_hex = p.mac.replace(":", "")
            for addr in p.addresses:
                ip_hex = f"{int(ipaddress.IPv4Address(addr)):x}"
                out.append(
                    f"{c},priority={ARP_PRIORITY},in_port={p.ofport},arp,arp_op=1,"
                    f"arp_tpa={addr},actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],"
                    f"mod_dl_src:{p.mac},load:0x2->NXM_OF_ARP_OP[],"
                    "move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],"
                    "move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],"
                    f"load:0x{mac_hex}->NXM_NX_ARP_SHA[],load:0x{ip_hex}->NXM_OF_ARP_SPA[],"
                    "in_port")
        return out

    def parse(self, flow: FlowEntry) -> FibEntry | None:
        """The FIB entry a route flow of this router stands for (None for other flows)."""
        if flow.cookie != self.cookie or flow.table != FIB_TABLE:
            return None
        m, o = _NW_DST_RE.search(flow.match), _OUTPUT_RE.search(flow.actions)
        if not m or not o:
            return None
        by_num = {p.ofport: p.name for p in self.ports}
        r = _REG0_RE.search(flow.actions)
        gw = int(r.group(1), 16) if r else 0
        return FibEntry(prefix=str(ipaddress.IPv4Network(m.group(1), strict=False)),
                        gateway=str(ipaddress.IPv4Address(gw)) if gw else None,
                        device=by_num.get(int(o.group(1)), f"ofport{o.group(1)}"))


class OpenFlowPlane:
    """`ForwardingPlane` of one router on one physical bridge (see the module docstring)."""

    def __init__(self, ovs: OVSClient, bridge: str, layout: FibLayout):
        self.ovs = ovs
        self.bridge = bridge
        self.layout = layout

    def bind(self) -> None:
        """(Re)install the ingress and ARP flows; route flows are left as they are."""
        c = f"cookie=0x{self.layout.cookie:016x}/-1"
        lines = [f"delete {c},table=0"] + [f"add {f}" for f in self.layout.ingress_flows()]
        self.ovs.add_flows(self.bridge, lines)

    def install(self, entries: list[FibEntry]) -> None:
        self.layout.check(entries)
        self.ovs.add_flows(self.bridge, [f"add {self.layout.route_flow(e)}" for e in entries])

    def remove(self, entries: list[FibEntry]) -> None:
        self.ovs.add_flows(self.bridge, [self.layout.delete_line(e) for e in entries])

    def read(self) -> set[FibEntry]:
        flows = self.ovs.dump_flows(self.bridge, cookie_match(self.layout.cookie))
        return {e for e in (self.layout.parse(f) for f in flows) if e is not None}

    def clear(self) -> None:
        """Every flow of this router, ingress and routes."""
        self.ovs.del_flows(self.bridge, cookie_match(self.layout.cookie))


def check_mac(mac: str) -> str:
    low = mac.strip().lower()
    if not MAC_RE.match(low) or int(low[:2], 16) & 1:
        raise ValueError(f"{mac!r} is not a unicast MAC address")
    return low


__all__ = ["ARP_PRIORITY", "FIB_TABLE", "FibLayout", "INGRESS_PRIORITY", "OpenFlowPlane",
           "ROUTE_PRIORITY", "RouterPort", "check_mac"]
