"""The manifest builder: the request echoed and annotated, valid for lxml and xmllint."""
from __future__ import annotations

from datetime import datetime, timezone

from lxml import etree

from rspec import namespaces as ns
from rspec.manifest import (
    InterfaceFacts, ManifestLink, ManifestNode, ManifestOpenFlow, ManifestUser, SliverState,
    build_manifest,
)
from rspec.model import IPv4, Login
from rspec.request import parse_request
from rspec.validate import validate_document
from tests.rspec.conftest import AM, FOAM, OTHER_AM, data

R = "{%s}" % ns.RSPEC3
GA = "{%s}" % ns.GENIAM
USR = "{%s}" % ns.USER
URN = "urn:publicid:IDN+am.example.net+sliver+"

REQUEST = data("request-digest.xml").replace(
    'component_manager_id="urn:publicid:IDN+am.example.net+authority+am"\n        component_id',
    f'component_manager_id="{OTHER_AM}"\n        component_id').replace(
    "<services>", '<x:keepme xmlns:x="urn:example:x" a="1"/>\n    <services>')


def _manifest(request_xml=REQUEST, **kw):
    req = parse_request(request_xml, am_urns=[AM])
    node = req.nodes[0]
    link = req.links[0]
    nodes = [ManifestNode(
        client_id=node.client_id, sliver_id=URN + "n0", component_manager_id=AM,
        component_id="urn:publicid:IDN+am.example.net+node+pc1", request=node,
        element_xml=node.element_xml,
        interfaces=(InterfaceFacts("node0:if0", URN + "i0",
                                   "urn:publicid:IDN+am.example.net+interface+pc1:eth1",
                                   "02:00:00:00:00:01", (IPv4("10.10.1.1", "255.255.255.0"),
                                                         IPv4("192.168.5.1", "255.255.255.0"))),),
        logins=(Login(hostname="pc1.am.example.net", port=2222, username="alice"),),
        users=(ManifestUser("alice", "urn:publicid:IDN+ch.example.net+user+alice",
                            ("ssh-ed25519 AAAA alice@laptop", "ssh-rsa BBBB alice@desk")),),
        hostname="pc1.am.example.net", state=SliverState("geni_provisioned", "geni_ready"))]
    links = [ManifestLink(link.client_id, URN + "l0", 1234, element_xml=link.element_xml,
                          state=SliverState("geni_provisioned", "geni_ready"))]
    return req, build_manifest(nodes, links, foreign_xml=req.foreign_xml,
                               expires=datetime(2024, 5, 8, 10, 1, tzinfo=timezone.utc), **kw)


def test_manifest_echoes_and_annotates():
    req, text = _manifest()
    root = etree.fromstring(text.encode())
    assert root.get("type") == "manifest" and root.get("expires") == "2024-05-08T10:01:00Z"
    node0, node1 = root.findall(R + "node")
    assert node0.get("sliver_id") == URN + "n0"
    assert node0.get("component_id") == "urn:publicid:IDN+am.example.net+node+pc1"
    assert node0.find(f"{R}sliver_type/{R}disk_image") is not None          # echoed
    assert node0.find("{urn:example:x}keepme").get("a") == "1"              # unknown ext kept
    iface = node0.find(R + "interface")
    assert iface.get("sliver_id") == URN + "i0" and iface.get("mac_address") == "02:00:00:00:00:01"
    assert [ip.get("address") for ip in iface.findall(R + "ip")] == ["10.10.1.1", "192.168.5.1"]
    login = node0.find(f"{R}services/{R}login")
    assert login.attrib == {"authentication": "ssh-keys", "hostname": "pc1.am.example.net",
                            "port": "2222", "username": "alice"}
    user = node0.find(f"{R}services/{USR}services_user")
    assert user.get("login") == "alice"
    assert [k.text for k in user.findall(USR + "public_key")] == [
        "ssh-ed25519 AAAA alice@laptop", "ssh-rsa BBBB alice@desk"]
    assert node0.find(f"{R}services/{R}install") is not None                 # echoed
    assert node0.find(R + "host").get("name") == "pc1.am.example.net"
    assert node0.find(GA + "sliver_state").attrib == {"allocation": "geni_provisioned",
                                                      "operational": "geni_ready"}
    # the other AM's node is echoed unchanged
    assert node1.get("component_manager_id") == OTHER_AM and node1.get("sliver_id") is None
    (link,) = root.findall(R + "link")
    assert link.get("vlantag") == "1234" and link.get("sliver_id") == URN + "l0"
    ref0, ref1 = link.findall(R + "interface_ref")
    assert ref0.get("sliver_id") == URN + "i0"
    assert ref0.get("component_id") == "urn:publicid:IDN+am.example.net+interface+pc1:eth1"
    assert ref1.get("sliver_id") is None
    assert len(link.findall(R + "property")) == 2


def test_manifest_is_valid_for_lxml_and_xmllint(xmllint):
    _, text = _manifest()
    assert validate_document(text, "manifest") == []
    for schema in ("manifest.xsd", "manifest-bundle.xsd"):
        result = xmllint(text, schema)
        assert result.returncode == 0, result.stderr


def test_manifest_from_model_without_element_xml(xmllint):
    req = parse_request(data("request-digest.xml"), am_urns=[AM])
    nodes = [ManifestNode(n.client_id, URN + n.client_id, AM, request=n) for n in req.nodes]
    links = [ManifestLink(lk.client_id, URN + lk.client_id, None, request=lk) for lk in req.links]
    text = build_manifest(nodes, links)
    assert validate_document(text, "manifest") == []
    assert xmllint(text, "manifest.xsd").returncode == 0
    root = etree.fromstring(text.encode())
    assert [n.get("client_id") for n in root.findall(R + "node")] == ["node0", "node1"]
    assert root.find(R + "link").get("vlantag") == ""
    assert root.find(f"{R}node/{R}services/{R}execute").get("command") == "/local/setup.sh"


def test_openflow_manifest(xmllint):
    req = parse_request(data("openflow-request-digest.xml"), am_urns=[FOAM])
    (sliver,) = req.openflow
    text = build_manifest([], [], openflow=[ManifestOpenFlow(
        URN + "of1", element_xml=sliver.element_xml,
        state=SliverState("geni_allocated", "geni_pending_allocation"))])
    assert validate_document(text, "manifest") == []
    assert xmllint(text, "manifest-bundle.xsd").returncode == 0
    root = etree.fromstring(text.encode())
    state = root.find(GA + "sliver_state")
    assert state.get("sliver_id") == URN + "of1" and state.get("allocation") == "geni_allocated"
    built = build_manifest([], [], openflow=[ManifestOpenFlow(URN + "of1", request=sliver)])
    assert validate_document(built, "manifest") == []


def test_empty_manifest_and_foreign_link_gets_vlantag():
    assert validate_document(build_manifest([], []), "manifest") == []
    foreign = (f'<link xmlns="{ns.RSPEC3}" client_id="x"><component_manager name="{OTHER_AM}"/>'
               '<interface_ref client_id="a"/><interface_ref client_id="b"/></link>')
    text = build_manifest([], [], foreign_xml=[foreign])
    assert validate_document(text, "manifest") == []


def test_unassigned_node_gets_chosen_sliver_type():
    text = build_manifest([ManifestNode("n", URN + "n", AM, sliver_type="xen-vm",
                                        disk_image="urn:img")], [])
    root = etree.fromstring(text.encode())
    assert root.find(f"{R}node/{R}sliver_type").get("name") == "xen-vm"
    assert validate_document(text, "manifest") == []


def test_geniam_request_extension_survives_into_manifest():
    xml = f"""<rspec xmlns="{ns.RSPEC3}" xmlns:g="{ns.GENIAM}" type="request">
      <node client_id="r"><interface client_id="r:0"/>
        <g:node router="true" forwarding="dom0"><g:route destination="0.0.0.0/0"
          interface="r:0"/></g:node></node></rspec>"""
    (node,) = parse_request(xml, am_urns=[AM]).nodes
    text = build_manifest([ManifestNode("r", URN + "r", AM, element_xml=node.element_xml)], [])
    assert validate_document(text, "manifest") == []
    route = etree.fromstring(text.encode()).find(f"{R}node/{GA}node/{GA}route")
    assert route.get("interface") == "r:0"
