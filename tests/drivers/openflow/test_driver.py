"""The driver against a real OVS: inventory, admission refusals, idempotence, reconciliation."""
from __future__ import annotations

import dataclasses

import pytest

from drivers.base import LinkSpec, OperationalState, ResourceKind, Usage
from drivers.inventory import InventoryError, parse_inventory
from drivers.openflow import OpenFlowDriver
from drivers.openflow.naming import cookie_match
from tests.drivers.openflow.conftest import AUTHORITY, PHYS
from tests.drivers.openflow.specs import spec, sliver

pytestmark = pytest.mark.root

CTL = "tcp:127.0.0.1:9"      # nothing listens: the slice bridge keeps retrying, harmlessly


def make(topology, toml: str | None = None) -> OpenFlowDriver:
    inv = parse_inventory(toml or topology.inventory_toml())
    return OpenFlowDriver(inv.drivers.get("openflow", {}), list(inv.components["openflow"]),
                          authority=AUTHORITY)


def test_inventory_is_read_from_the_switch(topology):
    [comp] = make(topology).inventory()
    assert comp.isolation.value == "flowspace"
    assert [t.name for t in comp.sliver_types] == ["openflow-flowspace"]
    assert comp.ports[0].component_id == f"urn:publicid:IDN+{AUTHORITY}+interface+sw1:gofv1"
    assert comp.extra["bridge"] == PHYS


@pytest.mark.parametrize("edit,needle", [
    (lambda t: t.replace(f'bridge = "{PHYS}"', 'bridge = "nosuchbr"'), "has no bridge 'nosuchbr'"),
    (lambda t: t.replace('dpid = "00:00:00:00:00:00:0a:01"', 'dpid = "00:00:00:00:00:00:0a:02"'),
     "has dpid 00:00:00:00:00:00:0a:01"),
    (lambda t: t.replace('isolation = "flowspace"', 'isolation = "flowspace"\nports = ["eth9"]'),
     "has no port 'eth9'"),
    (lambda t: t.replace('name_prefix = "gof"', 'name_prefix = "GOF!"'), "name prefix"),
    (lambda t: t.replace('ovs_db = ', 'ovs_dbx = "x"\novs_db = '), "unknown key"),
    (lambda t: t.replace('ovs_db = ', 'max_matches = "many"\novs_db = '), "positive integer"),
    (lambda t: t.replace('ovs_db = "unix:', 'ovs_db = "http:'), "OVS database socket"),
])
def test_inventory_mistakes_are_precise(topology, edit, needle):
    with pytest.raises(InventoryError) as err:
        make(topology, edit(topology.inventory_toml())).inventory()
    assert needle in str(err.value)


def test_admission_refusals(topology):
    driver = make(topology)
    [comp] = driver.inventory()
    empty = Usage(comp.component_id)

    def refused(s, code, needle):
        adm = driver.admit(s, empty)
        assert not adm.ok and adm.reason_code == code and needle in adm.reason, adm

    refused(spec("x", sliver("tcp:127.0.0.1")), "BADARGS", "not tcp:<host>:<port>")
    refused(spec("x", sliver("ssl:127.0.0.1:6633")), "UNSUPPORTED", "ssl")
    refused(spec("x", dataclasses.replace(sliver(CTL), controllers=())), "BADARGS",
            "at least one openflow:controller")
    refused(spec("x", sliver(CTL, (7,))), "BADARGS", "has no port 7")
    refused(spec("x", sliver(CTL, dpid="00:00:00:00:00:00:00:99")), "BADARGS", "has dpid")
    refused(spec("x", sliver(CTL, dl_type=("0x88cc",))), "BADARGS", "LLDP")
    refused(dataclasses.replace(spec("x", sliver(CTL)), kind=ResourceKind.LINK,
                                link=LinkSpec(ends=(), mode="vlan", vlan_tag=5)),
            "UNSUPPORTED", "openflow:sliver")
    refused(spec("x", sliver(CTL, tp_dst=tuple(range(600)), dl_src=tuple(
        f"00:00:00:00:00:{i:02x}" for i in range(10)))), "TOOBIG", "expands to")
    # A declared VLAN range bounds the VLANs a flowspace may take.
    ranged = make(topology, topology.inventory_toml().replace(
        'isolation = "flowspace"', 'isolation = "flowspace"\nvlan_range = [100, 199]'))
    adm = ranged.admit(spec("x", sliver(CTL, dl_vlan=(200,))), empty)
    assert adm.reason_code == "VLAN_UNAVAILABLE" and "outside sw1's VLAN range 100-199" in adm.reason
    # A VLAN overlap is reported as one, naming the other slice's flowspace.
    a = spec("a", sliver(CTL, (1,), dl_vlan=(150,)))
    adm = ranged.admit(spec("b", sliver(CTL, (), dl_vlan=(150, 151))),
                       Usage(comp.component_id, slivers=(a,)))
    assert adm.reason_code == "VLAN_UNAVAILABLE"
    assert adm.reason.startswith(f"flowspace dl_vlan=150,151 on datapath {comp.component_id} "
                                 "overlaps slice urn:publicid:IDN+geni-am:oftest+slice+a")
    assert "(sliver urn:publicid:IDN+geni-am:oftest+sliver+a, match in_port=1 dl_vlan=150)" \
        in adm.reason
    ok = ranged.admit(spec("b", sliver(CTL, (), dl_vlan=(151,))), Usage(comp.component_id,
                                                                          slivers=(a,)))
    assert ok.ok and ok.claims[0] == "vlan:151"


def test_provision_is_idempotent_and_converges(topology):
    driver = make(topology)
    client = topology.ovs.client()
    s = spec("conv", sliver(CTL, (1, 2)))
    tag = driver.naming.tag(s.sliver_urn)
    try:
        first = driver.provision(s)
        flows = client.dump_flows(PHYS, cookie_match(driver.naming.cookie(tag)))
        again = driver.provision(s)
        assert again.handle == first.handle
        assert len(client.dump_flows(PHYS, cookie_match(driver.naming.cookie(tag)))) == len(flows)
        assert client.ofports(first.handle) == {f"gof{tag}s1": 1, f"gof{tag}s2": 2}
        assert client.get("Bridge", first.handle, "fail_mode") == "secure"
        # The same sliver, now asking for ports 2 and 3: patches follow the flowspace.
        driver.provision(dataclasses.replace(s, openflow=sliver(CTL, (2, 3))))
        assert client.ofports(first.handle) == {f"gof{tag}s2": 2, f"gof{tag}s3": 3}
        assert f"gof{tag}p1" not in client.ports(PHYS)
        with pytest.raises(Exception, match="not supported"):
            driver.perform(s, "geni_update_users")
    finally:
        driver.delete(s)
    assert driver.observed() == []


def test_orphans_are_observed_and_released(topology):
    driver = make(topology)
    client = topology.ovs.client()
    s = spec("orphan", sliver(CTL, (4,)))
    try:
        handle = driver.provision(s).handle
        # A flow nobody here installed (e.g. a fresh bridge's NORMAL) would leak between slices.
        client.add_flows(PHYS, ["cookie=0x1234,priority=5,actions=NORMAL"])
        seen = {o.handle: o for o in driver.observed()}
        assert seen[handle].sliver_urn == s.sliver_urn
        assert seen[handle].state is OperationalState.READY
        assert seen[f"foreign-flows:{PHYS}"].sliver_urn is None
        # The slice bridge is lost by hand: its patches and flows are still found, by tag.
        client.vsctl("del-br", handle)
        [rest] = [o for o in driver.observed() if o.handle == handle]
        assert rest.state is OperationalState.FAILED and rest.sliver_urn == s.sliver_urn
        for item in driver.observed():
            driver.release(item.handle)
        assert driver.observed() == []
        assert [f for f in client.dump_flows(PHYS) if f.cookie == 0x1234] == []
        assert sorted(client.ports(PHYS)) == [f"gofv{i}" for i in range(1, 5)]
        with pytest.raises(Exception, match="not a handle"):
            driver.release("eth0")
    finally:
        driver.delete(s)


def stitch_spec(name: str, port: str, edge: str, tag: int):
    """A stitched link's switch half (am.engine.stitch): wire port `port`, edge port `edge`."""
    from drivers.base import LinkEnd, SliverSpec
    return SliverSpec(sliver_urn=f"urn:publicid:IDN+{AUTHORITY}+sliver+{name}",
                      slice_urn=f"urn:publicid:IDN+{AUTHORITY}+slice+{name}", client_id="lnk",
                      kind=ResourceKind.LINK, component_id=f"urn:publicid:IDN+{AUTHORITY}+node+sw1",
                      link=LinkSpec(ends=(LinkEnd("", "n", "n:if0", "h"),), vlan_tag=tag,
                                    mode="stitch"),
                      params={"switch_port": port, "edge_port": edge, "edge": "edge1"})


def test_a_stitched_links_switch_half_keeps_its_ports_and_flows_its_own(topology):
    driver = make(topology)
    client = topology.ovs.client()
    [comp] = driver.inventory()
    st = stitch_spec("st", "gofv3", "gofv4", 120)
    assert driver.admit(st, Usage(comp.component_id)).claims == ("stitch:gofv3",)
    # a flowspace over every port would take the stitched ports: refused both ways
    every = spec("all", sliver(CTL))
    adm = driver.admit(every, Usage(comp.component_id, slivers=(st,)))
    assert adm.reason_code == "UNAVAILABLE" and "carries a stitched link" in adm.reason
    adm = driver.admit(st, Usage(comp.component_id, slivers=(every,)))
    assert adm.reason_code == "UNAVAILABLE" and "port 3 of datapath sw1" in adm.reason
    adm = driver.admit(stitch_spec("st2", "gofv3", "gofv4", 121),
                       Usage(comp.component_id, slivers=(st,)))
    assert adm.reason_code == "UNAVAILABLE" and "already carries a stitched link" in adm.reason
    s = spec("beside", sliver(CTL, (1, 2)))
    assert driver.admit(s, Usage(comp.component_id, slivers=(st,))).ok
    tag = driver.naming.tag(st.sliver_urn)
    try:
        result = driver.provision(st)
        assert result.state is OperationalState.READY
        flows = client.ofctl("dump-flows", PHYS)
        assert "in_port=3 actions=push_vlan:0x8100,set_field:4216->vlan_vid,output:4" in flows
        assert "dl_vlan=120 actions=pop_vlan,output:3" in flows
        driver.provision(s)            # a slice's provision re-asserts the base table ...
        assert driver.status(st) is OperationalState.READY     # ... and keeps these flows
        seen = {o.handle: o for o in driver.observed()}
        assert seen[result.handle].sliver_urn == st.sliver_urn
        assert not any(h.startswith("foreign-flows") for h in seen)
        assert driver.perform(st, "geni_stop") is OperationalState.NOTREADY
        assert driver.perform(st, "geni_start") is OperationalState.READY
    finally:
        driver.delete(st)
        driver.delete(s)
    assert client.dump_flows(PHYS, cookie_match(driver.naming.stitch_cookie(tag))) == []
    assert driver.observed() == []
