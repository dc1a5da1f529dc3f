"""Pure rules of `openflow-fib` slivers: a hybrid router's forwarding plane on a datapath.

Placement (`am.engine.nodes.NodePlacer.place_forwarding`) asks for one beside a router whose
request says `forwarding="openflow"`. The sliver owns datapath ports outright: the router's
i-th interface is the datapath's i-th port (its inventory order), as a NetFPGA slot's is the
card's i-th port. Admission refuses a port another router or any slice's flowspace already
uses (and the flowspace admission refuses a flowspace over a router's port), so the FIB's flows
never compete with a slice's steering. Capacity: every FIB reserves `fib_routes` route flows
(its table size) from the datapath's `fib_flows`; a route set larger than the table is TOOBIG.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from drivers.base import Admission, Component, ComponentPort, ResourceKind, SliverSpec, Usage
from drivers.openflow.flowspace import FlowspaceError, flowspace_for
from drivers.openflow.plane import check_mac
from drivers.routesync import FibEntry, RouteError, RouteTableFull, normalise_all
from rspec.model import Route

FIB_TYPE = "openflow-fib"
FIB_CAPACITY = "fib_flows"
DEFAULT_FIB_FLOWS = 4096
DEFAULT_FIB_ROUTES = 256


def router_ports(comp: Component, spec: SliverSpec) -> list[ComponentPort]:
    """The datapath ports a FIB sliver owns, in its interfaces' order; ValueError if it
    has none or more interfaces than the datapath has ports."""
    if not spec.interfaces:
        raise ValueError("an OpenFlow forwarding plane needs at least one interface (port)")
    ports = [p for p in comp.ports if p.num is not None]
    if len(spec.interfaces) > len(ports):
        raise ValueError(f"{len(spec.interfaces)} interfaces, datapath {comp.name} has "
                         f"{len(ports)} ports")
    return ports[:len(spec.interfaces)]


def neighbours_of(comp: Component) -> dict[str, str]:
    return dict(comp.extra.get("neighbours", {}))


def parse_neighbours(raw: Any) -> dict[str, str]:
    """The inventory's `extra.neighbours` table (IPv4 -> MAC), validated; ValueError names
    the bad entry."""
    if not isinstance(raw, Mapping):
        raise ValueError("must be a table of IPv4 address = MAC")
    out: dict[str, str] = {}
    for ip, mac in raw.items():
        try:
            addr = str(ipaddress.IPv4Address(ip))
        except ValueError:
            raise ValueError(f"{ip!r} is not an IPv4 address") from None
        if not isinstance(mac, str):
            raise ValueError(f"{ip}: MAC must be a string")
        out[addr] = check_mac(mac)
    return out


def fib_entries(comp: Component, spec: SliverSpec, routes: Iterable[Route]) -> set[FibEntry]:
    """The routes as FIB entries (device = the owned port's name): out of the interface the
    route names, else the one whose subnet holds the next hop (as a kernel picks it), else
    the first."""
    ports = router_ports(comp, spec)
    by_client = {i.client_id: p.name for i, p in zip(spec.interfaces, ports)}
    subnets = []
    for iface, port in zip(spec.interfaces, ports):
        for addr, mask in iface.ips:
            try:
                subnets.append((ipaddress.IPv4Interface(f"{addr}/{mask or '24'}").network,
                                port.name))
            except ValueError:
                continue

    def device(r: Route) -> str:
        if r.interface and r.interface in by_client:
            return by_client[r.interface]
        hop = ipaddress.IPv4Address(r.gateway) if r.gateway else \
            ipaddress.IPv4Network(r.destination).network_address
        return next((name for net, name in subnets if hop in net), ports[0].name)

    return {FibEntry(prefix=r.destination, gateway=r.gateway, device=device(r)) for r in routes}


def check_fib_routes(comp: Component, spec: SliverSpec, routes: Iterable[Route],
                     table_size: int) -> tuple[Route, ...]:
    """Normalised routes, or RouteError (malformed, unknown interface, next hop not in the
    neighbour table) / RouteTableFull (more than the FIB's table holds). Pure."""
    routes = normalise_all(routes)
    names = {i.client_id for i in spec.interfaces}
    for r in routes:
        if r.interface and r.interface not in names:
            raise RouteError(f"route to {r.destination} names interface {r.interface!r}, "
                             "which the node does not have")
    if len(routes) > table_size:
        raise RouteTableFull(f"{len(routes)} routes do not fit the router's OpenFlow table on "
                             f"datapath {comp.name} ({table_size} route flows)")
    try:
        entries = fib_entries(comp, spec, routes)
    except ValueError as exc:
        raise RouteError(str(exc)) from None
    neighbours = neighbours_of(comp)
    for e in sorted(entries):
        hop = e.gateway
        if hop is None:
            if e.network.prefixlen != 32:
                raise RouteError(f"route to {e.prefix} has no gateway: an OpenFlow forwarding "
                                 "plane forwards to a next hop (give a gateway, or a /32 host "
                                 "route)")
            hop = str(e.network.network_address)
        if hop not in neighbours:
            raise RouteError(f"route to {e.prefix}: next hop {hop} is not in datapath "
                             f"{comp.name}'s neighbour table (inventory extra.neighbours)")
    return routes


def admit_fib(comp: Component, spec: SliverSpec, usage: Usage, table_size: int) -> Admission:
    cid = spec.client_id
    if not spec.params.get("control_client_id") and not spec.params.get("control_sliver"):
        return Admission.refuse(f"{FIB_TYPE} slivers are the forwarding planes of hybrid "
                                "routers: ask for a router node with forwarding=\"openflow\"",
                                "UNSUPPORTED")
    try:
        ports = router_ports(comp, spec)
        check_fib_routes(comp, spec, spec.routes, table_size)
    except (ValueError, RouteError) as exc:
        code = "TOOBIG" if isinstance(exc, RouteTableFull) else "BADARGS"
        return Admission.refuse(f"router {cid} on datapath {comp.name}: {exc}", code)
    mine = {p.num for p in ports}
    nums = [p.num for p in comp.ports if p.num is not None]
    for other in usage.slivers:
        if other.sliver_urn and other.sliver_urn == spec.sliver_urn:
            continue
        taken = ports_in_use(comp, other, nums)
        both = sorted(mine & taken)
        if both:
            who = other.sliver_urn or f"{other.client_id} of this request"
            what = "router" if other.kind is ResourceKind.NODE else "slice flowspace"
            return Admission.refuse(f"port {both[0]} of datapath {comp.name} is used by a "
                                    f"{what} (sliver {who}, slice {other.slice_urn})",
                                    "UNAVAILABLE")
    total = float(comp.capacity.get(FIB_CAPACITY, DEFAULT_FIB_FLOWS))
    used = float(usage.used.get(FIB_CAPACITY, 0.0))
    if table_size > total:
        return Admission.refuse(f"a router table of {table_size} flows exceeds datapath "
                                f"{comp.name}'s {total:g} forwarding flows", "TOOBIG")
    if used + table_size > total:
        return Admission.refuse(f"datapath {comp.name} has {total - used:g} of {total:g} "
                                f"forwarding flows free; a router table takes {table_size}",
                                "INSUFFICIENT_NODES")
    return Admission.accept({FIB_CAPACITY: float(table_size)},
                            tuple(f"port:{p.name}" for p in ports))


def ports_in_use(comp: Component, spec: SliverSpec, nums: Sequence[int]) -> set[int]:
    """Port numbers a live sliver on this datapath uses: a router's owned ports, a slice's
    flowspace ports (wildcard = all). Unreadable specs use nothing (they cannot be named)."""
    if spec.kind is ResourceKind.NODE and (spec.sliver_type or "").lower() == FIB_TYPE:
        try:
            return {p.num for p in router_ports(comp, spec) if p.num is not None}
        except ValueError:
            return set()
    if spec.kind is ResourceKind.FLOWSPACE and spec.openflow is not None:
        try:
            return set(flowspace_for(spec.openflow, comp.component_id, nums).ports(nums))
        except FlowspaceError:
            return set()
    return set()


__all__ = ["DEFAULT_FIB_FLOWS", "DEFAULT_FIB_ROUTES", "FIB_CAPACITY", "FIB_TYPE", "admit_fib",
           "check_fib_routes", "fib_entries", "neighbours_of", "parse_neighbours",
           "ports_in_use", "router_ports"]
