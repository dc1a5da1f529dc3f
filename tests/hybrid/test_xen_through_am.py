"""Xen VMs through the AM API v3: life cycle, capacity refusals, the guest-forwarding limit."""
from __future__ import annotations

import libvirt

from tests.api.conftest import code_of
from tests.hybrid.conftest import manifest_nodes, node, request, sliver_urns

RSPEC = "{http://www.geni.net/resources/rspec/3}"


def test_xen_life_cycle(am):
    alloc = am.allocate(request(node("vm1", ifaces=(("if0", "10.90.1.2"),),
                                     ext='cpu="2" memory_mb="1024"')))
    assert code_of(alloc) == 0, alloc
    urn = sliver_urns(alloc["value"])["vm1"]
    am.provision([urn])                   # provisions and boots it (start_on_provision)
    assert am.wait_for([urn], "geni_ready") == {urn: "geni_ready"}

    # libvirt (the test driver, in this process) holds a running Xen domain of that size
    xml = am.xen.domain_xml(am.rt.store and _spec(am, urn))
    assert "<vcpu" in xml and ">2</vcpu>" in xml and "1048576" in xml
    assert code_of(am.poa([urn], "geni_restart")) == 0
    assert am.wait_for([urn], "geni_ready") == {urn: "geni_ready"}
    assert code_of(am.poa([urn], "geni_stop")) == 0
    assert am.wait_for([urn], "geni_notready") == {urn: "geni_notready"}
    assert code_of(am.poa([urn], "geni_start")) == 0
    assert am.wait_for([urn], "geni_ready") == {urn: "geni_ready"}

    described = am.ok("Describe", [urn], am.cred, {"geni_rspec_version":
                                                   {"type": "GENI", "version": "3"}})
    iface = manifest_nodes(described)["vm1"].find(f"{RSPEC}interface")
    mac = iface.get("mac_address")
    assert mac and mac.count(":") == 5
    assert mac.lower() in xml.lower()               # the MAC the guest really has

    assert code_of(am.call("Delete", [urn], am.cred, {})) == 0
    assert am.xen.observed() == []
    conn = libvirt.open("test:///default")
    assert not [d for d in conn.listAllDomains() if d.name().startswith("geniam-")]


def _spec(am, urn):
    from am.store import Sliver, spec_from_dict
    from sqlalchemy import select

    with am.rt.store.read() as session:
        row = session.scalars(select(Sliver).where(Sliver.urn == urn)).one()
        return spec_from_dict(row.spec)


def test_request_beyond_the_host_is_refused_with_its_reason(make_am):
    am = make_am(vcpus=8, memory_mb=4096)
    too_big = am.allocate(request(node("big", ext='cpu="16"')))
    assert code_of(too_big) == 6, too_big                         # TOOBIG
    assert "xen1" in too_big["output"] and "8 vCPUs in all" in too_big["output"]
    assert "16 requested" in too_big["output"]

    assert code_of(am.allocate(request(node("a", ext='cpu="6" memory_mb="1024"')))) == 0
    short = am.allocate(request(node("b", ext='cpu="4" memory_mb="1024"')))
    assert code_of(short) == 26, short                            # INSUFFICIENT_NODES
    assert "xen1 has 2 of 8 vCPUs free; 4 requested" in short["output"]
    memory = am.allocate(request(node("c", ext='cpu="1" memory_mb="4000"')))
    assert code_of(memory) == 26 and "3072 of 4096 MiB of memory free" in memory["output"]
    # nothing of the refused requests was reserved: a fitting request still goes through
    assert code_of(am.allocate(request(node("d", ext='cpu="2" memory_mb="3072"')))) == 0


def test_eleventh_guest_router_refused_dom0_router_admitted(am):
    routers = [node(f"r{i}", ext='router="true" forwarding="guest"') for i in range(10)]
    assert code_of(am.allocate(request(*routers))) == 0
    eleventh = am.allocate(request(node("r10", ext='router="true" forwarding="guest"')))
    assert code_of(eleventh) == 26, eleventh
    assert "xen1" in eleventh["output"] and "limit is 10" in eleventh["output"]
    dom0 = am.allocate(request(node("r11", ifaces=(("if0", "10.91.0.1"),),
                                    ext='router="true" forwarding="dom0"')))
    assert code_of(dom0) == 0, dom0
    # a router that leaves the mode open gets the best forwarding the host offers: Dom0
    chosen = am.allocate(request(node("r12", ifaces=(("if0", "10.92.0.1"),),
                                      ext='router="true"')))
    assert code_of(chosen) == 0, chosen
    urn = sliver_urns(chosen["value"])["r12"]
    assert _spec(am, urn).forwarding.value == "dom0"
    am.provision([urn])
    status = am.ok("Status", [urn], am.cred, {})["geni_slivers"][0]
    assert "forwarding in dom0" in status["geni_resource_status"]
