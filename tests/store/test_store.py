"""Store behaviour on SQLite and PostgreSQL: state writes, reservations, claims, leases, keys."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from am.states import Event, IllegalTransition
from am.store import (
    Claim,
    CodecError,
    ReservationConflict,
    Sliver,
    Store,
    StoreError,
    spec_from_dict,
    spec_to_dict,
    utcnow,
)
from drivers.base import (
    Component,
    InterfaceSpec,
    LinkEnd,
    LinkSpec,
    ResourceKind,
    SliverSpec,
    UserKeys,
)
from rspec.model import (
    ForwardingMode,
    IsolationClass,
    OFController,
    OFDatapath,
    OFMatch,
    OFPort,
    OpenFlowSliver,
    PacketMatch,
    Route,
)

NODE = "urn:publicid:IDN+test+node+n1"
SLICE = "urn:publicid:IDN+test:sa+slice+Demo"


def _spec(urn: str, **kw) -> SliverSpec:
    base = dict(sliver_urn=urn, slice_urn=SLICE, client_id="n", kind=ResourceKind.NODE,
                component_id=NODE)
    return SliverSpec(**{**base, **kw})


def _component(cap: dict[str, float], cid: str = NODE) -> Component:
    return Component(component_id=cid, name="n1", driver="fake",
                     isolation=IsolationClass.HARDWARE, capacity=cap)


def _sliver(store: Store, session, urn: str, slice_urn: str = SLICE) -> Sliver:
    slc = store.get_or_create_slice(session, slice_urn, "urn:publicid:IDN+test+user+alice")
    row = Sliver(urn=urn, slice=slc, client_id="n", kind="node", driver="fake", component_id=NODE,
                 allocation_state="geni_unallocated", operational_state=None,
                 expires=utcnow() + timedelta(minutes=10), spec=spec_to_dict(_spec(urn)),
                 element_xml="", facts={}, error="", resource_status="")
    session.add(row)
    store.transition(session, row, Event.ALLOCATE)
    return row


def test_codec_round_trips_a_rich_spec():
    spec = SliverSpec(
        sliver_urn="urn:publicid:IDN+a+sliver+1", slice_urn=SLICE, client_id="r1",
        kind=ResourceKind.FLOWSPACE, component_id=NODE, sliver_type="xen-vm", cpu=0.5,
        memory_mb=256, router=True, forwarding=ForwardingMode.DOM0,
        interfaces=(InterfaceSpec("r1:if0", "eth1", ips=(("10.0.0.1", "255.255.255.0"),),
                                  mac="02:00:00:00:00:01", vlan_tag=101),),
        routes=(Route("10.2.0.0/24", "10.0.0.2"),),
        users=(UserKeys("urn:publicid:IDN+a+user+bob", ("ssh-rsa AAA",)),),
        link=LinkSpec(ends=(LinkEnd("s", "n", "n:if0", NODE),), capacity_kbps=1000,
                      vlan_tag=5, mode="vlan"),
        openflow=OpenFlowSliver(controllers=(OFController("tcp:127.0.0.1:6653"),),
                                matches=(OFMatch(datapaths=(OFDatapath("dp", ports=(OFPort(1),)),),
                                                 packet=PacketMatch(dl_vlan=(5,), nw_proto=(6,))),)),
        params={"image": "x", "n": 2})
    data = spec_to_dict(spec)
    import json
    assert spec_from_dict(json.loads(json.dumps(data))) == spec
    # one param read straight off the stored row agrees with the decoded spec
    from am.store.codec import stored_param
    stored = json.loads(json.dumps(data))
    assert stored_param(stored, "image") == spec.params["image"] == "x"
    assert stored_param(stored, "absent") is None
    assert stored_param({"params": None}, "image") is None


def test_codec_rejects_corrupt_rows():
    data = spec_to_dict(_spec("urn:publicid:IDN+a+sliver+1"))
    with pytest.raises(CodecError, match="unknown fields"):
        spec_from_dict({**data, "evil": 1})
    with pytest.raises(CodecError, match="kind"):
        spec_from_dict({**data, "kind": "spaceship"})
    with pytest.raises(CodecError, match="cpu"):
        spec_from_dict({**data, "cpu": "lots"})


def test_transition_goes_through_the_table(store: Store):
    with store.write() as session:
        row = _sliver(store, session, "urn:publicid:IDN+test+sliver+a")
    with store.write() as session:
        row = session.get(Sliver, row.id)
        assert (row.allocation_state, row.operational_state) == ("geni_allocated",
                                                                 "geni_pending_allocation")
        version = row.version
        with pytest.raises(IllegalTransition):
            store.transition(session, row, Event.START)
        assert row.allocation_state == "geni_allocated"
        store.transition(session, row, Event.PROVISION)
    with store.read() as session:
        row = session.get(Sliver, row.id)
        assert row.allocation_state == "geni_provisioned"
        assert row.version > version


def test_capacity_check_refuses_overbooking_and_release_restores(store: Store):
    store.sync_capacity([_component({"cpu": 2.0})])
    with store.write() as session:
        a = _sliver(store, session, "urn:publicid:IDN+test+sliver+a")
        store.reserve(session, a, {"cpu": 1.5}, ())
    with pytest.raises(ReservationConflict, match="cpu capacity on .* was taken"):
        with store.write() as session:
            b = _sliver(store, session, "urn:publicid:IDN+test+sliver+b")
            store.reserve(session, b, {"cpu": 1.0}, ())
    assert store.capacity_rows() == [(NODE, "cpu", 2.0, 1.5)]
    with store.read() as session:   # the losing transaction left nothing behind
        assert session.scalar(select(Sliver).where(Sliver.urn.like("%+b"))) is None
        assert store.usage(session)[NODE].used == {"cpu": 1.5}
    with store.write() as session:
        a = session.get(Sliver, a.id)
        store.release(session, a)
        store.release(session, a)   # idempotent
    assert store.capacity_rows() == [(NODE, "cpu", 2.0, 0.0)]


def test_unknown_resource_is_an_error(store: Store):
    store.sync_capacity([_component({"cpu": 2.0})])
    with pytest.raises(StoreError, match="no recorded 'gpu'"):
        with store.write() as session:
            store.reserve(session, _sliver(store, session, "urn:publicid:IDN+t+sliver+g"),
                          {"gpu": 1}, ())


def test_claims_are_unique_per_component(store: Store):
    with store.write() as session:
        a = _sliver(store, session, "urn:publicid:IDN+test+sliver+a")
        store.reserve(session, a, {}, ("vlan:101",))
    with pytest.raises(ReservationConflict) as info:
        with store.write() as session:
            store.reserve(session, _sliver(store, session, "urn:publicid:IDN+test+sliver+b"),
                          {}, ("vlan:101",))
    assert info.value.kind == "claim"
    with store.write() as session:
        store.release(session, session.get(Sliver, a.id))
    with store.write() as session:
        store.reserve(session, _sliver(store, session, "urn:publicid:IDN+test+sliver+c"),
                      {}, ("vlan:101",))
    with store.read() as session:
        assert len(session.scalars(select(Claim)).all()) == 1


def test_sync_capacity_keeps_used_and_warns_when_shrinking(store: Store):
    store.sync_capacity([_component({"cpu": 4.0})])
    with store.write() as session:
        store.reserve(session, _sliver(store, session, "urn:publicid:IDN+t+sliver+a"), {"cpu": 3}, ())
    warnings = store.sync_capacity([_component({"cpu": 2.0})])
    assert warnings and "below" in warnings[0]
    assert store.capacity_rows() == [(NODE, "cpu", 3.0, 3.0)]


def test_slice_urns_match_case_insensitively_and_retire(store: Store):
    with store.write() as session:
        s1 = store.get_or_create_slice(session, SLICE, "u")
        s2 = store.get_or_create_slice(session, SLICE.upper().replace("URN:PUBLICID:IDN", "urn:publicid:IDN"), "u")
        assert s1.id == s2.id
        assert store.retire_empty_slices(session) == 1
    with store.write() as session:
        assert store.find_slice(session, SLICE) is None
        s3 = store.get_or_create_slice(session, SLICE, "u")
        assert s3.id != s1.id


def test_times_are_aware_utc(store: Store):
    with store.write() as session:
        row = _sliver(store, session, "urn:publicid:IDN+t+sliver+a")
        row.expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    with store.read() as session:
        assert session.get(Sliver, row.id).expires == datetime(2030, 1, 2, 1, 4, 5, tzinfo=timezone.utc)
    with pytest.raises(Exception, match="naive"):
        with store.write() as session:
            session.get(Sliver, row.id).expires = datetime(2030, 1, 1)


def test_leases_exclude_and_expire(store: Store):
    with store.write() as session:
        row = _sliver(store, session, "urn:publicid:IDN+t+sliver+a")
    assert store.acquire_lease(row.id, "w1", 1, ttl_s=60)
    assert not store.acquire_lease(row.id, "w2", 2, ttl_s=60)
    assert store.acquire_lease(row.id, "w1", 1, ttl_s=60)   # re-entrant for the owner
    later = utcnow() + timedelta(seconds=61)
    assert store.acquire_lease(row.id, "w2", 2, ttl_s=60, now=later)   # crashed w1: taken over
    assert store.lease_holder(row.id)[0] == "w2"
    store.release_lease(row.id, "w1")          # not the owner any more: no effect
    assert store.lease_holder(row.id)[0] == "w2"
    store.release_lease(row.id, "w2")
    assert store.lease_holder(row.id) is None


def test_user_keys_replace_listed_users_only(store: Store):
    with store.write() as session:
        slc = store.get_or_create_slice(session, SLICE, "u")
        store.put_user_keys(session, slc.id, [UserKeys("urn:a+user+al", ("k1", "k2")),
                                              UserKeys("urn:a+user+bo", ("k3",))])
        store.put_user_keys(session, slc.id, [UserKeys("urn:a+user+al", ("k9",))])
        keys = {u.urn: u.keys for u in store.user_keys(session, slc.id)}
    assert keys == {"urn:a+user+al": ("k9",), "urn:a+user+bo": ("k3",)}


def test_live_clause_hides_expired_slivers(store: Store):
    with store.write() as session:
        row = _sliver(store, session, "urn:publicid:IDN+t+sliver+a")
        row.expires = utcnow() - timedelta(seconds=1)
    with store.read() as session:
        assert store.live_slivers(session, utcnow()) == []
        assert store.live_slivers(session, utcnow() - timedelta(seconds=5))[0].urn == row.urn
