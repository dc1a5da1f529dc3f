"""Shared LANs (geni_sharelan / geni_unsharelan, ProtoGENI's convention) on a fake site: a
slice shares a LAN under a token, another joins it with link_shared_vlan, unsharing or the
owner's Delete detaches the joiner; bad input is a precise code and changes nothing."""
from __future__ import annotations

import pytest

from am.errors import GeniCode, GeniError
from am.service.contract import Options
from tests.service.harness import ALICE, AM, request, slice_urn

SV = 'xmlns:sv="http://www.geni.net/resources/rspec/ext/shared-vlan/1"'


def _node(cid: str, comp: str | None = "fake1") -> str:
    bound = f' component_id="urn:publicid:IDN+geni-am:test+node+{comp}"' if comp else ""
    return (f'<node client_id="{cid}" component_manager_id="{AM}"{bound} exclusive="false">'
            f'<sliver_type name="xen-vm"/><interface client_id="{cid}:if0"/></node>')


OWNER = request(_node("a"), _node("b"),
                '<link client_id="lan0"><interface_ref client_id="a:if0"/>'
                '<interface_ref client_id="b:if0"/><link_type name="lan"/></link>')


def _joiner(token: str, comp: str | None = None) -> str:
    return request(_node("c", comp),
                   f'<link client_id="j" {SV}><interface_ref client_id="c:if0"/>'
                   f'<sv:link_shared_vlan name="{token}"/></link>')


def _live(h, name: str) -> dict[str, str]:
    try:
        return {i.client_id: i.allocation_status
                for i in h.am.status(ALICE, [slice_urn(name)], Options()).slivers}
    except GeniError as exc:
        assert exc.code is GeniCode.SEARCHFAILED
        return {}


def _share(h, name="owner", **opts):
    return h.am.perform_action(ALICE, [slice_urn(name)], "geni_sharelan",
                               Options(extra=opts))


def _refused(code: GeniCode, call, *words: str) -> None:
    with pytest.raises(GeniError) as err:
        call()
    assert err.value.code is code, err.value
    for w in words:
        assert w in err.value.message, err.value.message


def test_share_join_unshare_and_owner_delete(h):
    h.am.allocate(ALICE, slice_urn("owner"), OWNER, Options())
    # not yet provisioned: nothing to share
    _refused(GeniCode.UNAVAILABLE, lambda: _share(h, geni_sharelan_lanname="lan0",
                                                  geni_sharelan_token="tok1"), "provision")
    h.am.provision(ALICE, [slice_urn("owner")], Options())
    h.run_jobs()
    # bad input: no token, unknown LAN; nothing shared
    _refused(GeniCode.BADARGS, lambda: _share(h, geni_sharelan_lanname="lan0"),
             "geni_sharelan_token")
    _refused(GeniCode.SEARCHFAILED, lambda: _share(h, geni_sharelan_lanname="nope",
                                                   geni_sharelan_token="tok1"), "nope", "lan0")
    _refused(GeniCode.SEARCHFAILED, lambda: h.am.allocate(ALICE, slice_urn("other"),
                                                           _joiner("tok1"), Options()),
             "tok1", "no LAN is shared")
    assert _live(h, "other") == {}
    info = _share(h, geni_sharelan_lanname="lan0", geni_sharelan_token="tok1")
    assert info[0].client_id == "lan0"
    _share(h, geni_sharelan_lanname="lan0", geni_sharelan_token="tok1")       # idempotent
    _refused(GeniCode.ALREADYEXISTS, lambda: _share(h, geni_sharelan_lanname="lan0",
                                                    geni_sharelan_token="tok2"), "tok1")

    # another slice joins: its node goes where the LAN is (bound elsewhere: refused), its
    # link is a port on that bridge
    _refused(GeniCode.UNSUPPORTED, lambda: h.am.allocate(ALICE, slice_urn("other"),
                                                          _joiner("tok1", "fake2"), Options()),
             "tok1", "fake1", "elsewhere")
    joined = h.am.allocate(ALICE, slice_urn("other"), _joiner("tok1"), Options())
    assert {i.client_id for i in joined.slivers} == {"c", "j"}
    assert "node+fake1" in joined.manifest and "node+fake2" not in joined.manifest
    h.am.provision(ALICE, [slice_urn("other")], Options())
    h.run_jobs()
    assert _live(h, "other") == {"c": "geni_provisioned", "j": "geni_provisioned"}

    # unshare detaches the member (its link sliver goes; its node stays), then the token is
    # revoked: joining again says so
    h.am.perform_action(ALICE, [slice_urn("owner")], "geni_unsharelan",
                        Options(extra={"geni_sharelan_lanname": "lan0"}))
    assert _live(h, "other") == {"c": "geni_provisioned"}
    h.run_jobs()
    _refused(GeniCode.SEARCHFAILED, lambda: h.am.allocate(ALICE, slice_urn("third"),
                                                           _joiner("tok1"), Options()),
             "unshared at")
    _refused(GeniCode.SEARCHFAILED, lambda: h.am.perform_action(
        ALICE, [slice_urn("owner")], "geni_unsharelan",
        Options(extra={"geni_sharelan_lanname": "lan0"})), "not shared")

    # shared again (same token is free again); the owner's Delete detaches the joiner first
    _share(h, geni_sharelan_lanname="lan0", geni_sharelan_token="tok1")
    h.am.allocate(ALICE, slice_urn("third"), _joiner("tok1"), Options())
    assert _live(h, "third") == {"c": "geni_allocated", "j": "geni_allocated"}
    h.am.delete(ALICE, [slice_urn("owner")], Options())
    assert _live(h, "third") == {"c": "geni_allocated"}
    h.run_jobs()


def test_point_to_point_link_is_not_shareable_and_own_lan_cannot_be_joined(h):
    p2p = OWNER.replace('<link_type name="lan"/>', "")
    h.am.allocate(ALICE, slice_urn("owner"), p2p, Options())
    h.am.provision(ALICE, [slice_urn("owner")], Options())
    h.run_jobs()
    _refused(GeniCode.UNSUPPORTED, lambda: _share(h, geni_sharelan_lanname="lan0",
                                                  geni_sharelan_token="t"), "point-to-point")


def test_the_owner_lan_expiring_detaches_the_joiner(h):
    from datetime import timedelta

    h.am.allocate(ALICE, slice_urn("owner"), OWNER, Options())
    h.am.provision(ALICE, [slice_urn("owner")], Options())
    h.run_jobs()
    _share(h, geni_sharelan_lanname="lan0", geni_sharelan_token="tok")
    h.am.allocate(ALICE, slice_urn("other"), _joiner("tok"), Options())
    h.am.renew(ALICE, [slice_urn("owner")], h.clock.now + timedelta(hours=1), Options())
    h.am.renew(ALICE, [slice_urn("other")], h.clock.now + timedelta(hours=2), Options())
    h.clock.advance(3601)
    h.am.reap()
    assert _live(h, "other") == {"c": "geni_allocated"}     # its link to the LAN is gone
    h.run_jobs()
    _refused(GeniCode.SEARCHFAILED, lambda: h.am.allocate(ALICE, slice_urn("third"),
                                                           _joiner("tok"), Options()),
             "unshared at")


def test_an_update_can_join_a_shared_lan(h):
    h.am.allocate(ALICE, slice_urn("owner"), OWNER, Options())
    h.am.provision(ALICE, [slice_urn("owner")], Options())
    h.run_jobs()
    _share(h, geni_sharelan_lanname="lan0", geni_sharelan_token="tok")
    h.am.allocate(ALICE, slice_urn("other"), request(_node("c")), Options())
    _refused(GeniCode.SEARCHFAILED, lambda: h.am.update(ALICE, [slice_urn("other")],
                                                         _joiner("nope", "fake1"), Options()),
             "nope")
    assert _live(h, "other") == {"c": "geni_allocated"}       # a refused Update changes nothing
    h.am.update(ALICE, [slice_urn("other")], _joiner("tok", "fake1"), Options())
    assert _live(h, "other") == {"c": "geni_allocated", "j": "geni_allocated"}
    h.am.perform_action(ALICE, [slice_urn("owner")], "geni_unsharelan",
                        Options(extra={"geni_sharelan_lanname": "lan0"}))
    assert _live(h, "other") == {"c": "geni_allocated"}


def test_a_node_on_another_host_is_refused_naming_the_lan_and_both_hosts(make):
    """Shared LANs are not extended across the site's hosts: a joining node placed on another
    host is refused UNSUPPORTED naming the token, the LAN's component and host, and the node's;
    the joining slice gets nothing and the share stays as it was."""
    from am.store.hosts import HostRepository
    from drivers.inventory import HostDecl
    h = make(settings={"host_down_after_s": 3600.0})
    node = "urn:publicid:IDN+geni-am:test+node+{}".format
    for host in ("hostA", "hostB"):       # both hosts' workers are up
        HostRepository(h.store).beat(host)
    h.site.hosts = {"hostA": HostDecl("hostA", "192.0.2.1"), "hostB": HostDecl("hostB", "192.0.2.2")}
    h.site.host_map = {node("fake1").lower(): ("hostA",), node("fake2").lower(): ("hostB",)}
    h.am.allocate(ALICE, slice_urn("owner"), OWNER, Options())
    h.am.provision(ALICE, [slice_urn("owner")], Options())
    h.run_jobs()
    _share(h, geni_sharelan_lanname="lan0", geni_sharelan_token="tokx")
    _refused(GeniCode.UNSUPPORTED, lambda: h.am.allocate(ALICE, slice_urn("other"),
                                                          _joiner("tokx", "fake2"), Options()),
             "shared LAN 'tokx'", f"{node('fake1')} (host hostA)",
             f"node c is on {node('fake2')} (host hostB)", "not extended across hosts")
    assert _live(h, "other") == {}
    joined = h.am.allocate(ALICE, slice_urn("other"), _joiner("tokx", "fake1"), Options())
    assert {i.client_id for i in joined.slivers} == {"c", "j"}
