"""`place`: a request onto the site's inventory, across drivers, all-or-nothing or best effort.

Order matters for a fair and deterministic answer: request-level checks first (duplicate ids,
dangling interface references), then bound nodes (they cannot move, so unbound nodes must not
take their room), then unbound nodes least-used first, then links between placed nodes, then
OpenFlow slivers. Sliver URNs are minted only for what is kept, at the end, so a refused
request burns no names. A refusal names the element and the first real cause: a link whose
end node failed is a cascade, reported only in best-effort mode (naming the missing end).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from am.engine.flowspace import FlowspaceRecord, place_openflow
from am.engine.ledger import Ledger
from am.engine.links import LinkPlacer, LinkRecord, is_switch
from am.engine.nodes import NodePlacer, NodeRecord, with_interfaces
from am.engine.plan import Placement, PlannedSliver, Refusal
from am.engine.stitch import place_stitched
from drivers.base import Component, Usage
from drivers.registry import Site
from rspec.model import Request


def mac_for(sliver_urn: str, interface_client_id: str) -> str:
    """A stable, locally administered unicast MAC for one interface of one sliver."""
    digest = hashlib.sha256(f"{sliver_urn}\0{interface_client_id}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def place(request: Request, site: Site, usage: Mapping[str, Usage], *, slice_urn: str,
          mint_sliver_urn: Callable[[str], str], best_effort: bool = False,
          shared_lans: Mapping[str, Any] | None = None) -> Placement:
    """Map `request` onto `site` given what is already reserved (`usage`, by component URN).

    `shared_lans`: token -> the LAN another slice shares under it (anything with
    `component_id` and `lan_sliver_urn`), for links that join one (`link_shared_vlan`)."""
    refusals: list[Refusal] = []
    bad = _check_request(request) or _switch_port_ends(request, site)
    if bad:
        return Placement(slivers=[], refusals=bad)
    shared_lans = shared_lans or {}
    request = _bind_joiners(request, shared_lans)

    ledger = Ledger(usage, slice_urn)
    nodes = NodePlacer(site, ledger, slice_urn,
                       {ref: link.vlan_tag for link in request.links if link.vlan_tag
                        for ref in link.interface_refs})
    records: dict[str, NodeRecord] = {}
    node_refusals: dict[str, Refusal] = {}
    forwarding: dict[str, NodeRecord] = {}     # hybrid router client_id -> its forwarding plane
    for node in sorted(request.nodes, key=lambda n: n.component_id is None):
        result = nodes.place_bound(node) if node.component_id else nodes.place_unbound(node)
        if not isinstance(result, Refusal) and nodes.needs_forwarding_plane(result):
            plane = nodes.place_forwarding(result)
            if isinstance(plane, Refusal):
                result = plane
            else:
                forwarding[node.client_id] = plane
        if isinstance(result, Refusal):
            node_refusals[node.client_id] = result
        else:
            records[node.client_id] = result
    refusals.extend(node_refusals[n.client_id] for n in request.nodes
                    if n.client_id in node_refusals)

    owner = {i.client_id: n.client_id for n in request.nodes for i in n.interfaces}
    linker = LinkPlacer(site, ledger, slice_urn, shared_lans, forwarding)
    # a hybrid router whose forwarding plane is on a card with wired ports: its links plug
    # into the card (its packets are forwarded there), not into its control plane's host
    ends_on = {**records, **{cid: plane for cid, plane in forwarding.items()
                             if cid in records and plane.component.extra.get("wires")}}
    links: list[LinkRecord] = []
    for link in request.links:
        # a stitched link's other ends are at other aggregates: only ours are placed here
        ends = [(owner[ref], ref) for ref in link.interface_refs
                if not link.stitched or ref in owner]
        missing = [(n, i) for n, i in ends if n not in records]
        if missing:
            if best_effort:
                n, i = missing[0]
                refusals.append(Refusal(link.client_id, node_refusals[n].code if n in node_refusals
                                        else "INSUFFICIENT_NODES",
                                        f"link {link.client_id} not placed: its end node {n} "
                                        f"(interface {i}) was not placed"))
            continue
        if link.stitched:
            result = place_stitched(link, ends, ends_on, site, ledger, slice_urn)
        else:
            result = linker.place(link, ends, ends_on)
        if isinstance(result, Refusal):
            refusals.append(result)
        elif isinstance(result, list):      # a cross-host link: one half per host
            links.extend(result)
        else:
            links.append(result)

    flowspaces: list[FlowspaceRecord] = []
    for index, of in enumerate(request.openflow):
        result = place_openflow(index, of, site, ledger, slice_urn)
        if isinstance(result, Refusal):
            refusals.append(result)
        else:
            flowspaces.extend(result)

    if refusals and not best_effort:
        return Placement(slivers=[], refusals=refusals)
    return Placement(slivers=_assemble(request, records, links, flowspaces, mint_sliver_urn,
                                       forwarding),
                     refusals=refusals)


def _bind_joiners(request: Request, shared_lans: Mapping[str, Any]) -> Request:
    """Unbound nodes with an interface on a link that joins a shared LAN go where the LAN is
    (a shared LAN is a bridge on one host)."""
    where = {}
    for link in request.links:
        ref = shared_lans.get(link.shared_vlan) if link.shared_vlan else None
        if ref is not None:
            where.update(dict.fromkeys(link.interface_refs, ref.component_id))
    if not where:
        return request
    nodes = tuple(replace(n, component_id=next((where[i.client_id] for i in n.interfaces
                                                 if i.client_id in where), None))
                  if n.component_id is None else n for n in request.nodes)
    return replace(request, nodes=nodes)


def _switch_port_ends(request: Request, site: Site) -> list[Refusal]:
    """Links with an end on a node bound to a switch (a switch port named as a link end):
    refused with UNSUPPORTED, naming the link. A switch is no node here: its flow table is the
    AM's and the slices' flowspaces' (docs/openflow.md), so nothing could carry such a link.
    A card port cabled to that switch gets the ways that do reach it."""
    on_switch: dict[str, tuple[Component, str | None]] = {}
    comp_of: dict[str, Component] = {}
    for node in request.nodes:
        comp = site.component(node.component_id) if node.component_id else None
        if comp is None:
            continue
        ports = {p.component_id.lower(): p.name for p in comp.ports}
        for iface in node.interfaces:
            comp_of[iface.client_id] = comp
            if is_switch(comp):
                on_switch[iface.client_id] = (comp, ports.get((iface.component_id or "").lower()))
    out: list[Refusal] = []
    for link in request.links:
        ref = next((r for r in link.interface_refs if r in on_switch), None)
        if ref is None:
            continue
        sw, port = on_switch[ref]
        what = f"port {port} of switch {sw.name}" if port else f"on switch {sw.name}"
        reason = (f"link {link.client_id}: interface {ref} is {what}, and a switch port is not "
                  "a link end at this AM (a switch is no node: its flow table belongs to the AM "
                  "and to slices' flowspaces)")
        cables = [f"{comp_of[r].name} port {mine.port} is cabled to {sw.name} port {far.port}"
                  for r in link.interface_refs if r in comp_of and comp_of[r].extra.get("wires")
                  for _l, mine, far in site.links_by_component.get(
                      comp_of[r].component_id.lower(), ())
                  if far.component_id.lower() == sw.component_id.lower()]
        if cables:
            reason += (f"; {', '.join(dict.fromkeys(cables))} already: bind the slot's interface "
                       "to that card port and reach the switch with an openflow:sliver "
                       "flowspace on the cabled port (your controller forwards), or link it to "
                       f'a router forwarding on {sw.name} (forwarding="openflow")')
        else:
            reason += (f'; link to a router forwarding on {sw.name} (forwarding="openflow"), or '
                       "ask for flowspace on it with an openflow:sliver")
        out.append(Refusal(link.client_id, "UNSUPPORTED", reason))
    return out


def _check_request(request: Request) -> list[Refusal]:
    """Request-level mistakes no placement can fix (the parser checks most; be sure)."""
    out: list[Refusal] = []
    seen: set[str] = set()
    for cid in [n.client_id for n in request.nodes] + [l.client_id for l in request.links]:
        if cid in seen:
            out.append(Refusal(cid, "BADARGS", f"client_id {cid!r} is used twice in the request"))
        seen.add(cid)
    owner: dict[str, str] = {}
    for node in request.nodes:
        for iface in node.interfaces:
            if iface.client_id in owner:
                out.append(Refusal(node.client_id, "BADARGS",
                                   f"interface {iface.client_id!r} is declared twice"))
            owner[iface.client_id] = node.client_id
    used: dict[str, str] = {}
    for link in request.links:
        if link.stitched:   # its other ends are beyond the edge port (am.engine.stitch)
            for ref in (r for r in link.interface_refs if r in owner):
                if ref in used:
                    out.append(Refusal(link.client_id, "BADARGS",
                                       f"interface {ref!r} is already on link {used[ref]}"))
                used.setdefault(ref, link.client_id)
            continue
        for ref in link.interface_refs:
            if ref not in owner:
                out.append(Refusal(link.client_id, "BADARGS",
                                   f"link {link.client_id} names interface {ref!r}, which no "
                                   "node of the request has"))
            elif ref in used:
                out.append(Refusal(link.client_id, "BADARGS",
                                   f"interface {ref!r} is already on link {used[ref]}"))
            used.setdefault(ref, link.client_id)
        if len(link.interface_refs) < (1 if link.shared_vlan else 2):   # a shared LAN is an end
            out.append(Refusal(link.client_id, "BADARGS",
                               f"link {link.client_id} needs at least two interfaces at this AM"))
    return out


def _assemble(request: Request, records: Mapping[str, NodeRecord], links: list[LinkRecord],
              flowspaces: list[FlowspaceRecord],
              mint: Callable[[str], str],
              forwarding: Mapping[str, NodeRecord] | None = None) -> list[PlannedSliver]:
    out: list[PlannedSliver] = []
    urns: dict[str, str] = {}
    link_of_iface = {ref: link.client_id for link in request.links for ref in link.interface_refs}
    for node in request.nodes:
        rec = records.get(node.client_id)
        if rec is None:
            continue
        urn = mint(node.client_id)
        urns[node.client_id] = urn
        macs = {i: mac_for(urn, i) for i in rec.interfaces}
        for iface_id in rec.interfaces:
            if iface_id in link_of_iface:
                rec.interfaces[iface_id] = replace(rec.interfaces[iface_id],
                                                   link_client_id=link_of_iface[iface_id])
        spec = with_interfaces(rec, urn, macs)
        plane = (forwarding or {}).get(node.client_id)
        if plane is not None:   # a hybrid router: control and forwarding slivers name each other
            furn = mint(plane.spec.client_id)
            spec = replace(spec, params={**spec.params, "forwarding_sliver": furn})
            fspec = replace(with_interfaces(plane, furn, macs),
                            params={**plane.spec.params, "control_sliver": urn})
            out.append(PlannedSliver(fspec, plane.driver, dict(plane.admission.demand),
                                     tuple(plane.admission.claims)))
        out.append(PlannedSliver(spec, rec.driver,
                                 dict(rec.admission.demand), tuple(rec.admission.claims)))
    for lrec in links:
        assert lrec.spec.link is not None
        ends = tuple(replace(e, sliver_urn=urns[e.node_client_id]) for e in lrec.spec.link.ends)
        spec = replace(lrec.spec, sliver_urn=mint(lrec.link.client_id),
                       link=replace(lrec.spec.link, ends=ends))
        out.append(PlannedSliver(spec, lrec.driver, dict(lrec.demand), tuple(lrec.claims)))
    for frec in flowspaces:
        spec = replace(frec.spec, sliver_urn=mint(frec.spec.client_id))
        out.append(PlannedSliver(spec, frec.driver, dict(frec.admission.demand),
                                 tuple(frec.admission.claims)))
    return out
