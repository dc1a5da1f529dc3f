"""Racing Allocates for one single-capacity component: exactly one wins, the database stays
consistent (on SQLite and PostgreSQL, with real threads)."""
from __future__ import annotations

import threading

from sqlalchemy import func, select

from am.errors import GeniCode, GeniError
from am.service.contract import Options
from am.store import Claim, Reservation, Sliver
from tests.service.harness import ALICE, Harness, node_xml, request
from tests.support import slice_urn

THREADS = 50


def test_fifty_racing_allocates_exactly_one_wins(store, tmp_path):
    h = Harness(store, tmp_path, nodes=1, cpu=1.0, default_cpu=1.0)
    try:
        barrier = threading.Barrier(THREADS)
        wins: list[str] = []
        refusals: list[GeniError] = []
        crashes: list[BaseException] = []

        def attempt(i: int) -> None:
            barrier.wait()
            try:
                res = h.am.allocate(ALICE, slice_urn(f"race{i}"),
                                    request(node_xml("n", component="fake1")), Options())
                wins.append(res.slivers[0].sliver_urn)
            except GeniError as exc:
                refusals.append(exc)
            except BaseException as exc:   # noqa: BLE001
                crashes.append(exc)

        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert crashes == []
        assert len(wins) == 1 and len(refusals) == THREADS - 1
        assert {e.code for e in refusals} == {GeniCode.INSUFFICIENT_NODES}, \
            {(e.code, e.message) for e in refusals}
        for e in refusals:
            assert "fake1" in e.message
        rows = {(c, r): (cap, used) for c, r, cap, used in store.capacity_rows()}
        assert rows[("urn:publicid:IDN+geni-am:test+node+fake1", "cpu_milli")] == (1000, 1000)
        with store.read() as session:
            live = session.scalars(select(Sliver).where(Sliver.allocation_state != "geni_unallocated")).all()
            assert [s.urn for s in live] == wins
            assert session.scalar(select(func.count(Reservation.id)).where(
                Reservation.resource == "cpu_milli")) == 1
    finally:
        h.close()


def test_racing_vlan_claims(store, tmp_path):
    """The claim UNIQUE constraint, hit directly by writers that all passed admission."""
    from datetime import timedelta

    from am.states import Event
    from am.store import ReservationConflict, spec_to_dict, utcnow
    from drivers.base import ResourceKind, SliverSpec

    n = 20
    barrier = threading.Barrier(n)
    outcome: list[str] = []

    def claim(i: int) -> None:
        urn = f"urn:publicid:IDN+t+sliver+v{i}"
        barrier.wait()
        try:
            with store.write() as session:
                slc = store.get_or_create_slice(session, slice_urn(f"v{i}"), "u")
                row = Sliver(urn=urn, slice=slc, client_id="l", kind="link", driver="fake",
                             component_id="sw", allocation_state="geni_unallocated",
                             expires=utcnow() + timedelta(minutes=5), element_xml="", facts={},
                             spec=spec_to_dict(SliverSpec(urn, slc.urn, "l", ResourceKind.LINK, "sw")),
                             error="", resource_status="")
                session.add(row)
                store.transition(session, row, Event.ALLOCATE)
                store.reserve(session, row, {}, ("vlan:300",))
            outcome.append("won")
        except ReservationConflict:
            outcome.append("lost")

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcome) == ["lost"] * (n - 1) + ["won"]
    with store.read() as session:
        assert session.scalar(select(func.count(Claim.id))) == 1
        assert session.scalar(select(func.count(Sliver.id))) == 1
