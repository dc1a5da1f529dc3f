"""Flowspace: what part of a datapath's traffic a slice owns, and when two slices collide.

Pure code (no OVS, no I/O): admission runs it at Allocate. A slice's flowspace on one datapath is
a set of *cells*, one per `<openflow:match>` that applies to the datapath. A cell is the product
of its dimensions: in_port set x dl_src x dl_dst x dl_type x dl_vlan x nw_src prefixes x nw_dst
prefixes x nw_proto x tp_src x tp_dst; an unspecified dimension is a wildcard (everything).
Two cells overlap iff *every* dimension intersects; two flowspaces overlap iff some pair of their
cells does (FlowVisor's `FlowMap.intersects`, FOAM's conflict checks, in one rule).

Cells are also rendered to `ovs-ofctl` matches (`Cell.ofmatches`): a cell's sets expand into
the cross product of single-valued matches, with the prerequisites OpenFlow needs filled in
(an IP prefix with no dl_type means IPv4 *and* ARP, transport ports with no nw_proto mean TCP
and UDP), each rendered match being a subset of the cell so disjoint cells give disjoint flows.
"""
from __future__ import annotations

import hashlib
import ipaddress
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

from rspec.model import OFDatapath, OFMatch, OpenFlowSliver

ETH_IP, ETH_ARP, ETH_LLDP = 0x0800, 0x0806, 0x88CC
IP_TCP, IP_UDP, IP_SCTP = 6, 17, 132
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
DPID_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){7}$")
# A slice's rendered table is expanded from its cells; past this many matches per datapath the
# request is refused (TOOBIG) rather than loading a huge table into the switch.
MAX_MATCHES = 4096

Prefixes = tuple[ipaddress.IPv4Network, ...]


class FlowspaceError(ValueError):
    """The request's flowspace is malformed for this datapath; `code` is a GENI code name."""

    def __init__(self, message: str, code: str = "BADARGS"):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Cell:
    """One match of a flowspace: each dimension a set of values, None = wildcard."""

    ports: frozenset[int] | None = None
    dl_src: frozenset[str] | None = None
    dl_dst: frozenset[str] | None = None
    dl_type: frozenset[int] | None = None
    dl_vlan: frozenset[int] | None = None
    nw_src: Prefixes | None = None
    nw_dst: Prefixes | None = None
    nw_proto: frozenset[int] | None = None
    tp_src: frozenset[int] | None = None
    tp_dst: frozenset[int] | None = None

    def overlaps(self, other: "Cell") -> bool:
        return all(_dims_meet(getattr(self, f.name), getattr(other, f.name))
                   for f in fields(self))

    def describe(self) -> str:
        """`in_port=1,2 dl_vlan=100 nw_src=10.0.0.0/24`; "all traffic" for the full wildcard."""
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            name = "in_port" if f.name == "ports" else f.name
            parts.append(f"{name}={','.join(_fmt(v, f.name) for v in _sorted(value))}")
        return " ".join(parts) or "all traffic"

    def is_vlan_only(self) -> bool:
        """Only dl_vlan is restricted: the cell owns those VLANs on every port outright."""
        return self.dl_vlan is not None and all(
            getattr(self, f.name) is None for f in fields(self) if f.name != "dl_vlan")

    def canonical(self) -> str:
        return "|".join(f"{f.name}={self._canon(f.name)}" for f in fields(self))

    def _canon(self, name: str) -> str:
        value = getattr(self, name)
        return "*" if value is None else ",".join(_fmt(v, name) for v in _sorted(value))

    # ---- rendering -------------------------------------------------------------------------
    def ofmatches(self) -> list[str]:
        """`ovs-ofctl` match strings (without in_port) whose union is this cell."""
        types = _sorted(self.dl_type) if self.dl_type is not None else self._implied_types()
        out: list[str] = []
        for dl_type in types:
            arp = dl_type == ETH_ARP
            protos: list[int | None]
            if dl_type == ETH_IP and self.nw_proto is not None:
                protos = list(_sorted(self.nw_proto))
            elif dl_type == ETH_IP and (self.tp_src is not None or self.tp_dst is not None):
                protos = [IP_TCP, IP_UDP]
            else:
                protos = [None]
            axes: list[list[str]] = [
                [f"dl_type=0x{dl_type:04x}"] if dl_type is not None else [""],
                _axis("dl_src", self.dl_src),
                _axis("dl_dst", self.dl_dst),
                _axis("dl_vlan", self.dl_vlan),
                _axis("arp_spa" if arp else "nw_src", self.nw_src),
                _axis("arp_tpa" if arp else "nw_dst", self.nw_dst),
                [f"nw_proto={p}" if p is not None else "" for p in protos],
                _axis("tp_src", self.tp_src),
                _axis("tp_dst", self.tp_dst),
            ]
            for combo in itertools.product(*axes):
                out.append(",".join(p for p in combo if p))
        return out

    def match_count(self) -> int:
        """How many ofmatches the cell renders to (without building them)."""
        types = len(self.dl_type) if self.dl_type is not None else len(self._implied_types())
        protos = len(self.nw_proto) if self.nw_proto is not None else (
            2 if self.tp_src is not None or self.tp_dst is not None else 1)
        n = types * protos
        for value in (self.dl_src, self.dl_dst, self.dl_vlan, self.nw_src, self.nw_dst,
                      self.tp_src, self.tp_dst):
            n *= len(value) if value is not None else 1
        return n

    def _implied_types(self) -> list[int | None]:
        if self.nw_proto is not None or self.tp_src is not None or self.tp_dst is not None:
            return [ETH_IP]
        if self.nw_src is not None or self.nw_dst is not None:
            return [ETH_IP, ETH_ARP]
        return [None]


@dataclass(frozen=True)
class Flowspace:
    """A slice's flowspace on one datapath: its cells and the ports it touches."""

    datapath: str               # component URN
    cells: tuple[Cell, ...]

    def ports(self, all_ports: Iterable[int]) -> frozenset[int]:
        """The datapath ports the slice may use (a cell with wildcard ports means every port)."""
        every = frozenset(all_ports)
        out: set[int] = set()
        for cell in self.cells:
            out |= every if cell.ports is None else cell.ports
        return frozenset(out)

    def conflicts(self, other: "Flowspace") -> list[tuple[Cell, Cell]]:
        return [(a, b) for a in self.cells for b in other.cells if a.overlaps(b)]

    def claims(self) -> tuple[str, ...]:
        """Unique tokens two overlapping flowspaces share for sure (a race backstop in the store):
        `vlan:<id>` for a cell owning whole VLANs, `flowspace:<digest>` for every exact cell."""
        tokens: list[str] = []
        for cell in self.cells:
            if cell.is_vlan_only():
                tokens += [f"vlan:{v}" for v in _sorted(cell.dl_vlan or ())]
            digest = hashlib.sha256(cell.canonical().encode()).hexdigest()[:16]
            tokens.append(f"flowspace:{digest}")
        return tuple(dict.fromkeys(tokens))

    def match_count(self, n_ports: int) -> int:
        return sum(c.match_count() * (len(c.ports) if c.ports is not None else n_ports)
                   for c in self.cells)


# ---- building from the request -------------------------------------------------------------

def flowspace_for(sliver: OpenFlowSliver, component_id: str,
                  port_nums: Sequence[int]) -> Flowspace:
    """The sliver's flowspace on datapath `component_id`; raises FlowspaceError when malformed.

    A match applies to the datapath when it names it directly or through a `use-group`; a
    match naming no datapath and no group applies to every datapath of the sliver. Its in_port
    set is the union of the ports listed on those datapath references (none listed: all ports).
    """
    key = component_id.lower()
    groups = {g.name: g for g in sliver.groups}
    known = set(port_nums)
    cells: list[Cell] = []
    for i, match in enumerate(sliver.matches):
        refs = _refs(match, groups, key, sliver)
        if not refs:
            continue
        ports: frozenset[int] | None
        if any(not dp.ports for dp in refs):
            ports = None
        else:
            ports = frozenset(p.num for dp in refs for p in dp.ports)
            unknown = sorted(ports - known)
            if unknown:
                raise FlowspaceError(f"match {i + 1}: datapath {component_id} has no port "
                                     f"{', '.join(map(str, unknown))} (ports: "
                                     f"{', '.join(map(str, sorted(known))) or 'none'})")
        cells.append(_cell(i + 1, match, ports))
    if not cells:
        raise FlowspaceError(f"no openflow:match of the sliver applies to datapath {component_id}")
    return Flowspace(datapath=component_id, cells=tuple(cells))


def check_dpid(sliver: OpenFlowSliver, component_id: str, dpid: str | None) -> None:
    """Every reference to the datapath that gives a dpid must give this one."""
    if dpid is None:
        return
    key = component_id.lower()
    refs = [dp for g in sliver.groups for dp in g.datapaths] + \
           [dp for m in sliver.matches for dp in m.datapaths]
    for dp in refs:
        if dp.component_id.lower() == key and dp.dpid and dp.dpid.lower() != dpid.lower():
            raise FlowspaceError(f"datapath {component_id} has dpid {dpid}, not {dp.dpid}")


def _refs(match: OFMatch, groups: dict, key: str, sliver: OpenFlowSliver) -> list[OFDatapath]:
    refs = [dp for dp in match.datapaths if dp.component_id.lower() == key]
    for name in match.use_groups:
        group = groups.get(name)
        if group is None:
            raise FlowspaceError(f"use-group {name!r} names no group of the sliver")
        refs += [dp for dp in group.datapaths if dp.component_id.lower() == key]
    if not match.datapaths and not match.use_groups:
        refs = [dp for g in sliver.groups for dp in g.datapaths if dp.component_id.lower() == key]
        refs = refs or [OFDatapath(component_id=key)]
    return refs


def _cell(index: int, match: OFMatch, ports: frozenset[int] | None) -> Cell:
    pk = match.packet
    where = f"match {index}"
    dl_type = _set(pk.dl_type, lambda v: _ethertype(v, where))
    if dl_type is not None and ETH_LLDP in dl_type:
        raise FlowspaceError(f"{where}: dl_type 0x88cc (LLDP) is reserved for topology discovery")
    nw_src = _prefixes(pk.nw_src, where, "nw_src")
    nw_dst = _prefixes(pk.nw_dst, where, "nw_dst")
    nw_proto = _set(pk.nw_proto, lambda v: _ranged(v, 0, 255, where, "nw_proto"))
    tp_src = _set(pk.tp_src, lambda v: _ranged(v, 0, 65535, where, "tp_src"))
    tp_dst = _set(pk.tp_dst, lambda v: _ranged(v, 0, 65535, where, "tp_dst"))
    if (nw_src or nw_dst or nw_proto) and dl_type is not None and \
            not dl_type <= {ETH_IP, ETH_ARP}:
        raise FlowspaceError(f"{where}: nw_* fields need dl_type 0x800 (IPv4) or 0x806 (ARP)")
    if (nw_proto or tp_src or tp_dst) and dl_type is not None and dl_type != {ETH_IP}:
        raise FlowspaceError(f"{where}: nw_proto and tp_* fields need dl_type 0x800 only")
    if (tp_src or tp_dst) and nw_proto is not None and not nw_proto <= {IP_TCP, IP_UDP, IP_SCTP}:
        raise FlowspaceError(f"{where}: tp_src/tp_dst need nw_proto 6 (TCP), 17 (UDP) or "
                             "132 (SCTP)")
    return Cell(
        ports=ports,
        dl_src=_set(pk.dl_src, lambda v: _mac(v, where, "dl_src")),
        dl_dst=_set(pk.dl_dst, lambda v: _mac(v, where, "dl_dst")),
        dl_type=dl_type,
        dl_vlan=_set(pk.dl_vlan, lambda v: _ranged(v, 0, 4095, where, "dl_vlan")),
        nw_src=nw_src, nw_dst=nw_dst, nw_proto=nw_proto, tp_src=tp_src, tp_dst=tp_dst)


def _set(values: Sequence, conv) -> frozenset | None:
    return frozenset(conv(v) for v in values) if values else None


def _ethertype(value: str | int, where: str) -> int:
    try:
        n = int(value, 0) if isinstance(value, str) else int(value)
    except ValueError:
        raise FlowspaceError(f"{where}: dl_type {value!r} is not an ethertype like 0x800") from None
    if not 0x600 <= n <= 0xFFFF:
        raise FlowspaceError(f"{where}: dl_type {value!r} is not an ethertype (0x600-0xffff)")
    return n


def _mac(value: str, where: str, name: str) -> str:
    mac = str(value).strip().lower().replace("-", ":")
    if not MAC_RE.match(mac):
        raise FlowspaceError(f"{where}: {name} {value!r} is not a MAC address like "
                             "00:11:22:33:44:55")
    return mac


def _ranged(value: int | str, low: int, high: int, where: str, name: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise FlowspaceError(f"{where}: {name} {value!r} is not a number") from None
    if not low <= n <= high:
        raise FlowspaceError(f"{where}: {name} {n} is outside {low}-{high}")
    return n


def _prefixes(values: Sequence[str], where: str, name: str) -> Prefixes | None:
    if not values:
        return None
    nets = []
    for v in values:
        try:
            nets.append(ipaddress.IPv4Network(str(v).strip(), strict=False))
        except ValueError:
            raise FlowspaceError(f"{where}: {name} {v!r} is not an IPv4 address or prefix") from None
    return tuple(sorted(set(nets)))


def _dims_meet(a, b) -> bool:
    if a is None or b is None:
        return True
    if isinstance(a, tuple):      # IPv4 prefixes
        return any(x.overlaps(y) for x in a for y in b)
    return not a.isdisjoint(b)


def _sorted(value) -> list:
    return sorted(value)


def _fmt(value, name: str) -> str:
    if name == "dl_type":
        return f"0x{value:04x}"
    return str(value)


def _axis(name: str, values) -> list[str]:
    if values is None:
        return [""]
    return [f"{name}={_fmt(v, name)}" for v in _sorted(values)]


__all__ = ["Cell", "Flowspace", "FlowspaceError", "MAX_MATCHES", "check_dpid", "flowspace_for"]
