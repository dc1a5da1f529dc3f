"""A site of a vserver host, a Xen host (libvirt's test driver, a namespace for Dom0), an OpenFlow switch (private OVS, userspace datapath) and a
simulated NetFPGA card, for container-control-plane hybrid routers through the whole AM.

The switch `gfrbr0` has two hosts wired to it: namespaces `gfrh1` (10.71.1.2/24, port 1)
and `gfrh2` (10.71.2.2/24, port 2), each routing via the router's address on its subnet
(.1). Their MACs are fixed and written into the datapath's neighbour table, as an operator
would for the machines wired to the switch. Test modules import the fixtures from here
(`ovs` is the OpenFlow driver tests' private OVS).
"""
from __future__ import annotations

import random
import shutil
import string
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from am.app import build_runtime
from drivers.ovs import OVSInstance
from tests.api.conftest import ApiClient
from tests.drivers.openflow.conftest import ovs  # noqa: F401 - re-exported fixture
from tests.drivers.vserver.helpers import guest_test_image
from tests.hybrid.conftest import AM, InlineQueue, release_and_close

AUTH = "geni-am:test"
VS1 = f"urn:publicid:IDN+{AUTH}+node+vs1"
SW1 = f"urn:publicid:IDN+{AUTH}+node+sw1"
NF1 = f"urn:publicid:IDN+{AUTH}+node+nf1"
XEN1 = f"urn:publicid:IDN+{AUTH}+node+xen1"
BRIDGE = "gfrbr0"
HOSTS = {1: ("10.71.1.2", "10.71.1.1", "02:00:00:71:01:02"),
         2: ("10.71.2.2", "10.71.2.1", "02:00:00:71:02:02")}


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=20)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc


def host_ns(i: int) -> str:
    return f"gfrh{i}"


def _cleanup_hosts() -> None:
    for i in HOSTS:
        sh("ip", "netns", "del", host_ns(i), check=False)
        sh("ip", "link", "del", f"gfrv{i}", check=False)


@pytest.fixture(scope="module")
def switch(ovs: OVSInstance) -> Iterator[OVSInstance]:   # noqa: F811 - the fixture above
    """The physical bridge with the two hosts wired to ports 1 and 2."""
    _cleanup_hosts()
    client = ovs.client()
    client.vsctl("--if-exists", "del-br", BRIDGE)
    try:
        ovs.add_bridge(BRIDGE, dpid="00:00:00:00:00:00:0b:01")
        for i, (addr, gw, mac) in HOSTS.items():
            ns = host_ns(i)
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", f"gfrv{i}", "type", "veth", "peer", "name", "eth0",
               "netns", ns)
            sh("ip", "-n", ns, "link", "set", "eth0", "address", mac)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "route", "add", "default", "via", gw)
            if shutil.which("ethtool"):
                sh("ip", "netns", "exec", ns, "ethtool", "-K", "eth0", "tx", "off", check=False)
            sh("ip", "link", "set", f"gfrv{i}", "up")
            client.vsctl("add-port", BRIDGE, f"gfrv{i}", "--", "set", "interface", f"gfrv{i}",
                         f"ofport_request={i}")
        yield ovs
    finally:
        _cleanup_hosts()
        client.vsctl("--if-exists", "del-br", BRIDGE)


def inventory(tmp_path, ovs_db: str, dom0: str, *, fib_routes: int = 16,
              fib_flows: int = 64) -> str:
    prefix = "g" + "".join(random.choices(string.ascii_lowercase + string.digits, k=3))
    neighbours = "\n".join(f'"{addr}" = "{mac}"' for addr, _gw, mac in HOSTS.values())
    images, image = guest_test_image()
    return f'''
[drivers.xen]
uri = "test:///default"
state_dir = "{tmp_path}/xen"
dom0_netns = "{dom0}"

[drivers.vserver]
name_prefix = "{prefix}"
state_dir = "{tmp_path}/vs"
images_dir = "{images}"
default_image = "{image}"
build_default_image = false
cpu = 2
memory_mb = 4096

[drivers.openflow]
ovs_db = "{ovs_db}"
name_prefix = "gfr"
state_dir = "{tmp_path}/fib"
fib_routes = {fib_routes}
fib_flows = {fib_flows}

[drivers.netfpga]
card_process = false    # register model only: these tests check route registers
state_dir = "{tmp_path}/netfpga"
route_table_size = 8

[[components]]
name = "vs1"
driver = "vserver"

[[components]]
name = "xen1"
driver = "xen"

[[components]]
name = "sw1"
driver = "openflow"
[components.extra]
bridge = "{BRIDGE}"
[components.extra.neighbours]
{neighbours}

[[components]]
name = "nf1"
driver = "netfpga"
'''


@dataclass
class OFSite:
    am: AM
    ovs: OVSInstance

    @property
    def openflow(self):
        return self.am.rt.site.drivers["openflow"]

    @property
    def vserver(self):
        return self.am.rt.site.drivers["vserver"]

    def flows(self, cookie: int) -> list:
        from drivers.openflow.naming import cookie_match
        return self.ovs.client().dump_flows(BRIDGE, cookie_match(cookie))


@pytest.fixture
def site(switch, base_settings, tmp_path, gcf_fixtures, fx, dom0_netns) -> Iterator[OFSite]:
    for i in HOSTS:   # a router of an earlier test had other MACs: forget them
        sh("ip", "-n", host_ns(i), "neigh", "flush", "all")
    path = tmp_path / "inventory.toml"
    path.write_text(inventory(tmp_path / "site", switch.db, dom0_netns))
    queue = InlineQueue()
    settings = base_settings.replace(state_dir=str(tmp_path / "am"), inventory=str(path))
    rt = build_runtime(settings, job_queue=lambda s: (queue, []))
    queue.store, queue.site = rt.store, rt.site
    client = ApiClient(rt.app.test_client(), (gcf_fixtures / "alice-cert.pem").read_text())
    try:
        yield OFSite(AM(client, rt, [fx.cred("slice-cred-alice")], dom0_netns), switch)
    finally:
        release_and_close(rt)
