"""Tunnel ids (am.store.tunnels): both halves of a cross-host link read one VNI, VNIs are
unique site-wide (the lowest free one is taken; a race settles at the insert), and the VNI is
freed only when the link's last live half is gone."""
from __future__ import annotations

from datetime import timedelta

from am.states import Event
from am.store import Sliver, Store, tunnels, utcnow

ALICE = "urn:publicid:IDN+test+user+alice"


def _half(store: Store, session, slice_urn: str, client_id: str, n: int) -> Sliver:
    slc = store.get_or_create_slice(session, slice_urn, ALICE)
    session.flush()
    row = Sliver(urn=f"{slice_urn}+{client_id}+{n}", slice=slc, client_id=client_id,
                 kind="link", driver="vserver", component_id=f"urn:vs{n}",
                 allocation_state="geni_unallocated", operational_state=None,
                 expires=utcnow() + timedelta(minutes=10),
                 spec={"link": {"mode": "tunnel"}, "params": {}}, element_xml="", facts={},
                 error="", resource_status="")
    session.add(row)
    store.transition(session, row, Event.ALLOCATE)
    return row


def test_halves_share_a_vni_unique_site_wide_freed_with_the_last_half(store: Store):
    s1, s2 = "urn:publicid:IDN+test+slice+t1", "urn:publicid:IDN+test+slice+t2"
    with store.write() as session:
        a, b = _half(store, session, s1, "cross", 0), _half(store, session, s1, "cross", 1)
        slc = a.slice
        assert tunnels.claim(session, slc, "cross") == 1
        assert tunnels.claim(session, slc, "cross") == 1         # the other half: the same
        other = _half(store, session, s2, "cross", 0)
        assert tunnels.claim(session, other.slice, "cross") == 2  # another link: the next one
    with store.write() as session:
        a, b = (session.get(Sliver, a.id), session.get(Sliver, b.id))
        store.transition(session, a, Event.DELETE)
        tunnels.release(session, [a])                # one half left: the VNI is still held
        assert sorted(tunnels.held(session).values()) == [1, 2]
        store.transition(session, b, Event.DELETE)
        tunnels.release(session, [b])
        assert sorted(tunnels.held(session).values()) == [2]
    with store.write() as session:     # the freed id is the lowest free one again
        again = _half(store, session, "urn:publicid:IDN+test+slice+t3", "x", 0)
        assert tunnels.claim(session, again.slice, "x") == 1


def test_a_vni_taken_meanwhile_is_skipped(store: Store, monkeypatch):
    """The loser of a race for a VNI takes the next free one: it read the ids before the
    winner committed, its insert fails on the unique id (inside a savepoint) and the rest of
    its transaction goes on."""
    with store.write() as session:
        winner = _half(store, session, "urn:publicid:IDN+test+slice+r1", "cross", 0)
        assert tunnels.claim(session, winner.slice, "cross") == 1
    monkeypatch.setattr(tunnels, "_taken", lambda session: set())   # read before that commit
    with store.write() as session:
        loser = _half(store, session, "urn:publicid:IDN+test+slice+r2", "cross", 0)
        assert tunnels.claim(session, loser.slice, "cross") == 2
        assert loser.id is not None and session.get(Sliver, loser.id) is loser   # still there
    with store.read() as session:
        assert sorted(tunnels.held(session).values()) == [1, 2]
