"""The advertisement builder: content, validity (lxml and xmllint), options."""
from __future__ import annotations

from datetime import datetime, timezone

from lxml import etree

from drivers.base import Component, ComponentPort, DiskImage, SliverTypeInfo
from rspec import namespaces as ns
from rspec.advertisement import AdLink, build_advertisement, default_opstate
from rspec.model import ForwardingMode, IsolationClass
from rspec.validate import validate_document
from tests.rspec.conftest import AM

R = "{%s}" % ns.RSPEC3
GA = "{%s}" % ns.GENIAM
OF = "{%s}" % ns.OPENFLOW3
OP = "{%s}" % ns.OPSTATE

XEN = Component(
    component_id="urn:publicid:IDN+am.example.net+node+xen1", name="xen1", driver="xen",
    isolation=IsolationClass.HYPERVISOR,
    sliver_types=(SliverTypeInfo("xen-vm", (DiskImage(
        "urn:publicid:IDN+am.example.net+image+deb12", "Linux", "12", 'Debian <12> & "co"',
        True),)),),
    hardware_types=("pc",), forwarding_modes=(ForwardingMode.GUEST, ForwardingMode.DOM0),
    capacity={"cpu_milli": 8000, "memory_mb": 16384, "guest_routers": 10},
    ports=(ComponentPort("urn:publicid:IDN+am.example.net+interface+xen1:eth1", "eth1",
                         capacity_kbps=1_000_000),),
    exclusive_ok=True, location=("KR", 36.35, 127.38))
VSERVER = Component(
    component_id="urn:publicid:IDN+am.example.net+node+vs1", name="vs1", driver="vserver",
    isolation=IsolationClass.CONTAINER, sliver_types=(SliverTypeInfo("vserver-container"),),
    forwarding_modes=(ForwardingMode.GUEST,), capacity={"cpu_milli": 4000, "memory_mb": 4096})
SWITCH = Component(
    component_id="urn:publicid:IDN+am.example.net+datapath+00:00:00:00:00:00:00:01",
    name="sw1", driver="openflow", isolation=IsolationClass.FLOWSPACE,
    dpid="00:00:00:00:00:00:00:01",
    ports=(ComponentPort("urn:p1", "p1", 1), ComponentPort("urn:p2", "p2", 2)))
LINK = AdLink("urn:publicid:IDN+am.example.net+link+l1", "l1",
              (XEN.ports[0].component_id, "urn:publicid:IDN+am.example.net+interface+vs1:eth1"),
              capacity_kbps=1_000_000)


def build(**kw) -> str:
    kw.setdefault("am_urn", AM)
    return build_advertisement([XEN, VSERVER, SWITCH], **kw)


def test_advertisement_content():
    when = datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)
    text = build(available={VSERVER.component_id: False}, links=[LINK],
                 opstate=default_opstate(["xen-vm"]), generated=when,
                 free={XEN.component_id: {"cpu_milli": 6000, "guest_routers": 3, "memory_mb": -5}})
    root = etree.fromstring(text.encode())
    assert root.get("type") == "advertisement" and root.get("generated") == "2024-05-01T10:00:00Z"
    xen, vs = root.findall(R + "node")
    assert xen.get("component_id") == XEN.component_id and xen.get("exclusive") == "true"
    assert xen.get("component_manager_id") == AM and xen.get("component_name") == "xen1"
    assert xen.find(R + "hardware_type").get("name") == "pc"
    image = xen.find(f"{R}sliver_type/{R}disk_image")
    assert image.get("description") == 'Debian <12> & "co"' and image.get("default") == "true"
    assert xen.find(R + "location").attrib == {"country": "KR", "latitude": "36.35",
                                               "longitude": "127.38"}
    assert xen.find(f"{R}interface/{GA}port").get("capacity_kbps") == "1000000"
    assert xen.find(R + "available").get("now") == "true"
    assert vs.find(R + "available").get("now") == "false"
    comp = xen.find(GA + "component")
    assert comp.attrib == {"driver": "xen", "isolation": "hypervisor",
                           "forwarding_modes": "guest dom0", "cpu": "8", "free_cpu": "6",
                           "memory_mb": "16384", "free_memory_mb": "0"}
    assert comp.find(GA + "capacity").attrib == {"resource": "guest_routers", "total": "10",
                                                 "free": "3"}
    assert vs.find(GA + "component").get("isolation") == "container"
    (dp,) = root.findall(OF + "datapath")
    assert dp.get("dpid") == "00:00:00:00:00:00:00:01" and dp.get("component_manager_id") == AM
    assert [(p.get("num"), p.get("name")) for p in dp.findall(OF + "port")] == [("1", "p1"),
                                                                               ("2", "p2")]
    (opstate,) = root.findall(OP + "rspec_opstate")
    assert opstate.get("start") == "geni_notready"
    states = {s.get("name"): [(a.get("name"), a.get("next")) for a in s.findall(OP + "action")]
              for s in opstate.findall(OP + "state")}
    assert ("geni_start", "geni_configuring") in states["geni_notready"]
    assert ("geni_stop", "geni_stopping") in states["geni_ready"]
    (link,) = root.findall(R + "link")
    assert [r.get("component_id") for r in link.findall(R + "interface_ref")] == list(
        LINK.interface_refs)
    assert {p.get("capacity") for p in link.findall(R + "property")} == {"1000000"}


def test_advertisement_is_valid_for_lxml_and_xmllint(xmllint):
    text = build(links=[LINK], opstate=default_opstate(["xen-vm"]),
                 expires=datetime(2030, 1, 1))
    assert validate_document(text, "advertisement") == []
    for schema in ("ad.xsd", "ad-bundle.xsd"):
        result = xmllint(text, schema)
        assert result.returncode == 0, result.stderr
        assert "validates" in result.stderr


def test_available_only_leaves_out_busy_components():
    text = build(available={XEN.component_id: False}, available_only=True)
    root = etree.fromstring(text.encode())
    assert [n.get("component_name") for n in root.findall(R + "node")] == ["vs1"]


def test_empty_advertisement_is_valid():
    text = build_advertisement([], am_urn=AM)
    assert validate_document(text, "advertisement") == []


def test_control_characters_in_inventory_cannot_break_the_document():
    odd = Component(component_id="urn:publicid:IDN+am.example.net+node+odd\x01",
                    name='<"odd"\x00 & \n', driver="fake", isolation="container")
    text = build_advertisement([odd], am_urn=AM)
    assert validate_document(text, "advertisement") == []
    node = etree.fromstring(text.encode()).find(R + "node")
    assert node.get("component_name") == '<"odd"\ufffd & \n'


def test_ad_extension_is_schema_checked():
    text = build().replace('isolation="hypervisor"', 'isolation="magic"')
    problems = validate_document(text, "advertisement")
    assert problems and problems[0].element == "geniam:component"
