"""docs/inventory-this-host.toml, the sample for "this host", loads as documented: a container
node and the OVS switch wired to it, the switch's ports read from the running bridge.

Only the machine-specific paths are rewritten (OVS socket, state dir, name prefix); everything
else is the shipped file, so a change that breaks the sample breaks this test."""
from __future__ import annotations

import pytest

import subprocess
from pathlib import Path

from drivers.ovs import OVSInstance
from drivers.registry import load_site

pytestmark = pytest.mark.root

SAMPLE = Path(__file__).resolve().parents[3] / "docs" / "inventory-this-host.toml"


def test_sample_inventory_loads_against_a_running_switch(ovs: OVSInstance, tmp_path):
    text = SAMPLE.read_text()
    for old, new in (('"unix:/run/geni-am-ovs/db.sock"', f'"{ovs.db}"'),
                     ('"/var/lib/geni-am/vserver"', f'"{tmp_path / "vserver"}"'),
                     ('name_prefix = "gam"', 'name_prefix = "gsi"')):
        assert old in text, f"the sample no longer contains {old}"
        text = text.replace(old, new)
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(text)
    ports = ("port1", "port2")
    try:
        for p in ports:
            subprocess.run(["ip", "link", "add", p, "type", "veth", "peer", "name", f"{p}-peer"],
                           check=True)
            subprocess.run(["ip", "link", "set", p, "up"], check=True)
        ovs.add_bridge("br-gam", dpid="00:00:00:00:00:00:00:01")
        for num, p in enumerate(ports, start=1):
            ovs.client().vsctl("add-port", "br-gam", p, "--", "set", "interface", p,
                               f"ofport_request={num}")
        site = load_site(str(inventory), authority="geni-am:localhost")
        try:
            names = {c.name: c for c in site.components}
            assert set(names) == {"vs1", "ovs1"}
            assert names["vs1"].driver == "vserver" and names["ovs1"].driver == "openflow"
            assert names["ovs1"].dpid == "00:00:00:00:00:00:00:01"
            assert sorted(p.num for p in names["ovs1"].ports) == [1, 2]
            assert [l.name for l in site.links] == ["vs1-ovs1"]
            assert {"vserver-container", "openflow-flowspace"} <= site.sliver_types()
        finally:
            site.close()
    finally:
        ovs.client().vsctl("--if-exists", "del-br", "br-gam")
        for p in ports:
            subprocess.run(["ip", "link", "del", p], check=False, capture_output=True)
