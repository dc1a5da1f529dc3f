"""Placing a stitched link: the local part of a link between aggregates (GENI stitching).

The request's `<stitching><path>` for the link lists its hops in order; the hops whose port URN
belongs to this aggregate must name one of its edge ports (`Site.edges`), and the link's one
local end is a node on the component the edge port is on. The tag is chosen here, pure: within
the edge port's VLAN range, within every hop's `vlanRangeAvailability` and every explicit
`suggestedVLANRange` of the path (never a tag another hop excluded), and free on the edge port
now (the live stitched links in `usage`). The lowest such tag is taken. The database settles
races afterwards (am.store.stitch_tags): this only picks.

Bad input is BADARGS naming the hop (an unknown edge port, a suggested tag outside the edge
port's range); a tag in use is VLAN_UNAVAILABLE naming the hop and the tag.
"""
from __future__ import annotations

from collections.abc import Mapping

from am.engine.ledger import Ledger
from am.engine.links import LinkRecord, is_switch
from am.engine.nodes import NodeRecord
from am.engine.plan import Refusal
from drivers.base import EdgePort, LinkEnd, LinkSpec, ResourceKind, SliverSpec
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
            out[link.vlan_tag] = out.get(link.vlan_tag, 0) + int(link.capacity_kbps or 0)
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
                   slice_urn: str) -> LinkRecord | Refusal:
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
    if host.component_id.lower() != edge.component_id.lower():
        comp = site.component(edge.component_id)
        if comp is not None and is_switch(comp):
            return Refusal(cid, "UNSUPPORTED", f"edge port {edge.name} is on switch {comp.name}: "
                                               "stitched links are built from a node on the "
                                               "edge's own host only (no switch paths yet)")
        return Refusal(cid, "UNSUPPORTED", f"node {node_id} is on {host.name}, but edge port "
                                           f"{edge.name} is on {edge.component_id}; bind the "
                                           "node there")

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
    used = stitched_tags(ledger, host, edge)
    free = candidates - set(used)
    if not free:
        what = (f"VLAN {next(iter(candidates))} is" if len(candidates) == 1
                else f"every VLAN of {format_vlan_range(candidates)} is")
        return Refusal(cid, "VLAN_UNAVAILABLE", f"{what} in use on hop {hop0.id!r} "
                                                f"({edge.interface_id})")
    kbps = link.capacity_kbps
    if kbps and edge.capacity_kbps is not None:
        left = edge.capacity_kbps - sum(used.values())
        if kbps > left:
            return Refusal(cid, "INSUFFICIENT_BANDWIDTH",
                           f"stitched link {cid} needs {kbps} kbps on edge port {edge.name}, "
                           f"{max(left, 0)} kbps free")
    tag = min(free)
    spec = SliverSpec(
        sliver_urn="", slice_urn=slice_urn, client_id=cid, kind=ResourceKind.LINK,
        component_id=host.component_id,
        link=LinkSpec(ends=(LinkEnd(sliver_urn="", node_client_id=node_id,
                                    interface_client_id=iface_id,
                                    component_id=host.component_id),),
                      capacity_kbps=kbps, vlan_tag=tag, mode=STITCH_MODE),
        params={**edge.data_plane(), "mtu": edge.mtu, "path_id": path.id,
                "path_xml": path.element_xml,
                "hops": [[h.link_id, h.id] for h, _ in edges]})
    adm = site.drivers[host.driver].admit(spec, ledger.usage(host))
    if not adm.ok:
        return Refusal(cid, adm.reason_code or "UNSUPPORTED",
                       adm.reason or f"component {host.component_id} refused link {cid}")
    ledger.commit(host, spec, adm.demand)
    return LinkRecord(link, host, host.driver, spec, dict(adm.demand), adm.claims, list(ends))


__all__ = ["STITCH_MODE", "place_stitched", "same_tag_hops", "stitched_tags"]
