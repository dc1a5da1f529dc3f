"""Two aggregates on one machine, stitched: two `geni-am serve` processes (authorities
geni-am:sta and geni-am:stb, one CA trusted by both), each with a container host and an edge
port on its own Open vSwitch bridge (vswitchd in its own namespace), the two edge ports joined
by a veth that plays the inter-site circuit. Through `am.client.stitch` (what `geni-am client
stitch` runs): a one-link two-node request pings end to end on the agreed tag; `any` and an
explicit tag; an explicit tag in use at the second aggregate is VLAN_UNAVAILABLE there and the
client's retry succeeds; a third slice on another tag sees none of the first's packets; Delete
at one side frees its tag at once."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from am.client import AMClient
from am.client.errors import AMError
from am.client.stitch import stitch
from drivers import hostnet
from drivers.ovs import OVSInstance
from rspec.stitching import manifest_tags, request_path
from tests.conftest import require_tool
from tests.services import free_port
from tests.support import read_banner, wait_until

pytestmark = [pytest.mark.root, pytest.mark.slow]

SIDES = ("a", "b")
RSPEC3 = "http://www.geni.net/resources/rspec/3"


def auth(side: str) -> str:
    return f"geni-am:st{side}"


def am_urn(side: str) -> str:
    return f"urn:publicid:IDN+{auth(side)}+authority+am"


def edge_urn(side: str) -> str:
    return f"urn:publicid:IDN+{auth(side)}+interface+vs1:edge1"


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


class Side:
    """One aggregate: its OVS, inventory, serve process and state."""

    def __init__(self, top: Path, side: str, tag: str):
        self.side, self.top = side, top
        self.dir = top / side
        self.state = self.dir / "state"
        self.netns = f"{tag}{side}-sw"
        self.prefix = f"s{tag[-2:]}{side}"
        self.cgroup = f"geni-am-{tag}{side}"
        self.proc: subprocess.Popen | None = None
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}/"

    def start_switch(self) -> None:
        hostnet.netns_add(self.netns)
        self.ovs = OVSInstance(self.dir / "ovs", netns=self.netns).start()
        self.ovs.add_bridge("br-st")

    def write_inventory(self) -> Path:
        other = "b" if self.side == "a" else "a"
        inv = self.dir / "inventory.toml"
        inv.write_text(f"""
[site]
name = "stitch-{self.side}"
[drivers.vserver]
name_prefix = "{self.prefix}"
state_dir = "{self.dir / 'vserver'}"
images_dir = "{self.top / 'images'}"
cgroup_root = "/sys/fs/cgroup"
cgroup_parent = "{self.cgroup}"
ssh = false
guest_id_base = {1_000_000_000 if self.side == 'a' else 1_200_000_000}
guest_id_slots = 64
[[components]]
name = "vs1"
driver = "vserver"
isolation = "container"
sliver_types = ["vserver-container"]
hardware_types = ["pc"]
forwarding_modes = ["guest"]
[[edges]]
name = "edge1"
component = "vs1"
port = "edge1"
remote_aggregate = "{am_urn(other)}"
remote_port = "{edge_urn(other)}"
vlan_range = [100, 199]
capacity_kbps = 100000
ovs_db = "{self.ovs.db}"
bridge = "br-st"
netns = "{self.netns}"
""")
        return inv

    def serve(self) -> None:
        inv = self.write_inventory()
        config = self.dir / "am.toml"
        config.write_text(f'authority = "{auth(self.side)}"\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("GENI_AM_")}
        self.log = open(self.dir / "serve.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "am", "serve", "--config", str(config), "--state-dir",
             str(self.state), "--inventory", str(inv), "--port", str(self.port),
             "--threads", "4"], stdout=subprocess.PIPE, stderr=self.log, env=env, text=True)
        assert "--- end ---" in read_banner(self.proc, 120), (self.dir / "serve.log").read_text()

    def client(self, slice_name: str) -> AMClient:
        authority = self.top / "auth"
        from credentials.authority import DevAuthority
        cred = DevAuthority(authority).slice(slice_name, "alice")
        return AMClient(self.url, str(authority / "alice-cert.pem"),
                        str(authority / "alice-key.pem"),
                        ca=str(authority / "trust-roots" / "ca-cert.pem"), credentials=[cred])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc is not None:
            self.proc.stdout.close()
            self.log.close()


@pytest.fixture(scope="module")
def sites():
    for tool in ("ovs-vsctl", "ovs-vswitchd", "ovsdb-server", "ip", "ping", "ethtool"):
        require_tool(tool)
    from credentials.authority import DevAuthority

    top = Path(tempfile.mkdtemp(prefix="gst-", dir="/tmp"))
    tag = f"t{os.getpid() % 10000}"
    ca = DevAuthority.init(top / "auth", authority="geni-am")
    ca.user("alice")
    sides = {s: Side(top, s, tag) for s in SIDES}
    try:
        for side in sides.values():
            side.start_switch()
            # one CA for both: the AM makes its own server certificate under it
            shutil.copytree(top / "auth", side.state / "authority")
        # the inter-site circuit: a veth from one edge bridge's namespace to the other's
        a_end, b_end = f"{tag}ae", f"{tag}be"
        hostnet.veth_add(a_end, b_end)
        for side, dev in ((sides["a"], a_end), (sides["b"], b_end)):
            hostnet.link_move(dev, side.netns)
            hostnet.link_set(side.netns, dev, name="edge1")
            hostnet.link_set(side.netns, "edge1", up=True)
            _run("ip", "netns", "exec", side.netns, "ethtool", "-K", "edge1", "tx", "off")
            side.ovs.client().vsctl("add-port", "br-st", "edge1")
        for side in sides.values():
            side.serve()
        yield sides
    finally:
        for side in sides.values():
            side.stop()
        _cleanup(sides, top)


def _cleanup(sides: dict[str, Side], top: Path) -> None:
    """What the serve processes' slivers left (namespaces, veths, cgroups), the switches,
    their namespaces and the files."""
    for side in sides.values():
        try:
            _cleanup_side(side)
        except Exception as exc:   # noqa: BLE001 - clean the other side regardless
            print(f"cleanup of {side.side}: {exc}", file=sys.stderr)
    shutil.rmtree(top, ignore_errors=True)


def _cleanup_side(side: Side) -> None:
    """One aggregate's leftovers: its slivers (released by its driver), cgroups, switch."""
    from drivers.vserver.cgroups import CONTROLLERS, CgroupLayout
    from drivers.vserver.driver import VServerDriver

    inv = side.dir / "inventory.toml"
    if inv.exists():
        from drivers.inventory import load_inventory
        doc = load_inventory(str(inv))
        driver = VServerDriver(dict(doc.drivers["vserver"]),
                               list(doc.components["vserver"]), authority=auth(side.side))
        for item in driver.observed():
            try:
                driver.release(item.handle)
            except Exception:   # noqa: BLE001 - clean the rest regardless
                pass
        driver.close()
    layout = CgroupLayout(Path("/sys/fs/cgroup"), side.cgroup)
    for ctrl in CONTROLLERS:
        parent = layout.parent_dir(ctrl)
        if parent.is_dir():
            for child in sorted(p.name for p in parent.iterdir() if p.is_dir()):
                try:
                    layout.remove(child)
                except Exception:   # noqa: BLE001
                    pass
            try:
                parent.rmdir()
            except OSError:
                pass
    if getattr(side, "ovs", None) is not None:
        side.ovs.stop()
    hostnet.netns_delete(side.netns)


def two_node_request(slice_ip: str, suggested: str = "any", cap: int = 20000) -> str:
    """Node na at aggregate a, nb at b, one stitched link; addresses 10.77.<slice_ip>.1/.2."""
    nodes = "".join(f"""
  <node client_id="n{s}" component_manager_id="{am_urn(s)}"
        component_id="urn:publicid:IDN+{auth(s)}+node+vs1" exclusive="false">
    <sliver_type name="vserver-container"/>
    <interface client_id="n{s}:if0">
      <ip address="10.77.{slice_ip}.{i}" netmask="255.255.255.0" type="ipv4"/></interface>
  </node>""" for i, s in enumerate(SIDES, start=1))
    path = request_path("lnk", [("a-edge", edge_urn("a"), "100-199", suggested),
                                ("b-edge", edge_urn("b"), "100-199", suggested)],
                        capacity_kbps=cap)
    return f"""<rspec xmlns="{RSPEC3}" type="request">{nodes}
  <link client_id="lnk">
    <component_manager name="{am_urn('a')}"/><component_manager name="{am_urn('b')}"/>
    <interface_ref client_id="na:if0"/><interface_ref client_id="nb:if0"/>
    <property source_id="na:if0" dest_id="nb:if0" capacity="{cap}"/>
    <property source_id="nb:if0" dest_id="na:if0" capacity="{cap}"/>
  </link>
  {path}
</rspec>"""


def slice_urn(name: str) -> str:
    return f"urn:publicid:IDN+geni-am+slice+{name}"


def clients(sites, name: str) -> list[AMClient]:
    return [sites[s].client(name) for s in SIDES]


def node_netns(client: AMClient, urn: str) -> str:
    """The network namespace of the slice's node at that aggregate (its sliver's netns)."""
    from lxml import etree

    from drivers.vserver.naming import Naming
    manifest = etree.fromstring(client.describe(urn)["geni_rspec"].encode())
    (sliver,) = [n.get("sliver_id") for n in manifest.iter("{%s}node" % RSPEC3)
                 if n.get("sliver_id")]
    prefix = next(site.prefix for site in SITES.values() if site.url == client.url)
    return Naming(prefix).node(sliver)


SITES: dict[str, Side] = {}


def ready(client: AMClient, urn: str) -> bool:
    slivers = client.status(urn)["geni_slivers"]
    return all(s["geni_operational_status"] == "geni_ready" for s in slivers)


def ping(netns: str, address: str, count: int = 3) -> bool:
    proc = subprocess.run(["ip", "netns", "exec", netns, "ping", "-c", str(count), "-i", "0.2",
                           "-W", "2", address], capture_output=True, timeout=60)
    return proc.returncode == 0


def echoes_received(netns: str) -> int:
    """ICMP echo requests the namespace's stack received (Icmp InEchos of /proc/net/snmp)."""
    out = subprocess.run(["ip", "netns", "exec", netns, "cat", "/proc/net/snmp"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    head, values = [line.split() for line in out.splitlines() if line.startswith("Icmp:")][:2]
    return int(values[head.index("InEchos")])


def stitched_and_ready(sites, name: str, xml: str):
    SITES.update(sites)
    cs = clients(sites, name)
    result = stitch(cs, slice_urn(name), xml, authority_of=lambda c: auth(
        next(s for s in SIDES if sites[s].url == c.url)))
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
    ns_a, ns_b = node_netns(cs[0], slice_urn("one")), node_netns(cs[1], slice_urn("one"))
    assert wait_until(lambda: ping(ns_a, "10.77.1.2", 1), "ping a -> b", 30)
    assert ping(ns_b, "10.77.1.1")

    # a third slice, explicit tag, same addresses: its own link works, and sees nothing of one's
    cs3, third = stitched_and_ready(sites, "three", two_node_request(1, "150"))
    assert third.tags["lnk"] == 150 != tag
    ns3_a = node_netns(cs3[0], slice_urn("three"))
    ns3_b = node_netns(cs3[1], slice_urn("three"))
    assert wait_until(lambda: ping(ns3_a, "10.77.1.2", 1), "ping in slice three", 30)
    before, mine = echoes_received(ns3_b), echoes_received(ns_b)
    assert ping(ns_a, "10.77.1.2", count=20)     # slice one's traffic, to the same address
    assert echoes_received(ns_b) - mine == 20    # all reached slice one's node at b
    assert echoes_received(ns3_b) == before      # none reached slice three's
    for c in cs3:
        c.delete(slice_urn("three"))


def test_a_tag_in_use_at_the_second_aggregate_is_retried_without_it(sites):
    SITES.update(sites)
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
    ns_a = node_netns(cs[0], slice_urn("two"))
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
