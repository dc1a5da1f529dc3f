"""Placing a stitched link: the local part of a link between aggregates (GENI stitching).

The request's `<stitching><path>` for the link lists its hops in order; the hops whose port URN
belongs to this aggregate must name one of its edge ports (`Site.edges`), and the link's one
local end is a node on the component the edge port is on, or on a host wired ([[links]]) to
the switch the edge port is on: then the local path crosses that switch (`_through_switch`).
The tag is chosen here, pure: within the edge port's VLAN range, within the local hops'
`vlanRangeAvailability` and `suggestedVLANRange` and those of the hops that must carry the same
tag (`same_tag_hops`: never a tag another hop excluded), and free on every local hop now (the
live stitched links in `usage`, and on a switch its VLAN links too). The lowest such tag is
taken. The database settles races afterwards (am.store.stitch_tags): this only picks.

Bad input is BADARGS naming the hop (an unknown edge port, a suggested tag outside the edge
port's range); a tag in use is VLAN_UNAVAILABLE naming the hop and the tag.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from am.engine.ledger import Ledger
from am.engine.links import LinkRecord, is_switch
from am.engine.nodes import NodeRecord
from am.engine.plan import Refusal
from drivers.base import (
    Component,
    EdgePort,
    LinkEnd,
    LinkSpec,
    PortRef,
    ResourceKind,
    SliverSpec,
)
from drivers.registry import Site
from rspec.model import RequestLink
from rspec.stitching import StitchHop, format_vlan_range

STITCH_MODE = "stitch"


def stitched_tags(ledger: Ledger, comp, edge: EdgePort) -> dict[int, int]:
    """tag -> kbit/s of the live stitched links on `edge` (those placed on its component)."""
    out: dict[int, int] = {}
    for spec in ledger.usage(comp).slivers:
        link = spec.link
        if link is not None and link.mode == STITCH_MODE and link.vlan_tag is not None \
                and spec.params.get("edge") == edge.name:
            kbps = link.capacity_kbps or spec.params.get("kbps") or 0
            out[link.vlan_tag] = out.get(link.vlan_tag, 0) + int(kbps)
    return out


def same_tag_hops(hops: tuple[StitchHop, ...], mine: tuple[StitchHop, ...]
                  ) -> list[StitchHop]:
    """The other hops of a path that must carry the tag this aggregate's hops carry: going out
    from them both ways, stopping at a hop that translates (`vlanTranslation`: it may take
    another tag), nearest first. This aggregate translates nothing: its hops share one tag."""
    where = [i for i, h in enumerate(hops) if h in mine]
    out: list[StitchHop] = []
    for step, start in ((-1, min(where) - 1), (1, max(where) + 1)):
        i = start
        while 0 <= i < len(hops) and hops[i] not in mine:
            if hops[i].translation:
                break
            out.append(hops[i])
            i += step
    return out


def place_stitched(link: RequestLink, ends: list[tuple[str, str]],
                   records: Mapping[str, NodeRecord], site: Site, ledger: Ledger,
                   slice_urn: str) -> LinkRecord | list[LinkRecord] | Refusal:
    """`ends`: the link's (node client_id, interface client_id) at this aggregate."""
    cid = link.client_id
    path = link.stitching
    assert path is not None
    mine = path.hops_of(site.authority)
    if not mine:
        return Refusal(cid, "BADARGS", f"stitching path {path.id!r} has no hop at this aggregate "
                                       f"(no port URN of authority {site.authority})")
    edges: list[tuple[StitchHop, EdgePort]] = []
    for hop in mine:
        edge = site.edge(hop.link_id)
        if edge is None:
            known = ", ".join(e.interface_id for e in site.edges) or "none"
            return Refusal(cid, "BADARGS", f"stitching path {path.id!r} hop {hop.id!r}: "
                                           f"{hop.link_id} is not an edge port of this "
                                           f"aggregate (edge ports: {known})")
        edges.append((hop, edge))
    if len({e.name for _, e in edges}) != 1:
        return Refusal(cid, "UNSUPPORTED", f"stitching path {path.id!r} crosses "
                                           f"{len({e.name for _, e in edges})} edge ports here; "
                                           "a path enters and leaves through one")
    edge = edges[0][1]
    if len(ends) != 1:
        return Refusal(cid, "UNSUPPORTED" if ends else "BADARGS",
                       f"stitched link {cid} has {len(ends)} end(s) at this aggregate; it takes "
                       "exactly one (a node here, the others beyond the edge port)")
    node_id, iface_id = ends[0]
    host = records[node_id].component
    switch: Component | None = None      # the edge is on a switch the node's host is wired to
    if host.component_id.lower() != edge.component_id.lower():
        switch = site.component(edge.component_id)
        if switch is None or not is_switch(switch):
            return Refusal(cid, "UNSUPPORTED", f"node {node_id} is on {host.name}, but edge port "
                                               f"{edge.name} is on {edge.component_id}; bind "
                                               "the node there")
    lo, hi = edge.vlan_range
    space = frozenset(range(lo, hi + 1))
    candidates = space
    for hop in mine:
        if hop.translation:
            return Refusal(cid, "UNSUPPORTED", f"stitching path {path.id!r} hop {hop.id!r} asks "
                                               "for VLAN translation, which this aggregate does "
                                               "not do (its advertisement says vlanTranslation "
                                               "false): every hop here carries one tag")
        if hop.suggested is not None and not hop.suggested & space:
            return Refusal(cid, "BADARGS", f"stitching path {path.id!r} hop {hop.id!r}: "
                                           f"suggested VLAN {format_vlan_range(hop.suggested)} "
                                           f"is outside edge port {edge.name}'s range {lo}-{hi}")
        allowed = hop.allowed()
        if allowed is not None:
            candidates = candidates & allowed
    hop0 = edges[0][0]
    if not candidates:
        return Refusal(cid, "VLAN_UNAVAILABLE", f"stitching path {path.id!r}: no VLAN tag in "
                                                f"{lo}-{hi} (edge port {edge.name}) is allowed "
                                                f"by hop {hop0.id!r} here")
    for hop in same_tag_hops(path.hops, mine):
        allowed = hop.allowed()
        if allowed is not None and not candidates & allowed:
            return Refusal(cid, "VLAN_UNAVAILABLE",
                           f"stitching path {path.id!r}: hop {hop.id!r} allows VLAN "
                           f"{format_vlan_range(allowed) or 'none'}, hop {hop0.id!r} here "
                           f"{format_vlan_range(candidates)}; joining them needs VLAN "
                           "translation, which this aggregate does not do (vlanTranslation "
                           "false), and no hop between them translates")
        if allowed is not None:
            candidates = candidates & allowed
    where = switch or host
    used = stitched_tags(ledger, where, edge)
    # on a switch, the stitched tags share its VLAN space with its own VLAN links
    switch_vlans = {s.link.vlan_tag for s in ledger.usage(where).slivers
                    if switch and s.link is not None and s.link.vlan_tag is not None}
    free = candidates - set(used) - switch_vlans
    if not free:
        what = (f"VLAN {next(iter(candidates))} is" if len(candidates) == 1
                else f"every VLAN of {format_vlan_range(candidates)} is")
        on = f"hop {hop0.id!r} ({edge.interface_id})"
        if candidates - set(used):       # free at the edge, taken by the switch's VLAN links
            on = f"switch {where.name} (its VLAN links), on the path to hop {hop0.id!r}"
        return Refusal(cid, "VLAN_UNAVAILABLE", f"{what} in use on {on}")
    kbps = link.capacity_kbps
    if kbps and edge.capacity_kbps is not None:
        left = edge.capacity_kbps - sum(used.values())
        if kbps > left:
            return Refusal(cid, "INSUFFICIENT_BANDWIDTH",
                           f"stitched link {cid} needs {kbps} kbps on edge port {edge.name}, "
                           f"{max(left, 0)} kbps free")
    tag = min(free)
    hops = [[h.link_id, h.id] for h, _ in edges]
    if switch is not None:
        wire = _wire_to(cid, site, ledger, records[node_id], iface_id, switch, edge)
        if isinstance(wire, Refusal):
            return wire
        return _through_switch(link, node_id, iface_id, records, site, ledger, slice_urn,
                               edge, (switch, *wire), tag, hops, path)
    spec = SliverSpec(
        sliver_urn="", slice_urn=slice_urn, client_id=cid, kind=ResourceKind.LINK,
        component_id=host.component_id,
        link=LinkSpec(ends=(LinkEnd(sliver_urn="", node_client_id=node_id,
                                    interface_client_id=iface_id,
                                    component_id=host.component_id),),
                      capacity_kbps=kbps, vlan_tag=tag, mode=STITCH_MODE),
        params={**edge.data_plane(), "mtu": edge.mtu, "path_id": path.id,
                "path_xml": path.element_xml, "hops": hops})
    adm = site.drivers[host.driver].admit(spec, ledger.usage(host))
    if not adm.ok:
        return Refusal(cid, adm.reason_code or "UNSUPPORTED",
                       adm.reason or f"component {host.component_id} refused link {cid}")
    ledger.commit(host, spec, adm.demand)
    return LinkRecord(link, host, host.driver, spec, dict(adm.demand), adm.claims, list(ends))


def _wire_to(cid: str, site: Site, ledger: Ledger, node: NodeRecord, iface_id: str,
             switch: Component, edge: EdgePort) -> tuple[PortRef, PortRef] | Refusal:
    """The site wire from the node's host to the edge's switch the link takes: the one its
    interface names (`component_id`), else the first whose switch port no live stitched link
    uses (the node takes the wire whole: its host end becomes the node's interface)."""
    host = node.component
    named = node.interfaces[iface_id].port
    wires = [(mine, far) for _l, mine, far in site.links_by_component.get(
                 host.component_id.lower(), ())
             if far.component_id.lower() == switch.component_id.lower()
             and (not named or mine.interface_id.lower() == named.lower())]
    if not wires:
        return Refusal(cid, "UNSUPPORTED", f"node {node.spec.client_id} is on {host.name}, which "
                                           f"has no wire to switch {switch.name}"
                                           + (f" at {named}" if named else "")
                                           + f" where edge port {edge.name} is; wire it "
                                           "([[links]]) or bind the node to a host that is")
    busy: set = set()          # switch ports carrying a stitched link, or a VLAN link's tag
    for s in ledger.usage(switch).slivers:
        if s.link is not None and s.link.mode == STITCH_MODE:
            busy.add(s.params.get("switch_port"))
        elif s.link is not None:
            busy.update((s.params.get("switch_ports") or {}).values())
    for mine, far in wires:
        if far.port not in busy:
            return mine, far
    ports = ", ".join(f"{host.name}:{m.port}" for m, _f in wires)
    return Refusal(cid, "UNAVAILABLE", f"stitched link {cid}: every wire from {host.name} to "
                                       f"switch {switch.name} ({ports}) already carries a "
                                       "stitched link or a VLAN link (a stitched link's node "
                                       "takes its wire whole)")


def _through_switch(link: RequestLink, node_id: str, iface_id: str,
                    records: Mapping[str, NodeRecord], site: Site, ledger: Ledger,
                    slice_urn: str, edge: EdgePort, via: tuple[Component, PortRef, PortRef],
                    tag: int, hops: list[list[str]], path) -> list[LinkRecord] | Refusal:
    """The local path node -> host port -> site wire -> switch port -> switch -> edge port, as
    two link slivers: on the host, the node takes the wire's host end as its interface (mode
    "wire"; shaped there at the link's capacity); on the switch, the flows between the wire's
    switch port and the edge port, the tag pushed toward the edge and popped from it (mode
    "stitch"). The tag is held on every hop: the edge port, the switch port, the host port."""
    cid = link.client_id
    sw, mine, far = via
    host = records[node_id].component
    kbps = link.capacity_kbps
    end = LinkEnd(sliver_urn="", node_client_id=node_id, interface_client_id=iface_id,
                  component_id=host.component_id)
    known = {h[0].lower() for h in hops}
    hops = hops + [[p.interface_id, f"{c.name}:{p.port}"] for c, p in ((sw, far), (host, mine))
                   if p.interface_id.lower() not in known]
    sw_spec = SliverSpec(
        sliver_urn="", slice_urn=slice_urn, client_id=cid, kind=ResourceKind.LINK,
        component_id=sw.component_id,
        link=LinkSpec(ends=(end,), vlan_tag=tag, mode=STITCH_MODE),
        params={"edge": edge.name, "edge_port": edge.port, "switch_port": far.port,
                "kbps": kbps, "mtu": edge.mtu, "path_id": path.id,
                "path_xml": path.element_xml, "hops": hops})
    driver = site.drivers[host.driver]
    if not driver.capabilities.wires:
        return Refusal(cid, "UNSUPPORTED", f"component {host.name} (node {node_id}) cannot take "
                                           f"its wire to switch {sw.name} into a sliver")
    device = (host.extra.get("devices") or {}).get(mine.port, mine.port)
    host_spec = SliverSpec(
        sliver_urn="", slice_urn=slice_urn, client_id=cid, kind=ResourceKind.LINK,
        component_id=host.component_id,
        link=LinkSpec(ends=(end,), capacity_kbps=kbps, mode="wire"),
        params={"wires": {iface_id: device}, "stitched": True, "stitch_switch": sw.name,
                "port": mine.port})
    out: list[LinkRecord] = []
    for comp, spec in ((sw, sw_spec), (host, host_spec)):
        adm = site.drivers[comp.driver].admit(spec, ledger.usage(comp))
        if not adm.ok:
            return Refusal(cid, adm.reason_code or "UNSUPPORTED",
                           adm.reason or f"component {comp.component_id} refused link {cid}")
        demand = dict(adm.demand)
        claims = tuple(adm.claims)
        wire_kbps = ledger.free(sw, f"kbps:{far.port}")
        if comp is sw and kbps and wire_kbps is not None:
            if wire_kbps < kbps:
                return Refusal(cid, "INSUFFICIENT_BANDWIDTH",
                               f"stitched link {cid} needs {kbps} kbps on wire {host.name}:"
                               f"{mine.port} - {sw.name}:{far.port}, {max(wire_kbps, 0):g} "
                               "kbps free")
            demand[f"kbps:{far.port}"] = demand.get(f"kbps:{far.port}", 0.0) + float(kbps)
        if comp is host:
            claims = tuple(dict.fromkeys((*claims, f"wire:{host.name}:{mine.port}")))
        out.append(LinkRecord(link, comp, comp.driver, spec, demand, claims,
                              [(node_id, iface_id)]))
    for rec in out:
        ledger.commit(rec.component, rec.spec, rec.demand)
    node = records[node_id]
    node.interfaces[iface_id] = replace(node.interfaces[iface_id], port=mine.interface_id)
    return out


__all__ = ["STITCH_MODE", "place_stitched", "same_tag_hops", "stitched_tags"]
