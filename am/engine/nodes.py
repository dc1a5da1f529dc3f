"""Placing request nodes on components: bound ones where they ask, unbound ones least-used first.

Candidate components of an unbound node come from the site's sliver-type index, filtered once
per distinct (sliver type, isolation, hardware type, forwarding) group and kept in a heap by
load; a node pops the least-used candidate and asks its driver to admit. Usage only grows
during a placement, so once a demand fits nowhere in a group it never will for later nodes of
the same shape: that memo keeps a full site from turning placement into n*m admissions.
"""
from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field, replace

from am.engine.ledger import Ledger
from am.engine.plan import Refusal
from drivers.base import (
    SLIVER_TYPE_ALIASES,
    Admission,
    Component,
    ForwardingMode,
    InterfaceSpec,
    IsolationClass,
    ResourceKind,
    SliverSpec,
    implied_isolation,
)
from drivers.registry import Site
from rspec.model import RequestNode

# Client spellings for one sliver type: a component offering the canonical name serves them.
FLOWSPACE_TYPE = "openflow-flowspace"
#: Sliver types placed only as a hybrid router's forwarding plane, never for a request node.
FORWARDING_ONLY_TYPES = frozenset({"openflow-fib"})
#: Types an unbound, untyped request node never lands on.
NOT_FOR_NODES = FORWARDING_ONLY_TYPES | {FLOWSPACE_TYPE}


@dataclass
class NodeRecord:
    """A placed node, its spec (sliver URN not yet minted) and its interfaces by client_id."""

    node: RequestNode
    component: Component
    driver: str
    spec: SliverSpec
    admission: Admission
    interfaces: dict[str, InterfaceSpec] = field(default_factory=dict)


#: Forwarding performance, best first: line-rate hardware, the host's kernel (Dom0, no
#: per-packet guest switch), an OpenFlow switch (hardware, but a control loop away), the guest.
FORWARDING_PREFERENCE = (ForwardingMode.HARDWARE, ForwardingMode.DOM0, ForwardingMode.OPENFLOW,
                         ForwardingMode.GUEST)


def effective_forwarding(comp: Component) -> tuple[ForwardingMode, ...]:
    """A component that lists no forwarding modes forwards in the guest, if at all."""
    return comp.forwarding_modes or (ForwardingMode.GUEST,)


#: Forwarding a router's control plane can have outside its own component (a hybrid router):
#: mode -> the sliver type of the forwarding plane sliver placed beside it.
REMOTE_FORWARDING: dict[ForwardingMode, str] = {ForwardingMode.HARDWARE: "netfpga-vdp",
                                                ForwardingMode.OPENFLOW: "openflow-fib"}
FORWARDING_SUFFIX = ":forwarding"   # client_id of a hybrid router's forwarding sliver


def control_plane_for(comp: Component, mode: ForwardingMode | None) -> bool:
    """Can `comp` host the control plane of a router forwarding in `mode` elsewhere?"""
    stype = REMOTE_FORWARDING.get(mode) if mode else None
    return stype is not None and mode not in effective_forwarding(comp) and \
        not any(t.name.lower() in (stype, *NOT_FOR_NODES) for t in comp.sliver_types)


def preferred_forwarding(comp: Component) -> tuple[ForwardingMode, ...]:
    """The modes a component offers, best forwarding performance first: a router whose
    request leaves the mode open gets the best one that admits it."""
    return tuple(sorted(effective_forwarding(comp), key=FORWARDING_PREFERENCE.index))


def required_isolation(node: RequestNode) -> IsolationClass | None:
    """The stronger of what the node asks for and what its sliver type implies."""
    classes = [c for c in (node.ext.isolation, implied_isolation(node.sliver_type)) if c]
    return max(classes, key=lambda c: c.strength) if classes else None


def offered_type(comp: Component, wanted: str | None,
                 need: IsolationClass | None) -> str | None:
    """The sliver type name `comp` would run this node as, or None if it cannot."""
    names = [t.name for t in comp.sliver_types]
    if wanted:
        low = wanted.lower()
        for cand in (low, SLIVER_TYPE_ALIASES.get(low)):
            for name in names:
                if cand and name.lower() == cand:
                    return name
        return None
    for name in names:
        implied = implied_isolation(name)
        if implied is IsolationClass.FLOWSPACE or name.lower() in FORWARDING_ONLY_TYPES:
            continue
        strength = (implied or comp.isolation).strength
        if need is None or strength >= need.strength:
            return name
    return None


class NodePlacer:
    def __init__(self, site: Site, ledger: Ledger, slice_urn: str,
                 vlan_hints: dict[str, int] | None = None):
        self.site = site
        self.ledger = ledger
        self.slice_urn = slice_urn
        # interface client_id -> the VLAN its link asks for (ga:link vlan_tag): on a component
        # with VLAN breakout wires (`extra["vlan_wires"]`) the interface is on that VLAN
        self.vlan_hints = dict(vlan_hints or {})
        self._order = {c.component_id.lower(): i for i, c in enumerate(site.components)}
        self._heaps: dict[tuple, list[tuple[tuple[float, int], int, Component]]] = {}
        self._exhausted: dict[tuple, Refusal] = {}
        self._no_group: dict[tuple, Refusal] = {}

    # ---- specs -----------------------------------------------------------------------------------
    def _spec(self, node: RequestNode, comp: Component, stype: str | None,
              forwarding: ForwardingMode | None) -> SliverSpec:
        ext = node.ext
        params: dict = {"isolation": ext.isolation.value} if ext.isolation else {}
        if node.ext.router and control_plane_for(comp, forwarding):
            params["forwarding_plane"] = REMOTE_FORWARDING[forwarding]   # type: ignore[index]
        tags = self.vlan_hints if comp.extra.get("vlan_wires") else {}
        interfaces = tuple(
            InterfaceSpec(client_id=i.client_id, name=f"eth{n}",
                          ips=tuple((ip.address, ip.netmask) for ip in i.ips), port=i.component_id,
                          vlan_tag=tags.get(i.client_id))
            for n, i in enumerate(node.interfaces, start=1))
        return SliverSpec(
            sliver_urn="", slice_urn=self.slice_urn, client_id=node.client_id,
            kind=ResourceKind.NODE, component_id=comp.component_id, sliver_type=stype,
            disk_image=node.disk_image, cpu=ext.cpu, memory_mb=ext.memory_mb,
            exclusive=bool(node.exclusive) or (stype or "").lower() == "raw-pc",
            router=ext.router, forwarding=forwarding, interfaces=interfaces, routes=ext.routes,
            installs=node.services.installs, executes=node.services.executes, params=params)

    def _try(self, node: RequestNode, comp: Component, stype: str | None
             ) -> tuple[SliverSpec, Admission]:
        """Admission on one component; for a router with no mode asked, each mode it offers."""
        modes: tuple[ForwardingMode | None, ...] = (None,)
        if node.ext.router:
            modes = (node.ext.forwarding,) if node.ext.forwarding else preferred_forwarding(comp)
        driver = self.site.drivers[comp.driver]
        usage = self.ledger.usage(comp)
        first: tuple[SliverSpec, Admission] | None = None
        for mode in modes:
            spec = self._spec(node, comp, stype, mode)
            adm = driver.admit(spec, usage)
            if adm.ok:
                return spec, adm
            first = first or (spec, adm)
        assert first is not None
        return first

    def _record(self, node: RequestNode, comp: Component, spec: SliverSpec,
                adm: Admission) -> NodeRecord:
        self.ledger.commit(comp, spec, adm.demand)
        return NodeRecord(node=node, component=comp, driver=comp.driver, spec=spec, admission=adm,
                          interfaces={i.client_id: i for i in spec.interfaces})

    # ---- bound -----------------------------------------------------------------------------------
    def place_bound(self, node: RequestNode) -> NodeRecord | Refusal:
        cid = node.client_id
        comp = self.site.component(node.component_id or "")
        if comp is None:
            return Refusal(cid, "BADARGS", f"no component {node.component_id} at this AM")
        need = required_isolation(node)
        stype = offered_type(comp, node.sliver_type, need)
        if stype is None:
            offered = ", ".join(t.name for t in comp.sliver_types) or "none"
            what = f"sliver type {node.sliver_type!r}" if node.sliver_type else "node slivers"
            return Refusal(cid, "UNSUPPORTED",
                           f"component {comp.component_id} does not offer {what} (offers {offered})")
        if need is not None and comp.isolation.strength < need.strength:
            return Refusal(cid, "UNSUPPORTED",
                           f"component {comp.component_id} isolates as {comp.isolation.value}, "
                           f"node {cid} needs {need.value} isolation")
        if node.hardware_type and node.hardware_type.lower() not in \
                {h.lower() for h in comp.hardware_types}:
            return Refusal(cid, "UNSUPPORTED", f"component {comp.component_id} is not of hardware "
                                               f"type {node.hardware_type!r}")
        if node.ext.router and node.ext.forwarding and \
                node.ext.forwarding not in effective_forwarding(comp) and \
                not control_plane_for(comp, node.ext.forwarding):
            return Refusal(cid, "UNSUPPORTED", f"component {comp.component_id} does not offer "
                                               f"{node.ext.forwarding.value} forwarding")
        ports = {p.component_id.lower() for p in comp.ports}
        for iface in node.interfaces:
            if iface.component_id and iface.component_id.lower() not in ports:
                return Refusal(cid, "BADARGS", f"interface {iface.client_id} names port "
                                               f"{iface.component_id}, which component "
                                               f"{comp.component_id} does not have")
        spec, adm = self._try(node, comp, stype)
        if not adm.ok:
            return Refusal(cid, adm.reason_code or "INSUFFICIENT_NODES",
                           adm.reason or f"component {comp.component_id} refused node {cid}")
        return self._record(node, comp, spec, adm)

    # ---- hybrid routers ---------------------------------------------------------------------------
    @staticmethod
    def needs_forwarding_plane(record: NodeRecord) -> bool:
        return bool(record.spec.params.get("forwarding_plane"))

    def place_forwarding(self, record: NodeRecord) -> NodeRecord | Refusal:
        """The forwarding plane of a hybrid router (control plane placed in `record`): a
        sliver of the forwarding type on the least-used component that admits it, carrying
        the router's interfaces (in order: its ports) and routes."""
        cid = record.node.client_id
        stype = record.spec.params["forwarding_plane"]
        mode = record.spec.forwarding
        pool = sorted(self.site.by_sliver_type.get(stype, ()),
                      key=lambda c: (self.ledger.load(c), self._order[c.component_id.lower()]))
        first: Admission | None = None
        for comp in pool:
            spec = SliverSpec(
                sliver_urn="", slice_urn=self.slice_urn, client_id=cid + FORWARDING_SUFFIX,
                kind=ResourceKind.NODE, component_id=comp.component_id, sliver_type=stype,
                router=True, forwarding=mode,
                interfaces=tuple(replace(i, port=None) for i in record.spec.interfaces),
                routes=record.spec.routes, params={"control_client_id": cid})
            adm = self.site.drivers[comp.driver].admit(spec, self.ledger.usage(comp))
            if adm.ok:
                return self._record(record.node, comp, spec, adm)
            first = first or adm
        if first is None:
            return Refusal(cid, "UNSUPPORTED", f"router {cid} asks for {mode.value} forwarding "
                                               f"but no component offers {stype} slivers")
        return Refusal(cid, first.reason_code or "INSUFFICIENT_NODES",
                       f"no forwarding plane for router {cid}: {first.reason}")

    # ---- unbound ---------------------------------------------------------------------------------
    def _group(self, node: RequestNode) -> tuple[tuple, list[Component] | Refusal]:
        need = required_isolation(node)
        wanted = (node.sliver_type or "").lower() or None
        hw = (node.hardware_type or "").lower() or None
        fwd = node.ext.forwarding if node.ext.router else None
        key = (wanted, need.strength if need else 0, hw, node.ext.router, fwd)
        if key in self._heaps:
            return key, []
        if key in self._no_group:
            memo = self._no_group[key]
            return key, Refusal(node.client_id, memo.code,
                                memo.reason)
        index = self.site.by_sliver_type
        if wanted:
            pool = list(index.get(wanted, ()))
            alias = SLIVER_TYPE_ALIASES.get(wanted)
            if alias and alias in index:
                seen = {c.component_id for c in pool}
                pool += [c for c in index[alias] if c.component_id not in seen]
            pool.sort(key=lambda c: self._order[c.component_id.lower()])
            if not pool:
                offered = ", ".join(sorted(self.site.sliver_types() - NOT_FOR_NODES)) or "none"
                return key, Refusal(node.client_id, "UNSUPPORTED",
                                    f"no component at this AM offers sliver type "
                                    f"{node.sliver_type!r} (offered: {offered})")
        else:
            pool = [c for c in self.site.components
                    if any(t.name.lower() not in NOT_FOR_NODES for t in c.sliver_types)]
        what = f"sliver type {node.sliver_type!r}" if wanted else "nodes"
        if need is not None:
            pool = [c for c in pool if c.isolation.strength >= need.strength]
            if not pool:
                return key, Refusal(node.client_id, "UNSUPPORTED",
                                    f"no component offering {what} isolates at least as "
                                    f"{need.value}")
        if hw:
            pool = [c for c in pool if hw in {h.lower() for h in c.hardware_types}]
            if not pool:
                return key, Refusal(node.client_id, "UNSUPPORTED",
                                    f"no component offering {what} is of hardware type "
                                    f"{node.hardware_type!r}")
        if fwd is not None:
            pool = [c for c in pool
                    if fwd in effective_forwarding(c) or control_plane_for(c, fwd)]
            if not pool:
                return key, Refusal(node.client_id, "UNSUPPORTED",
                                    f"no component offering {what} offers {fwd.value} forwarding")
        if not wanted and need is not None:
            pool = [c for c in pool if offered_type(c, None, need)]
        heap = [(self.ledger.load(c), self._order[c.component_id.lower()], c) for c in pool]
        heapq.heapify(heap)
        self._heaps[key] = heap
        return key, pool

    def place_unbound(self, node: RequestNode) -> NodeRecord | Refusal:
        key, found = self._group(node)
        if isinstance(found, Refusal):
            self._no_group[key] = found
            return found
        ext = node.ext
        shape = (key, node.sliver_type, ext.cpu, ext.memory_mb, bool(node.exclusive),
                 ext.isolation, node.disk_image)
        memo = self._exhausted.get(shape)
        if memo is not None:   # memo.reason is node-neutral: name *this* node
            return _exhausted_refusal(node.client_id, memo.code, memo.reason)
        heap = self._heaps[key]
        need = required_isolation(node)
        tried: list = []
        codes: Counter[str] = Counter()
        first_reason = ""
        placed: NodeRecord | None = None
        while heap:
            load, order, comp = heapq.heappop(heap)
            current = self.ledger.load(comp)
            if current != load:
                heapq.heappush(heap, (current, order, comp))
                continue
            stype = offered_type(comp, node.sliver_type, need)
            spec, adm = self._try(node, comp, stype)
            if adm.ok:
                placed = self._record(node, comp, spec, adm)
                heapq.heappush(heap, (self.ledger.load(comp), order, comp))
                break
            tried.append((load, order, comp))
            codes[adm.reason_code or "INSUFFICIENT_NODES"] += 1
            first_reason = first_reason or (adm.reason or "")
        for entry in tried:
            heapq.heappush(heap, entry)
        if placed is not None:
            return placed
        if len(codes) == 1:
            code = next(iter(codes))
        else:
            code = "INSUFFICIENT_NODES"
        n = sum(codes.values())
        detail = f"{n} candidate(s) refused (first: {first_reason})" if n else ""
        # memoised without the node's name: later nodes of this shape get their own
        self._exhausted[shape] = Refusal("", code, detail)
        return _exhausted_refusal(node.client_id, code, detail)


def _exhausted_refusal(client_id: str, code: str, detail: str) -> Refusal:
    text = f"no component can take node {client_id}"
    return Refusal(client_id, code, f"{text}: {detail}" if detail else text)


def with_interfaces(record: NodeRecord, sliver_urn: str, macs: dict[str, str]) -> SliverSpec:
    """The final node spec: minted URN and interfaces with their MACs, tags and ports."""
    ifaces = tuple(replace(i, mac=macs.get(i.client_id)) for i in record.interfaces.values())
    return replace(record.spec, sliver_urn=sliver_urn, interfaces=ifaces)
