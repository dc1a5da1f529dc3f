"""An old database (built at the migration head before capacities became whole cpu_milli)
with `cpu` capacity and reservation rows upgrades to counting the same use in cpu_milli, on
SQLite and PostgreSQL; the upgraded store then admits against it correctly."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, insert, text

from am.store import Capacity, Reservation, Slice, Sliver, open_store, spec_to_dict, utcnow
from am.store import migrate as mig
from drivers.base import Component, ResourceKind, SliverSpec
from rspec.model import IsolationClass
from tests import services

#: the head before capacities were converted (and before the state guard): an old deployment
PREVIOUS_HEAD = "shared_lans"
NODE_A, NODE_B = "urn:publicid:IDN+old+node+a", "urn:publicid:IDN+old+node+b"


@contextlib.contextmanager
def _database(kind: str, tmp_path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.sqlite'}"
    else:
        with services.postgres_server() as url:
            yield url


def _old_rows(url: str) -> None:
    """What an old AM left: cpu in cores, a live sliver holding 0.5 of node a's 2 cores, and
    node b already re-synced by new code (a cpu_milli row beside its old cpu row)."""
    engine = create_engine(url)
    now = utcnow()
    slices, slivers = Slice.__table__, Sliver.__table__
    with engine.begin() as conn:
        slice_id = conn.execute(insert(slices).returning(slices.c.id), {
            "urn": "urn:publicid:IDN+old:sa+slice+s", "urn_key": "urn:publicid:idn+old:sa+slice+s",
            "owner_urn": "urn:publicid:IDN+old+user+u", "incarnation": 0}).scalar_one()
        spec = SliverSpec(sliver_urn="urn:publicid:IDN+old+sliver+1", slice_urn="x",
                          client_id="n", kind=ResourceKind.NODE, component_id=NODE_A, cpu=0.5)
        sliver_id = conn.execute(insert(slivers).returning(slivers.c.id), {
            "urn": spec.sliver_urn, "slice_id": slice_id, "client_id": "n", "kind": "node",
            "driver": "fake", "component_id": NODE_A, "sliver_type": "xen-vm",
            "allocation_state": "geni_allocated", "operational_state": "geni_pending_allocation",
            "expires": now + timedelta(hours=1), "spec": spec_to_dict(spec),
            "version": 1}).scalar_one()
        conn.execute(insert(Capacity.__table__), [
            {"component_id": NODE_A, "resource": "cpu", "capacity": 2.0, "used": 0.5},
            {"component_id": NODE_A, "resource": "memory_mb", "capacity": 4096.0, "used": 512.0},
            {"component_id": NODE_B, "resource": "cpu", "capacity": 1.0, "used": 0.25},
            {"component_id": NODE_B, "resource": "cpu_milli", "capacity": 1000.0, "used": 100.0},
        ])
        conn.execute(insert(Reservation.__table__), [
            {"sliver_id": sliver_id, "component_id": NODE_A, "resource": "cpu", "amount": 0.5},
            {"sliver_id": sliver_id, "component_id": NODE_A, "resource": "memory_mb",
             "amount": 512.0}])
    engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql",
                                                         marks=pytest.mark.postgres)])
def test_old_cpu_rows_upgrade_to_cpu_milli(kind: str, tmp_path):
    with _database(kind, tmp_path) as url:
        engine = create_engine(url)
        mig.upgrade(engine, PREVIOUS_HEAD)
        assert mig.current_revision(engine) == PREVIOUS_HEAD
        _old_rows(url)
        mig.upgrade(engine)
        assert mig.current_revision(engine) == mig.head_revision()
        with engine.connect() as conn:
            caps = {(c, r): (cap, used) for c, r, cap, used in conn.execute(
                text("SELECT component_id, resource, capacity, used FROM capacity"))}
            held = sorted(conn.execute(text("SELECT resource, amount FROM reservations")).all())
        engine.dispose()
        assert caps == {(NODE_A, "cpu_milli"): (2000.0, 500.0),
                        (NODE_A, "memory_mb"): (4096.0, 512.0),
                        (NODE_B, "cpu_milli"): (1000.0, 350.0)}
        assert held == [("cpu_milli", 500.0), ("memory_mb", 512.0)]
        # the upgraded store counts the old sliver's use, and a re-sync keeps it
        store = open_store(url)
        try:
            assert store.sync_capacity([Component(
                component_id=NODE_A, name="a", driver="fake",
                isolation=IsolationClass.HARDWARE, capacity={"cpu": 2, "memory_mb": 4096})]) == []
            with store.read() as session:
                usage = store.usage(session, [NODE_A])[NODE_A]
            assert usage.used["cpu_milli"] == 500.0
            assert (NODE_A, "cpu_milli", 2000.0, 500.0) in store.capacity_rows()
        finally:
            store.close()
