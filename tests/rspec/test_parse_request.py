"""Parsing valid requests into the model: the digest examples, extensions, multi-AM requests."""
from __future__ import annotations

import dataclasses

import pytest
from lxml import etree

from rspec.model import (
    IPv4, ForwardingMode, IsolationClass, LinkProperty, NodeExtension, OFController, OFPort,
    PacketMatch, Route,
)
from rspec.request import parse_request
from rspec.serialize import request_document
from tests.rspec.conftest import AM, FOAM, OTHER_AM, SLIVER_TYPES, data

HEAD = ('<rspec xmlns="http://www.geni.net/resources/rspec/3" '
        'xmlns:geniam="http://geni-am.org/resources/rspec/ext/geniam/1" type="request">')


def test_digest_request_example_parses_into_model():
    req = parse_request(data("request-digest.xml"), am_urns=[AM], known_sliver_types=SLIVER_TYPES)
    assert [n.client_id for n in req.nodes] == ["node0", "node1"]
    n0, n1 = req.nodes
    assert n0.component_id is None and n0.exclusive is False
    assert n0.sliver_type == "default-vm"
    assert n0.disk_image == "urn:publicid:IDN+am.example.net+image+ubuntu22"
    assert n0.interfaces[0].client_id == "node0:if0"
    assert n0.interfaces[0].ips == (IPv4("10.10.1.1", "255.255.255.0", "ipv4"),)
    assert n0.services.installs[0].url == "http://example.net/pkg.tar.gz"
    assert n0.services.installs[0].install_path == "/local"
    assert n0.services.executes[0].command == "/local/setup.sh"
    assert n1.component_id == "urn:publicid:IDN+am.example.net+node+pc3"
    assert n1.exclusive is True and n1.sliver_type == "raw-pc"
    (link,) = req.links
    assert link.interface_refs == ("node0:if0", "node1:if0")
    assert link.link_type == "lan"
    assert link.component_managers == (AM,)
    assert link.properties[0] == LinkProperty("node0:if0", "node1:if0", 100000, 10.0, 0.0)
    assert link.capacity_kbps == 100000
    assert req.generated_by == "mytool"
    assert req.foreign_xml == ()
    assert n0.source_line == 6 and link.source_line is not None


def test_digest_openflow_example_parses():
    req = parse_request(data("openflow-request-digest.xml"), am_urns=[FOAM])
    (sliver,) = req.openflow
    assert sliver.controllers == (OFController("tcp:ctrl.example.net:6633", "primary"),)
    assert sliver.email == "alice@example.net"
    (group,) = sliver.groups
    assert group.name == "g1"
    assert group.datapaths[0].dpid == "06:d6:00:24:a8:c4:b9:00"
    assert group.datapaths[0].ports == (OFPort(21),)
    (match,) = sliver.matches
    assert match.use_groups == ("g1",)
    assert match.packet == PacketMatch(dl_type=("0x800", "0x806"), nw_src=("10.42.0.0/16",),
                                       nw_dst=("10.42.0.0/16",))
    assert sliver.element_xml.startswith("<openflow:sliver")


def test_openflow_sliver_of_another_am_is_echoed():
    req = parse_request(data("openflow-request-digest.xml"), am_urns=[AM])
    assert req.openflow == ()
    assert len(req.foreign_xml) == 1 and "openflow:sliver" in req.foreign_xml[0]


def test_openflow_packet_fields_all_parsed():
    xml = f"""<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request"
      xmlns:openflow="http://www.geni.net/resources/rspec/ext/openflow/3">
     <openflow:sliver email="a@b.c">
      <openflow:controller url="tcp:127.0.0.1:6653" type="primary"/>
      <openflow:controller url="tcp:127.0.0.1:6654" type="backup"/>
      <openflow:group name="g"/>
      <openflow:match>
        <openflow:datapath component_id="urn:publicid:IDN+am.example.net+datapath+1"
            component_manager_id="{AM}" dpid="00:00:00:00:00:00:00:01">
          <openflow:port num="1" name="eth1"/><openflow:port num="2"/>
        </openflow:datapath>
        <openflow:packet>
          <openflow:dl_src value="02:00:00:00:00:01, 02:00:00:00:00:02"/>
          <openflow:dl_dst value="02:00:00:00:00:03"/>
          <openflow:dl_vlan value="100,200"/>
          <openflow:nw_proto value="6,17"/>
          <openflow:tp_src value="80"/>
          <openflow:tp_dst value="443,8080"/>
        </openflow:packet>
      </openflow:match>
     </openflow:sliver></rspec>"""
    (sliver,) = parse_request(xml, am_urns=[AM]).openflow
    assert [c.type for c in sliver.controllers] == ["primary", "backup"]
    match = sliver.matches[0]
    assert match.datapaths[0].ports == (OFPort(1, "eth1"), OFPort(2))
    assert match.packet == PacketMatch(dl_src=("02:00:00:00:00:01", "02:00:00:00:00:02"),
                                       dl_dst=("02:00:00:00:00:03",), dl_vlan=(100, 200),
                                       nw_proto=(6, 17), tp_src=(80,), tp_dst=(443, 8080))


def test_geniam_extension_maps_to_node_extension():
    xml = HEAD + """
      <node client_id="r1"><sliver_type name="xen-vm"/>
        <interface client_id="r1:if0"/><interface client_id="r1:if1"/>
        <geniam:node isolation="hypervisor" router="true" forwarding="dom0" cpu="0.5"
                     memory_mb="512">
          <geniam:route destination="10.2.0.0/24" gateway="10.1.0.1" interface="r1:if0"/>
          <geniam:route destination="0.0.0.0/0" interface="r1:if1"/>
        </geniam:node>
      </node></rspec>"""
    (node,) = parse_request(xml, am_urns=[AM]).nodes
    assert node.ext == NodeExtension(
        isolation=IsolationClass.HYPERVISOR, router=True, forwarding=ForwardingMode.DOM0,
        cpu=0.5, memory_mb=512,
        routes=(Route("10.2.0.0/24", "10.1.0.1", "r1:if0"), Route("0.0.0.0/0", None, "r1:if1")))


def test_forwarding_mode_implies_router_and_hardware_mode_accepted():
    xml = HEAD + """<node client_id="r"><geniam:node forwarding="hardware"/></node></rspec>"""
    (node,) = parse_request(xml, am_urns=[AM]).nodes
    assert node.ext.router is True and node.ext.forwarding is ForwardingMode.HARDWARE


def test_geniam_link_vlan_hint_and_shared_vlan():
    xml = HEAD.replace("type=", 'xmlns:sv="http://www.geni.net/resources/rspec/ext/shared-vlan/1" '
                       'type=') + """
      <node client_id="a"><interface client_id="a:0"/></node>
      <node client_id="b"><interface client_id="b:0"/></node>
      <link client_id="l"><interface_ref client_id="a:0"/><interface_ref client_id="b:0"/>
        <geniam:link vlan_tag="1234"/><sv:link_shared_vlan name="mesoscale-openflow"/></link>
    </rspec>"""
    (link,) = parse_request(xml, am_urns=[AM]).links
    assert link.vlan_tag == 1234 and link.shared_vlan == "mesoscale-openflow"
    assert link.link_type is None and link.switch is None
    # a link carried through an OpenFlow switch names it
    (link,) = parse_request(xml.replace('vlan_tag="1234"', 'switch="ovs1"'), am_urns=[AM]).links
    assert link.switch == "ovs1" and link.vlan_tag is None


def test_unknown_extensions_are_tolerated_and_kept():
    xml = HEAD.replace("type=", 'xmlns:x="urn:example:unknown" type=') + """
      <x:toplevel attr="1"><x:child/></x:toplevel>
      <node client_id="a" x:flavour="big"><x:hint level="3"/><interface client_id="a:0">
        <x:iface/></interface></node></rspec>"""
    req = parse_request(xml, am_urns=[AM])
    (node,) = req.nodes
    assert '<x:hint level="3"/>' in node.element_xml
    assert 'x:flavour="big"' in node.element_xml
    assert len(req.foreign_xml) == 1 and "x:toplevel" in req.foreign_xml[0]


def test_multi_am_request_keeps_only_our_part():
    xml = HEAD + f"""
      <node client_id="ours" component_manager_id="{AM}"><interface client_id="ours:0"/></node>
      <node client_id="unbound"><interface client_id="unbound:0"/></node>
      <node client_id="theirs" component_manager_id="{OTHER_AM}">
        <sliver_type name="something-we-do-not-know"/>
        <interface client_id="theirs:0"/><interface client_id="theirs:1"/></node>
      <link client_id="stitched"><component_manager name="{AM}"/>
        <component_manager name="{OTHER_AM}"/>
        <interface_ref client_id="ours:0"/><interface_ref client_id="theirs:0"/></link>
      <link client_id="local"><interface_ref client_id="ours:0"/>
        <interface_ref client_id="unbound:0"/></link>
      <link client_id="remote-implicit"><interface_ref client_id="theirs:1"/>
        <interface_ref client_id="ours:0"/></link>
      <link client_id="remote"><component_manager name="{OTHER_AM}"/>
        <interface_ref client_id="theirs:0"/><interface_ref client_id="theirs:1"/>
        <property source_id="theirs:0" dest_id="theirs:1" capacity="-5"/></link>
    </rspec>"""
    req = parse_request(xml, am_urns=[AM.upper()], known_sliver_types=SLIVER_TYPES)
    assert [n.client_id for n in req.nodes] == ["ours", "unbound"]
    assert [link.client_id for link in req.links] == ["stitched", "local"]
    foreign = [etree.fromstring(x) for x in req.foreign_xml]
    assert [f.get("client_id") for f in foreign] == ["theirs", "remote-implicit", "remote"]
    assert req.node_of_interface("unbound:0").client_id == "unbound"


def test_emulab_xen_cores_and_ram_fill_cpu_and_memory():
    xml = """<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request">
      <node client_id="vm"><sliver_type name="emulab-xen">
        <emulab:xen xmlns:emulab="http://www.protogeni.net/resources/rspec/ext/emulab/1"
                    cores="2" ram="2048" disk="8"/></sliver_type></node></rspec>"""
    (node,) = parse_request(xml, am_urns=[AM]).nodes
    assert node.ext.cpu == 2.0 and node.ext.memory_mb == 2048


def test_packet_loss_latency_and_lan_style_properties():
    xml = HEAD + """
      <node client_id="a"><interface client_id="a:0"/></node>
      <node client_id="b"><interface client_id="b:0"/></node>
      <node client_id="c"><interface client_id="c:0"/></node>
      <link client_id="lan"><interface_ref client_id="a:0"/><interface_ref client_id="b:0"/>
        <interface_ref client_id="c:0"/>
        <property source_id="a:0" dest_id="lan" capacity="1000.0" latency="2.5"
                  packet_loss="0.01"/>
        <link_type name="lan"/></link></rspec>"""
    (link,) = parse_request(xml, am_urns=[AM]).links
    assert link.properties == (LinkProperty("a:0", "lan", 1000, 2.5, 0.01),)
    assert len(link.interface_refs) == 3


def test_sliver_type_aliases_accepted_when_known():
    xml = HEAD + """<node client_id="a"><sliver_type name="raw-pc"/></node>
      <node client_id="b"><sliver_type name="emulab-xen"/></node></rspec>"""
    req = parse_request(xml, am_urns=[AM], known_sliver_types={"raw-pc", "emulab-xen"})
    assert [n.sliver_type for n in req.nodes] == ["raw-pc", "emulab-xen"]


def test_bytes_with_declared_encoding_and_str_input_agree():
    text = data("request-digest.xml")
    assert parse_request(text.encode("utf-8"), am_urns=[AM]) == parse_request(text, am_urns=[AM])


def _strip_lines(req):
    return dataclasses.replace(
        req,
        nodes=tuple(dataclasses.replace(n, source_line=None) for n in req.nodes),
        links=tuple(dataclasses.replace(link, source_line=None) for link in req.links),
        openflow=tuple(dataclasses.replace(s, source_line=None) for s in req.openflow))


@pytest.mark.parametrize("name,urns", [("request-digest.xml", [AM]),
                                       ("openflow-request-digest.xml", [FOAM])])
def test_model_round_trips_through_serializer(name, urns):
    req = parse_request(data(name), am_urns=urns)
    again = parse_request(request_document(req), am_urns=urns)
    assert _strip_lines(again) == _strip_lines(req)


def test_a_host_may_carry_static_routes_without_forwarding():
    """h1 reaches h2's subnet via r1: the host has a route but is no router."""
    from rspec.request import parse_request
    xml = ('<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request" '
           'xmlns:g="http://geni-am.org/resources/rspec/ext/geniam/1">'
           '<node client_id="h1"><interface client_id="h1:0"><ip address="10.1.0.2" '
           'netmask="255.255.255.0" type="ipv4"/></interface><g:node>'
           '<g:route destination="10.2.0.0/24" gateway="10.1.0.1"/></g:node></node></rspec>')
    node = parse_request(xml, am_urns=None).node("h1")
    assert node.ext.router is False
    assert [(r.destination, r.gateway) for r in node.ext.routes] == [("10.2.0.0/24", "10.1.0.1")]
