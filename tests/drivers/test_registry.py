"""Driver discovery through entry points, the inventory file and its errors, the Site."""
from __future__ import annotations

import textwrap

import pytest

from drivers.base import IsolationClass, SubstrateDriver
from drivers.fake import FakeDriver
from drivers.inventory import InventoryError, parse_inventory
from drivers.registry import DEFAULT_FAKE_NODES, available_drivers, load_site

AUTH = "geni-am:lab"

GOOD = """
[site]
name = "lab"
authority = "geni-am:lab"

[drivers.fake]
state_dir = "state"
failure_rate = 0.0

[[components]]
name = "xen1"
driver = "fake"
isolation = "hypervisor"
sliver_types = ["xen-vm"]
forwarding_modes = ["guest", "dom0"]
capacity = { cpu = 8, memory_mb = 16384, guest_routers = 10 }
ports = ["eth0", { name = "eth1", num = 1, capacity_kbps = 1000000 }]
location = { country = "KR", latitude = 36.37, longitude = 127.36 }

[[components]]
name = "vs1"
driver = "fake"
isolation = "container"
sliver_types = ["vserver-container"]
capacity = { cpu = 4, memory_mb = 8192 }
ports = ["eth1"]

[[components]]
name = "sw1"
driver = "fake"
isolation = "flowspace"
dpid = "00:00:00:00:00:00:00:0A"
ports = ["port1", "port2"]
vlan_range = [100, 199]

[[links]]
name = "xen1-sw1"
ends = ["xen1:eth1", "sw1:port1"]
capacity_kbps = 1000000

[[links]]
ends = ["vs1:eth1", "sw1:port2"]
capacity_kbps = 100000
"""


def write(tmp_path, text: str):
    path = tmp_path / "inventory.toml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_fake_driver_is_found_through_its_entry_point():
    found = available_drivers()
    assert found["fake"] is FakeDriver and issubclass(found["fake"], SubstrateDriver)


def test_no_inventory_serves_a_builtin_fake_site(tmp_path):
    site = load_site(None, authority=AUTH, state_dir=str(tmp_path))
    try:
        hosts = [c for c in site.components if c.name.startswith("fake") and c.name != "fake-switch"]
        assert len(hosts) == DEFAULT_FAKE_NODES
        assert {"xen-vm", "vserver-container", "netfpga-vdp", "default-vm", "emulab-xen",
                "raw-pc"} <= site.sliver_types()
        assert (tmp_path / "fake-substrate").is_dir()
    finally:
        site.close()
    site = load_site(None, authority=AUTH, fake_nodes=3)
    try:
        assert len(site.components) == 4   # 3 hosts + the fake switch
        assert len(site.links) == 3
    finally:
        site.close()


def test_inventory_file_builds_the_site(tmp_path):
    site = load_site(write(tmp_path, GOOD), authority=AUTH)
    try:
        xen = site.component("URN:publicid:IDN+geni-am:lab+node+XEN1")
        assert xen is not None and xen.component_id == "urn:publicid:IDN+geni-am:lab+node+xen1"
        assert xen.isolation is IsolationClass.HYPERVISOR
        assert [p.component_id for p in xen.ports] == [
            "urn:publicid:IDN+geni-am:lab+interface+xen1:eth0",
            "urn:publicid:IDN+geni-am:lab+interface+xen1:eth1"]
        assert xen.capacity["kbps:eth1"] == 1_000_000 and xen.location == ("KR", 36.37, 127.36)
        sw = site.component("urn:publicid:IDN+geni-am:lab+node+sw1")
        assert sw.dpid == "00:00:00:00:00:00:00:0a" and sw.extra["vlan_range"] == (100, 199)
        assert sw.capacity == {"kbps:port1": 1_000_000.0, "kbps:port2": 100_000.0}
        assert site.driver_for(xen.component_id) is site.drivers["fake"]
        assert site.sliver_types() == {"xen-vm", "vserver-container", "openflow-flowspace"}
        assert [l.name for l in site.links] == ["xen1-sw1", "vs1:eth1-sw1:port2"]
        assert site.component("urn:publicid:IDN+geni-am:lab+node+nope") is None
        with pytest.raises(LookupError):
            site.driver_for("urn:publicid:IDN+geni-am:lab+node+nope")
        assert (tmp_path / "state").is_dir()        # relative state_dir: next to the file
    finally:
        site.close()


@pytest.mark.parametrize("edit, table, key", [
    (('driver = "fake"\nisolation = "hypervisor"', 'driver = "xne"\nisolation = "hypervisor"'),
     "components[0]", "driver"),
    (("cpu = 8,", 'cpu = "eight",'), "components[0]", "capacity.cpu"),
    (('isolation = "container"', 'isolation = "jail"'), "components[1]", "isolation"),
    (('vlan_range = [100, 199]', 'vlan_range = [100, 5000]'), "components[2]", "vlan_range"),
    (('"xen1:eth1"', '"xen9:eth1"'), "links[0]", "ends"),
    (('"vs1:eth1", "sw1:port2"', '"vs1:eth7", "sw1:port2"'), "links[1]", "ends"),
    (('"vs1:eth1", "sw1:port2"', '"vs1:eth1", "sw1:port1"'), "links[1]", "ends"),
    (("capacity_kbps = 100000\n", "capacity_kbps = -5\n"), "links[1]", "capacity_kbps"),
    (("failure_rate = 0.0", "failure_rate = 3"), "drivers.fake", "failure_rate"),
    (('name = "vs1"', 'name = "xen1"'), "components[1]", "name"),
    (('sliver_types = ["xen-vm"]', 'sliver_types = ["xen-vm"]\nsliver_typ = []'),
     "components[0]", "sliver_typ"),
    (('authority = "geni-am:lab"', 'authority = "geni-am:elsewhere"'), "site", "authority"),
])
def test_inventory_errors_name_file_table_and_key(tmp_path, edit, table, key):
    old, new = edit
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(InventoryError) as err:
        load_site(path, authority=AUTH)
    e = err.value
    assert (e.file, e.table, e.key) == (path, table, key)
    assert str(e).startswith(f"inventory {path}, table [{table}], key {key!r}: ")


def test_unparseable_and_missing_files(tmp_path):
    with pytest.raises(InventoryError, match="not valid TOML") as err:
        load_site(write(tmp_path, "[[components]\nname="), authority=AUTH)
    assert err.value.file.endswith("inventory.toml")
    with pytest.raises(InventoryError, match="does not exist"):
        load_site(str(tmp_path / "missing.toml"), authority=AUTH)


def test_unknown_driver_table_is_refused():
    with pytest.raises(InventoryError) as err:
        parse_inventory("[drivers.warp]\nspeed = 9", known_drivers={"fake"})
    assert err.value.table == "drivers.warp" and "installed: fake" in str(err.value)
