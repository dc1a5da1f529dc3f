"""manifest -> SVG (laid out by Graphviz): one element per node and link, shapes by type and
role, colours by state, capacity and address labels, LAN hubs, OpenFlow slivers, no overlapping
labels or shapes (boxes measured from the SVG), chains along a line, escaping, empty and large
slices, determinism, bad input."""
from __future__ import annotations

import math
import re
from xml.sax.saxutils import quoteattr

import pytest
from lxml import etree

from am.service.manifests import manifest_for
from am.web.topology import (
    NODE_SIZE,
    SVG_NS,
    NodeKind,
    StateColour,
    TopologyError,
    format_capacity,
    manifest_to_svg,
    node_kind,
    parse_topology,
    xml_text,
)
from rspec.manifest import ManifestLink, ManifestNode, SliverState, build_manifest

Q = {"s": SVG_NS}
R3 = "http://www.geni.net/resources/rspec/3"
GA = "http://geni-am.org/resources/rspec/ext/geniam/1"


def node(cid: str, stype: str | None = "xen-vm", state: str | None = "geni_ready",
         ifaces: tuple[str, ...] = ()) -> str:
    st = f'<sliver_type name="{stype}"/>' if stype else ""
    inner = "".join(f"<interface client_id={quoteattr(i)}/>" for i in ifaces)
    ss = f'<geniam:sliver_state allocation="geni_provisioned" operational="{state}"/>' \
        if state else ""
    return f"<node client_id={quoteattr(cid)}>{st}{inner}{ss}</node>"


def link(cid: str, refs: tuple[str, ...], capacity: int | None = None,
         state: str | None = "geni_ready") -> str:
    r = "".join(f"<interface_ref client_id={quoteattr(i)}/>" for i in refs)
    p = (f'<property source_id="{refs[0]}" dest_id="{refs[-1]}" capacity="{capacity}"/>'
         if capacity is not None else "")
    ss = f'<geniam:sliver_state operational="{state}"/>' if state else ""
    return f'<link client_id={quoteattr(cid)} vlantag="">{r}{p}{ss}</link>'


def manifest(*elements: str, namespace: str = R3) -> str:
    return (f'<rspec xmlns="{namespace}" xmlns:geniam="{GA}" type="manifest">'
            f'{"".join(elements)}</rspec>')


def svg_of(xml: str) -> etree._Element:
    return etree.fromstring(manifest_to_svg(xml).encode())


def node_groups(svg) -> dict[str, etree._Element]:
    return {g.get("data-client-id"): g for g in svg.iterfind(".//s:g[@data-kind]", Q)}


def link_groups(svg) -> dict[str, etree._Element]:
    return {g.get("data-client-id"): g for g in svg.iterfind(".//s:g[@class='link']", Q)}


def test_empty_manifest_gives_a_valid_picture():
    svg = svg_of(manifest())
    assert svg.tag == f"{{{SVG_NS}}}svg"
    assert node_groups(svg) == {} and link_groups(svg) == {}
    assert "no slivers" in "".join(svg.itertext())
    assert len(svg.findall(".//s:g[@class='legend']/s:rect", Q)) == 4


def test_one_element_per_node_and_link_with_state_colours():
    states = {"r": "geni_ready", "c": "geni_configuring", "p": "geni_pending_allocation",
              "f": "geni_failed", "n": "geni_notready", "s": "geni_stopping", "u": None}
    xml = manifest(*(node(k, state=v, ifaces=(f"{k}:0",)) for k, v in states.items()),
                   link("rc", ("r:0", "c:0"), state="geni_failed"))
    svg = svg_of(xml)
    groups = node_groups(svg)
    assert set(groups) == set(states)
    fills = {k: g.find("*[@class='shape']", Q).get("fill") for k, g in groups.items()}
    assert fills == {"r": StateColour.READY.value, "c": StateColour.BUSY.value,
                     "p": StateColour.BUSY.value, "f": StateColour.FAILED.value,
                     "n": StateColour.IDLE.value, "s": StateColour.BUSY.value,
                     "u": StateColour.IDLE.value}
    assert {k: g.get("data-state") for k, g in groups.items()}["u"] == ""
    (rc,) = link_groups(svg).values()
    assert {p.get("stroke") for p in rc.findall("s:path", Q)} == {StateColour.FAILED.value}


def test_shapes_by_sliver_type():
    xml = manifest(node("c", "vserver-container"), node("v", "xen-vm"), node("f", "netfpga-vdp"),
                   node("s", "openflow-switch"), node("o", "raw-pc"), node("x", None))
    groups = node_groups(svg_of(xml))
    kinds = {k: g.get("data-kind") for k, g in groups.items()}
    assert kinds == {"c": "container", "v": "vm", "f": "netfpga", "s": "switch", "o": "other",
                     "x": "other"}
    shape = {k: g.find("*[@class='shape']") for k, g in groups.items()}
    assert etree.QName(shape["c"]).localname == "rect" and shape["c"].get("rx") == "8"
    assert etree.QName(shape["v"]).localname == "rect" and shape["v"].get("rx") is None
    assert len(shape["f"].get("points").split()) == 6
    assert len(shape["s"].get("points").split()) == 4
    assert etree.QName(shape["o"]).localname == "circle"
    assert node_kind("emulab-xen") is NodeKind.VM and node_kind("lxc") is NodeKind.CONTAINER


def _path_ends(path) -> tuple[tuple[float, float], tuple[float, float]]:
    nums = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", path.get("d"))]
    return (nums[0], nums[1]), (nums[-2], nums[-1])


def _centre(shape) -> tuple[float, float]:
    if shape.get("points"):
        pts = [tuple(float(v) for v in p.split(",")) for p in shape.get("points").split()]
        return sum(x for x, _ in pts) / len(pts), sum(y for _, y in pts) / len(pts)
    if shape.get("cx"):
        return float(shape.get("cx")), float(shape.get("cy"))
    return (float(shape.get("x")) + float(shape.get("width")) / 2,
            float(shape.get("y")) + float(shape.get("height")) / 2)


def test_links_with_capacity_and_lan_hub():
    xml = manifest(node("a", ifaces=("a:0", "a:1")), node("b", ifaces=("b:0", "b:1")),
                   node("c", ifaces=("c:0",)),
                   link("ab", ("a:0", "b:0"), capacity=2_500_000),
                   link("lan", ("a:1", "b:1", "c:0"), capacity=100))
    svg = svg_of(xml)
    links = link_groups(svg)
    ab, lan = links["ab"], links["lan"]
    assert len(ab.findall("s:path", Q)) == 2 and ab.find("s:circle", Q) is None
    assert ab.xpath("string(s:text[@class='capacity'])", namespaces=Q) == "2.5 Gb/s"
    assert ab.get("data-capacity-kbps") == "2500000"
    assert len(lan.findall("s:path", Q)) == 3
    hub = lan.find("s:circle[@class='hub']", Q)
    assert lan.xpath("string(s:text[@class='capacity'])", namespaces=Q) == "100 kb/s"
    # every edge runs from the border of its node's shape (to the hub's border for a LAN)
    shapes = {k: g.find("*[@class='shape']", Q) for k, g in node_groups(svg).items()}
    hub_c = (float(hub.get("cx")), float(hub.get("cy")))
    for g, at_hub in ((ab, False), (lan, True)):
        for path in g.findall("s:path", Q):
            centre = _centre(shapes[path.get("data-end")])
            ends = _path_ends(path)
            near = min(ends, key=lambda p: math.dist(p, centre))
            assert abs(math.dist(near, centre) - NODE_SIZE / 2) < 1.0
            if at_hub:
                far = max(ends, key=lambda p: math.dist(p, centre))
                assert abs(math.dist(far, hub_c) - 7) < 1.0


def test_link_with_ends_elsewhere_and_no_capacity():
    xml = manifest(node("a", ifaces=("a:0",)), link("out", ("a:0", "remote:0")),
                   link("nowhere", ("x:0", "y:0")))
    links = link_groups(svg_of(xml))
    assert set(links) == {"out", "nowhere"}
    assert links["out"].find("s:circle[@class='hub']", Q) is not None
    assert len(links["out"].findall("s:path", Q)) == 1
    assert links["nowhere"].findall("s:path", Q) == []
    assert links["out"].find("s:text[@class='capacity']", Q) is None


def test_hostile_client_ids_are_escaped():
    evil = '</text></svg><script>alert(1)</script><svg onload="x()">&"\''
    xml = manifest(node(evil, ifaces=(evil + ":0",)), node("b", ifaces=("b:0",)),
                   link(evil + "-link", (evil + ":0", "b:0")))
    text = manifest_to_svg(xml)
    svg = etree.fromstring(text.encode())
    assert svg.xpath("//*[local-name()='script']") == []
    assert all(not k.startswith("on") for el in svg.iter() for k in el.attrib)
    assert set(node_groups(svg)) == {evil, "b"}
    assert set(link_groups(svg)) == {evil + "-link"}
    assert "<script" not in text
    assert node_groups(svg)[evil].find("s:title", Q).text.startswith(evil)


def test_labels_are_shortened_but_titles_keep_the_full_name():
    long_id = "n" * 80
    svg = svg_of(manifest(node(long_id)))
    g = node_groups(svg)[long_id]
    label = g.find("s:text", Q).text
    assert len(label) <= 24 and label.endswith("\u2026")
    assert g.find("s:title", Q).text.startswith(long_id)


def _text_box(t) -> tuple[float, float, float, float]:
    """The box a text element takes, measured from the SVG: an average sans-serif advance of
    0.6 em per character, ascent 0.8 em above the baseline and 0.25 em below."""
    size = float(t.get("font-size"))
    w = len(t.text or "") * size * 0.6
    x, y = float(t.get("x")), float(t.get("y"))
    left = {"middle": x - w / 2, "end": x - w}.get(t.get("text-anchor"), x)
    return left, y - 0.8 * size, left + w, y + 0.25 * size


def _shape_box(shape) -> tuple[float, float, float, float]:
    if shape.get("points"):
        pts = [tuple(float(v) for v in p.split(",")) for p in shape.get("points").split()]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        return min(xs), min(ys), max(xs), max(ys)
    if shape.get("r"):
        cx, cy, r = (float(shape.get(k)) for k in ("cx", "cy", "r"))
        return cx - r, cy - r, cx + r, cy + r
    x, y = float(shape.get("x")), float(shape.get("y"))
    return x, y, x + float(shape.get("width")), y + float(shape.get("height"))


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def overlapping_boxes(svg) -> list[tuple[str, str]]:
    """Every pair of drawn labels and shapes (nodes, hubs, link labels, capacities, addresses)
    whose boxes overlap."""
    items = []
    for t in svg.iterfind(".//s:g[@class='nodes']//s:text", Q):
        items.append((f"text {t.text}", _text_box(t)))
    for t in svg.iterfind(".//s:g[@class='links']//s:text", Q):
        items.append((f"text {t.text}", _text_box(t)))
    for sh in svg.iterfind(".//*[@class='shape']", Q):
        items.append((f"shape of {sh.getparent().get('data-client-id')}", _shape_box(sh)))
    for hub in svg.iterfind(".//s:circle[@class='hub']", Q):
        items.append((f"hub of {hub.getparent().get('data-client-id')}", _shape_box(hub)))
    return [(a, b) for i, (a, ba) in enumerate(items) for b, bb in items[i + 1:]
            if _overlap(ba, bb)]


def chain(n: int, *, kinds=("xen-vm", "vserver-container", "netfpga-vdp")) -> str:
    nodes = [ip_node(f"n{i}", kinds[i % len(kinds)],
                     {f"n{i}:a": f"10.9.{i}.2", f"n{i}:b": f"10.9.{i + 1}.1"}) for i in range(n)]
    links = [link(f"l{i}", (f"n{i}:b", f"n{i + 1}:a"), capacity=1000 * (i + 1))
             for i in range(n - 1)]
    return manifest(*nodes, *links)


def ip_node(cid: str, stype: str, ips: dict[str, str], router: bool = False) -> str:
    inner = "".join(f'<interface client_id="{i}"><ip address="{a}" netmask="255.255.255.0" '
                    f'type="ipv4"/></interface>' for i, a in ips.items())
    r = '<geniam:node router="true"/>' if router else ""
    return (f'<node client_id="{cid}"><sliver_type name="{stype}"/>{inner}{r}'
            f'<geniam:sliver_state operational="geni_ready"/></node>')


def test_a_chain_is_drawn_as_a_chain_along_one_line():
    n = 20
    svg = svg_of(chain(n))
    groups = node_groups(svg)
    centres = [_centre(groups[f"n{i}"].find("*[@class='shape']", Q)) for i in range(n)]
    ys = [y for _, y in centres]
    xs = [x for x, _ in centres]
    assert max(ys) - min(ys) < 1.0                      # one rank line, not a ring
    assert all(b > a + NODE_SIZE for a, b in zip(xs, xs[1:]))   # in chain order
    # each link's label lies between its two nodes
    for i in range(n - 1):
        lx = float(link_groups(svg)[f"l{i}"].find("s:text", Q).get("x"))
        assert xs[i] < lx < xs[i + 1]
    assert overlapping_boxes(svg) == []


def test_no_label_or_shape_overlaps_in_a_mixed_slice():
    xml = manifest(
        ip_node("h1", "vserver-container", {"h1:0": "10.0.1.2"}),
        ip_node("r1", "vserver-container", {"r1:0": "10.0.1.1", "r1:1": "10.0.2.1",
                                            "r1:2": "10.0.3.1"}, router=True),
        ip_node("h2", "xen-vm", {"h2:0": "10.0.2.2"}),
        ip_node("nf1", "netfpga-vdp", {f"nf1:{i}": f"10.1.{i}.1" for i in range(6)}),
        *(node(f"lan{i}", "vserver-container", ifaces=(f"lan{i}:0",)) for i in range(5)),
        node("sw", "openflow-switch", ifaces=("sw:0", "sw:1")),
        link("l1", ("h1:0", "r1:0"), capacity=100_000), link("l2", ("r1:1", "h2:0")),
        link("lan", ("r1:2", *(f"lan{i}:0" for i in range(5))), capacity=1_000_000),
        link("l3", ("sw:0", "nf1:0"), capacity=10_000_000), link("l4", ("sw:1", "nf1:1")))
    svg = svg_of(xml)
    assert overlapping_boxes(svg) == []
    texts = " ".join(t.text for t in svg.iterfind(".//s:text", Q))
    assert "10.0.1.1/24" in texts and "10.1.5.1/24" not in texts and "+2 more" in texts
    nf1 = node_groups(svg)["nf1"]
    assert "10.1.5.1/24" in nf1.find("s:title", Q).text      # the tooltip lists them all
    assert "100 Mb/s" in texts and "1 Gb/s" in texts and "10 Gb/s" in texts
    # every drawn thing lies inside the picture
    _, _, width, height = (float(v) for v in svg.get("viewBox").split())
    for sh in svg.iterfind(".//*[@class='shape']", Q):
        x0, y0, x1, y1 = _shape_box(sh)
        assert 0 <= x0 and x1 <= width and 0 <= y0 and y1 <= height


def test_routers_and_switches_are_drawn_unlike_hosts():
    xml = manifest(ip_node("h", "vserver-container", {"h:0": "10.0.0.2"}),
                   ip_node("r", "vserver-container", {"r:0": "10.0.0.1"}, router=True),
                   ip_node("v", "xen-vm", {"v:0": "10.0.0.3"}),
                   ip_node("vr", "xen-vm", {"vr:0": "10.0.0.4"}, router=True),
                   node("f", "netfpga-vdp"), node("s", "openflow-switch"))
    groups = node_groups(svg_of(xml))
    roles = {k: g.get("data-role") for k, g in groups.items()}
    assert roles == {"h": "host", "v": "host", "r": "router", "vr": "router", "f": "router",
                     "s": "switch"}

    def outline(k):
        shape = groups[k].find("*[@class='shape']", Q)
        return (etree.QName(shape).localname, len((shape.get("points") or "").split()),
                shape.get("rx"))
    hosts = {outline("h"), outline("v")}
    assert outline("r") == outline("vr") == ("polygon", 8, None)
    assert outline("f") == ("polygon", 6, None) and outline("s") == ("polygon", 4, None)
    assert not hosts & {outline("r"), outline("f"), outline("s")}
    assert len({outline("r"), outline("f"), outline("s")}) == 3


def test_an_openflow_slice_is_drawn():
    of = ('<openflow:sliver xmlns:openflow="http://www.geni.net/resources/rspec/ext/openflow/3">'
          '<openflow:controller url="tcp:127.0.0.1:6633" type="primary"/>'
          '<openflow:group name="g"><openflow:datapath '
          'component_id="urn:publicid:IDN+geni-am+datapath+ovs1" dpid="00:00:00:00:00:00:00:01">'
          '<openflow:port num="1" name="port1"/><openflow:port num="2" name="port2"/>'
          '</openflow:datapath></openflow:group></openflow:sliver>'
          '<geniam:sliver_state operational="geni_ready"/>')
    svg = svg_of(manifest(of))
    texts = "".join(svg.itertext())
    assert "no slivers" not in texts
    (g,) = node_groups(svg).values()
    assert g.get("data-role") == "switch" and g.get("data-state") == "geni_ready"
    assert g.get("data-client-id") == "openflow:ovs1"
    assert "ports port1, port2" in texts and "controller tcp:127.0.0.1:6633" in texts
    assert overlapping_boxes(svg) == []


def test_hundred_nodes_fit_and_are_deterministic():
    xml = chain(100)
    text = manifest_to_svg(xml)
    assert manifest_to_svg(xml) == text
    svg = etree.fromstring(text.encode())
    assert len(node_groups(svg)) == 100 and len(link_groups(svg)) == 99
    _, _, width, height = (float(v) for v in svg.get("viewBox").split())
    for t in svg.iterfind(".//s:g[@data-kind]/s:text", Q):
        x0, y0, x1, y1 = _text_box(t)
        assert 0 <= x0 and x1 <= width and 0 <= y0 and y1 <= height
    assert overlapping_boxes(svg) == []


def test_real_manifest_builder_output_and_protogeni_namespace():
    nodes = [ManifestNode(client_id="a", sliver_id="urn:publicid:IDN+x+sliver+1",
                          component_manager_id="urn:publicid:IDN+x+authority+am",
                          sliver_type="xen-vm",
                          element_xml=f'<node xmlns="{R3}" client_id="a"><interface client_id="a:0"/></node>',
                          state=SliverState("geni_provisioned", "geni_configuring"))]
    links = [ManifestLink(client_id="l", sliver_id="urn:publicid:IDN+x+sliver+2",
                          element_xml=f'<link xmlns="{R3}" client_id="l"><interface_ref client_id="a:0"/>'
                                      '<property source_id="a:0" dest_id="b:0" capacity="10000"/></link>',
                          state=SliverState("geni_provisioned", "geni_ready"))]
    topo = parse_topology(build_manifest(nodes, links))
    assert [(n.client_id, n.kind, n.operational) for n in topo.nodes] == \
        [("a", NodeKind.VM, "geni_configuring")]
    assert [(l.client_id, l.members, l.capacity_kbps) for l in topo.links] == \
        [("l", ("a",), 10000)]
    pg = manifest(node("p", "emulab-xen"), namespace="http://www.protogeni.net/resources/rspec/2")
    assert set(node_groups(svg_of(pg))) == {"p"}
    assert manifest_for([], am_urn="urn:publicid:IDN+x+authority+am")   # empty: still a manifest


@pytest.mark.parametrize("bad", ["", "not xml", "<rspec", "<other/>",
                                 '<!DOCTYPE x [<!ENTITY e "x">]><rspec/>'])
def test_bad_input_is_a_topology_error(bad):
    with pytest.raises(TopologyError):
        manifest_to_svg(bad)


def test_helpers():
    assert format_capacity(None) == "" and format_capacity(999) == "999 kb/s"
    assert format_capacity(100_000) == "100 Mb/s" and format_capacity(1_000_000) == "1 Gb/s"
    assert format_capacity(1_500) == "1.5 Mb/s" and format_capacity(10**9) == "1 Tb/s"
    assert xml_text("a\x00b\x1fc") == "a\ufffdb\ufffdc"
