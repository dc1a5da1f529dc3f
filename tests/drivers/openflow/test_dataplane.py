"""Two slices on one real OVS switch, each with its own os-ken controller (as root).

Slice A owns ports 1 and 2 outright (h1, h2); slice B owns ports 3 and 4 but only for traffic
from 10.61.2.0/24 (h3, h4). All four hosts share one IP subnet, so only the flowspace keeps them
apart.
"""
from __future__ import annotations

import subprocess

import pytest

from drivers.base import OperationalState, Usage
from drivers.openflow.naming import cookie_match
from tests.drivers.openflow.conftest import HOSTS, PHYS, PHYS_DPID, in_ns, ns
from tests.drivers.openflow.specs import spec, sliver
from tests.support import wait_until

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("topology")]


def pings(src: int, dst_ip: str, *, source: str | None = None, count: int = 3) -> bool:
    argv = ["ping", "-c", str(count), "-i", "0.2", "-W", "1", "-q"]
    if source:
        argv += ["-I", source]
    return in_ns(src, *argv, dst_ip, check=False, timeout=15).returncode == 0


def tcp_echo(src: int, dst: int, port: int = 5601) -> str:
    """Send a line over TCP from host src to host dst; return what came back."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", ns(dst), "python3", "-c",
         "import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
         f"s.bind(('{HOSTS[dst]}',{port}));s.listen(1);s.settimeout(10);c,_=s.accept();"
         "c.sendall(c.recv(100).upper());c.close()"])
    try:
        wait_until(lambda: in_ns(dst, "ss", "-ltnH", f"sport = :{port}", check=False).stdout.strip(),
                   f"the server in {dst} to listen on {port}", timeout=10)
        out = in_ns(src, "python3", "-c",
                    "import socket;c=socket.create_connection"
                    f"(('{HOSTS[dst]}',{port}),timeout=5);c.sendall(b'hello slice');"
                    "print(c.recv(100).decode())", check=False, timeout=15)
        return out.stdout.strip()
    finally:
        server.wait(15)


def test_two_slices_isolated_and_overlap_refused(topology, controllers):
    driver = topology.driver()
    [comp] = driver.inventory()
    assert comp.dpid == PHYS_DPID
    assert [(p.name, p.num) for p in comp.ports] == [(f"gofv{i}", i) for i in range(1, 5)]

    ca, cb = controllers("slice-a"), controllers("slice-b")
    a = spec("a", sliver(ca.url, (1, 2), dpid=PHYS_DPID))
    b = spec("b", sliver(cb.url, (3, 4), nw_src=("10.61.2.0/24",)))
    assert driver.admit(a, Usage(comp.component_id)).ok
    adm_b = driver.admit(b, Usage(comp.component_id, slivers=(a,)))
    assert adm_b.ok, adm_b.reason
    try:
        res_a = driver.provision(a)
        res_b = driver.provision(b)
        assert res_a.state is OperationalState.READY and res_b.state is OperationalState.READY

        # Each controller sees the datapath the RSpec named, with only its own ports.
        for ctl, ports in ((ca, [1, 2]), (cb, [3, 4])):
            assert ctl.wait_for("features")[0]["dpid"] == PHYS_DPID.replace(":", "")
            assert ctl.wait_for("ports")[0]["ports"] == ports

        # h1 reaches h2 through slice A's controller (it learns and installs flows); TCP too.
        assert pings(1, HOSTS[2])
        assert any(f["priority"] == 10 for f in ca.events("flow"))
        assert tcp_echo(1, 2) == "HELLO SLICE"
        # Slice B works alongside.
        assert pings(3, HOSTS[4])
        assert tcp_echo(4, 3) == "HELLO SLICE"

        # Neither slice can reach the other.
        assert not pings(1, HOSTS[3], count=2)
        assert not pings(4, HOSTS[2], count=2)
        # ... nor see its packets: each controller only ever heard of its own hosts and ports.
        a_ins, b_ins = ca.events("packet_in"), cb.events("packet_in")
        assert a_ins and b_ins
        assert {e["in_port"] for e in a_ins} <= {1, 2}
        assert {e["src"] for e in a_ins} <= {topology.macs[1], topology.macs[2]}
        assert {e["in_port"] for e in b_ins} <= {3, 4}
        assert {e["src"] for e in b_ins} <= {topology.macs[3], topology.macs[4]}

        # Traffic outside every flowspace is dropped: h3 speaking from 10.61.9.3 is not slice B's.
        in_ns(3, "ip", "addr", "add", "10.61.9.3/16", "dev", "eth0")
        client = topology.ovs.client()
        drops_before = _drop_packets(client)
        assert not pings(3, HOSTS[4], source="10.61.9.3", count=2)
        assert _drop_packets(client) > drops_before

        # An overlapping flowspace is refused, naming the slice and the match it collides with.
        usage = Usage(comp.component_id, slivers=(a, b))
        c1 = driver.admit(spec("c", sliver("tcp:127.0.0.1:1", (2,), dl_vlan=(7,))), usage)
        assert not c1.ok and c1.reason_code == "UNAVAILABLE"
        assert "in_port=2 dl_vlan=7" in c1.reason and "slice+a" in c1.reason
        assert "match in_port=1,2" in c1.reason
        c2 = driver.admit(spec("c", sliver("tcp:127.0.0.1:1", (3,),
                                           nw_src=("10.61.2.128/25",))), usage)
        assert not c2.ok and "slice+b" in c2.reason and "nw_src=10.61.2.0/24" in c2.reason
        c3 = driver.admit(spec("c", sliver("tcp:127.0.0.1:1", (3, 4),
                                           nw_src=("10.61.7.0/24",))), usage)
        assert c3.ok, c3.reason

        # Stop removes the steering (h1 no longer reaches h2), start restores it.
        assert driver.perform(a, "geni_stop") is OperationalState.NOTREADY
        assert driver.status(a) is OperationalState.NOTREADY
        assert not pings(1, HOSTS[2], count=2)
        assert driver.perform(a, "geni_start") is OperationalState.READY
        assert driver.status(a) is OperationalState.READY
        assert pings(1, HOSTS[2])

        seen = {o.sliver_urn: o for o in driver.observed()}
        assert seen[a.sliver_urn].state is OperationalState.READY
        assert seen[b.sliver_urn].handle == res_b.handle
    finally:
        driver.delete(a)
        driver.delete(b)
        in_ns(3, "ip", "addr", "del", "10.61.9.3/16", "dev", "eth0", check=False)

    # Nothing the driver made survives Delete: no slice bridges, patch ports or slice flows.
    client = topology.ovs.client()
    assert [br for br in client.bridges() if br != PHYS] == []
    assert sorted(client.ports(PHYS)) == [f"gofv{i}" for i in range(1, 5)]
    for s in (a, b):
        assert client.dump_flows(PHYS, cookie_match(driver.naming.cookie(
            driver.naming.tag(s.sliver_urn)))) == []
    assert driver.observed() == []
    assert driver.status(a) is OperationalState.FAILED
    driver.delete(a)      # idempotent
    assert not pings(1, HOSTS[2], count=1)


def _drop_packets(client) -> int:
    return sum(f.n_packets for f in client.dump_flows(PHYS) if f.priority == 0)
