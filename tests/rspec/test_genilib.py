"""Interop: requests written by geni-lib (`geni.rspec.pg`) parse into the right model."""
from __future__ import annotations

import warnings

import pytest

from rspec.model import IPv4
from rspec.request import parse_request
from tests.rspec.conftest import AM, OTHER_AM, SLIVER_TYPES

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import geni.rspec.pg as pg


def _xml(request) -> str:
    return request.toXMLString(pretty_print=True, ucode=True)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # geni-lib's deprecation warnings for XenVM
        yield


def test_rawpc_and_xenvm_with_lan_bandwidth_and_addresses():
    r = pg.Request()
    n1 = pg.RawPC("node1")
    n1.component_manager_id = AM
    n1.component_id = "urn:publicid:IDN+am.example.net+node+pc7"
    n2 = pg.XenVM("node2")
    n2.cores = 2
    n2.ram = 2048
    n2.disk_image = "urn:publicid:IDN+am.example.net+image+ubuntu22"
    i1 = n1.addInterface("if0")
    i1.addAddress(pg.IPv4Address("10.1.1.1", "255.255.255.0"))
    i2 = n2.addInterface("if0")
    i2.addAddress(pg.IPv4Address("10.1.1.2", "255.255.255.0"))
    lan = pg.LAN("lan0")
    lan.addInterface(i1)
    lan.addInterface(i2)
    lan.bandwidth = 100000
    n1.addService(pg.Install("http://example.net/x.tgz", "/local"))
    n1.addService(pg.Execute("sh", "/local/run.sh"))
    for res in (n1, n2, lan):
        r.addResource(res)

    req = parse_request(_xml(r), am_urns=[AM], known_sliver_types=SLIVER_TYPES)

    a, b = req.nodes
    assert (a.client_id, a.sliver_type, a.exclusive) == ("node1", "raw", True)
    assert a.component_id == "urn:publicid:IDN+am.example.net+node+pc7"
    assert a.component_manager_id == AM
    assert a.interfaces[0].client_id == "node1:if0"
    assert a.interfaces[0].ips == (IPv4("10.1.1.1", "255.255.255.0", "ipv4"),)
    assert a.services.installs[0].url == "http://example.net/x.tgz"
    assert a.services.executes[0].shell == "sh"
    assert (b.client_id, b.sliver_type, b.exclusive) == ("node2", "emulab-xen", False)
    assert b.disk_image == "urn:publicid:IDN+am.example.net+image+ubuntu22"
    assert b.ext.cpu == 2.0 and b.ext.memory_mb == 2048
    assert b.interfaces[0].ips == (IPv4("10.1.1.2", "255.255.255.0", "ipv4"),)
    (link,) = req.links
    assert link.client_id == "lan0" and link.link_type == "lan"
    assert link.interface_refs == ("node1:if0", "node2:if0")
    assert link.capacity_kbps == 100000
    assert {(p.source_id, p.dest_id, p.capacity_kbps) for p in link.properties} == {
        ("node1:if0", "lan0", 100000), ("node2:if0", "lan0", 100000)}


def test_point_to_point_link_latency_and_loss():
    r = pg.Request()
    nodes = [pg.RawPC(f"h{i}") for i in range(2)]
    link = pg.Link("l0")
    for i, node in enumerate(nodes):
        iface = node.addInterface("eth1")
        iface.addAddress(pg.IPv4Address(f"192.168.0.{i + 1}", "255.255.255.252"))
        link.addInterface(iface)
        r.addResource(node)
    link.bandwidth = 5000
    link.latency = 15
    link.plr = 0.02
    r.addResource(link)
    (parsed,) = parse_request(_xml(r), am_urns=[AM]).links
    assert parsed.interface_refs == ("h0:eth1", "h1:eth1")
    assert parsed.capacity_kbps == 5000
    assert all(p.latency_ms == 15 and p.packet_loss == 0.02 for p in parsed.properties)
    assert parse_request(_xml(r), am_urns=[AM]).nodes[1].interfaces[0].ips[0].address == \
        "192.168.0.2"


def test_genilib_node_for_another_am_is_echoed_not_modelled():
    r = pg.Request()
    mine, theirs = pg.RawPC("mine"), pg.RawPC("theirs")
    mine.component_manager_id = AM
    theirs.component_manager_id = OTHER_AM
    r.addResource(mine)
    r.addResource(theirs)
    req = parse_request(_xml(r), am_urns=[AM])
    assert [n.client_id for n in req.nodes] == ["mine"]
    assert len(req.foreign_xml) == 1 and 'client_id="theirs"' in req.foreign_xml[0]
