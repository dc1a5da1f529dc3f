"""Flowspace algebra: building cells from the request, overlap, rendering, claims (pure)."""
from __future__ import annotations

import ipaddress

import pytest

from drivers.openflow.flowspace import Cell, FlowspaceError, check_dpid, flowspace_for
from rspec.model import OFController, OFDatapath, OFGroup, OFMatch, OFPort, OpenFlowSliver, PacketMatch
from tests.drivers.openflow.specs import SW, sliver

PORTS = [1, 2, 3, 4]


def fs(ports=(), **packet):
    return flowspace_for(sliver("tcp:127.0.0.1:6653", ports, **packet), SW, PORTS)


def net(*cidrs):
    return tuple(ipaddress.IPv4Network(c) for c in cidrs)


@pytest.mark.parametrize("a,b,overlap", [
    (dict(), dict(dl_vlan=(5,)), True),                                   # wildcard covers all
    (dict(dl_vlan=(5,)), dict(dl_vlan=(6,)), False),
    (dict(dl_vlan=(5, 6)), dict(dl_vlan=(6, 7)), True),
    (dict(nw_src=("10.0.0.0/8",)), dict(nw_src=("10.1.2.0/24",)), True),   # nested prefixes
    (dict(nw_src=("10.0.0.0/24",)), dict(nw_src=("10.0.1.0/24",)), False),
    (dict(nw_src=("10.0.0.0/24",)), dict(nw_dst=("10.0.1.0/24",)), True), # different dimensions
    (dict(dl_src=("00:00:00:00:00:01",)), dict(dl_src=("00:00:00:00:00:02",)), False),
    (dict(dl_type=("0x800",)), dict(dl_type=("0x806",)), False),
    (dict(tp_dst=(80,)), dict(tp_dst=(443,)), False),
    (dict(nw_proto=(6,), tp_dst=(80,)), dict(nw_proto=(17,), tp_dst=(80,)), False),
])
def test_overlap_needs_every_dimension_to_meet(a, b, overlap):
    assert bool(fs((1,), **a).conflicts(fs((1,), **b))) is overlap
    assert bool(fs((1,), **b).conflicts(fs((1,), **a))) is overlap
    # Disjoint ports separate anything.
    assert not fs((1,), **a).conflicts(fs((2,), **b))
    # No ports listed means every port.
    assert bool(fs((), **a).conflicts(fs((2,), **b))) is overlap


def test_describe_names_the_dimensions():
    cell = fs((2, 1), dl_vlan=(100,), nw_src=("10.0.0.7/24",)).cells[0]
    assert cell.describe() == "in_port=1,2 dl_vlan=100 nw_src=10.0.0.0/24"
    assert Cell().describe() == "all traffic"


def test_ofmatches_fill_prerequisites_and_stay_inside_the_cell():
    ip_only = Cell(nw_src=net("10.0.0.0/24"))
    assert ip_only.ofmatches() == ["dl_type=0x0800,nw_src=10.0.0.0/24",
                                   "dl_type=0x0806,arp_spa=10.0.0.0/24"]
    ports = Cell(tp_dst=frozenset({80}))
    assert ports.ofmatches() == ["dl_type=0x0800,nw_proto=6,tp_dst=80",
                                 "dl_type=0x0800,nw_proto=17,tp_dst=80"]
    product = Cell(dl_vlan=frozenset({1, 2}), dl_type=frozenset({0x800}),
                   nw_dst=net("10.0.0.0/8", "192.168.0.0/16"))
    assert len(product.ofmatches()) == product.match_count() == 4
    assert Cell().ofmatches() == [""]


def test_claims_are_shared_by_identical_cells_and_vlan_owners():
    a = fs((), dl_vlan=(100, 101))
    assert set(a.claims()) >= {"vlan:100", "vlan:101"}
    assert set(a.claims()) & set(fs((), dl_vlan=(101,)).claims()) == {"vlan:101"}
    # A VLAN on some ports only does not claim the VLAN switch-wide.
    assert not any(c.startswith("vlan:") for c in fs((1,), dl_vlan=(100,)).claims())
    assert fs((1,), nw_src=("10.0.0.0/8",)).claims() == fs((1,), nw_src=("10.0.0.0/8",)).claims()


@pytest.mark.parametrize("packet,ports,needle", [
    (dict(dl_type=("0x88cc",)), (), "LLDP"),
    (dict(dl_type=("ip",)), (), "not an ethertype"),
    (dict(dl_src=("00:11:22:33:44",)), (), "not a MAC"),
    (dict(nw_src=("10.0.0.0/33",)), (), "not an IPv4"),
    (dict(dl_type=("0x806",), tp_dst=(80,)), (), "dl_type 0x800 only"),
    (dict(nw_proto=(1,), tp_dst=(80,)), (), "need nw_proto 6"),
    (dict(dl_type=("0x86dd",), nw_src=("10.0.0.0/8",)), (), "nw_* fields need"),
    (dict(), (9,), "has no port 9"),
])
def test_malformed_flowspace_is_badargs(packet, ports, needle):
    with pytest.raises(FlowspaceError) as err:
        fs(ports, **packet)
    assert needle in str(err.value) and err.value.code == "BADARGS"


def test_matches_apply_through_groups_or_directly():
    other = "urn:publicid:IDN+geni-am:oftest+node+sw2"
    of = OpenFlowSliver(
        controllers=(OFController("tcp:127.0.0.1:1"),),
        groups=(OFGroup("g", (OFDatapath(SW, ports=(OFPort(1),)), OFDatapath(other))),),
        matches=(OFMatch(use_groups=("g",), packet=PacketMatch(dl_vlan=(5,))),
                 OFMatch(datapaths=(OFDatapath(other, ports=(OFPort(3),)),),
                         packet=PacketMatch(dl_vlan=(6,)))))
    mine = flowspace_for(of, SW, PORTS)
    assert [c.describe() for c in mine.cells] == ["in_port=1 dl_vlan=5"]
    theirs = flowspace_for(of, other, PORTS)
    assert [c.describe() for c in theirs.cells] == ["dl_vlan=5", "in_port=3 dl_vlan=6"]
    assert mine.ports(PORTS) == {1} and theirs.ports(PORTS) == {1, 2, 3, 4}
    with pytest.raises(FlowspaceError, match="no openflow:match"):
        flowspace_for(of, "urn:publicid:IDN+geni-am:oftest+node+sw3", PORTS)


def test_dpid_must_match_when_given():
    of = sliver("tcp:127.0.0.1:1", dpid="00:00:00:00:00:00:00:02")
    check_dpid(of, SW, "00:00:00:00:00:00:00:02")
    with pytest.raises(FlowspaceError, match="has dpid 00:00:00:00:00:00:00:01"):
        check_dpid(of, SW, "00:00:00:00:00:00:00:01")
