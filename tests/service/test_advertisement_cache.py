"""The cached advertisement: reused while nothing changes, rebuilt as soon as any process
sharing the database changes capacity, reservations or live slivers (usage generation)."""
from __future__ import annotations

import base64
import zlib

from sqlalchemy import delete

from am.api import values
from am.service.aggregate import Aggregate
from am.service.contract import Options
from am.store import Store
from am.store.models import UsageGeneration
from tests.service.harness import ALICE, Harness, node_xml, request
from tests.support import slice_urn

FAKE1 = "urn:publicid:IDN+geni-am:test+node+fake1"


def _node_available(ad: str, name: str = "fake1") -> bool | None:
    """`<available now=...>` of one node, None when the node is not advertised."""
    start = ad.find(f'component_name="{name}"')
    if start < 0:
        return None
    chunk = ad[start:ad.index("</node>", start)]
    return 'available now="true"' in chunk


def _decompress(text: str) -> str:
    return zlib.decompress(base64.b64decode(text)).decode("utf-8")


def _second_aggregate(h: Harness) -> tuple[Aggregate, Store]:
    """Another 'process': its own Store (engine, pool) and Aggregate over the same database."""
    other = Store(h.store.url)
    return Aggregate(h.settings, other, h.site, h.queue, clock=h.clock), other


def test_unchanged_usage_returns_the_same_object(store, tmp_path):
    h = Harness(store, tmp_path, nodes=40)
    try:
        first = h.am.advertisement(Options())
        assert len(first) >= 32 * 1024
        assert h.am.advertisement(Options()) is first
        assert values.compress(first) is values.compress(first)   # compressed once per object
        only = h.am.advertisement(Options(available_only=True))
        assert only is not first and h.am.advertisement(Options(available_only=True)) is only
    finally:
        h.close()


def test_another_instance_allocate_invalidates_plain_compressed_and_available_only(store, tmp_path):
    h = Harness(store, tmp_path, nodes=1)
    other, other_store = _second_aggregate(h)
    try:
        before = h.am.advertisement(Options())
        before_only = h.am.advertisement(Options(available_only=True))
        assert _node_available(before) is True
        assert _node_available(_decompress(values.compress(before))) is True
        assert _node_available(before_only) is True

        res = other.allocate(ALICE, slice_urn("x"), request(
            node_xml("n", component="fake1").replace('exclusive="false"', 'exclusive="true"')),
            Options())

        after = h.am.advertisement(Options())
        assert after is not before
        assert _node_available(after) is False
        assert _node_available(_decompress(values.compress(after))) is False
        assert _node_available(h.am.advertisement(Options(available_only=True))) is None

        other.delete(ALICE, [res.slivers[0].sliver_urn], Options())
        again = h.am.advertisement(Options())
        assert _node_available(again) is True
        assert _node_available(_decompress(values.compress(again))) is True
        assert _node_available(h.am.advertisement(Options(available_only=True))) is True
    finally:
        other_store.close()
        h.close()


def test_free_figures_follow_a_shared_allocation_and_the_reaper(store, tmp_path):
    h = Harness(store, tmp_path, nodes=1, cpu=4.0, default_cpu=1.0)
    other, other_store = _second_aggregate(h)
    try:
        assert 'free_cpu="4"' in h.am.advertisement(Options())
        other.allocate(ALICE, slice_urn("y"), request(node_xml("n", component="fake1")), Options())
        assert 'free_cpu="3"' in h.am.advertisement(Options())
        h.clock.advance(h.settings.allocation_ttl_s + 1)
        assert len(other.reap()) == 1
        assert 'free_cpu="4"' in h.am.advertisement(Options())
    finally:
        other_store.close()
        h.close()


def test_generation_moves_only_with_usage(h):
    def generation() -> int | None:
        with h.store.read() as session:
            return h.store.usage_generation(session)

    g0 = generation()
    assert g0 is not None
    res = h.am.allocate(ALICE, slice_urn(), request(node_xml("a")), Options())
    g1 = generation()
    assert g1 > g0
    urns = [s.sliver_urn for s in res.slivers]
    h.am.provision(ALICE, urns, Options())          # no capacity or live-set change
    h.am.status(ALICE, urns, Options())
    assert generation() == g1
    h.am.delete(ALICE, urns, Options())
    g2 = generation()
    assert g2 > g1
    h.am.delete(ALICE, urns, Options())             # idempotent: nothing freed again
    assert generation() == g2
    # a failed Allocate (nothing written) leaves it alone
    try:
        h.am.allocate(ALICE, slice_urn(), request(node_xml("a", component="nosuch")), Options())
    except Exception:   # noqa: BLE001 - the refusal itself is tested elsewhere
        pass
    assert generation() == g2


def test_a_lost_counter_row_is_recreated_and_invalidates(h):
    first = h.am.advertisement(Options())
    with h.store.write() as session:
        session.execute(delete(UsageGeneration))
    assert h.am.advertisement(Options()) is not first   # unknown generation: never trust a cache
    h.am.allocate(ALICE, slice_urn(), request(node_xml("a")), Options())
    with h.store.read() as session:
        assert h.store.usage_generation(session) is not None
    a = h.am.advertisement(Options())
    assert h.am.advertisement(Options()) is a


def test_usage_sees_slivers_of_other_processes_and_forgets_deleted_ones(store, tmp_path):
    """usage() keeps decoded specs between calls; that must never hide or resurrect a sliver."""
    h = Harness(store, tmp_path, nodes=2)
    other, other_store = _second_aggregate(h)
    try:
        with h.store.read() as session:
            assert h.store.usage(session) == {}
        exclusive = request(node_xml("n", component="fake1")
                            .replace('exclusive="false"', 'exclusive="true"'))
        res = other.allocate(ALICE, slice_urn("x"), exclusive, Options())
        with h.store.read() as session:
            usage = h.store.usage(session)
        assert [s.client_id for s in usage[FAKE1].slivers] == ["n"]
        assert usage[FAKE1].exclusive_holder == slice_urn("x")
        with h.store.read() as session:   # the same answer from the kept specs
            assert h.store.usage(session) == usage
            assert h.store.usage(session, [FAKE1])[FAKE1] == usage[FAKE1]
        other.delete(ALICE, [res.slivers[0].sliver_urn], Options())
        with h.store.read() as session:
            assert FAKE1 not in h.store.usage(session)
        h.am.allocate(ALICE, slice_urn("y"), exclusive, Options())   # free again
    finally:
        other_store.close()
        h.close()
