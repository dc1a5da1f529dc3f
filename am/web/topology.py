"""A slice's manifest RSpec -> an SVG picture of its topology (no layout engine, no JS).

Nodes are drawn as shapes by kind (container, VM, NetFPGA, switch, other: decided from the
sliver type), labelled with their client_id and filled by operational state (the manifest's
`geniam:sliver_state`). A point-to-point link is a line labelled with its capacity; a LAN (a
link with more than two ends) is a small hub joined to every member. The layout is a circle
(deterministic: manifest order), sized so that ~100 nodes stay legible.

Everything in a manifest is untrusted text: the SVG is built with lxml, so every client_id
and capacity ends up escaped in a text node or attribute, and characters XML cannot carry are
replaced. Only presentation attributes are used (no `style`), so the picture renders under a
Content-Security-Policy that forbids inline styles.
"""
from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass

from lxml import etree

from rspec import namespaces as ns
from rspec.errors import RSpecError
from rspec.xmlsafe import parse_xml

SVG_NS = "http://www.w3.org/2000/svg"
S = "{%s}" % SVG_NS
_RSPEC_NAMESPACES = (ns.RSPEC3, ns.PROTOGENI2)
MAX_LABEL = 24
NODE_SIZE = 34.0
MARGIN = 90.0


class NodeKind(str, enum.Enum):
    CONTAINER = "container"
    VM = "vm"
    NETFPGA = "netfpga"
    SWITCH = "switch"
    OTHER = "other"


class StateColour(str, enum.Enum):
    """Fill colour per operational-state family (also the legend)."""

    READY = "#2e9d4f"
    BUSY = "#d9a400"       # configuring, pending, stopping, updating users
    FAILED = "#d0342c"
    IDLE = "#8a8f98"       # notready, stopped, unknown


STATE_FAMILY: dict[str, StateColour] = {
    "geni_ready": StateColour.READY,
    "geni_ready_busy": StateColour.READY,
    "geni_configuring": StateColour.BUSY,
    "geni_pending_allocation": StateColour.BUSY,
    "geni_stopping": StateColour.BUSY,
    "geni_updating_users": StateColour.BUSY,
    "geni_failed": StateColour.FAILED,
    "geni_notready": StateColour.IDLE,
}
LEGEND: tuple[tuple[str, StateColour], ...] = (
    ("ready", StateColour.READY), ("configuring / pending", StateColour.BUSY),
    ("failed", StateColour.FAILED), ("not ready / stopped", StateColour.IDLE))


def state_colour(operational: str | None) -> StateColour:
    return STATE_FAMILY.get(operational or "", StateColour.IDLE)


def node_kind(sliver_type: str | None) -> NodeKind:
    """The picture's shape for a sliver type name (real drivers' names and common aliases)."""
    name = (sliver_type or "").lower()
    if "netfpga" in name:
        return NodeKind.NETFPGA
    if "openflow" in name or "switch" in name or "ovs" in name:
        return NodeKind.SWITCH
    if "container" in name or "vserver" in name or "lxc" in name or "docker" in name:
        return NodeKind.CONTAINER
    if "vm" in name or "xen" in name or "kvm" in name or "qemu" in name:
        return NodeKind.VM
    return NodeKind.OTHER


@dataclass(frozen=True)
class TopoNode:
    client_id: str
    kind: NodeKind
    sliver_type: str | None
    operational: str | None
    interfaces: tuple[str, ...]


@dataclass(frozen=True)
class TopoLink:
    client_id: str
    members: tuple[str, ...]          # node client_ids at this AM, in order, no repeats
    capacity_kbps: int | None
    operational: str | None


@dataclass(frozen=True)
class Topology:
    nodes: tuple[TopoNode, ...]
    links: tuple[TopoLink, ...]


class TopologyError(ValueError):
    """The manifest could not be read (not XML, or not an RSpec)."""


# ---- manifest -> model ------------------------------------------------------------------------

def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _is_rspec(el: etree._Element, local: str) -> bool:
    return isinstance(el.tag, str) and el.tag in {f"{{{n}}}{local}" for n in _RSPEC_NAMESPACES}


def _state_of(el: etree._Element) -> str | None:
    for child in el.iterchildren(f"{{{ns.GENIAM}}}sliver_state"):
        return child.get("operational")
    return None


def _capacity(link: etree._Element) -> int | None:
    caps: list[int] = []
    for prop in link:
        if _is_rspec(prop, "property") and prop.get("capacity"):
            try:
                caps.append(int(float(prop.get("capacity", ""))))
            except ValueError:
                continue
    return max(caps) if caps else None


def parse_topology(manifest_xml: str | bytes) -> Topology:
    """The nodes and links of a manifest (this AM's and foreign ones alike)."""
    try:
        root = parse_xml(manifest_xml).getroot()
    except RSpecError as exc:
        raise TopologyError(f"the manifest is not readable XML: {exc}") from None
    if not _is_rspec(root, "rspec"):
        raise TopologyError(f"the document is not an RSpec (root element {_local(root.tag)!r})")
    nodes: list[TopoNode] = []
    iface_owner: dict[str, str] = {}
    seen: set[str] = set()
    for el in root:
        if not _is_rspec(el, "node"):
            continue
        cid = el.get("client_id", "")
        if cid in seen:
            continue
        seen.add(cid)
        stype = next((st.get("name") for st in el if _is_rspec(st, "sliver_type")), None)
        ifaces = tuple(i.get("client_id", "") for i in el if _is_rspec(i, "interface"))
        for iface in ifaces:
            iface_owner.setdefault(iface, cid)
        nodes.append(TopoNode(cid, node_kind(stype), stype, _state_of(el), ifaces))
    links: list[TopoLink] = []
    for el in root:
        if not _is_rspec(el, "link"):
            continue
        members: list[str] = []
        for ref in el:
            if _is_rspec(ref, "interface_ref"):
                owner = iface_owner.get(ref.get("client_id", ""))
                if owner is not None and owner not in members:
                    members.append(owner)
        links.append(TopoLink(el.get("client_id", ""), tuple(members), _capacity(el),
                              _state_of(el)))
    return Topology(tuple(nodes), tuple(links))


# ---- text helpers ------------------------------------------------------------------------------

_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """`text` with every character XML cannot carry replaced (lxml would refuse it)."""
    return _NOT_XML.sub("\ufffd", text)


def short(text: str, limit: int = MAX_LABEL) -> str:
    text = xml_text(text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def format_capacity(kbps: int | None) -> str:
    """kbit/s -> a short human label ("100 Mb/s")."""
    if kbps is None:
        return ""
    for unit, size in (("Tb/s", 10**9), ("Gb/s", 10**6), ("Mb/s", 10**3)):
        if kbps >= size:
            value = kbps / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{kbps} kb/s"


# ---- layout and drawing ----------------------------------------------------------------------

def _circle_layout(count: int) -> tuple[float, list[tuple[float, float]]]:
    """(radius, positions) on a circle centred at the origin, first node at the top."""
    if count == 0:
        return 0.0, []
    if count == 1:
        return 0.0, [(0.0, 0.0)]
    # room for each node plus its label along the circumference
    radius = max(110.0, count * (NODE_SIZE + 30.0) / (2 * math.pi))
    return radius, [(radius * math.sin(2 * math.pi * i / count),
                     -radius * math.cos(2 * math.pi * i / count)) for i in range(count)]


def _shape(kind: NodeKind, x: float, y: float, fill: str) -> etree._Element:
    h = NODE_SIZE / 2
    common = {"fill": fill, "stroke": "#1f2933", "stroke-width": "1.5", "class": "shape"}
    if kind is NodeKind.CONTAINER:
        return etree.Element(S + "rect", x=_f(x - h), y=_f(y - h * 0.75), width=_f(2 * h),
                             height=_f(1.5 * h), rx="8", ry="8", **common)
    if kind is NodeKind.VM:
        return etree.Element(S + "rect", x=_f(x - h), y=_f(y - h * 0.75), width=_f(2 * h),
                             height=_f(1.5 * h), **common)
    if kind is NodeKind.NETFPGA:
        pts = [(x + h * math.cos(math.pi / 3 * i), y + h * math.sin(math.pi / 3 * i))
               for i in range(6)]
        return etree.Element(S + "polygon", points=_points(pts), **common)
    if kind is NodeKind.SWITCH:
        return etree.Element(S + "polygon", points=_points(
            [(x, y - h), (x + h, y), (x, y + h), (x - h, y)]), **common)
    return etree.Element(S + "circle", cx=_f(x), cy=_f(y), r=_f(h * 0.8), **common)


def _f(value: float) -> str:
    return f"{value:.1f}"


def _points(pts: list[tuple[float, float]]) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)


def _text(parent: etree._Element, x: float, y: float, text: str, *, cls: str,
          anchor: str = "middle", size: int = 11) -> etree._Element:
    t = etree.SubElement(parent, S + "text", x=_f(x), y=_f(y), **{
        "text-anchor": anchor, "font-size": str(size), "font-family": "sans-serif",
        "fill": "#1f2933", "class": cls})
    t.text = text
    return t


def _halo(text: etree._Element) -> None:
    """A white outline under a label, so it stays readable where it crosses a line."""
    text.set("stroke", "#ffffff")
    text.set("stroke-width", "3")
    text.set("paint-order", "stroke")
    text.set("stroke-linejoin", "round")


def _title(parent: etree._Element, text: str) -> None:
    etree.SubElement(parent, S + "title").text = xml_text(text)


def render_svg(topology: Topology, *, title: str = "") -> str:
    """The picture of `topology` as an SVG document string (no XML declaration, so it can be
    inlined in HTML as well as served on its own)."""
    nodes, links = topology.nodes, topology.links
    radius, positions = _circle_layout(len(nodes))
    where = {n.client_id: p for n, p in zip(nodes, positions)}
    half = radius + MARGIN
    legend_h = 24.0 * (len(LEGEND) + 1)
    width = max(2 * half, 420.0)
    height = 2 * half + legend_h
    ox, oy = width / 2, half    # the circle's centre in picture coordinates
    svg = etree.Element(S + "svg", nsmap={None: SVG_NS}, attrib={
        "viewBox": f"0 0 {width:.0f} {height:.0f}", "width": f"{width:.0f}",
        "height": f"{height:.0f}", "role": "img", "class": "topology"})
    _title(svg, title or "slice topology")
    if not nodes and not links:
        _text(svg, width / 2, half, "no slivers at this aggregate", cls="empty", size=14)

    link_layer = etree.SubElement(svg, S + "g", attrib={"class": "links"})
    for index, link in enumerate(links):
        colour = state_colour(link.operational).value
        g = etree.SubElement(link_layer, S + "g", attrib={
            "class": "link", "data-client-id": xml_text(link.client_id),
            "data-state": xml_text(link.operational or ""),
            "data-capacity-kbps": "" if link.capacity_kbps is None else str(link.capacity_kbps)})
        _title(g, f"link {link.client_id}" + (f" ({format_capacity(link.capacity_kbps)})"
                                              if link.capacity_kbps is not None else ""))
        ends = [(ox + where[m][0], oy + where[m][1]) for m in link.members if m in where]
        label = format_capacity(link.capacity_kbps)
        line_attrs = {"stroke": colour, "stroke-width": "2.5", "class": "edge"}
        if len(ends) == 2:
            (x1, y1), (x2, y2) = ends
            etree.SubElement(g, S + "line", x1=_f(x1), y1=_f(y1), x2=_f(x2), y2=_f(y2),
                             **line_attrs)
            lx, ly = (x1 + x2) / 2, (y1 + y2) / 2 - 4
        else:
            # a LAN (or a link whose other ends are elsewhere): a hub joined to each member
            if ends:
                hx = sum(x for x, _ in ends) / len(ends)
                hy = sum(y for _, y in ends) / len(ends)
            else:   # no member here: park the hub below the circle, one slot per link
                hx, hy = ox - radius + 30.0 * index, oy + radius + 40.0
            for x, y in ends:
                etree.SubElement(g, S + "line", x1=_f(hx), y1=_f(hy), x2=_f(x), y2=_f(y),
                                 **line_attrs)
            etree.SubElement(g, S + "circle", cx=_f(hx), cy=_f(hy), r="7", fill=colour,
                             stroke="#1f2933", attrib={"stroke-width": "1", "class": "hub"})
            lx, ly = hx + 11, hy - 2
        anchor = "middle" if len(ends) == 2 else "start"
        _halo(_text(g, lx, ly, short(link.client_id), cls="link-label", size=10, anchor=anchor))
        if label:
            _halo(_text(g, lx, ly + 12, label, cls="capacity", size=10, anchor=anchor))

    node_layer = etree.SubElement(svg, S + "g", attrib={"class": "nodes"})
    for node in nodes:
        x, y = where[node.client_id]
        x, y = ox + x, oy + y
        g = etree.SubElement(node_layer, S + "g", attrib={
            "class": f"node {node.kind.value}", "data-client-id": xml_text(node.client_id),
            "data-kind": node.kind.value, "data-state": xml_text(node.operational or "")})
        _title(g, f"{node.client_id} ({node.sliver_type or 'any type'}): "
                  f"{node.operational or 'no operational state'}")
        g.append(_shape(node.kind, x, y, state_colour(node.operational).value))
        _text(g, x, y + NODE_SIZE / 2 + 14, short(node.client_id), cls="node-label")

    legend = etree.SubElement(svg, S + "g", attrib={"class": "legend"})
    top = 2 * half + 6
    _text(legend, 12, top + 10, "operational state", cls="legend-title", anchor="start")
    for i, (name, colour) in enumerate(LEGEND):
        y = top + 24 * (i + 1)
        etree.SubElement(legend, S + "rect", x="12", y=_f(y - 1), width="14", height="14",
                         fill=colour.value, stroke="#1f2933", attrib={"stroke-width": "1"})
        _text(legend, 32, y + 11, name, cls="legend-label", anchor="start")
    return etree.tostring(svg, encoding="unicode")


def manifest_to_svg(manifest_xml: str | bytes, *, title: str = "") -> str:
    """The topology picture of a manifest RSpec (TopologyError if it is not one)."""
    return render_svg(parse_topology(manifest_xml), title=title)


__all__ = ["LEGEND", "NodeKind", "StateColour", "TopoLink", "TopoNode", "Topology",
           "TopologyError", "format_capacity", "manifest_to_svg", "node_kind", "parse_topology",
           "render_svg", "state_colour"]
