"""Placement over a site built from an inventory file: wiring, VLAN ranges, unwired hosts."""
from __future__ import annotations

from am.engine import place
from drivers.base import ResourceKind
from drivers.registry import load_site
from rspec.model import Request, RequestInterface, RequestLink, RequestNode
from tests.drivers.test_registry import AUTH, GOOD, write


def urn(name):
    return f"urn:publicid:IDN+{AUTH}+node+{name}"


def test_vlan_uses_the_switch_range_and_unwired_hosts_are_named(tmp_path, mint):
    text = GOOD + '\n[[components]]\nname = "island"\ndriver = "fake"\nisolation = "hypervisor"\n' \
                  'sliver_types = ["xen-vm"]\n'
    site = load_site(write(tmp_path, text), authority=AUTH)
    try:
        req = Request(nodes=(
            RequestNode("x", sliver_type="xen-vm", component_id=urn("xen1"),
                        interfaces=(RequestInterface("x:0"),)),
            RequestNode("c", sliver_type="vserver-container", interfaces=(RequestInterface("c:0"),)),
        ), links=(RequestLink("l", ("x:0", "c:0")),))
        plan = place(req, site, {}, slice_urn="urn:s", mint_sliver_urn=mint)
        assert plan.ok
        (lk,) = [s for s in plan.slivers if s.spec.kind is ResourceKind.LINK]
        assert lk.spec.component_id == urn("sw1") and lk.spec.link.vlan_tag == 100
        assert {s.spec.client_id: s.spec.component_id for s in plan.slivers
                if s.spec.kind is ResourceKind.NODE} == {"x": urn("xen1"), "c": urn("vs1")}

        req2 = Request(nodes=(
            RequestNode("i", sliver_type="xen-vm", component_id=urn("island"),
                        interfaces=(RequestInterface("i:0"),)),
            RequestNode("x", sliver_type="xen-vm", component_id=urn("xen1"),
                        interfaces=(RequestInterface("x:0"),)),
        ), links=(RequestLink("l", ("i:0", "x:0")),))
        (r,) = place(req2, site, {}, slice_urn="urn:s", mint_sliver_urn=mint).refusals
        assert r.client_id == "l" and r.code == "UNSUPPORTED" and "island" in r.reason
    finally:
        site.close()
