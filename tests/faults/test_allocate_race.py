"""50 Allocates at once, over real TLS from 50 threads and 50 slices, for one component that
only one sliver can hold (an exclusive node): exactly one wins, 49 get a clear refusal, and
the database holds exactly one live sliver there with its reservation counted once. Run on
SQLite and on PostgreSQL."""
from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from am.store.models import Capacity, Claim, Reservation, Sliver
from am.store.store import utcnow
from tests.interop.stack import LiveAM, component_urn, live_am, node, request

RACERS = 50
TARGET = component_urn("fake2")


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def am(request, tmp_path_factory, gcf_fixtures: Path) -> Iterator[LiveAM]:
    overrides = {}
    if request.param == "postgresql":
        overrides["database_url"] = request.getfixturevalue("postgres_url")
    with live_am(tmp_path_factory.mktemp(f"race-{request.param}"), gcf_fixtures,
                 **overrides) as live:
        yield live


@pytest.mark.slow
def test_fifty_concurrent_allocates_for_one_exclusive_component(am: LiveAM):
    slices = [am.dev_slice(f"race{i}") for i in range(RACERS)]
    clients = [am.dev_client("carol", [cred]) for _, cred in slices]
    want = request(node("only", component=TARGET, exclusive=True))
    gate = threading.Barrier(RACERS)

    def race(i: int) -> dict:
        clients[i].get_version()          # connection and TLS handshake before the gate
        gate.wait(timeout=30)
        return clients[i].call("Allocate", slices[i][0], clients[i].credentials, want, {})

    try:
        with ThreadPoolExecutor(RACERS) as pool:
            results = list(pool.map(race, range(RACERS)))
    finally:
        for c in clients:
            c.close()

    codes = Counter(r["code"]["geni_code"] for r in results)
    assert codes[0] == 1, codes
    losers = [r for r in results if r["code"]["geni_code"] != 0]
    assert len(losers) == RACERS - 1
    for r in losers:
        # a capacity refusal (or BUSY, retry later), naming the component and the node
        assert r["code"]["geni_code"] in (26, 14), r
        assert "fake2" in r["output"], r
        assert "nothing was allocated" in r["output"] or "only" in r["output"], r
    winner = next(i for i, r in enumerate(results) if r["code"]["geni_code"] == 0)
    (won,) = results[winner]["value"]["geni_slivers"]

    store = am.runtime.store
    with store.read() as session:
        live = [s for s in store.live_slivers(session, utcnow()) if s.component_id == TARGET]
        assert [s.urn for s in live] == [won["geni_sliver_urn"]]
        assert live[0].slice.urn == slices[winner][0]
        # no sliver rows at all for the losers (all-or-nothing, rolled back)
        total = session.scalar(select(func.count()).select_from(Sliver)
                               .where(Sliver.component_id == TARGET))
        assert total == 1
        reservations = session.scalars(select(Reservation)
                                       .where(Reservation.component_id == TARGET)).all()
        assert {r.sliver_id for r in reservations} == {live[0].id}
        per_resource = Counter(r.resource for r in reservations)
        assert all(n == 1 for n in per_resource.values()), per_resource   # counted once
        for cap in session.scalars(select(Capacity).where(Capacity.component_id == TARGET)):
            reserved = sum(r.amount for r in reservations if r.resource == cap.resource)
            assert cap.used == pytest.approx(reserved)
            assert cap.used <= cap.capacity + 1e-6
        claims = session.scalars(select(Claim).where(Claim.component_id == TARGET)).all()
        assert all(c.sliver_id == live[0].id for c in claims)

    # the component is free again once the winner deletes
    with am.dev_client("carol", [slices[winner][1]]) as carol:
        carol.delete(slices[winner][0])
        again = carol.call("Allocate", slices[winner][0], carol.credentials, want, {})
        assert again["code"]["geni_code"] == 0, again
        carol.delete(slices[winner][0])
