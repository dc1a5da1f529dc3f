"""NetFPGA data plane slivers on a simulated card, read back through the register interface."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from drivers.base import (Action, DriverError, ForwardingMode, InterfaceSpec, OperationalState,
                          ResourceKind, SliverSpec, Usage)
from drivers.inventory import InventoryError
from drivers.netfpga import (CardTables, Geometry, NetFPGADriver, RegisterError, RouteEntry,
                             SimulatedCard)
from drivers.netfpga.registers import REG_NUM_SLOTS, RT_WR_ADDR, slot_reg
from rspec.model import Route

AUTH = "geni-am:nftest"
CARD = f"urn:publicid:IDN+{AUTH}+node+nf1"


def port_urn(p: str) -> str:
    return f"urn:publicid:IDN+{AUTH}+interface+nf1:{p}"


def make(tmp_path, **config) -> NetFPGADriver:
    config.setdefault("state_dir", str(tmp_path / "nf"))
    config.setdefault("card_process", False)     # the register model; test_emulated_card runs it
    return NetFPGADriver(config, [{"name": "nf1"}], authority=AUTH)


def vdp(n: int, ports=("nf0",), vlan=None, routes=(), ips=()) -> SliverSpec:
    ifaces = tuple(InterfaceSpec(client_id=f"r{n}:if{i}", name=f"eth{i + 1}", port=port_urn(p),
                                 vlan_tag=vlan, ips=((ips[i], "255.255.255.0"),) if i < len(ips) else ())
                   for i, p in enumerate(ports))
    return SliverSpec(sliver_urn=f"urn:publicid:IDN+{AUTH}+sliver+r{n}", slice_urn="urn:s",
                      client_id=f"r{n}", kind=ResourceKind.NODE, component_id=CARD,
                      sliver_type="netfpga-vdp", router=True, forwarding=ForwardingMode.HARDWARE,
                      interfaces=ifaces, routes=tuple(routes))


def read_table(d: NetFPGADriver, spec: SliverSpec) -> set[tuple[str, str | None, int]]:
    """The slot's route table as the card's registers report it."""
    _sim, tables = d.card(d.inventory()[0])
    return {(e.prefix, e.next_hop, e.port) for e in tables.routes(d.slot_of(spec)).values()}


def test_fifth_slot_refused_on_a_four_slot_card(tmp_path):
    d = make(tmp_path)
    comp = d.inventory()[0]
    assert comp.capacity == {"vdp_slots": 4.0} and len(comp.ports) == 4
    assert comp.isolation.value == "hardware" and comp.forwarding_modes == (ForwardingMode.HARDWARE,)
    held = []
    for n in range(4):
        s = vdp(n, ports=("nf0",), vlan=100 + n)
        a = d.admit(s, Usage(CARD, used={"vdp_slots": float(n)}, slivers=tuple(held)))
        assert a.ok and a.demand == {"vdp_slots": 1.0} and a.claims == (f"port:nf0:vlan:{100 + n}",)
        held.append(s)
    a = d.admit(vdp(9, ports=("nf1",)), Usage(CARD, used={"vdp_slots": 4.0}, slivers=tuple(held)))
    assert not a.ok and a.reason_code == "INSUFFICIENT_NODES"
    assert a.reason == "card nf1 has all 4 virtual data plane slots taken"


def test_ports_and_vlans_conflict(tmp_path):
    d = make(tmp_path)
    untagged = vdp(1, ports=("nf0", "nf1"))
    u = Usage(CARD, used={"vdp_slots": 1.0}, slivers=(untagged,))
    a = d.admit(vdp(2, ports=("nf1",), vlan=7), u)
    assert not a.ok and "port nf1 of card nf1 is taken" in a.reason
    tagged = Usage(CARD, used={"vdp_slots": 1.0}, slivers=(vdp(3, ports=("nf2",), vlan=7),))
    a = d.admit(vdp(4, ports=("nf2",), vlan=7), tagged)
    assert a.reason_code == "VLAN_UNAVAILABLE"
    assert d.admit(vdp(5, ports=("nf2",), vlan=8), tagged).ok
    a = d.admit(vdp(6, ports=("nf0", "nf0")), Usage(CARD))
    assert a.reason_code == "BADARGS" and "two interfaces on port nf0" in a.reason


def test_table_limits_refused_at_allocate(tmp_path):
    d = make(tmp_path, route_table_size=8, filter_table_size=2)
    routes = [Route(f"10.{i}.0.0/16", "192.168.0.1") for i in range(9)]
    a = d.admit(vdp(1, routes=routes), Usage(CARD))
    assert not a.ok and a.reason_code == "TOOBIG"
    assert a.reason == "node r1 has 9 routes; a data plane's route table on card nf1 holds 8"
    assert d.admit(vdp(1, routes=routes[:8]), Usage(CARD)).ok
    a = d.admit(vdp(2, ports=("nf0", "nf1", "nf2"), ips=("10.0.0.1", "10.0.1.1", "10.0.2.1")),
                Usage(CARD))
    assert a.reason_code == "TOOBIG" and "filter table" in a.reason
    a = d.admit(vdp(3, routes=[Route("10.0.0.0/33")]), Usage(CARD))
    assert a.reason_code == "BADARGS"


def test_routes_in_the_card_follow_the_control_plane(tmp_path):
    d = make(tmp_path)
    s = vdp(1, ports=("nf1", "nf2"), ips=("10.1.0.1", "10.2.0.1"),
            routes=[Route("10.9.0.0/16", "10.1.0.254"),
                    Route("0.0.0.0/0", "10.2.0.254", "r1:if1")])
    r = d.provision(s)
    assert d.provision(s) == r and r.state is OperationalState.NOTREADY
    slot = d.slot_of(s)
    sim, tables = d.card(d.inventory()[0])
    assert tables.slot_config(slot) == (False, 0b0110, 0)
    assert set(tables.filters(slot).values()) == {"10.1.0.1", "10.2.0.1"}
    assert read_table(d, s) == set()
    assert d.perform(s, Action.START.value) is OperationalState.READY
    assert read_table(d, s) == {("10.9.0.0/16", "10.1.0.254", 1), ("0.0.0.0/0", "10.2.0.254", 2)}
    # the card's data plane decides with these entries (longest prefix match, own addresses)
    assert sim.forward(1, 0, "10.9.3.4") == 1
    assert sim.forward(1, 0, "8.8.8.8") == 2
    assert sim.forward(2, 0, "10.1.0.1") == "cpu"
    assert sim.forward(3, 0, "10.9.3.4") is None          # nf3 belongs to no slot
    res = d.set_routes(s, [Route("10.9.0.0/16", "10.1.0.253"), Route("10.10.0.0/16", "10.1.0.254")])
    assert (res.added, res.removed, res.kept) == (2, 2, 0)
    assert read_table(d, s) == {("10.9.0.0/16", "10.1.0.253", 1), ("10.10.0.0/16", "10.1.0.254", 1)}
    assert d.perform(s, Action.STOP.value) is OperationalState.NOTREADY
    assert read_table(d, s) == set() and sim.forward(1, 0, "10.9.3.4") is None
    d.perform(s, Action.START.value)
    assert len(read_table(d, s)) == 2
    d.delete(s)
    d.delete(s)
    assert tables.routes(slot) == {} and tables.filters(slot) == {}
    assert tables.slot_config(slot) == (False, 0, 0)
    assert d.status(s) is OperationalState.FAILED and d.observed() == []


def test_route_change_beyond_table_refused(tmp_path):
    d = make(tmp_path, route_table_size=4)
    s = vdp(1, routes=[Route("10.1.0.0/16", "10.0.0.2")])
    d.provision(s)
    d.perform(s, Action.START.value)
    with pytest.raises(DriverError, match="5 routes do not fit"):
        d.set_routes(s, [Route(f"10.{i}.0.0/16", "10.0.0.2") for i in range(5)])
    assert read_table(d, s) == {("10.1.0.0/16", "10.0.0.2", 0)}    # unchanged


def test_card_state_is_shared_between_processes(tmp_path):
    d = make(tmp_path)
    s = vdp(1, routes=[Route("10.1.0.0/16", "10.0.0.2")])
    d.provision(s)
    code = f"""
import json
from drivers.netfpga import NetFPGADriver
from drivers.base import SliverSpec, ResourceKind, Action, InterfaceSpec
d = NetFPGADriver({{"state_dir": {str(tmp_path / 'nf')!r}, "card_process": False}}, [{{"name": "nf1"}}], authority={AUTH!r})
s = SliverSpec(sliver_urn={s.sliver_urn!r}, slice_urn="x", client_id="r1", kind=ResourceKind.NODE,
               component_id={CARD!r}, interfaces=(InterfaceSpec("r1:if0", "eth1", port={port_urn('nf0')!r}),))
print(json.dumps(d.perform(s, Action.START.value).value))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == "geni_ready"
    assert d.status(s) is OperationalState.READY
    assert read_table(d, s) == {("10.1.0.0/16", "10.0.0.2", 0)}
    [obs] = d.observed()
    assert obs.sliver_urn == s.sliver_urn and obs.state is OperationalState.READY
    d.release(obs.handle)
    assert d.observed() == [] and d.status(s) is OperationalState.FAILED


def test_register_interface_refuses_bad_access(tmp_path):
    card = SimulatedCard(tmp_path / "c.card", Geometry(slots=2, route_depth=4))
    t = CardTables(card)
    assert (t.ports, t.slots, t.route_depth) == (4, 2, 4)
    with pytest.raises(RegisterError, match="read-only"):
        card.write(REG_NUM_SLOTS, 8)
    with pytest.raises(RegisterError, match="beyond depth 4"):
        card.write(slot_reg(0, RT_WR_ADDR), 4)
    with pytest.raises(RegisterError, match="no register"):
        card.read(slot_reg(2, 0))                     # slot 2 of a 2-slot card
    with pytest.raises(RegisterError, match="misaligned"):
        card.read(2)
    t.write_route(1, 3, RouteEntry("10.0.0.0/8", None, 3))
    assert t.routes(1) == {3: RouteEntry("10.0.0.0/8", None, 3)} and t.routes(0) == {}
    with pytest.raises(RegisterError, match="configuration says"):
        SimulatedCard(tmp_path / "c.card", Geometry(slots=4))
    card.close()


def test_config_errors(tmp_path):
    with pytest.raises(InventoryError, match="slots"):
        NetFPGADriver({"slots": 0}, [], authority=AUTH)
    with pytest.raises(InventoryError, match="slots"):
        NetFPGADriver({"slots": 99, "state_dir": str(tmp_path)}, [], authority=AUTH)
    with pytest.raises(InventoryError, match="ports"):
        NetFPGADriver({"state_dir": str(tmp_path)}, [{"name": "x", "ports": ["a"]}], authority=AUTH)


def test_a_card_with_every_slot_taken_is_not_advertised_available(tmp_path):
    d = make(tmp_path)
    (card,) = d.inventory()
    slots = card.capacity["vdp_slots"]
    assert d.available(card, None)
    assert d.available(card, Usage(card.component_id, {"vdp_slots": slots - 1}))
    assert not d.available(card, Usage(card.component_id, {"vdp_slots": slots}))
