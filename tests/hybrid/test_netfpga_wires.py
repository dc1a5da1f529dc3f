"""NetFPGA slivers linked to containers through the whole AM, on an emulated card that really
forwards (root: namespaces, cgroups, a card process with its private OVS).

h1 - r1 - h2: h1 and h2 are vserver containers, r1 is either a `netfpga-vdp` node on the card
or a hybrid router (control plane in a container, forwarding in a slot). Each link plugs the
container into one of the card's ports (a wire link). Packets cross the slot with their TTL
decremented by one; a route change pushed with geniam_sync_routes is in force once the action
is done; Delete gives the card its wires back.
"""
from __future__ import annotations

import json
import random
import re
import string
import subprocess
import time
from collections.abc import Iterator

import pytest

from am.app import build_runtime
from am.errors import GeniCode
from am.store import utcnow
from drivers import hostnet
from drivers.netfpga.plane import NetFPGAPlane
from tests.api.conftest import RSPEC_V, SLICE, ApiClient, code_of
from tests.conftest import require_tool
from tests.support import wait_until
from tests.hybrid.conftest import AM, GA, InlineQueue, manifest_nodes, release_and_close

pytestmark = pytest.mark.root

AUTH = "geni-am:test"
VS1 = f"urn:publicid:IDN+{AUTH}+node+vs1"
NF1 = f"urn:publicid:IDN+{AUTH}+node+nf1"
TAG = "".join(random.choices(string.ascii_lowercase, k=3))
CARD_PREFIX = f"w{TAG}"
SYNC = "geniam_sync_routes"


def inventory(tmp_path) -> str:
    return f'''
[drivers.vserver]
name_prefix = "v{TAG}"
state_dir = "{tmp_path}/vs"
cpu = 2
memory_mb = 4096

[drivers.netfpga]
state_dir = "{tmp_path}/netfpga"

[[components]]
name = "vs1"
driver = "vserver"

[[components]]
name = "nf1"
driver = "netfpga"
[components.extra]
iface_prefix = "{CARD_PREFIX}"
card_file = "{tmp_path}/card/nf1.card"
card_rundir = "{tmp_path}/card/run"
'''


@pytest.fixture
def am(base_settings, tmp_path, gcf_fixtures, fx) -> Iterator[AM]:
    for tool in ("ovs-vswitchd", "ip", "ping", "ethtool"):
        require_tool(tool)
    path = tmp_path / "inventory.toml"
    path.write_text(inventory(tmp_path))
    queue = InlineQueue()
    settings = base_settings.replace(state_dir=str(tmp_path / "am"), inventory=str(path))
    rt = build_runtime(settings, job_queue=lambda s: (queue, []))
    queue.store, queue.site = rt.store, rt.site
    netfpga = rt.site.drivers["netfpga"]
    card = netfpga.emulated_card(netfpga.inventory()[0])
    client = ApiClient(rt.app.test_client(), (gcf_fixtures / "alice-cert.pem").read_text())
    try:
        card.start()
        yield AM(client, rt, [fx.cred("slice-cred-alice")], "")
    finally:
        release_and_close(rt)
        card.stop()
        card.cleanup()


def _iface(cid: str, addr: str) -> str:
    return (f'<interface client_id="{cid}"><ip address="{addr}" netmask="255.255.255.0" '
            'type="ipv4"/></interface>')


def _routes(*routes: tuple[str, str, str]) -> str:
    """(destination, gateway or "", interface or "") triples as ga:route elements."""
    out = []
    for dest, gw, iface in routes:
        attrs = f' destination="{dest}"' + (f' gateway="{gw}"' if gw else "") + \
            (f' interface="{iface}"' if iface else "")
        out.append(f"<ga:route{attrs}/>")
    return "".join(out)


def node_xml(cid: str, component: str, stype: str, ifaces: dict[str, str],
             routes: tuple[tuple[str, str, str], ...], ga: str = "") -> str:
    """A request node: `ifaces` interface name -> address, `routes` as for `_routes`, `ga`
    the ga:node element's attributes."""
    ifs = "".join(_iface(f"{cid}:{name}", addr) for name, addr in ifaces.items())
    return (f'<node client_id="{cid}" component_id="{component}" exclusive="false">'
            f'<sliver_type name="{stype}"/>{ifs}<ga:node{ga}>{_routes(*routes)}</ga:node></node>')


R1_ROUTES = (("10.84.1.0/24", "", "r1:if0"), ("10.84.2.0/24", "", "r1:if1"))


def request(router: str) -> str:
    """h1 (10.84.1.2) - r1 - h2 (10.84.2.2); `router` is r1's node element."""
    hosts = ""
    for n, (mine, far) in ((1, ("10.84.1", "10.84.2")), (2, ("10.84.2", "10.84.1"))):
        hosts += (f'<node client_id="h{n}" component_id="{VS1}" exclusive="false">'
                  f'<sliver_type name="vserver-container"/>{_iface(f"h{n}:if0", f"{mine}.2")}'
                  f'<ga:node>{_routes((f"{far}.0/24", f"{mine}.1", ""))}</ga:node></node>')
    links = "".join(f'<link client_id="l{n}"><interface_ref client_id="{a}"/>'
                    f'<interface_ref client_id="{b}"/></link>'
                    for n, (a, b) in ((1, ("h1:if0", "r1:if0")), (2, ("r1:if1", "h2:if0"))))
    return (f'<rspec xmlns="http://www.geni.net/resources/rspec/3" xmlns:ga="{GA}" '
            f'type="request">{hosts}{router}{links}</rspec>')


def vdp_router() -> str:
    return (f'<node client_id="r1" component_id="{NF1}" exclusive="false">'
            f'<sliver_type name="netfpga-vdp"/>{_iface("r1:if0", "10.84.1.1")}'
            f'{_iface("r1:if1", "10.84.2.1")}<ga:node router="true">{_routes(*R1_ROUTES)}'
            '</ga:node></node>')


def hybrid_router() -> str:
    return (f'<node client_id="r1" component_id="{VS1}" exclusive="false">'
            f'<sliver_type name="vserver-container"/>{_iface("r1:if0", "10.84.1.1")}'
            f'{_iface("r1:if1", "10.84.2.1")}<ga:node router="true" forwarding="hardware">'
            f'{_routes(*R1_ROUTES)}</ga:node></node>')


def ping(ns: str, dst: str, wait: float = 1) -> int | None:
    """The TTL of the reply, None when there was none."""
    out = subprocess.run(["ip", "netns", "exec", ns, "ping", "-n", "-c", "1", "-W", str(wait),
                          dst], capture_output=True, text=True, check=False).stdout
    found = re.search(r"ttl=(\d+)", out)
    return int(found.group(1)) if found else None


def wait_ping(ns: str, dst: str, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while (ttl := ping(ns, dst)) is None:
        assert time.monotonic() < deadline, f"{ns} never reached {dst}"
    return ttl


def up(am: AM, rspec: str) -> dict[str, str]:
    """Allocate + Provision; every sliver ready; client_id -> sliver URN."""
    alloc = am.allocate(rspec)
    assert code_of(alloc) == 0, alloc
    urns = {cid: n.get("sliver_id") for cid, n in manifest_nodes(alloc["value"]).items()}
    value = am.provision([SLICE])                            # nodes and links
    every = [s["geni_sliver_urn"] for s in value["geni_slivers"]]
    assert set(am.wait_for(every, "geni_ready").values()) == {"geni_ready"}
    return urns


def container_ns(am: AM, urn: str) -> str:
    return am.rt.site.drivers["vserver"].naming.node(urn)


def test_a_netfpga_node_forwards_between_two_containers(am: AM):
    urns = up(am, request(vdp_router()))
    h1, h2 = container_ns(am, urns["h1"]), container_ns(am, urns["h2"])
    assert wait_ping(h1, "10.84.2.2") == 63                 # h2's 64, one hop through the slot
    assert wait_ping(h2, "10.84.1.2") == 63
    server = subprocess.Popen(["ip", "netns", "exec", h2, "iperf3", "-s", "-1", "-p", "5316"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:                                                      # TCP across the slot
        wait_until(lambda: ":5316" in subprocess.run(["ip", "netns", "exec", h2, "ss", "-Hltn"],
                                                     capture_output=True, text=True).stdout,
                   "the iperf3 server to listen", 10)
        tcp = subprocess.run(["ip", "netns", "exec", h1, "iperf3", "-c", "10.84.2.2", "-p",
                              "5316", "-n", "1M", "-J"], capture_output=True, text=True,
                             timeout=60, check=False)
        result = json.loads(tcp.stdout)
        assert "error" not in result and result["end"]["sum_sent"]["bytes"] >= 1 << 20, result
    finally:
        server.kill()
        server.wait()
    def counted() -> str:                                   # the card counts every 0.5 s
        text = am.ok("Status", [urns["r1"]], am.cred, {})["geni_slivers"][0][
            "geni_resource_status"]
        assert text.startswith("emulated NetFPGA card nf1 slot"), text
        return text if re.search(r"packets: \d+ in, [1-9]\d* forwarded", text) else ""
    wait_until(counted, "the slot's forwarded packets in its status", 5, 0.1)
    manifest = am.ok("Describe", [SLICE], am.cred, {"geni_rspec_version": RSPEC_V})["geni_rspec"]
    assert 'resource_status="emulated NetFPGA card nf1 slot' in manifest
    wires = [f"{CARD_PREFIX}p0", f"{CARD_PREFIX}p1"]
    assert all(hostnet.find_link(None, w) is None for w in wires)    # plugged into h1, h2
    assert code_of(am.call("Delete", [SLICE], am.cred, {})) == 0
    assert all(hostnet.find_link(None, w) is not None for w in wires)  # back with the card


def probe(ns: str, dst: str, *extra: str) -> str:
    """ping's output for one probe (e.g. `-t 1`, a traceroute step)."""
    return subprocess.run(["ip", "netns", "exec", ns, "ping", "-n", "-c", "1", "-W", "2",
                           *extra, dst], capture_output=True, text=True, check=False).stdout


def test_hybrid_router_forwards_in_the_slot_and_route_changes_take_effect(am: AM):
    from am.service.routesync import sync_all_routers

    urns = up(am, request(hybrid_router()))
    h1 = container_ns(am, urns["h1"])
    assert wait_ping(h1, "10.84.2.2") == 63
    # the AM plugged the control plane into the slot's CPU port: it answers for the router
    netfpga = am.rt.site.drivers["netfpga"]
    comp = netfpga.inventory()[0]
    fspec = next(netfpga_spec(am, urns["r1"]))
    cpu_ns = container_ns(am, urns["r1"])
    assert hostnet.find_link(cpu_ns, "cpu0") is not None
    assert hostnet.find_link(None, netfpga.control_port(fspec)) is None
    [st] = am.ok("Status", [urns["r1"]], am.cred, {})["geni_slivers"]
    assert f"plugged into its CPU port {netfpga.control_port(fspec)} as cpu0" in \
        st["geni_resource_status"], st
    assert wait_ping(h1, "10.84.1.1") == 64                  # the guest's kernel answers
    assert wait_ping(h1, "10.84.2.1") == 64
    # exceptions go to software: TTL expiry and no route answered by the control plane
    assert "From 10.84.1.1 icmp_seq=1 Time to live exceeded" in probe(h1, "10.84.2.2", "-t", "1")
    subprocess.run(["ip", "-n", h1, "route", "add", "10.99.0.0/16", "via", "10.84.1.1"],
                   check=True)
    assert "From 10.84.1.1 icmp_seq=1 Destination Net Unreachable" in probe(h1, "10.99.0.1")
    # drift (the slot's table emptied behind the AM's back) is repaired by one periodic sync
    slot = netfpga.slot_of(fspec)
    NetFPGAPlane(netfpga.card(comp)[1], slot).clear()
    assert netfpga.wait_applied(comp)
    assert ping(h1, "10.84.2.2", wait=0.5) is None
    report = sync_all_routers(am.rt.store, am.rt.site)
    assert not report.failed and len(report.synced) >= 1, report
    assert wait_ping(h1, "10.84.2.2", timeout=5) == 63
    withdrawn = [{"destination": "10.84.1.0/24", "interface": "r1:if0"}]
    assert code_of(am.poa([urns["r1"]], SYNC, {"geniam_routes": withdrawn})) == 0
    am.wait_for([urns["r1"]], "geni_ready")
    assert ping(h1, "10.84.2.2", wait=0.5) is None           # h2's replies have no way back
    _sim, tables = netfpga.card(comp)
    gen = tables.pipeline().config_generation
    too_many = withdrawn + [{"destination": f"10.99.{i}.0/24", "gateway": "10.84.1.2"}
                            for i in range(32)]                # the slot's table holds 32
    refused = am.poa([urns["r1"]], SYNC, {"geniam_routes": too_many})
    assert code_of(refused) == GeniCode.TOOBIG, refused
    assert tables.pipeline().config_generation == gen         # not one register written
    back = [{"destination": d, "interface": i} for d, _g, i in R1_ROUTES]
    assert code_of(am.poa([urns["r1"]], SYNC, {"geniam_routes": back})) == 0
    am.wait_for([urns["r1"]], "geni_ready")
    assert ping(h1, "10.84.2.2", wait=3) == 63                      # in force: no waiting
    cpu = netfpga.control_port(fspec)
    assert code_of(am.call("Delete", [SLICE], am.cred, {})) == 0
    assert hostnet.find_link(None, cpu) is not None          # the CPU port is the card's again


def netfpga_spec(am: AM, control_urn: str):
    """The forwarding sliver's spec of a hybrid router (its control sliver's partner)."""
    from am.store import spec_from_dict

    with am.rt.store.read() as session:
        for row in am.rt.store.live_slivers(session, utcnow()):
            spec = spec_from_dict(row.spec)
            if spec.params.get("control_sliver") == control_urn:
                yield spec


def test_killed_card_fails_the_slot_with_its_reason_and_restart_resumes(am: AM):
    from am.jobs.reconcile import reconcile

    urns = up(am, request(vdp_router()))
    h1, r1 = container_ns(am, urns["h1"]), urns["r1"]
    assert wait_ping(h1, "10.84.2.2") == 63
    netfpga = am.rt.site.drivers["netfpga"]
    card = netfpga.emulated_card(netfpga.inventory()[0])
    pid = card.pid()
    card.kill()
    report = reconcile(am.rt.store, am.rt.site, InlineQueue())
    assert r1 in report.failed_slivers
    [st] = am.ok("Status", [r1], am.cred, {})["geni_slivers"]
    assert st["geni_operational_status"] == "geni_failed"
    assert f"pipeline process (pid {pid}) is gone" in st["geni_error"]
    assert "FAILED" in st["geni_resource_status"]
    assert ping(h1, "10.84.2.2", wait=0.5) is None            # no card, no forwarding
    card.start()                                                # rebuilt from the registers
    assert wait_ping(h1, "10.84.2.2") == 63
    assert code_of(am.poa([r1], "geni_restart")) == 0
    assert am.wait_for([r1], "geni_ready") == {r1: "geni_ready"}


def count_pings(ns: str) -> int:
    """Echo requests that reached a container (an iptables counter in its namespace)."""
    def rules() -> str:
        return subprocess.run(["ip", "netns", "exec", ns, "iptables", "-L", "INPUT", "-v", "-x",
                               "-n"], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in rules().splitlines() if "icmptype 8" in line]
    if not rows:
        subprocess.run(["ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-p", "icmp",
                        "--icmp-type", "echo-request", "-j", "ACCEPT"], check=True)
        return 0
    return int(rows[0][0])


def test_two_slots_on_vlans_of_one_port_wired_to_their_own_containers(am: AM):
    """Slots b and c share ports nf0 and nf1, b on VLAN 100 and c on VLAN 200 (the links'
    vlan_tag); each end is a container that cannot tag: it takes the card's breakout wire of
    that VLAN. b's packets never reach c's containers."""
    require_tool("iptables")
    nodes = links = ""
    for sl, vlan, net in (("b", 100, "10.85"), ("c", 200, "10.86")):
        ifs = "".join(f'<interface client_id="{sl}:if{k}" component_id="urn:publicid:IDN+{AUTH}'
                      f'+interface+nf1:nf{k}"><ip address="{net}.{k + 1}.1" '
                      'netmask="255.255.255.0" type="ipv4"/></interface>' for k in (0, 1))
        routes = _routes((f"{net}.1.0/24", "", f"{sl}:if0"), (f"{net}.2.0/24", "", f"{sl}:if1"))
        nodes += (f'<node client_id="{sl}" component_id="{NF1}" exclusive="false">'
                  f'<sliver_type name="netfpga-vdp"/>{ifs}<ga:node router="true">{routes}'
                  '</ga:node></node>')
        for k, (mine, far) in enumerate(((f"{net}.1", f"{net}.2"), (f"{net}.2", f"{net}.1"))):
            h = f"h{sl}{k + 1}"
            nodes += (f'<node client_id="{h}" component_id="{VS1}" exclusive="false">'
                      f'<sliver_type name="vserver-container"/>{_iface(f"{h}:if0", f"{mine}.2")}'
                      f'<ga:node>{_routes((f"{far}.0/24", f"{mine}.1", ""))}</ga:node></node>')
            links += (f'<link client_id="l{sl}{k}"><interface_ref client_id="{h}:if0"/>'
                      f'<interface_ref client_id="{sl}:if{k}"/><ga:link vlan_tag="{vlan}"/>'
                      '</link>')
    urns = up(am, f'<rspec xmlns="http://www.geni.net/resources/rspec/3" xmlns:ga="{GA}" '
                  f'type="request">{nodes}{links}</rspec>')
    for sl, vlan in (("b", 100), ("c", 200)):
        text = am.ok("Status", [urns[sl]], am.cred, {})["geni_slivers"][0]["geni_resource_status"]
        assert f"on VLAN {vlan}" in text, text
    hb1, hb2, hc1, hc2 = (container_ns(am, urns[h]) for h in ("hb1", "hb2", "hc1", "hc2"))
    assert hostnet.find_link(None, f"{CARD_PREFIX}t0064") is None     # in hb1 (VLAN 100 of nf0)
    assert wait_ping(hb1, "10.85.2.2") == 63
    assert wait_ping(hc1, "10.86.2.2") == 63
    hb2_seen, hc2_seen = count_pings(hb2), count_pings(hc2)
    assert ping(hb1, "10.85.2.2") == 63
    subprocess.run(["ip", "-n", hc1, "route", "add", "10.85.0.0/16", "via", "10.86.1.1"],
                   check=True)
    assert ping(hc1, "10.85.2.2", wait=0.5) is None             # c's slot has no way into b
    assert count_pings(hb2) == hb2_seen + 1                       # b's one ping, nothing of c's
    assert count_pings(hc2) == hc2_seen                           # and not one of b's in c
    assert code_of(am.call("Delete", [SLICE], am.cred, {})) == 0
    assert hostnet.find_link(None, f"{CARD_PREFIX}t0064") is not None  # back with the card
