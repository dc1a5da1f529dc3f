"""Two aggregates on one machine for the stitching test and bench: two `geni-am serve`
processes (authorities geni-am:sta and geni-am:stb, one CA trusted by both), each with a
container host (vserver) and an edge port on its own Open vSwitch bridge (vswitchd in its own
namespace), the two edge ports joined by a veth playing the inter-site circuit."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from am.client import AMClient
from drivers import hostnet
from drivers.ovs import OVSInstance
from rspec.stitching import request_path
from tests.services import free_port
from tests import support
from tests.support import read_banner

TOOLS = ("ovs-vsctl", "ovs-vswitchd", "ovsdb-server", "ip", "ping", "ethtool")
SIDES = ("a", "b")
RSPEC3 = "http://www.geni.net/resources/rspec/3"


def auth(side: str) -> str:
    return f"geni-am:st{side}"


def am_urn(side: str) -> str:
    return f"urn:publicid:IDN+{auth(side)}+authority+am"


def edge_urn(side: str) -> str:
    """a's edge port is on its container host's own bridge; b's is on its OpenFlow switch sw1,
    which b's container host vs1 reaches over site wires (the local switch path)."""
    return f"urn:publicid:IDN+{auth(side)}+interface+{'sw1' if side == 'b' else 'vs1'}:edge1"


#: b's wires vs1:ethN - sw1:wireN (a node takes a wire whole: one per stitched link at once)
WIRES = 5


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
        self.wires = [f"{tag}{side}w{n}" for n in range(1, WIRES + 1)] if side == "b" else []
        self.proc: subprocess.Popen | None = None
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}/"

    def start_switch(self) -> None:
        hostnet.netns_add(self.netns)
        self.ovs = OVSInstance(self.dir / "ovs", netns=self.netns).start()
        self.ovs.add_bridge("br-st")
        for n, dev in enumerate(self.wires, start=1):   # host end here, switch end on br-st
            hostnet.veth_add(dev, f"{dev}s")
            hostnet.link_move(f"{dev}s", self.netns)
            hostnet.link_set(self.netns, f"{dev}s", name=f"wire{n}")
            hostnet.link_set(self.netns, f"wire{n}", up=True)
            _run("ip", "netns", "exec", self.netns, "ethtool", "-K", f"wire{n}", "tx", "off")
            _run("ethtool", "-K", dev, "tx", "off")
            self.ovs.client().vsctl("add-port", "br-st", f"wire{n}")

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
{"ports = [" + ", ".join(f'"eth{i}"' for i in range(1, len(self.wires) + 1)) + "]"
 if self.wires else ""}
{"extra = { devices = { " + ", ".join(f'eth{i} = "{d}"' for i, d in enumerate(self.wires, 1))
 + " } }" if self.wires else ""}
[[edges]]
name = "edge1"
remote_aggregate = "{am_urn(other)}"
remote_port = "{edge_urn(other)}"
vlan_range = [100, 199]
capacity_kbps = 100000
port = "edge1"
""" + (self._switch() if self.wires else f"""component = "vs1"
ovs_db = "{self.ovs.db}"
bridge = "br-st"
netns = "{self.netns}"
"""))
        return inv

    def _switch(self) -> str:
        """b: the edge on switch sw1 (the openflow driver's bridge), vs1 wired to it."""
        n = range(1, len(self.wires) + 1)
        links = "".join(f'[[links]]\nends = ["vs1:eth{i}", "sw1:wire{i}"]\n' for i in n)
        return f"""component = "sw1"
[[components]]
name = "sw1"
driver = "openflow"
isolation = "flowspace"
sliver_types = ["openflow-flowspace"]
ports = [{", ".join(f'"wire{i}"' for i in n)}, "edge1"]
vlan_range = [100, 199]
extra = {{ bridge = "br-st" }}
[drivers.openflow]
ovs_db = "{self.ovs.db}"
name_prefix = "gs{self.side}"
{links}"""

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


@contextmanager
def two_aggregates() -> Iterator[dict[str, Side]]:
    """Both aggregates up (switches, the circuit, serve processes); everything down after."""
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
    for dev in side.wires:
        hostnet.link_delete(None, dev)


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
    return support.slice_urn(name, "geni-am")


def node_netns(site: Side, client: AMClient, urn: str) -> str:
    """The network namespace of the slice's node at that aggregate (its sliver's netns)."""
    from lxml import etree

    from drivers.vserver.naming import Naming
    manifest = etree.fromstring(client.describe(urn)["geni_rspec"].encode())
    (sliver,) = [n.get("sliver_id") for n in manifest.iter("{%s}node" % RSPEC3)
                 if n.get("sliver_id")]
    return Naming(site.prefix).node(sliver)


def ready(client: AMClient, urn: str) -> bool:
    slivers = client.status(urn)["geni_slivers"]
    return all(s["geni_operational_status"] == "geni_ready" for s in slivers)


def ping(netns: str, address: str, count: int = 3) -> bool:
    proc = subprocess.run(["ip", "netns", "exec", netns, "ping", "-c", str(count), "-i", "0.2",
                           "-W", "2", address], capture_output=True, timeout=60)
    return proc.returncode == 0


def authority_of(sites: dict[str, Side]):
    """`stitch`'s authority_of for these sites (no GetVersion round trip)."""
    return lambda c: auth(next(s for s in SIDES if sites[s].url == c.url))
