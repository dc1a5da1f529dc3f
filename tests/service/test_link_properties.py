"""Link properties are honoured or refused, never ignored: a link asking for latency or loss
on a component that cannot shape them is refused with UNSUPPORTED naming the property and the
component, nothing stored; the advertisement says per component what its links honour."""
from __future__ import annotations

import pytest

from am.errors import GeniCode, GeniError
from am.service.contract import Options
from drivers.base import LinkEnd, LinkSpec, ResourceKind, SliverSpec, Usage
from drivers.fake import FakeDriver
from drivers.inventory import InventoryError
from tests.service.harness import ALICE, AUTH, Harness, node_xml, request, slice_urn


def _with_property(prop: str) -> str:
    return request(node_xml("a", iface=True), node_xml("b", iface=True),
                   '<link client_id="l"><interface_ref client_id="a:if0"/>'
                   '<interface_ref client_id="b:if0"/>'
                   f'<property source_id="a:if0" dest_id="b:if0" {prop}/></link>')


@pytest.mark.parametrize("prop, named", [('latency="20"', "20 ms latency"),
                                         ('packet_loss="0.01"', "0.01 packet loss")])
def test_latency_and_loss_refused_naming_property_and_component(h, prop, named):
    with pytest.raises(GeniError) as err:
        h.am.allocate(ALICE, slice_urn(), _with_property(prop), Options())
    assert err.value.code is GeniCode.UNSUPPORTED
    msg = str(err.value)
    assert named in msg and "link l" in msg and "cannot shape" in msg
    assert f"urn:publicid:IDN+{AUTH}+node+fake" in msg
    with h.store.read() as session:
        from sqlalchemy import func, select

        from am.store import Sliver
        assert session.scalar(select(func.count()).select_from(Sliver)) == 0


def test_capacity_is_admitted_and_advertised(h):
    h.am.allocate(ALICE, slice_urn(), _with_property('capacity="10000"'), Options())
    xml = h.am.advertisement(Options())
    assert xml.count('link_shaping="capacity"') == len(h.site.components)


def test_a_netem_capable_fake_accepts_latency_and_says_so(store, tmp_path):
    h = Harness(store, tmp_path, link_properties=["capacity", "latency", "packet_loss"])
    try:
        h.am.allocate(ALICE, slice_urn(), _with_property('latency="20" packet_loss="0.01"'),
                      Options())
        assert 'link_shaping="capacity latency packet_loss"' in h.am.advertisement(Options())
    finally:
        h.close()


def test_fake_declares_its_link_properties(tmp_path):
    d = FakeDriver({"nodes": 2, "state_dir": str(tmp_path)}, [], authority=AUTH)
    try:
        assert d.capabilities.link_properties == ("capacity",)
        assert type(d).capabilities.link_properties == ()     # the class declares no default
        comp = d.inventory()[0]
        ends = tuple(LinkEnd("", n, f"{n}:if0", comp.component_id) for n in ("a", "b"))
        spec = SliverSpec(sliver_urn="", slice_urn="urn:s", client_id="l", kind=ResourceKind.LINK,
                          component_id=comp.component_id,
                          link=LinkSpec(ends=ends, latency_ms=5))
        adm = d.admit(spec, Usage(comp.component_id))
        assert (adm.ok, adm.reason_code) == (False, "UNSUPPORTED")
        assert "latency" in adm.reason and comp.name in adm.reason
    finally:
        d.close()
    with pytest.raises(InventoryError, match="link_properties"):
        FakeDriver({"link_properties": ["jitter"]}, [], authority=AUTH)
