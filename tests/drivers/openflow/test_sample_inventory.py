"""docs/inventory-this-host.toml, the sample for "this host", loads as documented and describes
the default site `geni-am serve` runs (am/site): a container node, an OVS switch and an
emulated NetFPGA card, the
switch's ports read from the running bridge.

Only the machine-specific paths are rewritten (OVS socket, state dir, name prefix); everything
else is the shipped file, so a change that breaks the sample breaks this test."""
from __future__ import annotations

import random
import string
import subprocess
from pathlib import Path

import pytest

from drivers.ovs import OVSInstance
from drivers.registry import load_site

pytestmark = pytest.mark.root

SAMPLE = Path(__file__).resolve().parents[3] / "docs" / "inventory-this-host.toml"


def assert_same_as_default_site(sample: Path, tmp_path: Path) -> None:
    """The sample's components are the default site's, table for table (names aside)."""
    import shutil
    import tempfile
    import tomllib

    from am.site import DefaultSite

    short = Path(tempfile.mkdtemp(prefix="gs-", dir="/tmp"))   # the guests' sockets live deep
    site = DefaultSite(short / "am", "geni-am:localhost")
    try:
        running = site.up()
        default = tomllib.loads(running.inventory.read_text())
    finally:
        site.down()
        shutil.rmtree(short, ignore_errors=True)
    ours = tomllib.loads(sample.read_text())
    for doc in (default, ours):
        for comp in doc["components"]:
            comp.pop("extra", None)
            comp["ports"] = [p["num"] for p in comp.get("ports", ())]
    assert ours["components"] == default["components"]
    assert set(ours["drivers"]) == set(default["drivers"])
    assert ours["site"] == default["site"]


def test_sample_inventory_loads_against_a_running_switch(ovs: OVSInstance, tmp_path):
    text = SAMPLE.read_text()
    tag = "".join(random.choices(string.ascii_lowercase, k=4))   # host-wide names: unique
    ports, bridge = (f"sp{tag}1", f"sp{tag}2", f"sp{tag}3"), f"sb{tag}"
    for old, new in (('"unix:/run/geni-am-ovs/db.sock"', f'"{ovs.db}"'),
                     ('"/var/lib/geni-am/vserver"', f'"{tmp_path / "vserver"}"'),
                     ('"/var/lib/geni-am/netfpga"', f'"{tmp_path / "netfpga"}"'),
                     ('"/var/lib/geni-am/xen"', f'"{tmp_path / "xen"}"'),
                     ('"/var/lib/geni-am/images"', f'"{tmp_path / "images"}"'),
                     ('name_prefix = "gam"', 'name_prefix = "gsi"'),
                     ('"port1"', f'"{ports[0]}"'), ('"port2"', f'"{ports[1]}"'),
                     ('"port3"', f'"{ports[2]}"'), ('"ovs1:port3"', f'"ovs1:{ports[2]}"'),
                     ('"br-gam"', f'"{bridge}"')):
        assert old in text, f"the sample no longer contains {old}"
        text = text.replace(old, new)
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(text)
    from am.site.vmhost import site_image
    from drivers.images.store import ImageStore
    site_image(ImageStore(tmp_path / "images"))     # the VM host's driver wants its image there
    try:
        for p in ports:
            subprocess.run(["ip", "link", "add", p, "type", "veth", "peer", "name", f"{p}-peer"],
                           check=True)
            subprocess.run(["ip", "link", "set", p, "up"], check=True)
        ovs.add_bridge(bridge, dpid="00:00:00:00:00:00:00:01")
        for num, p in enumerate(ports, start=1):
            ovs.client().vsctl("add-port", bridge, p, "--", "set", "interface", p,
                               f"ofport_request={num}")
        site = load_site(str(inventory), authority="geni-am:localhost")
        try:
            names = {c.name: c for c in site.components}
            assert set(names) == {"vs1", "ovs1", "nf1", "vmhost1"}
            assert names["vmhost1"].driver == "xen"
            assert names["nf1"].driver == "netfpga"
            assert names["vs1"].driver == "vserver" and names["ovs1"].driver == "openflow"
            assert names["ovs1"].dpid == "00:00:00:00:00:00:00:01"
            assert sorted(p.num for p in names["ovs1"].ports) == [1, 2, 3]
            assert [(link.name, sorted(end.port for end in link.ends))
                    for link in site.links] == [("nf1-ovs1", sorted(["nf3", ports[2]]))]
            assert {"vserver-container", "openflow-flowspace", "netfpga-vdp"} <= \
                site.sliver_types()
            assert_same_as_default_site(inventory, tmp_path)
        finally:
            site.close()
    finally:
        ovs.client().vsctl("--if-exists", "del-br", bridge)
        for p in ports:
            subprocess.run(["ip", "link", "del", p], check=False, capture_output=True)
