"""Inventory `[[edges]]`: ports wired to other aggregates (stitching), parsed into
`Site.edges`; a wrong entry names the table and key."""
from __future__ import annotations

import pytest

from drivers.inventory import InventoryError
from drivers.registry import load_site

BASE = """
[drivers.fake]
nodes = 0
switch = false
[[components]]
name = "h1"
driver = "fake"
isolation = "container"
"""
EDGE = """
[[edges]]
name = "to-peer"
component = "h1"
port = "edge1"
remote_aggregate = "urn:publicid:IDN+peer.example.org+authority+am"
remote_port = "urn:publicid:IDN+peer.example.org+interface+sw:edge1"
vlan_range = [100, 199]
capacity_kbps = 100000
ovs_db = "unix:/run/ovs/db.sock"
bridge = "br-edge"
"""


def site_of(tmp_path, text: str):
    path = tmp_path / "inventory.toml"
    path.write_text(text)
    return load_site(str(path), authority="am.example.net")


def test_an_edge_port_is_read_with_its_urn_peer_and_data_plane(tmp_path):
    site = site_of(tmp_path, BASE + EDGE)
    (edge,) = site.edges
    assert edge.interface_id == "urn:publicid:IDN+am.example.net+interface+h1:edge1"
    assert edge.component_id == "urn:publicid:IDN+am.example.net+node+h1"
    assert edge.vlan_range == (100, 199) and edge.capacity_kbps == 100000 and edge.mtu == 1500
    assert site.edge(edge.interface_id.upper()) is edge
    assert edge.data_plane() == {"edge": "to-peer", "edge_port": "edge1", "bridge": "br-edge",
                                 "ovs_db": "unix:/run/ovs/db.sock", "netns": None}
    site.close()


@pytest.mark.parametrize("change, key", [
    (('vlan_range = [100, 199]', 'vlan_range = [200, 100]'), "vlan_range"),
    (('vlan_range = [100, 199]\n', ''), "vlan_range"),
    (('component = "h1"', 'component = "h9"'), "component"),
    (('remote_port = "urn:publicid:IDN+peer.example.org+interface+sw:edge1"',
      'remote_port = "edge1"'), "remote_port"),
    (('bridge = "br-edge"\n', ''), "bridge"),
])
def test_a_wrong_edge_names_its_table_and_key(tmp_path, change, key):
    with pytest.raises(InventoryError) as err:
        site_of(tmp_path, BASE + EDGE.replace(*change))
    assert err.value.table == "edges[0]" and err.value.key == key
