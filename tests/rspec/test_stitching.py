"""The stitching extension in the rspec library: VLAN ranges, request paths (both namespaces),
the advertisement's `<stitching>` and the manifest path with the chosen tag, and the client's
carrying of a tag from one manifest into the next request."""
from __future__ import annotations

import pytest
from lxml import etree

from rspec import namespaces as ns
from rspec.advertisement import build_advertisement
from rspec.errors import RSpecError
from rspec.manifest import build_manifest
from rspec.request import parse_request
from rspec.stitching import (
    EdgeAd,
    ManifestPath,
    VlanRangeError,
    format_vlan_range,
    manifest_tags,
    parse_vlan_range,
    request_path,
    stitching_ad,
    with_suggested,
)
from tests.rspec.conftest import AM, OTHER_AM

PORT_A = "urn:publicid:IDN+am.example.net+interface+vs1:edge1"
PORT_B = "urn:publicid:IDN+other.example.org+interface+vs1:edge1"
S2 = "{%s}" % ns.STITCH2


def stitched_request(suggested: str = "any", avail: str = "100-199",
                     path: str | None = None) -> str:
    stitching = path if path is not None else request_path(
        "lnk", [("a-edge", PORT_A, avail, suggested), ("b-edge", PORT_B, avail, suggested)],
        capacity_kbps=10000)
    return f"""<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request">
  <node client_id="na" component_manager_id="{AM}" exclusive="false">
    <interface client_id="na:if0"><ip address="10.9.0.1" netmask="255.255.255.0"/></interface>
  </node>
  <node client_id="nb" component_manager_id="{OTHER_AM}" exclusive="false">
    <interface client_id="nb:if0"/>
  </node>
  <link client_id="lnk">
    <component_manager name="{AM}"/><component_manager name="{OTHER_AM}"/>
    <interface_ref client_id="na:if0"/><interface_ref client_id="nb:if0"/>
    <property source_id="na:if0" dest_id="nb:if0" capacity="10000"/>
  </link>
  {stitching}
</rspec>"""


def test_vlan_ranges_round_trip_and_name_what_is_wrong():
    assert parse_vlan_range("any") is None and parse_vlan_range(" ") is None
    assert parse_vlan_range("100") == {100}
    assert parse_vlan_range("100-103, 200") == {100, 101, 102, 103, 200}
    assert format_vlan_range({100, 101, 102, 103, 200, 202}) == "100-103,200,202"
    for bad, why in (("10-5", "backwards"), ("0-10", "outside"), ("4095", "outside"),
                     ("ten", "not a tag"), ("1,,2", "empty")):
        with pytest.raises(VlanRangeError, match=why):
            parse_vlan_range(bad)


def test_request_path_is_read_onto_the_stitched_link_and_foreign_node_ignored():
    req = parse_request(stitched_request("150"), am_urns=[AM])
    assert [n.client_id for n in req.nodes] == ["na"]
    (link,) = req.links
    assert link.stitched and link.stitching.id == "lnk"
    hops = link.stitching.hops
    assert [h.id for h in hops] == ["a-edge", "b-edge"]
    assert hops[0].link_id == PORT_A and hops[0].suggested == {150}
    assert hops[0].availability == frozenset(range(100, 200))
    assert hops[0].allowed() == {150} and hops[0].capacity_kbps == 10000 and hops[0].mtu == 1500
    assert [h.id for h in link.stitching.hops_of("am.example.net")] == ["a-edge"]
    # the stitching element is not echoed as a foreign element: the manifest writes its own
    assert not any("stitching" in x for x in req.foreign_xml)


def test_a_v01_namespace_path_is_read_too():
    v2 = request_path("lnk", [("a-edge", PORT_A, "100-110", "any")])
    v01 = v2.replace(ns.STITCH2, ns.STITCH01)
    (link,) = parse_request(stitched_request(path=v01), am_urns=[AM]).links
    assert link.stitching.hops[0].suggested is None
    assert link.stitching.hops[0].availability == frozenset(range(100, 111))


@pytest.mark.parametrize("path, message", [
    (request_path("lnk", [("a-edge", PORT_A, "100-199", "12x")]),
     "hop 'a-edge': suggestedVLANRange"),
    (request_path("lnk", [("a-edge", "edge1", "100-199", "any")]), "is not a URN"),
    (request_path("lnk", [("a-edge", PORT_A, "300-200", "any")]), "runs backwards"),
])
def test_a_malformed_hop_is_badargs_naming_it(path, message):
    with pytest.raises(RSpecError) as err:
        parse_request(stitched_request(path=path), am_urns=[AM])
    assert err.value.geni_code == 1 and message in str(err.value)


def test_a_hop_without_a_port_is_badargs():
    path = request_path("lnk", [("a-edge", PORT_A, "100-199", "any")])
    root = etree.fromstring(path)
    hop = root.find(f"{S2}path/{S2}hop")
    hop.remove(hop.find(f"{S2}link"))
    with pytest.raises(RSpecError, match="hop 'a-edge' names no port"):
        parse_request(stitched_request(path=etree.tostring(root, encoding="unicode")),
                      am_urns=[AM])


def test_advertisement_carries_the_aggregate_and_edge_ports(xmllint):
    ad = build_advertisement([], am_urn=AM, stitching=stitching_ad(
        AM, "https://am.example.net:12346/", [EdgeAd(
            port_id=PORT_A, remote_port_id=PORT_B, vlans=frozenset({100, 101, 102, 150}),
            capacity_kbps=100000, mtu=1500, node_id="urn:publicid:IDN+am.example.net+node+vs1")]))
    assert xmllint(ad, "ad-bundle.xsd").returncode == 0
    root = etree.fromstring(ad.encode())
    st = root.find(f"{S2}stitching")
    agg = st.find(f"{S2}aggregate")
    assert agg.get("id") == AM and agg.get("url") == "https://am.example.net:12346/"
    assert agg.findtext(f"{S2}stitchingmode") == "chainANDTree"
    port = agg.find(f"{S2}node/{S2}port")
    assert port.get("id") == PORT_A and port.findtext(f"{S2}capacity") == "100000"
    assert port.findtext(f"{S2}link/{S2}remoteLinkId") == PORT_B
    l2 = port.find(f".//{S2}switchingCapabilitySpecificInfo_L2sc")
    assert l2.findtext(f"{S2}vlanRangeAvailability") == "100-102,150"
    assert l2.findtext(f"{S2}interfaceMTU") == "1500"
    assert l2.findtext(f"{S2}vlanTranslation") == "false"


def test_manifest_path_reports_the_chosen_tag_on_local_hops_only(xmllint):
    (link,) = parse_request(stitched_request("any"), am_urns=[AM]).links
    text = build_manifest([], [], stitching=[ManifestPath(link.stitching.element_xml,
                                                          ("a-edge",), 123)])
    assert xmllint(text, "manifest-bundle.xsd").returncode == 0
    tags = manifest_tags(text)
    assert tags == {"lnk": {"a-edge": 123}}   # the other AM's hop still says "any"
    root = etree.fromstring(text.encode())
    hop = root.find(f"{S2}stitching/{S2}path/{S2}hop")
    assert hop.findtext(f".//{S2}vlanRangeAvailability") == "123"


def test_the_client_carries_a_tag_and_excludes_refused_ones():
    xml = stitched_request("any")
    carried = with_suggested(xml, "lnk", "150")
    (link,) = parse_request(carried, am_urns=[AM]).links
    assert all(h.suggested == {150} for h in link.stitching.hops)
    retry = with_suggested(xml, "lnk", "any", exclude=[100, 101])
    (link,) = parse_request(retry, am_urns=[AM]).links
    assert all(h.availability == frozenset(range(102, 200)) for h in link.stitching.hops)


# A request as the geni-tools stitcher sends it after the computation service expanded it:
# hop ids are the port URNs, hops are typed, the path has a globalId, the peer AM's hop
# suggests "any", and our hop carries an empty <capability/> the stitcher would choke on.
def scs_hop(port: str, l2: str, next_hop: str) -> str:
    return f"""    <hop id="{port}" type="strict">
      <link id="{port}">
        <trafficEngineeringMetric>10</trafficEngineeringMetric>
        <capacity>10000</capacity>
        <switchingCapabilityDescriptor>
          <switchingcapType>l2sc</switchingcapType>
          <encodingType>ethernet</encodingType>
          <switchingCapabilitySpecificInfo>
            <switchingCapabilitySpecificInfo_L2sc>{l2}</switchingCapabilitySpecificInfo_L2sc>
          </switchingCapabilitySpecificInfo>
        </switchingCapabilityDescriptor>
      </link>
      <nextHop>{next_hop}</nextHop>
    </hop>
"""


SCS_PATH = (f"""<stitching xmlns="{ns.STITCH2}" lastUpdateTime="20261203:12:00:00">
  <path id="lnk">
    <globalId>urn:publicid:IDN+scs.example.net+path+1234</globalId>
"""
            + scs_hop(PORT_A, "<capability/><interfaceMTU>1500</interfaceMTU><vlanRange"
                              "Availability>100-199</vlanRangeAvailability><suggestedVLAN"
                              "Range>any</suggestedVLANRange>", PORT_B)
            + scs_hop(PORT_B, "<interfaceMTU>1500</interfaceMTU><vlanRangeAvailability>"
                              "2-4094</vlanRangeAvailability><suggestedVLANRange>any"
                              "</suggestedVLANRange><vlanTranslation>false</vlanTranslation>",
                      "null")
            + "  </path>\n</stitching>")


def stitcher_reads(manifest: str, path_id: str, hop_id: str) -> tuple[str | None, str, str]:
    """What the stitcher takes from a manifest for one of the AM's hops, walked as it walks it
    (DOM, by local names, first match at each level): the path's globalId, and the text of the
    hop link's vlanRangeAvailability and suggestedVLANRange. It reads the first text node of
    *every* element under the L2sc element, so an empty one fails here as it fails there."""
    from xml.dom.minidom import Node, parseString

    def kids(node, name):
        return [c for c in node.childNodes
                if c.nodeType == Node.ELEMENT_NODE and c.localName == name]

    (rspec,) = kids(parseString(manifest.encode()), "rspec")
    stitching = kids(rspec, "stitching")[0]
    path = next(p for p in kids(stitching, "path") if p.getAttribute("id") == path_id)
    global_id = next((g.firstChild.nodeValue for g in kids(path, "globalId")), None)
    hop = next(h for h in kids(path, "hop") if h.getAttribute("id") == hop_id)
    scd = kids(kids(hop, "link")[0], "switchingCapabilityDescriptor")[0]
    l2 = kids(kids(scd, "switchingCapabilitySpecificInfo")[0],
              "switchingCapabilitySpecificInfo_L2sc")[0]
    texts = {c.localName: c.childNodes[0].nodeValue
             for c in l2.childNodes if c.nodeType == Node.ELEMENT_NODE}
    assert texts.get("vlanTranslation", "false").lower() != "true"
    return global_id, texts["vlanRangeAvailability"], texts["suggestedVLANRange"]


def test_the_manifest_reads_as_the_geni_tools_stitcher_reads_it(xmllint):
    (link,) = parse_request(stitched_request(path=SCS_PATH), am_urns=[AM]).links
    (hop,) = link.stitching.hops_of("am.example.net")
    assert hop.id == PORT_A and hop.suggested is None
    text = build_manifest([], [], stitching=[ManifestPath(link.stitching.element_xml,
                                                          (hop.id,), 123)])
    assert xmllint(text, "manifest-bundle.xsd").returncode == 0
    assert stitcher_reads(text, "lnk", PORT_A) == (
        "urn:publicid:IDN+scs.example.net+path+1234", "123", "123")
    # the peer's hop is echoed as requested, ids, order and nextHop intact
    root = etree.fromstring(text.encode())
    hops = root.findall(f"{S2}stitching/{S2}path/{S2}hop")
    assert [h.get("id") for h in hops] == [PORT_A, PORT_B]
    assert [h.findtext(f"{S2}nextHop") for h in hops] == [PORT_B, "null"]
    assert hops[1].findtext(f".//{S2}suggestedVLANRange") == "any"
    assert manifest_tags(text) == {"lnk": {PORT_A: 123}}
