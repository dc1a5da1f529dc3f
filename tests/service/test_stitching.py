"""Stitched links at the service (fake site with one edge port): advertisement and GetVersion
facts, admission with the tag chosen on every local hop, VLAN_UNAVAILABLE for a tag in use,
BADARGS for a malformed path with nothing reserved, and Delete freeing the tag at once."""
from __future__ import annotations

import pytest
from lxml import etree
from sqlalchemy import select

from am.errors import GeniCode, GeniError
from am.service.contract import Options
from am.store import stitch_tags
from drivers.base import EdgePort
from rspec import namespaces as ns
from rspec.stitching import manifest_tags, request_path
from tests.service.harness import ALICE, AM, AUTH, Harness
from tests.support import slice_urn

OTHER = "urn:publicid:IDN+peer.example.org+authority+am"
EDGE = f"urn:publicid:IDN+{AUTH}+interface+fake1:edge1"
PEER_PORT = "urn:publicid:IDN+peer.example.org+interface+vs1:edge1"
S2 = "{%s}" % ns.STITCH2


@pytest.fixture
def h(store, tmp_path):
    harness = Harness(store, tmp_path)
    harness.site.edges = [EdgePort(
        name="edge1", component_id=f"urn:publicid:IDN+{AUTH}+node+fake1", port="edge1",
        interface_id=EDGE, remote_aggregate=OTHER, remote_port=PEER_PORT,
        vlan_range=(100, 103), capacity_kbps=100000)]
    yield harness
    harness.close()


def stitched(suggested: str = "any", *, avail: str = "100-199", port: str = EDGE,
             path: str | None = None, peer_avail: str | None = None) -> str:
    stitching = path if path is not None else request_path("lnk", [
        ("local-edge", port, avail, suggested),
        ("peer-edge", PEER_PORT, peer_avail or avail, suggested)])
    return f"""<rspec xmlns="{ns.RSPEC3}" type="request">
  <node client_id="na" component_manager_id="{AM}"
        component_id="urn:publicid:IDN+{AUTH}+node+fake1" exclusive="false">
    <sliver_type name="xen-vm"/><interface client_id="na:if0"/></node>
  <node client_id="nb" component_manager_id="{OTHER}" exclusive="false">
    <sliver_type name="emulab-xen"/><interface client_id="nb:if0"/></node>
  <link client_id="lnk"><component_manager name="{AM}"/><component_manager name="{OTHER}"/>
    <interface_ref client_id="na:if0"/><interface_ref client_id="nb:if0"/></link>
  {stitching}
</rspec>"""


def allocate(h, name: str, xml: str):
    return h.am.allocate(ALICE, slice_urn(name), xml, Options())


def tags_held(h) -> list[tuple[str, int]]:
    with h.store.read() as session:
        return sorted(session.execute(select(stitch_tags.StitchTag.hop,
                                             stitch_tags.StitchTag.tag)).all())


def test_advertisement_and_version_say_the_am_stitches(h):
    ad = etree.fromstring(h.am.advertisement(Options()).encode())
    port = ad.find(f"{S2}stitching/{S2}aggregate/{S2}node/{S2}port")
    assert port.get("id") == EDGE
    assert port.findtext(f".//{S2}remoteLinkId") == PEER_PORT
    assert port.findtext(f".//{S2}vlanRangeAvailability") == "100-103"
    version = h.am.stitching_version()
    assert version["namespace"] == ns.STITCH2 and version["edge_ports"][0]["port"] == EDGE
    allocate(h, "one", stitched("101"))
    free = etree.fromstring(h.am.advertisement(Options(available_only=True)).encode())
    assert free.findtext(f".//{S2}vlanRangeAvailability") == "100,102-103"
    full = etree.fromstring(h.am.advertisement(Options()).encode())
    assert full.findtext(f".//{S2}vlanRangeAvailability") == "100-103"


def test_any_takes_the_lowest_tag_every_hop_allows_and_the_manifest_reports_it(h):
    res = allocate(h, "one", stitched("any", peer_avail="102-150"))
    assert manifest_tags(res.manifest) == {"lnk": {"local-edge": 102}}
    root = etree.fromstring(res.manifest.encode())
    assert root.find("{%s}link" % ns.RSPEC3).get("vlantag") == "102"
    # the other aggregate's node is echoed in the manifest, not placed here
    assert sorted(s.client_id for s in res.slivers) == ["lnk", "na"]
    echoed = [n.get("client_id") for n in root.iter("{%s}node" % ns.RSPEC3)]
    assert sorted(echoed) == ["na", "nb"]
    assert tags_held(h) == [(EDGE.lower(), 102)]


def test_an_explicit_tag_is_honoured_and_a_taken_one_is_vlan_unavailable(h):
    res = allocate(h, "one", stitched("101"))
    assert manifest_tags(res.manifest)["lnk"]["local-edge"] == 101
    with pytest.raises(GeniError) as err:
        allocate(h, "two", stitched("101"))
    assert err.value.code is GeniCode.VLAN_UNAVAILABLE
    assert "VLAN 101" in err.value.message and "local-edge" in err.value.message
    assert tags_held(h) == [(EDGE.lower(), 101)]          # nothing of slice two was kept
    # the stitcher's retry: the refused tag excluded, `any` again
    res = allocate(h, "two", stitched("any", avail="100,102-199"))
    assert manifest_tags(res.manifest)["lnk"]["local-edge"] == 100


@pytest.mark.parametrize("xml, words", [
    (stitched("any", port=f"urn:publicid:IDN+{AUTH}+interface+fake1:nosuch"),
     ["'local-edge'", "is not an edge port"]),
    (stitched("300"), ["'local-edge'", "suggested VLAN 300", "outside", "100-103"]),
    (stitched("10x"), ["'local-edge'", "suggestedVLANRange"]),
])
def test_bad_paths_are_badargs_naming_the_hop_and_reserve_nothing(h, xml, words):
    with pytest.raises(GeniError) as err:
        allocate(h, "bad", xml)
    assert err.value.code is GeniCode.BADARGS
    for word in words:
        assert word in err.value.message
    assert tags_held(h) == []
    assert h.am.describe(ALICE, [slice_urn("bad")], Options()).slivers == ()


def translating(xml: str, hop: int) -> str:
    """The request with hop `hop` (0: ours, 1: the peer's) saying vlanTranslation true."""
    parts = xml.split("<vlanTranslation>false</vlanTranslation>")
    return "".join(part + ("" if i == len(parts) - 1 else
                           "<vlanTranslation>%s</vlanTranslation>"
                           % ("true" if i == hop else "false"))
                   for i, part in enumerate(parts))


def test_a_path_needing_vlan_translation_here_is_refused_naming_the_hops(h):
    # the peer's hop takes only 300, ours 100-103: only a translating hop could join them
    with pytest.raises(GeniError) as err:
        allocate(h, "x", stitched("any", peer_avail="300"))
    assert err.value.code is GeniCode.VLAN_UNAVAILABLE
    for word in ("'peer-edge' allows VLAN 300", "'local-edge' here 100-103",
                 "needs VLAN translation", "vlanTranslation false"):
        assert word in err.value.message
    # a hop here asking us to translate: we never do (the advertisement says so)
    with pytest.raises(GeniError) as err:
        allocate(h, "x", translating(stitched("any"), 0))
    assert err.value.code is GeniCode.UNSUPPORTED and "'local-edge' asks for VLAN " \
        "translation" in err.value.message
    assert tags_held(h) == []
    # the peer's hop translates: its range no longer binds ours
    res = allocate(h, "x", translating(stitched("any", peer_avail="300"), 1))
    assert manifest_tags(res.manifest) == {"lnk": {"local-edge": 100}}


def test_delete_frees_the_tag_at_once(h):
    allocate(h, "one", stitched("103"))
    h.am.delete(ALICE, [slice_urn("one")], Options())
    assert tags_held(h) == []
    res = allocate(h, "two", stitched("103"))
    assert manifest_tags(res.manifest)["lnk"]["local-edge"] == 103


def test_the_database_refuses_a_second_holder_of_a_tag_on_a_hop(h):
    allocate(h, "one", stitched("100"))
    from am.store import ReservationConflict, Sliver
    with pytest.raises(ReservationConflict, match="VLAN 100 on hop x"):
        with h.store.write() as session:   # the conflict rolls the transaction back
            node = session.scalars(select(Sliver).where(Sliver.client_id == "na")).one()
            stitch_tags.claim(session, node, [(EDGE, "x")], 100)
    assert tags_held(h) == [(EDGE.lower(), 100)]


def test_renew_keeps_the_tag_and_expiry_frees_it(h):
    from datetime import timedelta
    allocate(h, "one", stitched("102"))
    later = h.clock.now + timedelta(seconds=h.settings.allocation_ttl_s * 2)
    h.am.renew(ALICE, [slice_urn("one")], later, Options())
    h.clock.advance(h.settings.allocation_ttl_s + 1)      # past the first expiry, not the renewed
    h.am.reap()
    assert tags_held(h) == [(EDGE.lower(), 102)]
    h.clock.advance(h.settings.allocation_ttl_s * 2)
    h.am.reap()
    assert tags_held(h) == []
    res = allocate(h, "two", stitched("102"))
    assert manifest_tags(res.manifest)["lnk"]["local-edge"] == 102


def test_racing_allocates_for_one_tag_end_with_one_holder(h):
    from concurrent.futures import ThreadPoolExecutor

    def attempt(i: int):
        try:
            allocate(h, f"race{i}", stitched("101"))
            return "ok"
        except GeniError as exc:
            return exc.code

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(attempt, range(4)))
    assert outcomes.count("ok") == 1
    assert sorted(o for o in outcomes if o != "ok") == [GeniCode.VLAN_UNAVAILABLE] * 3
    assert tags_held(h) == [(EDGE.lower(), 101)]


def test_update_of_a_stitched_slice_is_unsupported_and_changes_nothing(h):
    res = allocate(h, "one", stitched("101"))
    with pytest.raises(GeniError) as err:
        h.am.update(ALICE, [slice_urn("one")], stitched("102"), Options())
    assert err.value.code is GeniCode.UNSUPPORTED and "link lnk is stitched" in err.value.message
    assert tags_held(h) == [(EDGE.lower(), 101)]
    assert manifest_tags(h.am.describe(ALICE, [slice_urn("one")], Options()).manifest) == \
        manifest_tags(res.manifest)


def test_an_edge_on_a_switch_is_reached_through_the_switch_holding_the_tag_on_every_hop(h):
    from dataclasses import replace
    switch = next(c for c in h.site.components if c.extra.get("switch") or c.dpid)
    edge = f"urn:publicid:IDN+{AUTH}+interface+{switch.name}:uplink"
    h.site.edges = [replace(h.site.edges[0], component_id=switch.component_id, port="uplink",
                            interface_id=edge)]
    res = allocate(h, "sw", stitched("any", port=edge))
    assert manifest_tags(res.manifest) == {"lnk": {"local-edge": 100}}
    root = etree.fromstring(res.manifest.encode())
    (mlink,) = root.findall("{%s}link" % ns.RSPEC3)      # one link, though two slivers
    assert mlink.get("vlantag") == "100"
    # the tag is held on the edge port, the switch port of fake1's wire, and fake1's port
    port1 = f"urn:publicid:IDN+{AUTH}+interface+{switch.name}:port1"
    eth1 = f"urn:publicid:IDN+{AUTH}+interface+fake1:eth1"
    assert tags_held(h) == sorted((u.lower(), 100) for u in (edge, port1, eth1))
    iface = root.find("{%s}node/{%s}interface" % (ns.RSPEC3, ns.RSPEC3))
    assert iface.get("component_id") == eth1
    # fake1's only wire is taken whole: a second stitched link from fake1 is refused
    with pytest.raises(GeniError) as err:
        allocate(h, "sw2", stitched("any", port=edge))
    assert err.value.code is GeniCode.UNAVAILABLE and "already carries a stitched link" \
        in err.value.message
    h.am.delete(ALICE, [slice_urn("sw")], Options())
    assert tags_held(h) == []
    # a VLAN link of the switch holds its tag and its wires: a stitched link avoids both
    lan = f"""<rspec xmlns="{ns.RSPEC3}" type="request">""" + "".join(
        f"""<node client_id="{n}" component_id="urn:publicid:IDN+{AUTH}+node+{n}"
              exclusive="false"><sliver_type name="xen-vm"/>
              <interface client_id="{n}:if0"/></node>""" for n in ("fake1", "fake2")) + \
        """<link client_id="lan"><interface_ref client_id="fake1:if0"/>
           <interface_ref client_id="fake2:if0"/></link></rspec>"""
    assert 'vlantag="100"' in allocate(h, "lan", lan).manifest
    with pytest.raises(GeniError) as err:
        allocate(h, "sw3", stitched("any", port=edge))
    assert err.value.code is GeniCode.UNAVAILABLE and "or a VLAN link" in err.value.message
    fake3 = stitched("any", port=edge).replace("+node+fake1", "+node+fake3")
    assert manifest_tags(allocate(h, "sw4", fake3).manifest) == {"lnk": {"local-edge": 101}}
