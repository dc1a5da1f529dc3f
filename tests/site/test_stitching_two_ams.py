"""Two aggregates on one machine, stitched: two `geni-am serve` processes (authorities
geni-am:sta and geni-am:stb, one CA trusted by both), each with a container host and an Open
vSwitch bridge (vswitchd in its own namespace), the two edge ports joined by a veth that plays
the inter-site circuit. At a the edge port is on the host's own bridge; at b it is on OpenFlow
switch sw1, reached from the host over site wires (the local switch path). Through `am.client.stitch` (what `geni-am client
stitch` runs): a one-link two-node request pings end to end on the agreed tag; `any` and an
explicit tag; an explicit tag in use at the second aggregate is VLAN_UNAVAILABLE there and the
client's retry succeeds; a third slice on another tag sees none of the first's packets; Delete
at one side frees its tag at once."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from lxml import etree

from am.client import AMClient
from am.client.errors import AMError
from am.client.stitch import stitch
from rspec.stitching import manifest_tags
from drivers import hostnet
from tests.conftest import require_tool
from tests.site.stitch_sites import (
    RSPEC3,
    SIDES,
    TOOLS,
    authority_of,
    node_netns,
    ping,
    ready,
    slice_urn,
    two_aggregates,
    two_node_request,
)
from tests.support import wait_until

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture(scope="module")
def sites():
    for tool in TOOLS:
        require_tool(tool)
    with two_aggregates() as up:
        yield up


def clients(sites, name: str) -> list[AMClient]:
    return [sites[s].client(name) for s in SIDES]


def echoes_received(netns: str) -> int:
    """ICMP echo requests the namespace's stack received (Icmp InEchos of /proc/net/snmp)."""
    out = subprocess.run(["ip", "netns", "exec", netns, "cat", "/proc/net/snmp"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    head, values = [line.split() for line in out.splitlines() if line.startswith("Icmp:")][:2]
    return int(values[head.index("InEchos")])


def stitched_and_ready(sites, name: str, xml: str):
    cs = clients(sites, name)
    result = stitch(cs, slice_urn(name), xml, authority_of=authority_of(sites))
    for c in cs:
        wait_until(lambda c=c: ready(c, slice_urn(name)), f"{name} ready at {c.url}", 120)
    return cs, result


def test_a_stitched_link_pings_end_to_end_and_isolates_other_tags(sites):
    cs, first = stitched_and_ready(sites, "one", two_node_request(1, "any"))
    tag = first.tags["lnk"]
    assert 100 <= tag <= 199 and first.rounds == 1
    for c in cs:   # both manifests report the same tag on their hops
        tags = manifest_tags(c.describe(slice_urn("one"))["geni_rspec"])
        assert set(tags["lnk"].values()) == {tag}
    ns_a = node_netns(sites["a"], cs[0], slice_urn("one"))
    ns_b = node_netns(sites["b"], cs[1], slice_urn("one"))
    assert wait_until(lambda: ping(ns_a, "10.77.1.2", 1), "ping a -> b", 30)
    assert ping(ns_b, "10.77.1.1")
    # at b the path crosses switch sw1: nb's interface is vs1's wire, and sw1's bridge tags
    # what comes from that wire's port and untags what comes back on the tag
    manifest_b = etree.fromstring(cs[1].describe(slice_urn("one"))["geni_rspec"].encode())
    (iface,) = [i for i in manifest_b.iter("{%s}interface" % RSPEC3)
                if i.get("client_id") == "nb:if0"]
    wire = iface.get("component_id").rsplit(":", 1)[1]
    assert wire.startswith("eth"), iface.get("component_id")
    flows = sites["b"].ovs.client().ofctl("dump-flows", "br-st")
    assert f"dl_vlan={tag} actions=pop_vlan" in flows and "push_vlan:0x8100" in flows, flows
    device = sites["b"].wires[int(wire[3:]) - 1]    # its host end, taken into nb's namespace
    assert hostnet.find_link(None, device) is None
    # the link's 20,000 kbit/s shape the node's interface (tbf)
    qdiscs = subprocess.run(["ip", "netns", "exec", ns_a, "tc", "qdisc", "show"],
                            capture_output=True, text=True, timeout=10, check=True).stdout
    assert "tbf" in qdiscs and "rate 20Mbit" in qdiscs, qdiscs

    # a third slice, explicit tag, same addresses: its own link works, and sees nothing of one's
    cs3, third = stitched_and_ready(sites, "three", two_node_request(1, "150"))
    assert third.tags["lnk"] == 150 != tag
    ns3_a = node_netns(sites["a"], cs3[0], slice_urn("three"))
    ns3_b = node_netns(sites["b"], cs3[1], slice_urn("three"))
    assert wait_until(lambda: ping(ns3_a, "10.77.1.2", 1), "ping in slice three", 30)
    before, mine = echoes_received(ns3_b), echoes_received(ns_b)
    assert ping(ns_a, "10.77.1.2", count=20)     # slice one's traffic, to the same address
    assert echoes_received(ns_b) - mine == 20    # all reached slice one's node at b
    assert echoes_received(ns3_b) == before      # none reached slice three's
    for c in cs3:
        c.delete(slice_urn("three"))


def test_a_hop_naming_no_edge_port_is_badargs_and_reserves_nothing(sites):
    bad = two_node_request(6, "any").replace("+interface+vs1:edge1", "+interface+vs1:edge9", 1)
    client = sites["a"].client("bad")
    with pytest.raises(AMError) as err:
        client.allocate(slice_urn("bad"), bad)
    assert err.value.code == 1 and "'a-edge'" in err.value.output \
        and "vs1:edge9 is not an edge port" in err.value.output
    manifest = etree.fromstring(client.describe(slice_urn("bad"))["geni_rspec"].encode())
    assert [el for el in manifest if isinstance(el.tag, str)] == []


def test_a_tag_in_use_at_the_second_aggregate_is_retried_without_it(sites):
    # slice "hold" holds VLAN 160 at b only
    hold = sites["b"].client("hold")     # (b ignores node na: it is a's)
    hold.allocate(slice_urn("hold"), two_node_request(3, "160"))
    with pytest.raises(AMError) as err:
        sites["b"].client("probe").allocate(slice_urn("probe"), two_node_request(4, "160"))
    assert err.value.code == 24 and "VLAN 160" in err.value.output and "b-edge" in err.value.output
    # through the command line this time (the aggregates ordered from their GetVersion)
    top = sites["a"].top
    request = top / "two.xml"
    request.write_text(two_node_request(2, "160"))
    from credentials.authority import DevAuthority
    cred = DevAuthority(top / "auth").slice("two", "alice")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENI_AM_")}
    proc = subprocess.run(
        [sys.executable, "-m", "am", "client", "stitch", slice_urn("two"), str(request),
         "--am", sites["b"].url, "--am", sites["a"].url, "--json",
         "--cert", str(top / "auth" / "alice-cert.pem"), "--key",
         str(top / "auth" / "alice-key.pem"), "--ca",
         str(top / "auth" / "trust-roots" / "ca-cert.pem"), "--cred", str(cred)],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["rounds"] == 2 and res["excluded"] == {"lnk": [160]} and res["tags"]["lnk"] != 160
    assert "VLAN 160 unavailable" in proc.stderr
    cs = clients(sites, "two")
    for c in cs:
        wait_until(lambda c=c: ready(c, slice_urn("two")), f"two ready at {c.url}", 120)
    ns_a = node_netns(sites["a"], cs[0], slice_urn("two"))
    assert wait_until(lambda: ping(ns_a, "10.77.2.2", 1), "ping after the retry", 30)
    # Delete at b frees its tag at once: the held tag is free for anybody at b now
    hold.close()
    sites["b"].client("hold").delete(slice_urn("hold"))
    again = sites["b"].client("again")
    res = again.allocate(slice_urn("again"), two_node_request(5, "160"))
    assert manifest_tags(res["geni_rspec"])["lnk"]["b-edge"] == 160
    again.delete(slice_urn("again"))
    for c in cs:
        c.delete(slice_urn("two"))
