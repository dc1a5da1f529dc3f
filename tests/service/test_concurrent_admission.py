"""Racing Allocates whose admission decisions depend on each other but share no claim token.

Two overlapping flowspaces that are not identical, a hybrid router's OpenFlow ports and a
flowspace over one of them: the database has no constraint that sees these conflicts, only
the drivers' `admit` over the live slivers does. Two Allocates started together (one per
slice, a barrier between them, on SQLite and on PostgreSQL) must end as if they had run one
after the other: exactly one wins, the other gets the GENI code and message a later Allocate
would get, naming the winner's sliver and slice, and leaves nothing behind. Disjoint requests
(same port, other VLAN; other ports) both win.

The datapath is a real OVS bridge (the OpenFlow driver tests' private OVS and topology); the
routers' control planes are Xen VMs on libvirt's test driver. Nothing is provisioned.
"""
from __future__ import annotations

from functools import partial
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from am.config import Settings
from am.errors import GeniCode, GeniError
from am.service.aggregate import Aggregate
from am.service.contract import ManifestResult, Options, Principal
from am.store import Claim, Reservation, Sliver, Store
from drivers.inventory import parse_inventory
from drivers.openflow import OpenFlowDriver
from drivers.registry import Site
from drivers.xen.driver import XenDriver
from tests.drivers.openflow.conftest import PHYS, PHYS_DPID, ovs, topology  # noqa: F401
from tests.service.harness import CollectingQueue
from tests import support

AUTH = "geni-am:race"
AM_URN = f"urn:publicid:IDN+{AUTH}+authority+am"
SW = f"urn:publicid:IDN+{AUTH}+node+sw1"
XEN = f"urn:publicid:IDN+{AUTH}+node+xen1"
ALICE = Principal(urn=f"urn:publicid:IDN+{AUTH}:sa+user+alice")
OF = "http://www.geni.net/resources/rspec/ext/openflow/3"
GA = "http://geni-am.org/resources/rspec/ext/geniam/1"
ROUNDS = 12
FIB_ROUTES = 16


slice_urn = partial(support.slice_urn, authority=f"{AUTH}:sa")


def flowspace(port: int, packet: str = "") -> str:
    """One OpenFlow sliver on sw1's port `port`, matching `packet` (empty: all traffic)."""
    return f"""<rspec type="request" xmlns="http://www.geni.net/resources/rspec/3"
  xmlns:openflow="{OF}">
  <openflow:sliver description="race" email="alice@example.net">
    <openflow:controller url="tcp:127.0.0.1:6633" type="primary"/>
    <openflow:group name="g">
      <openflow:datapath component_id="{SW}" component_manager_id="{AM_URN}" dpid="{PHYS_DPID}">
        <openflow:port num="{port}"/>
      </openflow:datapath>
    </openflow:group>
    <openflow:match><openflow:use-group name="g"/><openflow:packet>{packet}</openflow:packet>
    </openflow:match>
  </openflow:sliver>
</rspec>"""


def router(cid: str = "r1") -> str:
    """A hybrid router: control plane a Xen VM, forwarding as OpenFlow flows on sw1, whose
    two interfaces own the datapath's first two ports (1 and 2)."""
    ifs = "".join(f'<interface client_id="{cid}:if{i}"><ip address="10.77.{i}.1" '
                  f'netmask="255.255.255.0" type="ipv4"/></interface>' for i in (1, 2))
    return (f'<rspec xmlns="http://www.geni.net/resources/rspec/3" xmlns:ga="{GA}" '
            f'type="request"><node client_id="{cid}" component_id="{XEN}" exclusive="false">'
            f'<sliver_type name="xen-vm"/>{ifs}<ga:node router="true" forwarding="openflow"/>'
            f'</node></rspec>')


def inventory(ovs_db: str, state_dir: str) -> str:
    return f"""
[drivers.openflow]
ovs_db = "{ovs_db}"
name_prefix = "gof"
state_dir = "{state_dir}/fib"
fib_routes = {FIB_ROUTES}
fib_flows = {FIB_ROUTES * 8}

[drivers.xen]
uri = "test:///default"
state_dir = "{state_dir}/xen"

[[components]]
name = "sw1"
driver = "openflow"
dpid = "{PHYS_DPID}"
[components.extra]
bridge = "{PHYS}"

[[components]]
name = "xen1"
driver = "xen"
"""


@pytest.fixture
def am(store: Store, topology, tmp_path) -> Iterator[Aggregate]:  # noqa: F811 - fixture
    inv = parse_inventory(inventory(topology.ovs.db, str(tmp_path)))
    site = Site({"openflow": OpenFlowDriver(inv.drivers["openflow"],
                                            list(inv.components["openflow"]), authority=AUTH),
                 "xen": XenDriver(inv.drivers["xen"], list(inv.components["xen"]),
                                  authority=AUTH)}, authority=AUTH)
    try:
        yield Aggregate(Settings(authority=AUTH, state_dir=str(tmp_path)), store, site,
                        CollectingQueue())
    finally:
        site.close()


@dataclass
class Outcome:
    name: str                       # "a" or "b": which request of the round
    slice_urn: str
    result: ManifestResult | None = None
    error: GeniError | None = None

    def sliver(self, client_id: str) -> str:
        assert self.result is not None
        return next(s.sliver_urn for s in self.result.slivers if s.client_id == client_id)


def race(am: Aggregate, round_no: int, a: str, b: str) -> tuple[Outcome, Outcome]:
    """Allocate `a` and `b` at once, each into its own slice, from two threads."""
    outcomes = (Outcome("a", slice_urn(f"r{round_no}a")), Outcome("b", slice_urn(f"r{round_no}b")))
    barrier = threading.Barrier(2)
    crashes: list[BaseException] = []

    def run(out: Outcome, rspec: str) -> None:
        barrier.wait(30)
        try:
            out.result = am.allocate(ALICE, out.slice_urn, rspec, Options())
        except GeniError as exc:
            out.error = exc
        except BaseException as exc:   # noqa: BLE001 - reported below
            crashes.append(exc)

    threads = [threading.Thread(target=run, args=(o, r)) for o, r in zip(outcomes, (a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert crashes == []
    return outcomes


def one_winner(a: Outcome, b: Outcome) -> tuple[Outcome, Outcome]:
    wins = [o for o in (a, b) if o.result is not None]
    assert len(wins) == 1, (f"both Allocates won: {a.result.slivers} and {b.result.slivers}"
                            if len(wins) == 2 else f"both lost: {a.error}; {b.error}")
    winner = wins[0]
    loser = b if winner is a else a
    assert loser.error is not None
    return winner, loser


def assert_only(store: Store, winner: Outcome, loser: Outcome | None) -> None:
    """The database holds the winner's slivers, reservations and claims and nothing of the
    loser's (not even its slice record)."""
    assert winner.result is not None
    mine = {s.sliver_urn for s in winner.result.slivers}
    with store.read() as session:
        live = session.execute(select(Sliver.urn, Sliver.id).where(
            Sliver.allocation_state != "geni_unallocated")).all()
        assert {urn for urn, _ in live} == mine
        ids = {i for _, i in live}
        assert set(session.scalars(select(Claim.sliver_id))) <= ids
        assert set(session.scalars(select(Reservation.sliver_id))) <= ids
        if loser is not None:
            assert store.find_slice(session, loser.slice_urn) is None
    fib = sum(1 for s in winner.result.slivers if s.client_id.endswith(":forwarding"))
    used = {(c, r): u for c, r, _, u in store.capacity_rows()}
    assert used[(SW, "fib_flows")] == fib * FIB_ROUTES


def clear(am: Aggregate, store: Store, *outcomes: Outcome) -> None:
    for out in outcomes:
        if out.result is not None:
            am.delete(ALICE, [out.slice_urn], Options())
    with store.read() as session:
        assert session.scalar(select(func.count(Claim.id))) == 0
    assert all(u == 0 for *_, u in store.capacity_rows())


def test_overlapping_flowspaces(am, store):
    """All traffic on port 3 against IPv4 on port 3: different cells, different claim
    tokens; the loser is told which slice's flowspace it overlaps."""
    for n in range(ROUNDS):
        a, b = race(am, n, flowspace(3, '<openflow:dl_type value="0x800"/>'), flowspace(3))
        winner, loser = one_winner(a, b)
        assert loser.error.code is GeniCode.UNAVAILABLE, loser.error
        mine, theirs = (("in_port=3 dl_type=0x0800", "in_port=3") if loser is a
                        else ("in_port=3", "in_port=3 dl_type=0x0800"))
        assert loser.error.message == (
            f"openflow0: flowspace {mine} on datapath {SW} overlaps slice {winner.slice_urn} "
            f"(sliver {winner.sliver('openflow0:sw1')}, match {theirs})")
        assert_only(store, winner, loser)
        clear(am, store, a, b)


def test_router_port_against_flowspace(am, store):
    """A router owning ports 1-2 against a flowspace on port 2: whichever commits first
    keeps the port, the other is refused naming it."""
    for n in range(ROUNDS):
        a, b = race(am, n, router(), flowspace(2, '<openflow:dl_vlan value="42"/>'))
        winner, loser = one_winner(a, b)
        assert loser.error.code is GeniCode.UNAVAILABLE, loser.error
        if loser is a:
            assert loser.error.message == (
                f"r1: no forwarding plane for router r1: port 2 of datapath sw1 is used by a "
                f"slice flowspace (sliver {winner.sliver('openflow0:sw1')}, slice "
                f"{winner.slice_urn})")
        else:
            assert loser.error.message == (
                f"openflow0: port 2 of datapath {SW} forwards for a virtual router (sliver "
                f"{winner.sliver('r1:forwarding')}, slice {winner.slice_urn}); a flowspace "
                "cannot include it")
        assert_only(store, winner, loser)
        clear(am, store, a, b)


def test_two_routers_on_one_datapath(am, store):
    """Both routers want ports 1-2. The `port:` claims would catch the second at commit
    with a bare claim conflict; admission under the lock gives the loser the real reason."""
    for n in range(ROUNDS):
        a, b = race(am, n, router(), router("r2"))
        winner, loser = one_winner(a, b)
        lost, won = ("r1", "r2") if loser is a else ("r2", "r1")
        assert loser.error.code is GeniCode.UNAVAILABLE, loser.error
        assert loser.error.message == (
            f"{lost}: no forwarding plane for router {lost}: port 1 of datapath sw1 is used by "
            f"a router (sliver {winner.sliver(won + ':forwarding')}, slice {winner.slice_urn})")
        assert_only(store, winner, loser)
        clear(am, store, a, b)


def test_disjoint_requests_both_win(am, store):
    """Serialising admission must not turn disjoint requests into conflicts: two VLANs on
    one port, and a flowspace on a port the router does not own."""
    for n in range(ROUNDS // 2):
        for m, (ra, rb) in enumerate((
                (flowspace(3, '<openflow:dl_vlan value="100"/>'),
                 flowspace(3, '<openflow:dl_vlan value="200"/>')),
                (router(), flowspace(3, '<openflow:dl_vlan value="100"/>')))):
            a, b = race(am, 2 * n + m, ra, rb)
            assert a.error is None and b.error is None, (a.error, b.error)
            with store.read() as session:
                live = set(session.scalars(select(Sliver.urn).where(
                    Sliver.allocation_state != "geni_unallocated")))
            assert live == {s.sliver_urn for o in (a, b) for s in o.result.slivers}
            clear(am, store, a, b)
