"""The GENI stitching extension: VLAN ranges, request paths, advertisement and manifest parts.

A stitched link crosses aggregates on one VLAN. The request carries, next to the `<link>` with
`component_manager`s of several aggregates, a top-level `<stitching>` element whose `<path id>`
is the link's client_id and lists the hops in order; each hop names a port (`<link id=URN>`)
and its `switchingCapabilityDescriptor` / `switchingCapabilitySpecificInfo_L2sc` gives the
hop's `vlanRangeAvailability`, `suggestedVLANRange` (a tag, a range or `any`),
`vlanTranslation` and `interfaceMTU`. The AM of a hop picks a tag, reserves it, and answers
with the path in its manifest, its own hops' `suggestedVLANRange` and `vlanRangeAvailability`
set to the chosen tag (what the geni-tools stitcher reads back and passes on to the next
aggregate). The namespace written is stitching v2; requests in v2 or the 0.1 namespace are
read. Nothing here knows the site: the AM matches hops to its edge ports (docs/stitching.md).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from lxml import etree

from rspec import namespaces as ns
from rspec.xmltext import attr, text, timestamp

#: Stitching namespaces read in requests (v2 first: the one written).
STITCH_NAMESPACES = (ns.STITCH2, ns.STITCH01)
#: The whole VLAN space a range may name (802.1Q: 0 and 4095 are reserved).
VLAN_MIN, VLAN_MAX = 1, 4094
ANY = "any"


class VlanRangeError(ValueError):
    """A VLAN range text that is not one."""


def parse_vlan_range(value: str | None) -> frozenset[int] | None:
    """`"100"`, `"100-199"`, `"100-105,200"` -> the set of tags; `"any"` (or empty) -> None
    (every tag). VlanRangeError names what is wrong."""
    raw = (value or "").strip()
    if not raw or raw.lower() == ANY:
        return None
    tags: set[int] = set()
    for part in raw.split(","):
        part = part.strip()
        if not part:
            raise VlanRangeError(f"VLAN range {raw!r} has an empty item")
        lo_text, sep, hi_text = part.partition("-")
        try:
            lo = int(lo_text.strip())
            hi = int(hi_text.strip()) if sep else lo
        except ValueError:
            raise VlanRangeError(f"VLAN range {raw!r}: {part!r} is not a tag or a range "
                                 "(e.g. 100, 100-199, any)") from None
        if lo > hi:
            raise VlanRangeError(f"VLAN range {raw!r}: {part!r} runs backwards")
        if lo < VLAN_MIN or hi > VLAN_MAX:
            raise VlanRangeError(f"VLAN range {raw!r}: {part!r} is outside "
                                 f"{VLAN_MIN}-{VLAN_MAX}")
        tags.update(range(lo, hi + 1))
    return frozenset(tags)


def format_vlan_range(tags: Iterable[int]) -> str:
    """The shortest range text of `tags` ("100-105,200"); empty for no tag."""
    out: list[str] = []
    run: list[int] = []
    for tag in sorted(set(tags)):
        if run and tag == run[-1] + 1:
            run.append(tag)
            continue
        if run:
            out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [tag]
    if run:
        out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(out)


def urn_authority(urn: str) -> str:
    """The authority part of a URN ("urn:publicid:IDN+auth+type+name" -> "auth"), lowercased;
    empty when the text is not such a URN."""
    parts = urn.strip().split("+")
    if len(parts) < 4 or parts[0].lower() != "urn:publicid:idn":
        return ""
    return parts[1].strip().lower()


@dataclass(frozen=True)
class StitchHop:
    """One hop of a request path (its port and VLAN facts, as the request gave them)."""

    id: str
    link_id: str                              # the port (or link) URN the hop crosses
    availability: frozenset[int] | None = None   # vlanRangeAvailability; None = any
    suggested: frozenset[int] | None = None      # suggestedVLANRange; None = any
    translation: bool = False
    capacity_kbps: int | None = None
    mtu: int | None = None
    aggregate_id: str | None = None           # aggregateIdRef / aggregate id, when given

    def allowed(self) -> frozenset[int] | None:
        """The tags this hop can take: its availability within its suggestion (None = any)."""
        if self.availability is None:
            return self.suggested
        if self.suggested is None:
            return self.availability
        return self.availability & self.suggested


@dataclass(frozen=True)
class StitchPath:
    """A request path: its id (the stitched link's client_id) and hops in order."""

    id: str
    hops: tuple[StitchHop, ...]
    element_xml: str = ""                     # the original <path>, echoed in the manifest

    def hops_of(self, authority: str) -> tuple[StitchHop, ...]:
        """The hops at the aggregate of `authority` (by their port URN's authority)."""
        want = authority.strip().lower()
        return tuple(h for h in self.hops if urn_authority(h.link_id) == want)


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def _child(el: etree._Element, name: str) -> etree._Element | None:
    return next((c for c in el if isinstance(c.tag, str) and _local(c) == name), None)


def _present(el: etree._Element, name: str) -> etree._Element:
    """`_child` of one the caller has just made sure is there."""
    found = _child(el, name)
    assert found is not None, name
    return found


def _child_text(el: etree._Element | None, name: str) -> str | None:
    if el is None:
        return None
    found = _child(el, name)
    return None if found is None or found.text is None else found.text.strip()


def _l2sc(link: etree._Element) -> etree._Element | None:
    for scd in (c for c in link if isinstance(c.tag, str)
                and _local(c) == "switchingCapabilityDescriptor"):
        info = _child(scd, "switchingCapabilitySpecificInfo")
        if info is not None:
            l2 = _child(info, "switchingCapabilitySpecificInfo_L2sc")
            if l2 is not None:
                return l2
    return None


def read_paths(stitching: etree._Element) -> tuple[list[StitchPath], list[tuple[int | None, str]]]:
    """The paths of a request's `<stitching>` element, and the problems found (line, message):
    a hop with no port, a VLAN range that is not one, a capacity or MTU that is not a number."""
    paths: list[StitchPath] = []
    problems: list[tuple[int | None, str]] = []
    for path_el in (c for c in stitching if isinstance(c.tag, str) and _local(c) == "path"):
        pid = (path_el.get("id") or "").strip()
        hops: list[StitchHop] = []
        for hop_el in (c for c in path_el if isinstance(c.tag, str) and _local(c) == "hop"):
            hid = (hop_el.get("id") or "").strip()
            where = f"stitching path {pid!r} hop {hid!r}"
            link = _child(hop_el, "link")
            link_id = (link.get("id") or "").strip() if link is not None else ""
            if not hid:
                problems.append((hop_el.sourceline, f"stitching path {pid!r}: a hop has no id"))
            if not link_id:
                problems.append((hop_el.sourceline, f"{where} names no port (<link id=...>)"))
                continue
            if not urn_authority(link_id):
                problems.append((hop_el.sourceline, f"{where}: port {link_id!r} is not a URN "
                                                    "(urn:publicid:IDN+authority+type+name)"))
                continue
            l2 = _l2sc(link)
            ranges: dict[str, frozenset[int] | None] = {}
            for name in ("vlanRangeAvailability", "suggestedVLANRange"):
                try:
                    ranges[name] = parse_vlan_range(_child_text(l2, name))
                except VlanRangeError as exc:
                    problems.append((hop_el.sourceline, f"{where}: {name}: {exc}"))
                    ranges[name] = None
            numbers: dict[str, int | None] = {}
            for name, parent in (("capacity", link), ("interfaceMTU", l2)):
                raw = _child_text(parent, name)
                numbers[name] = None
                if raw:
                    try:
                        numbers[name] = int(float(raw))
                    except ValueError:
                        problems.append((hop_el.sourceline,
                                         f"{where}: {name} {raw!r} is not a number"))
            translation = (_child_text(l2, "vlanTranslation") or "").lower() in ("true", "1")
            agg = _child_text(hop_el, "aggregateIdRef")
            hops.append(StitchHop(id=hid, link_id=link_id,
                                  availability=ranges["vlanRangeAvailability"],
                                  suggested=ranges["suggestedVLANRange"],
                                  translation=translation, capacity_kbps=numbers["capacity"],
                                  mtu=numbers["interfaceMTU"], aggregate_id=agg))
        if not pid:
            problems.append((path_el.sourceline, "a stitching path has no id"))
            continue
        paths.append(StitchPath(id=pid, hops=tuple(hops),
                                element_xml=etree.tostring(path_el, encoding="unicode",
                                                           with_tail=False)))
    return paths, problems


# ---- advertisement ------------------------------------------------------------------------------

@dataclass(frozen=True)
class EdgeAd:
    """One edge port as advertised: its URN, the peer it is wired to, and its VLAN facts."""

    port_id: str                     # this port's URN
    remote_port_id: str              # the peer aggregate's port URN (remoteLinkId)
    vlans: frozenset[int]            # vlanRangeAvailability (only free tags when asked)
    capacity_kbps: int | None = None
    mtu: int = 1500
    translation: bool = False
    node_id: str | None = None       # the component the port is on


STITCHING_MODE = "chainANDTree"


def stitching_ad(aggregate_id: str, url: str, edges: Iterable[EdgeAd], *,
                 updated: datetime | None = None, mode: str = STITCHING_MODE) -> str:
    """The advertisement's top-level `<stitching>` element text (stitching v2 namespace)."""
    when = timestamp(updated or datetime.now(timezone.utc))
    out = [f'  <stitching xmlns="{ns.STITCH2}" lastUpdateTime="{attr(when)}">\n',
           f'    <aggregate id="{attr(aggregate_id)}" url="{attr(url)}">\n',
           '      <aggregatetype>geni-am</aggregatetype>\n',
           f'      <stitchingmode>{text(mode)}</stitchingmode>\n',
           '      <scheduledservices>false</scheduledservices>\n',
           '      <negotiatedservices>true</negotiatedservices>\n']
    by_node: dict[str, list[EdgeAd]] = {}
    for edge in edges:
        by_node.setdefault(edge.node_id or aggregate_id, []).append(edge)
    for node_id, ports in by_node.items():
        out.append(f'      <node id="{attr(node_id)}">\n')
        for edge in ports:
            cap = "" if edge.capacity_kbps is None else str(int(edge.capacity_kbps))
            out += [f'        <port id="{attr(edge.port_id)}">\n',
                    f'          <capacity>{cap}</capacity>\n',
                    f'          <maximumReservableCapacity>{cap}</maximumReservableCapacity>\n',
                    '          <minimumReservableCapacity>1</minimumReservableCapacity>\n',
                    '          <granularity>1</granularity>\n',
                    f'          <link id="{attr(edge.port_id)}">\n',
                    f'            <remoteLinkId>{text(edge.remote_port_id)}</remoteLinkId>\n',
                    '            <trafficEngineeringMetric>10</trafficEngineeringMetric>\n',
                    f'            <capacity>{cap}</capacity>\n',
                    f'            <maximumReservableCapacity>{cap}</maximumReservableCapacity>\n',
                    '            <minimumReservableCapacity>1</minimumReservableCapacity>\n',
                    '            <granularity>1</granularity>\n',
                    _l2sc_text(format_vlan_range(edge.vlans), None, edge.mtu, edge.translation, "            "),
                    '          </link>\n',
                    '        </port>\n']
        out.append('      </node>\n')
    out.append('    </aggregate>\n  </stitching>\n')
    return "".join(out)


def _l2sc_text(vlans: str, suggested: str | None, mtu: int, translation: bool,
               pad: str) -> str:
    lines = [f'{pad}<switchingCapabilityDescriptor>\n',
             f'{pad}  <switchingcapType>l2sc</switchingcapType>\n',
             f'{pad}  <encodingType>ethernet</encodingType>\n',
             f'{pad}  <switchingCapabilitySpecificInfo>\n',
             f'{pad}    <switchingCapabilitySpecificInfo_L2sc>\n',
             f'{pad}      <interfaceMTU>{int(mtu)}</interfaceMTU>\n',
             f'{pad}      <vlanRangeAvailability>{text(vlans)}</vlanRangeAvailability>\n']
    if suggested is not None:
        lines.append(f'{pad}      <suggestedVLANRange>{text(suggested)}</suggestedVLANRange>\n')
    lines += [f'{pad}      <vlanTranslation>{"true" if translation else "false"}'
              '</vlanTranslation>\n',
              f'{pad}    </switchingCapabilitySpecificInfo_L2sc>\n',
              f'{pad}  </switchingCapabilitySpecificInfo>\n',
              f'{pad}</switchingCapabilityDescriptor>\n']
    return "".join(lines)


# ---- manifest -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ManifestPath:
    """A path this AM reserved: the request's `<path>` and the tag chosen on its local hops."""

    path_xml: str
    local_hops: tuple[str, ...]      # hop ids at this AM
    tag: int


def manifest_stitching(paths: Iterable[ManifestPath], *,
                       updated: datetime | None = None) -> etree._Element | None:
    """The manifest's `<stitching>` element (v2 namespace): each reserved path as requested,
    its local hops' suggestedVLANRange and vlanRangeAvailability set to the chosen tag."""
    paths = list(paths)
    if not paths:
        return None
    stitch = "{%s}" % ns.STITCH2
    root = etree.Element(stitch + "stitching", nsmap={None: ns.STITCH2})
    root.set("lastUpdateTime", timestamp(updated or datetime.now(timezone.utc)))
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    for mp in paths:
        path = _to_v2(etree.fromstring(mp.path_xml.encode("utf-8"), parser))
        for hop in path.iter(stitch + "hop"):
            if hop.get("id") not in mp.local_hops:
                continue
            link = hop.find(stitch + "link")
            if link is None:
                continue
            l2 = _manifest_l2sc(link, stitch)
            for name in ("vlanRangeAvailability", "suggestedVLANRange", "vlanTranslation"):
                if _child(l2, name) is None:
                    _insert_in_order(l2, stitch + name)
            _present(l2, "vlanRangeAvailability").text = str(mp.tag)
            _present(l2, "suggestedVLANRange").text = str(mp.tag)
            _present(l2, "vlanTranslation").text = "false"     # this AM never translates
            # the stitcher reads the text of every element here: an empty one breaks it
            for child in [c for c in l2 if isinstance(c.tag, str)]:
                if not (child.text or "").strip() and not len(child):
                    l2.remove(child)
        root.append(path)
    return root


def _manifest_l2sc(link: etree._Element, stitch: str) -> etree._Element:
    """The hop link's `switchingCapabilitySpecificInfo_L2sc`, made where missing inside the
    link's *first* `switchingCapabilityDescriptor` (the one the stitcher reads)."""
    found = _l2sc(link)
    first = _child(link, "switchingCapabilityDescriptor")
    if found is not None and found.getparent().getparent() is first:
        return found
    if first is None:
        first = etree.SubElement(link, stitch + "switchingCapabilityDescriptor")
        etree.SubElement(first, stitch + "switchingcapType").text = "l2sc"
        etree.SubElement(first, stitch + "encodingType").text = "ethernet"
    info = _child(first, "switchingCapabilitySpecificInfo")
    if info is None:
        info = etree.SubElement(first, stitch + "switchingCapabilitySpecificInfo")
    return etree.SubElement(info, stitch + "switchingCapabilitySpecificInfo_L2sc")


_L2SC_ORDER = ("capability", "interfaceMTU", "vlanRangeAvailability", "suggestedVLANRange",
               "vlanTranslation")


def _insert_in_order(parent: etree._Element, tag: str) -> etree._Element:
    rank = _L2SC_ORDER.index(etree.QName(tag).localname)
    new = etree.Element(tag)
    for i, child in enumerate(parent):
        if isinstance(child.tag, str) and _local(child) in _L2SC_ORDER \
                and _L2SC_ORDER.index(_local(child)) > rank:
            parent.insert(i, new)
            return new
    parent.append(new)
    return new


def _to_v2(el: etree._Element) -> etree._Element:
    """The element tree with every 0.1-namespace name moved to v2 (in place)."""
    for node in el.iter():
        if isinstance(node.tag, str) and etree.QName(node).namespace == ns.STITCH01:
            node.tag = "{%s}%s" % (ns.STITCH2, etree.QName(node).localname)
    return el




# ---- the client's side: tags from one aggregate's manifest into the next request ----------------

def manifest_tags(manifest_xml: str | bytes) -> dict[str, dict[str, int]]:
    """path id -> hop id -> the single tag a manifest's `<stitching>` gives the hop (hops
    with a range or `any` are left out)."""
    if isinstance(manifest_xml, str):
        manifest_xml = manifest_xml.encode("utf-8")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    root = etree.fromstring(manifest_xml, parser)
    out: dict[str, dict[str, int]] = {}
    for stitching in (c for c in root if isinstance(c.tag, str)
                      and etree.QName(c).localname == "stitching"):
        for path in (c for c in stitching if isinstance(c.tag, str) and _local(c) == "path"):
            hops: dict[str, int] = {}
            for hop in (c for c in path if isinstance(c.tag, str) and _local(c) == "hop"):
                link = _child(hop, "link")
                l2 = _l2sc(link) if link is not None else None
                try:
                    tags = parse_vlan_range(_child_text(l2, "suggestedVLANRange"))
                except VlanRangeError:
                    continue
                if tags is not None and len(tags) == 1:
                    hops[hop.get("id", "")] = next(iter(tags))
            out[path.get("id", "")] = hops
    return out


def with_suggested(request_xml: str, path_id: str, suggested: str,
                   *, exclude: Iterable[int] = ()) -> str:
    """The request with every hop of path `path_id` suggesting `suggested` (a tag, a range or
    `any`); `exclude`d tags are taken out of every hop's vlanRangeAvailability (a range
    made explicit from the hop's own, or from the whole VLAN space)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             remove_blank_text=False)
    root = etree.fromstring(request_xml.encode("utf-8"), parser)
    excluded = set(exclude)
    for stitching in (c for c in root if isinstance(c.tag, str)
                      and etree.QName(c).localname == "stitching"):
        for path in (c for c in stitching if isinstance(c.tag, str) and _local(c) == "path"
                     and c.get("id") == path_id):
            for hop in (c for c in path if isinstance(c.tag, str) and _local(c) == "hop"):
                link = _child(hop, "link")
                if link is None:
                    continue
                l2 = _l2sc(link)
                if l2 is None:
                    continue
                space = etree.QName(l2).namespace
                for name in ("vlanRangeAvailability", "suggestedVLANRange"):
                    if _child(l2, name) is None:
                        _insert_in_order(l2, "{%s}%s" % (space, name))
                _present(l2, "suggestedVLANRange").text = suggested
                if excluded:
                    avail_el = _present(l2, "vlanRangeAvailability")
                    avail = parse_vlan_range(avail_el.text) or frozenset(
                        range(VLAN_MIN, VLAN_MAX + 1))
                    avail_el.text = format_vlan_range(avail - excluded)
    return etree.tostring(root, encoding="unicode")


def request_path(path_id: str, hops: Iterable[tuple[str, str, str, str]], *,
                 capacity_kbps: int | None = None, mtu: int = 1500) -> str:
    """A request `<stitching>` element text (v2) with one path; each hop is
    (hop id, port URN, vlanRangeAvailability, suggestedVLANRange), in order."""
    hops = list(hops)
    out = [f'<stitching xmlns="{ns.STITCH2}" lastUpdateTime="'
           f'{timestamp(datetime.now(timezone.utc))}">\n',
           f'  <path id="{attr(path_id)}">\n']
    for i, (hop_id, port, avail, suggested) in enumerate(hops):
        cap = "" if capacity_kbps is None else f"      <capacity>{int(capacity_kbps)}</capacity>\n"
        out += [f'    <hop id="{attr(hop_id)}">\n',
                f'      <link id="{attr(port)}">\n',
                '      <trafficEngineeringMetric>10</trafficEngineeringMetric>\n',
                cap,
                _l2sc_text(avail, suggested, mtu, False, "      "),
                '      </link>\n',
                f'      <nextHop>{attr(hops[i + 1][0]) if i + 1 < len(hops) else "null"}'
                '</nextHop>\n',
                '    </hop>\n']
    out.append('  </path>\n</stitching>\n')
    return "".join(out)


__all__ = ["ANY", "EdgeAd", "ManifestPath", "STITCH_NAMESPACES", "StitchHop", "StitchPath",
           "VlanRangeError", "format_vlan_range", "manifest_stitching", "manifest_tags",
           "parse_vlan_range", "read_paths", "request_path", "stitching_ad", "urn_authority",
           "with_suggested"]
