"""Update: a slice changed to a new request, on a fake site, with run_job as the worker."""
from __future__ import annotations

from datetime import timedelta

import pytest

from am.errors import GeniCode, GeniError
from am.service.contract import Options
from tests.service.harness import ALICE, request, slice_urn

LINK_AB = ('<link client_id="l"><interface_ref client_id="a:if0"/>'
           '<interface_ref client_id="b:if0"/></link>')


def _node(cid: str, *ifaces: str, component: str | None = None) -> str:
    comp = f' component_id="urn:publicid:IDN+geni-am:test+node+{component}"' if component else ""
    inner = "".join(f'<interface client_id="{cid}:{i}"/>' for i in ifaces)
    return (f'<node client_id="{cid}" component_manager_id="urn:publicid:IDN+geni-am:test+'
            f'authority+am"{comp} exclusive="false"><sliver_type name="xen-vm"/>{inner}</node>')


def _link(cid: str, *refs: str) -> str:
    return (f'<link client_id="{cid}">'
            + "".join(f'<interface_ref client_id="{r}"/>' for r in refs) + "</link>")


BASE = request(_node("a", "if0"), _node("b", "if0"), _node("x"), _link("l", "a:if0", "b:if0"))
GROWN = request(_node("a", "if0"), _node("b", "if0", "if1"), _node("x"), _node("c", "if0"),
                _link("l", "a:if0", "b:if0"), _link("l2", "b:if1", "c:if0"))


def _running(h, rspec: str = BASE) -> dict[str, str]:
    s = slice_urn()
    h.am.allocate(ALICE, s, rspec, Options())
    h.am.provision(ALICE, [s], Options())
    h.run_jobs()
    return _by_client(h)


def _by_client(h) -> dict[str, str]:
    return {i.client_id: i.sliver_urn for i in h.am.status(ALICE, [slice_urn()], Options()).slivers}


def _states(h) -> dict[str, tuple[str, str | None]]:
    return {i.client_id: (i.allocation_status, i.operational_status)
            for i in h.am.status(ALICE, [slice_urn()], Options()).slivers}


def _snapshot(h):
    """Everything a refused Update must leave as it was."""
    with h.store.read() as session:
        from sqlalchemy import select

        from am.store import Claim, Reservation, Sliver
        slivers = sorted((s.urn, s.allocation_state, s.operational_state, s.version,
                          str(s.spec), s.pending, s.expires)
                         for s in session.scalars(select(Sliver)))
        res = sorted((r.sliver_id, r.resource, r.amount) for r in session.scalars(select(Reservation)))
        claims = sorted((c.sliver_id, c.token) for c in session.scalars(select(Claim)))
    return slivers, res, claims, h.store.capacity_rows(), h.driver.observed()


def test_update_adds_node_and_link_keeping_untouched_slivers(h):
    before = _running(h)
    created = {cid: h.driver.counters(urn) for cid, urn in before.items()}
    result = h.am.update(ALICE, [slice_urn()], GROWN, Options())
    after = {i.client_id: i for i in result.slivers}
    # untouched slivers keep their URNs, state and substrate; b changes in place
    for cid in ("a", "x", "l"):
        assert after[cid].sliver_urn == before[cid]
        assert after[cid].operational_status == "geni_ready"
    assert after["b"].sliver_urn == before["b"]
    assert (after["b"].allocation_status, after["b"].operational_status) == \
        ("geni_provisioned", "geni_updating")
    assert {after[c].allocation_status for c in ("c", "l2")} == {"geni_allocated"}
    assert h.queue.submitted == []          # nothing touched before Provision
    # operational actions wait for the commit; the answer names the sliver
    with pytest.raises(GeniError) as err:
        h.am.perform_action(ALICE, [slice_urn()], "geni_restart", Options())
    assert err.value.code is GeniCode.REFUSED and before["b"] in err.value.message

    h.am.provision(ALICE, [slice_urn()], Options())
    h.run_jobs()
    states = _states(h)
    assert set(states.values()) == {("geni_provisioned", "geni_ready")}
    now = _by_client(h)
    assert {c: now[c] for c in before} == before
    for cid in ("a", "x", "l"):   # never re-created or acted on
        assert h.driver.counters(before[cid]) == created[cid]
    b = h.driver.counters(before["b"])
    assert b.created == created["b"].created and b.actions == created["b"].actions + 1
    desc = h.am.describe(ALICE, [slice_urn()], Options())
    assert 'client_id="b:if1"' in desc.manifest and 'client_id="l2"' in desc.manifest


def test_update_removes_a_node_at_provision(h):
    before = _running(h)
    used = h.store.capacity_rows()
    result = h.am.update(ALICE, [slice_urn()], request(_node("a", "if0"), _node("b", "if0"),
                                                       _link("l", "a:if0", "b:if0")), Options())
    assert {i.client_id: i.operational_status for i in result.slivers}["x"] == "geni_updating"
    assert h.store.capacity_rows() == used     # still running: still held
    h.am.provision(ALICE, [slice_urn()], Options())
    h.run_jobs()
    assert set(_by_client(h)) == {"a", "b", "l"}
    assert h.driver.counters(before["x"]).deletes == 1
    assert h.store.capacity_rows() != used


def test_refused_update_leaves_the_slice_as_it_was(h):
    _running(h)
    snap = _snapshot(h)
    huge = request(_node("a", "if0"), _node("b", "if0"), _node("x"),
                   _link("l", "a:if0", "b:if0"),
                   *(_node(f"n{i}") for i in range(200)))
    with pytest.raises(GeniError) as err:
        h.am.update(ALICE, [slice_urn()], huge, Options())
    assert err.value.code in (GeniCode.INSUFFICIENT_NODES, GeniCode.TOOBIG)
    assert _snapshot(h) == snap
    # a running node named on another component: the precise code, nothing changed
    comp = h.site.components[0].name
    where = {c.component_id for c in h.site.components}
    moved = request(_node("a", "if0", component=comp), _node("b", "if0"), _node("x"),
                    _link("l", "a:if0", "b:if0"))
    with h.store.read() as session:
        from am.store import Sliver
        a_comp = session.query(Sliver).filter_by(client_id="a").one().component_id
    if a_comp.endswith("+" + comp):
        moved = moved.replace(f"+node+{comp}", f"+node+{h.site.components[1].name}")
    assert len(where) > 1
    with pytest.raises(GeniError) as err:
        h.am.update(ALICE, [slice_urn()], moved, Options())
    assert err.value.code is GeniCode.UNSUPPORTED and "cannot move" in err.value.message
    assert _snapshot(h) == snap


def test_allocated_slivers_change_at_once(h):
    s = slice_urn()
    first = {i.client_id: i.sliver_urn for i in h.am.allocate(ALICE, s, BASE, Options()).slivers}
    result = h.am.update(ALICE, [s], GROWN, Options())
    got = {i.client_id: i for i in result.slivers}
    assert {c: got[c].sliver_urn for c in first} == first
    assert {i.allocation_status for i in result.slivers} == {"geni_allocated"}
    assert {i.operational_status for i in result.slivers} == {"geni_pending_allocation"}
    desc = h.am.describe(ALICE, [s], Options()).manifest
    assert 'client_id="b:if1"' in desc
    h.am.update(ALICE, [s], request(_node("a")), Options())   # the rest deleted at once
    assert set(_by_client(h)) == {"a"}


def test_update_not_provisioned_in_time_is_reverted(h):
    before = _running(h)
    used = h.store.capacity_rows()
    h.am.update(ALICE, [slice_urn()], GROWN, Options())
    assert _states(h)["b"][1] == "geni_updating"
    h.clock.advance(h.settings.allocation_ttl_s + 1)
    h.am.reap()
    states = _states(h)
    assert set(states) == set(before)           # the new allocated slivers expired
    assert set(states.values()) == {("geni_provisioned", "geni_ready")}
    assert h.store.capacity_rows() == used
    with pytest.raises(GeniError) as err:        # nothing pending to provision any more
        h.am.provision(ALICE, [slice_urn()], Options())
    assert err.value.code is GeniCode.UNSUPPORTED


def test_renew_keeps_a_pending_update_and_delete_works(h):
    _running(h)
    h.am.update(ALICE, [slice_urn()], GROWN, Options())
    h.am.renew(ALICE, [slice_urn()], h.clock.now + timedelta(hours=2), Options())
    h.clock.advance(h.settings.allocation_ttl_s + 1)
    h.am.reap()
    assert _states(h)["b"][1] == "geni_updating"
    h.am.delete(ALICE, [slice_urn()], Options())
    h.run_jobs()
    assert h.driver.observed() == []
    assert all(u == 0 for *_, u in h.store.capacity_rows())


def test_update_back_to_running_spec_drops_the_pending_change(h):
    _running(h)
    used = h.store.capacity_rows()
    h.am.update(ALICE, [slice_urn()], GROWN, Options())
    h.am.update(ALICE, [slice_urn()], BASE, Options())
    assert set(_states(h).values()) == {("geni_provisioned", "geni_ready")}
    assert h.store.capacity_rows() == used
