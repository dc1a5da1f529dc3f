"""A slice's manifest RSpec -> an SVG picture of its topology, laid out by Graphviz (no JS).

Model: nodes (shapes by kind: container, VM, NetFPGA, switch, other, decided from the sliver
type; a node asking to be a router is drawn as one), their interface addresses, links (their
client_id and capacity) and OpenFlow slivers (one switch per datapath, labelled with its ports
and controller). Everything is filled by operational state (the manifest's
`geniam:sliver_state`).

Layout: Graphviz's `dot` (through the `graphviz` Python package, `-Tjson0`) places every
picture element as a fixed-size box whose size is that of its shape and text lines here, so
Graphviz keeps them apart: a node box holds the shape and, below it, the name and addresses; a
link is a box of its own (its name and capacity, and a hub for a LAN) joined by edges to its
members, so a chain is laid out as a chain along one rank line (left to right) and a label never
lies over a node. The edges are Graphviz's splines. Drawing is ours (lxml), so classes and
`data-*` attributes stay stable for the dashboard and its tests.

Everything in a manifest is untrusted text: the SVG is built with lxml, so every client_id,
address and capacity ends up escaped in a text node or attribute (Graphviz only sees our own
identifiers `n0`, `l0`, ...), and characters XML cannot carry are replaced. Only presentation
attributes are used (no `style`), so the picture renders under a Content-Security-Policy that
forbids inline styles.
"""
from __future__ import annotations

import enum
import ipaddress
import json
import math
import re
from dataclasses import dataclass

import graphviz
from lxml import etree

from rspec import namespaces as ns
from rspec.errors import RSpecError
from rspec.xmlsafe import parse_xml

SVG_NS = "http://www.w3.org/2000/svg"
S = "{%s}" % SVG_NS
_RSPEC_NAMESPACES = (ns.RSPEC3, ns.PROTOGENI2)
MAX_LABEL = 24
MAX_ADDRESSES = 4          # address lines under a node; more are summed up as "+N more"
NODE_SIZE = 34.0
MARGIN = 16.0
# text metrics: a generous average advance per character (sans-serif, em units), so a label's
# box as drawn by any browser stays inside the box Graphviz kept free for it
CHAR_EM = 0.68
LINE = 1.3                 # line height in em
NAME_PX, SMALL_PX = 11, 10
PAD = 6.0
HUB_R = 7.0


class NodeKind(str, enum.Enum):
    CONTAINER = "container"
    VM = "vm"
    NETFPGA = "netfpga"
    SWITCH = "switch"
    OTHER = "other"


class Role(str, enum.Enum):
    """What a node does in the network (its drawing: routers and switches unlike hosts)."""

    HOST = "host"
    ROUTER = "router"
    SWITCH = "switch"


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
    router: bool = False
    addresses: tuple[str, ...] = ()     # "10.0.1.1/24", in interface order
    notes: tuple[str, ...] = ()         # extra label lines (an OpenFlow datapath's ports, ...)

    @property
    def role(self) -> Role:
        if self.kind is NodeKind.SWITCH:
            return Role.SWITCH
        if self.router or self.kind is NodeKind.NETFPGA:
            return Role.ROUTER
        return Role.HOST


@dataclass(frozen=True)
class TopoLink:
    client_id: str
    members: tuple[str, ...]          # node client_ids at this AM, in order, no repeats
    capacity_kbps: int | None
    operational: str | None
    ends: int = 0                     # interface_refs, here and elsewhere

    @property
    def hub(self) -> bool:
        """Drawn with a hub: a LAN, or a link some of whose ends are not drawn here."""
        return len(self.members) != 2 or self.ends > 2


@dataclass(frozen=True)
class Topology:
    nodes: tuple[TopoNode, ...]
    links: tuple[TopoLink, ...]


class TopologyError(ValueError):
    """The manifest could not be read (not XML, or not an RSpec), or not laid out."""


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


def _address(ip: etree._Element) -> str | None:
    """"10.0.1.1/24" from an <ip address= netmask=> (the netmask as a prefix when it is one)."""
    address = (ip.get("address") or "").strip()
    if not address:
        return None
    mask = (ip.get("netmask") or "").strip()
    if not mask:
        return address
    try:
        prefix = ipaddress.ip_network(f"0.0.0.0/{mask}").prefixlen if "." in mask else int(mask)
        return f"{address}/{prefix}"
    except ValueError:
        return f"{address}/{mask}"


def _is_router(el: etree._Element) -> bool:
    return any(x.get("router") in ("true", "1")
               for x in el.iterchildren(f"{{{ns.GENIAM}}}node"))


def _openflow_nodes(root: etree._Element) -> list[TopoNode]:
    """One switch per datapath of each OpenFlow sliver (its state is the `sliver_state` the
    manifest puts right after the sliver)."""
    out: list[TopoNode] = []
    for el in root.iterchildren(f"{{{ns.OPENFLOW3}}}sliver"):
        state = None
        nxt = el.getnext()
        if nxt is not None and nxt.tag == f"{{{ns.GENIAM}}}sliver_state":
            state = nxt.get("operational")
        controllers = [c.get("url", "") for c in el.iterchildren(f"{{{ns.OPENFLOW3}}}controller")]
        seen: dict[str, set[str]] = {}
        for dp in el.iter(f"{{{ns.OPENFLOW3}}}datapath"):
            name = dp.get("component_id") or dp.get("dpid") or "datapath"
            ports = seen.setdefault(name, set())
            ports.update(p.get("name") or p.get("num") or "?"
                         for p in dp.iterchildren(f"{{{ns.OPENFLOW3}}}port"))
        if not seen:
            seen["flowspace"] = set()
        for name, ports in seen.items():
            short_name = name.rsplit("+", 1)[-1]
            notes = ["OpenFlow datapath"]
            if ports:
                notes.append("ports " + ", ".join(sorted(ports, key=lambda p: (len(p), p))))
            notes += [f"controller {c}" for c in controllers[:1] if c]
            out.append(TopoNode(f"openflow:{short_name}", NodeKind.SWITCH, "openflow", state,
                                (), notes=tuple(notes)))
    return out


def parse_topology(manifest_xml: str | bytes) -> Topology:
    """The nodes, links and OpenFlow datapaths of a manifest (this AM's and foreign ones)."""
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
        ifaces = [i for i in el if _is_rspec(i, "interface")]
        names = tuple(i.get("client_id", "") for i in ifaces)
        for iface in names:
            iface_owner.setdefault(iface, cid)
        addresses = tuple(a for i in ifaces for ip in i if _is_rspec(ip, "ip")
                          for a in [_address(ip)] if a)
        nodes.append(TopoNode(cid, node_kind(stype), stype, _state_of(el), names,
                              router=_is_router(el), addresses=addresses))
    for of in _openflow_nodes(root):
        if of.client_id not in seen:
            seen.add(of.client_id)
            nodes.append(of)
    links: list[TopoLink] = []
    for el in root:
        if not _is_rspec(el, "link"):
            continue
        members: list[str] = []
        ends = 0
        for ref in el:
            if _is_rspec(ref, "interface_ref"):
                ends += 1
                owner = iface_owner.get(ref.get("client_id", ""))
                if owner is not None and owner not in members:
                    members.append(owner)
        links.append(TopoLink(el.get("client_id", ""), tuple(members), _capacity(el),
                              _state_of(el), ends))
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


def text_width(text: str, size: int) -> float:
    """The width a label may take when drawn (generous, see CHAR_EM)."""
    return len(text) * size * CHAR_EM


# ---- what is drawn: boxes of shapes and text lines ---------------------------------------------

@dataclass
class _Box:
    gid: str                                  # Graphviz's name for it (ours: n0, l0, ...)
    lines: list[tuple[str, str, int]]         # (text, class, font size)
    half: float                               # half the height of the shape drawn at the
                                              # box's centre (0: none, the text is centred)
    width: float = 0.0
    height: float = 0.0
    cx: float = 0.0
    cy: float = 0.0

    def measure(self, min_width: float) -> None:
        widest = max((text_width(t, size) for t, _, size in self.lines), default=0.0)
        self.width = max(min_width, widest + 2 * PAD)
        text_h = sum(size * LINE for _, _, size in self.lines)
        # a shape sits at the centre, where the edges meet it (so a chain is a straight line):
        # the box is as high below the centre (shape, text) as above it
        self.height = (2 * (self.half + PAD / 2 + text_h) + PAD if self.half
                       else text_h + PAD)

    def text_top(self) -> float:
        if self.half:
            return self.cy + self.half + PAD / 2
        return self.cy - (self.height - PAD) / 2


def _node_box(i: int, node: TopoNode) -> _Box:
    lines = [(short(node.client_id), "node-label", NAME_PX)]
    shown = list(node.addresses[:MAX_ADDRESSES])
    if len(node.addresses) > MAX_ADDRESSES:
        shown.append(f"+{len(node.addresses) - MAX_ADDRESSES} more")
    lines += [(short(a, 32), "address", SMALL_PX) for a in shown]
    lines += [(short(n, 32), "note", SMALL_PX) for n in node.notes]
    box = _Box(f"n{i}", lines, half=NODE_SIZE / 2)
    box.measure(NODE_SIZE + 2 * PAD)
    return box


def _link_box(j: int, link: TopoLink) -> _Box:
    lines = [(short(link.client_id), "link-label", SMALL_PX)]
    if link.capacity_kbps is not None:
        lines.append((format_capacity(link.capacity_kbps), "capacity", SMALL_PX))
    box = _Box(f"l{j}", lines, half=HUB_R if link.hub else 0.0)
    box.measure(24.0)
    return box


def _inches(px: float) -> str:
    return f"{px / 72:.4f}"


def _layout(topology: Topology, boxes: list[_Box]) -> tuple[float, float, dict[tuple[str, str],
                                                                                list]]:
    """Run dot: sets every box's centre; returns (width, height, spline points per edge)."""
    graph = graphviz.Graph(engine="dot", graph_attr={
        "rankdir": "LR", "nodesep": "0.25", "ranksep": "0.35", "splines": "true",
        "outputorder": "edgesfirst", "pad": "0"},
        node_attr={"shape": "box", "fixedsize": "true", "label": ""})
    for box in boxes:
        graph.node(box.gid, width=_inches(box.width), height=_inches(box.height))
    index = {n.client_id: f"n{i}" for i, n in enumerate(topology.nodes)}
    for j, link in enumerate(topology.links):
        members = [index[m] for m in link.members if m in index]
        if not link.hub and len(members) == 2:
            graph.edge(members[0], f"l{j}")      # a chain goes on along one rank line
            graph.edge(f"l{j}", members[1])
        else:
            for m in members:
                graph.edge(m, f"l{j}")
    try:
        out = graph.pipe(format="json0", encoding="utf-8")
    except graphviz.ExecutableNotFound:
        raise TopologyError("Graphviz is not installed (no `dot` program)") from None
    except Exception as exc:   # noqa: BLE001 - dot failed or timed out: the page says so
        raise TopologyError(f"Graphviz could not lay the topology out: {exc}") from None
    doc = json.loads(out)
    _, _, width, height = (float(v) for v in doc["bb"].split(","))
    by_name = {b.gid: b for b in boxes}
    names = {}
    for obj in doc.get("objects", ()):
        names[obj["_gvid"]] = obj["name"]
        box = by_name.get(obj["name"])
        if box is not None and "pos" in obj:
            x, y = (float(v) for v in obj["pos"].split(","))
            box.cx, box.cy = x + MARGIN, height - y + MARGIN
    splines: dict[tuple[str, str], list] = {}
    for edge in doc.get("edges", ()):
        pts = [tuple(float(v) for v in p.split(",")) for p in edge.get("pos", "").split()
               if not p.startswith(("s,", "e,"))]
        splines[(names[edge["tail"]], names[edge["head"]])] = [
            (x + MARGIN, height - y + MARGIN) for x, y in pts]
    return width + 2 * MARGIN, height + 2 * MARGIN, splines


# ---- drawing -----------------------------------------------------------------------------------

def _polygon(cx: float, cy: float, r: float, sides: int, turn: float = 0.0) -> list:
    return [(cx + r * math.cos(turn + 2 * math.pi * i / sides),
             cy + r * math.sin(turn + 2 * math.pi * i / sides)) for i in range(sides)]


def _shape(node: TopoNode, x: float, y: float, fill: str) -> etree._Element:
    """Hosts are boxes (a container's rounded) or a circle; routers are polygons (a NetFPGA
    card a hexagon, a router container or VM an octagon); switches are diamonds."""
    h = NODE_SIZE / 2
    common = {"fill": fill, "stroke": "#1f2933", "stroke-width": "1.5", "class": "shape"}
    kind, role = node.kind, node.role
    if kind is NodeKind.NETFPGA:
        return etree.Element(S + "polygon", points=_points(_polygon(x, y, h, 6)), **common)
    if role is Role.SWITCH:
        return etree.Element(S + "polygon", points=_points(
            [(x, y - h), (x + h, y), (x, y + h), (x - h, y)]), **common)
    if role is Role.ROUTER:
        return etree.Element(S + "polygon", points=_points(_polygon(x, y, h, 8, math.pi / 8)),
                             **common)
    if kind is NodeKind.CONTAINER:
        return etree.Element(S + "rect", x=_f(x - h), y=_f(y - h * 0.75), width=_f(2 * h),
                             height=_f(1.5 * h), rx="8", ry="8", **common)
    if kind is NodeKind.VM:
        return etree.Element(S + "rect", x=_f(x - h), y=_f(y - h * 0.75), width=_f(2 * h),
                             height=_f(1.5 * h), **common)
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
    """A white outline under a label, so it stays readable where it meets a line."""
    text.set("stroke", "#ffffff")
    text.set("stroke-width", "3")
    text.set("paint-order", "stroke")
    text.set("stroke-linejoin", "round")


def _title(parent: etree._Element, text: str) -> None:
    etree.SubElement(parent, S + "title").text = xml_text(text)


def _lines(parent: etree._Element, box: _Box, *, halo: bool = False) -> None:
    """The box's text lines, centred, below its shape; each line's baseline leaves room for
    descenders inside the box."""
    y = box.text_top()
    for text, cls, size in box.lines:
        y += size * LINE
        t = _text(parent, box.cx, y - size * 0.3, text, cls=cls, size=size)
        if halo:
            _halo(t)


def _path(points: list[tuple[float, float]]) -> str:
    """An SVG path through Graphviz's B-spline control points (1 + 3n of them)."""
    if not points:
        return ""
    d = [f"M{points[0][0]:.1f},{points[0][1]:.1f}"]
    for k in range(1, len(points) - 2, 3):
        d.append("C" + " ".join(f"{x:.1f},{y:.1f}" for x, y in points[k:k + 3]))
    return " ".join(d)


def _shape_centre(box: _Box) -> tuple[float, float]:
    return box.cx, box.cy


_hub_centre = _shape_centre


def _to_shape(points: list[tuple[float, float]], box: _Box, centre: tuple[float, float],
              radius: float) -> list[tuple[float, float]]:
    """The spline with its end at `box` moved from Graphviz's box border to the border of the
    shape drawn in it (a node's shape, a LAN's hub: the box also holds the labels)."""
    cx, cy = centre
    pts = list(points)
    at_start = math.dist(pts[0], (box.cx, box.cy)) < math.dist(pts[-1], (box.cx, box.cy))
    end, nxt = (0, 1) if at_start else (-1, -2)
    dx, dy = pts[nxt][0] - cx, pts[nxt][1] - cy
    norm = math.hypot(dx, dy) or 1.0
    pts[end] = (cx + dx / norm * radius, cy + dy / norm * radius)
    return pts


def render_svg(topology: Topology, *, title: str = "") -> str:
    """The picture of `topology` as an SVG document string (no XML declaration, so it can be
    inlined in HTML as well as served on its own)."""
    nodes, links = topology.nodes, topology.links
    node_boxes = [_node_box(i, n) for i, n in enumerate(nodes)]
    link_boxes = [_link_box(j, link) for j, link in enumerate(links)]
    if node_boxes or link_boxes:
        width, height, splines = _layout(topology, node_boxes + link_boxes)
    else:
        width, height, splines = 0.0, 120.0, {}
    legend_h = 24.0 * (len(LEGEND) + 1) + 8
    width = max(width, 420.0)
    total_h = height + legend_h
    svg = etree.Element(S + "svg", nsmap={None: SVG_NS}, attrib={
        "viewBox": f"0 0 {width:.0f} {total_h:.0f}", "width": f"{width:.0f}",
        "height": f"{total_h:.0f}", "role": "img", "class": "topology"})
    _title(svg, title or "slice topology")
    if not nodes and not links:
        _text(svg, width / 2, height / 2, "no slivers at this aggregate", cls="empty", size=14)

    gid = {n.client_id: f"n{i}" for i, n in enumerate(nodes)}
    link_layer = etree.SubElement(svg, S + "g", attrib={"class": "links"})
    for j, (link, box) in enumerate(zip(links, link_boxes)):
        colour = state_colour(link.operational).value
        g = etree.SubElement(link_layer, S + "g", attrib={
            "class": "link", "data-client-id": xml_text(link.client_id),
            "data-state": xml_text(link.operational or ""),
            "data-capacity-kbps": "" if link.capacity_kbps is None else str(link.capacity_kbps)})
        _title(g, f"link {link.client_id}" + (f" ({format_capacity(link.capacity_kbps)})"
                                              if link.capacity_kbps is not None else ""))
        for m in dict.fromkeys(link.members):
            if m not in gid:
                continue
            pts = splines.get((gid[m], f"l{j}")) or splines.get((f"l{j}", gid[m]))
            if pts:
                nb = node_boxes[int(gid[m][1:])]
                pts = _to_shape(pts, nb, _shape_centre(nb), NODE_SIZE / 2)
                if link.hub:
                    pts = _to_shape(pts, box, _hub_centre(box), HUB_R)
                etree.SubElement(g, S + "path", d=_path(pts), fill="none", stroke=colour,
                                 attrib={"stroke-width": "2.5", "class": "edge",
                                         "data-end": xml_text(m)})
        if link.hub:
            hx, hy = _hub_centre(box)
            etree.SubElement(g, S + "circle", cx=_f(hx), cy=_f(hy), r=_f(HUB_R), fill=colour,
                             stroke="#1f2933", attrib={"stroke-width": "1", "class": "hub"})
        _lines(g, box, halo=True)

    node_layer = etree.SubElement(svg, S + "g", attrib={"class": "nodes"})
    for node, box in zip(nodes, node_boxes):
        g = etree.SubElement(node_layer, S + "g", attrib={
            "class": f"node {node.kind.value} {node.role.value}",
            "data-client-id": xml_text(node.client_id), "data-kind": node.kind.value,
            "data-role": node.role.value, "data-state": xml_text(node.operational or "")})
        _title(g, f"{node.client_id} ({node.sliver_type or 'any type'}"
                  f"{', router' if node.router else ''}): "
                  f"{node.operational or 'no operational state'}"
                  + "".join(f"\n{a}" for a in node.addresses + node.notes))
        g.append(_shape(node, *_shape_centre(box), state_colour(node.operational).value))
        _lines(g, box)

    legend = etree.SubElement(svg, S + "g", attrib={"class": "legend"})
    top = height + 6
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


__all__ = ["LEGEND", "NodeKind", "Role", "StateColour", "TopoLink", "TopoNode", "Topology",
           "TopologyError", "format_capacity", "manifest_to_svg", "node_kind", "parse_topology",
           "render_svg", "state_colour", "text_width"]
