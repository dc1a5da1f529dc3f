"""The host side of VM networking: link bridges, guest taps, shaping and Dom0 router ports.

A link between VM interfaces on one host is a Linux bridge (`<prefix>b<10 hex>`, named from
the slice and the link's client_id, so the nodes and the link sliver find it independently);
libvirt makes each guest NIC a tap on that bridge when the domain starts. A link's capacity is
a tbf on each member tap's egress (toward its guest) through `drivers.hostnet`, the same
shaping as container links; the link sliver records the capacity so a node that boots later
shapes its own tap.

A dom0-mode router has no NIC inside its VM on its data links: each of its interfaces is a
veth pair whose L3 end (`vr<8 hex>.<n>`, with the interface's MAC and address) lives in Dom0
(or the namespace standing in for it) and whose other end (`...p`) is a port of the link
bridge. Dom0 routes between them with the router's own table (`drivers.xen.dom0`).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from drivers import hostnet
from drivers.xen.records import JsonRecords


def link_bridge(prefix: str, slice_urn: str, link_client_id: str) -> str:
    digest = hashlib.sha256(f"{slice_urn}\0{link_client_id}".encode()).hexdigest()
    return f"{prefix}b{digest[:10]}"


def tap_name(prefix: str, handle_hex: str, index: int | str) -> str:
    return f"{prefix}{handle_hex[:8]}.{index}"


@dataclass(frozen=True)
class LinkRecord:
    """What a link sliver set up: its bridge and the capacity every member tap is shaped to."""

    sliver_urn: str
    bridge: str
    capacity_kbps: int | None = None


class LinkStore(JsonRecords[LinkRecord]):
    def __init__(self, directory: Path):
        super().__init__(directory, LinkRecord, "bridge")


bridge_ports = hostnet.bridge_ports


def shape_bridge(bridge: str, kbps: int | None, *, latency_ms: int = 50) -> None:
    """tbf on every port of the bridge (guest taps and Dom0 router ports)."""
    if not kbps:
        return
    for port in bridge_ports(bridge):
        if hostnet.qdisc_kind(None, port) != "tbf":
            hostnet.tbf_replace(None, port, kbps, latency_ms=latency_ms)


def delete_bridge(bridge: str) -> None:
    hostnet.link_delete(None, bridge)


@dataclass(frozen=True)
class Dom0Port:
    vif: str              # L3 end in Dom0: the router interface's MAC and address
    mac: str
    cidr: str | None
    bridge: str           # the link bridge the other end (`<vif>p`) joins

    @property
    def peer(self) -> str:
        return f"{self.vif}p"


def ensure_dom0_port(port: Dom0Port, netns: str | None) -> None:
    """Make the router interface in Dom0 (idempotent)."""
    hostnet.bridge_add(port.bridge)
    if hostnet.find_link(netns, port.vif) is None:
        hostnet.link_delete(None, port.peer)
        hostnet.link_delete(None, port.vif)
        hostnet.veth_add(port.vif, port.peer)
        if netns:
            hostnet.link_move(port.vif, netns)
        hostnet.link_set(netns, port.vif, mac=port.mac)
    if port.cidr:
        hostnet.addr_replace(netns, port.vif, port.cidr)
    hostnet.link_set(netns, port.vif, up=True)
    hostnet.link_set(None, port.peer, master=port.bridge, up=True)


def remove_dom0_port(port: Dom0Port, netns: str | None) -> None:
    if netns and not hostnet.netns_exists(netns):
        hostnet.link_delete(None, port.peer)
        return
    if not hostnet.link_delete(netns, port.vif):
        hostnet.link_delete(None, port.peer)


__all__ = ["Dom0Port", "LinkRecord", "LinkStore", "bridge_ports", "delete_bridge",
           "ensure_dom0_port", "link_bridge", "remove_dom0_port", "shape_bridge", "tap_name"]
