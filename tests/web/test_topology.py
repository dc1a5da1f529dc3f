"""manifest -> SVG: one element per node and link, shapes by type, colours by state, capacity
labels, LAN hubs, escaping, empty and large slices, determinism, bad input."""
from __future__ import annotations

import time
from xml.sax.saxutils import quoteattr

import pytest
from lxml import etree

from am.service.manifests import manifest_for
from am.web.topology import (
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
    assert rc.find("s:line", Q).get("stroke") == StateColour.FAILED.value


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


def test_links_with_capacity_and_lan_hub():
    xml = manifest(node("a", ifaces=("a:0", "a:1")), node("b", ifaces=("b:0", "b:1")),
                   node("c", ifaces=("c:0",)),
                   link("ab", ("a:0", "b:0"), capacity=2_500_000),
                   link("lan", ("a:1", "b:1", "c:0"), capacity=100))
    links = link_groups(svg_of(xml))
    ab, lan = links["ab"], links["lan"]
    assert len(ab.findall("s:line", Q)) == 1 and ab.find("s:circle", Q) is None
    assert ab.xpath("string(s:text[@class='capacity'])", namespaces=Q) == "2.5 Gb/s"
    assert ab.get("data-capacity-kbps") == "2500000"
    assert len(lan.findall("s:line", Q)) == 3
    hub = lan.find("s:circle[@class='hub']", Q)
    lines = lan.findall("s:line", Q)
    assert all((l.get("x1"), l.get("y1")) == (hub.get("cx"), hub.get("cy")) for l in lines)
    assert lan.xpath("string(s:text[@class='capacity'])", namespaces=Q) == "100 kb/s"
    # a line's ends are at the nodes it joins
    svg = svg_of(xml)
    pos = {}
    for k, g in node_groups(svg).items():
        label = g.find("s:text", Q)
        pos[k] = label.get("x")
    ab_line = link_groups(svg)["ab"].find("s:line", Q)
    assert {ab_line.get("x1"), ab_line.get("x2")} == {pos["a"], pos["b"]}


def test_link_with_ends_elsewhere_and_no_capacity():
    xml = manifest(node("a", ifaces=("a:0",)), link("out", ("a:0", "remote:0")),
                   link("nowhere", ("x:0", "y:0")))
    links = link_groups(svg_of(xml))
    assert set(links) == {"out", "nowhere"}
    assert links["out"].find("s:circle[@class='hub']", Q) is not None
    assert len(links["out"].findall("s:line", Q)) == 1
    assert links["nowhere"].findall("s:line", Q) == []
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


def test_hundred_nodes_fit_and_are_deterministic():
    n = 100
    nodes = [node(f"n{i}", ["xen-vm", "vserver-container", "netfpga-vdp"][i % 3],
                  ifaces=(f"n{i}:a", f"n{i}:b")) for i in range(n)]
    links = [link(f"l{i}", (f"n{i}:b", f"n{i + 1}:a"), capacity=1000 * i) for i in range(n - 1)]
    xml = manifest(*nodes, *links)
    start = time.perf_counter()
    text = manifest_to_svg(xml)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0
    assert manifest_to_svg(xml) == text
    svg = etree.fromstring(text.encode())
    assert len(node_groups(svg)) == n and len(link_groups(svg)) == n - 1
    _, _, width, height = (float(v) for v in svg.get("viewBox").split())
    xs = [float(t.get("x")) for t in svg.iterfind(".//s:g[@data-kind]/s:text", Q)]
    ys = [float(t.get("y")) for t in svg.iterfind(".//s:g[@data-kind]/s:text", Q)]
    assert all(0 < x < width for x in xs) and all(0 < y < height for y in ys)
    # neighbours on the circle are far enough apart for their shapes not to overlap
    pts = list(zip(xs, ys))
    gaps = [((x1 - x2) ** 2 + (y1 - y2) ** 2) ** 0.5
            for (x1, y1), (x2, y2) in zip(pts, pts[1:] + pts[:1])]
    assert min(gaps) > 34


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
