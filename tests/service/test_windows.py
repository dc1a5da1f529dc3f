"""Advance reservations (geni_start_time / geni_end_time) on a fake site, clock injected."""
from __future__ import annotations

from datetime import timedelta

import pytest
from lxml import etree

from am.errors import GeniCode, GeniError
from am.service.aggregate import AUTO_PROVISION
from am.service.contract import Options, Principal
from tests.service.harness import ALICE, AM, AUTH, request, slice_urn

H = timedelta(hours=1)


def _exclusive(cid: str = "n", comp: str = "fake1") -> str:
    return request(f'<node client_id="{cid}" component_manager_id="{AM}" '
                   f'component_id="urn:publicid:IDN+{AUTH}+node+{comp}" exclusive="true">'
                   '<sliver_type name="xen-vm"/></node>')


def _window(h, start_h: float, end_h: float, **extra) -> Options:
    return Options(start_time=h.clock.now + start_h * H, end_time=h.clock.now + end_h * H,
                   extra=extra)


def _status(h, name: str):
    return h.am.status(ALICE, [slice_urn(name)], Options()).slivers


def test_overlapping_windows_refused_naming_the_first_adjacent_accepted(h):
    first = h.am.allocate(ALICE, slice_urn("one"), _exclusive(), _window(h, 2, 4))
    assert first.slivers[0].start_time == (h.clock.now + 2 * H).replace(microsecond=0)
    assert first.slivers[0].expires == (h.clock.now + 4 * H).replace(microsecond=0)
    with pytest.raises(GeniError) as err:
        h.am.allocate(ALICE, slice_urn("two"), _exclusive(), _window(h, 3, 5))
    assert err.value.code is GeniCode.INSUFFICIENT_NODES
    start, end = (f"{(h.clock.now + n * H):%Y-%m-%dT%H:%M:%SZ}" for n in (2, 4))
    assert start in err.value.message and end in err.value.message, err.value.message
    # adjacent on both sides: accepted
    h.am.allocate(ALICE, slice_urn("two"), _exclusive(), _window(h, 4, 6))
    h.am.allocate(ALICE, slice_urn("three"), _exclusive(), _window(h, 1, 2))
    # nothing is held now: an immediate exclusive Allocate of the node fits (for now)
    now = h.am.allocate(ALICE, slice_urn("four"), _exclusive(), Options())
    # ... but its lease cannot run into the first window: Provision caps it at its start
    prov = h.am.provision(ALICE, [slice_urn("four")], Options())
    assert prov.slivers[0].expires == (h.clock.now + 1 * H).replace(microsecond=0)
    assert now.slivers[0].start_time is None
    with pytest.raises(GeniError) as err:
        h.am.renew(ALICE, [slice_urn("four")], h.clock.now + 3 * H, Options())
    assert err.value.code is GeniCode.OUTOFRANGE and "reserved from" in err.value.message


def test_future_reservation_holds_nothing_now_and_cannot_be_provisioned_yet(h):
    h.am.allocate(ALICE, slice_urn("later"), _exclusive(), _window(h, 2, 4))
    assert all(u == 0 for *_, u in h.store.capacity_rows())
    status = _status(h, "later")
    assert status[0].start_time is not None
    desc = h.am.describe(ALICE, [slice_urn("later")], Options())
    assert desc.slivers[0].start_time == status[0].start_time
    with pytest.raises(GeniError) as err:
        h.am.provision(ALICE, [slice_urn("later")], Options())
    assert err.value.code is GeniCode.UNAVAILABLE
    assert f"{h.clock.now + 2 * H:%Y-%m-%dT%H:%M:%SZ}" in err.value.message
    with pytest.raises(GeniError) as err:
        h.am.perform_action(ALICE, [slice_urn("later")], "geni_start", Options())
    assert err.value.code is GeniCode.UNSUPPORTED
    h.am.renew(ALICE, [slice_urn("later")], h.clock.now + 5 * H, Options())
    assert _status(h, "later")[0].expires == (h.clock.now + 5 * H).replace(microsecond=0)
    h.am.delete(ALICE, [slice_urn("later")], Options())
    h.am.allocate(ALICE, slice_urn("other"), _exclusive(), _window(h, 3, 4))   # freed


def test_window_starts_holds_and_ends(h):
    h.am.allocate(ALICE, slice_urn("w"), _exclusive(), _window(h, 1, 2))
    h.clock.advance(3600)
    h.am.reap()
    assert any(u > 0 for *_, u in h.store.capacity_rows())     # held now
    with pytest.raises(GeniError) as err:                       # ... against immediate ones
        h.am.allocate(ALICE, slice_urn("x"), _exclusive(), Options())
    assert err.value.code is GeniCode.INSUFFICIENT_NODES
    h.am.provision(ALICE, [slice_urn("w")], Options())
    h.run_jobs()
    assert _status(h, "w")[0].operational_status == "geni_ready"
    assert _status(h, "w")[0].expires == (h.clock.now + H).replace(microsecond=0)
    h.clock.advance(3600)
    assert h.am.reap()                                           # ended at its end time
    h.run_jobs()
    assert h.driver.observed() == []
    assert all(u == 0 for *_, u in h.store.capacity_rows())


def test_auto_provision_at_start(h):
    h.am.allocate(ALICE, slice_urn("auto"), _exclusive(), _window(h, 1, 2, **{AUTO_PROVISION: True}))
    h.clock.advance(3599)
    h.am.reap()
    assert h.queue.submitted == []
    h.clock.advance(1)
    h.am.reap()
    assert len(h.queue.submitted) == 1
    h.run_jobs()
    assert _status(h, "auto")[0].operational_status == "geni_ready"


def test_bad_windows(h):
    cases = [((-1, 1), GeniCode.OUTOFRANGE, "not in the future"),
             ((2, 1), GeniCode.BADARGS, "not after"),
             ((1, 24 * 30), GeniCode.OUTOFRANGE, "longest lease")]
    for (a, b), code, text in cases:
        with pytest.raises(GeniError) as err:
            h.am.allocate(ALICE, slice_urn("bad"), _exclusive(), _window(h, a, b))
        assert err.value.code is code and text in err.value.message, err.value.message
    short = Principal(urn=ALICE.urn, credential_expires=h.clock.now + 3 * H)
    with pytest.raises(GeniError) as err:
        h.am.allocate(short, slice_urn("bad"), _exclusive(), _window(h, 2, 4))
    assert err.value.code is GeniCode.OUTOFRANGE and "credential" in err.value.message
    assert h.store.capacity_rows() and _no_slivers(h)


def _no_slivers(h) -> bool:
    from sqlalchemy import func, select

    from am.store import Sliver
    with h.store.read() as session:
        return session.scalar(select(func.count(Sliver.id))) == 0


def test_listresources_in_a_window(h):
    h.am.allocate(ALICE, slice_urn("ad"), _exclusive(), _window(h, 2, 4))
    ns = "{http://www.geni.net/resources/rspec/3}"

    def available(opts: Options) -> bool:
        ad = etree.fromstring(h.am.advertisement(opts).encode())
        node = next(n for n in ad.iter(ns + "node") if n.get("component_id").endswith("+fake1"))
        return node.find(ns + "available").get("now") == "true"

    assert available(Options())
    assert not available(Options(start_time=h.clock.now + 3 * H, end_time=h.clock.now + 5 * H))
    assert available(Options(start_time=h.clock.now + 4 * H, end_time=h.clock.now + 5 * H))


def test_expiring_soon_is_counted(h):
    from am.metrics import expiring_soon
    h.am.allocate(ALICE, slice_urn("soon"), _exclusive(), Options())
    assert expiring_soon(h.store, h.clock.now) == {"geni_allocated": 1}
    h.am.provision(ALICE, [slice_urn("soon")], Options())
    assert expiring_soon(h.store, h.clock.now) == {}


def test_calendar_and_find_slot_answer_is_bookable(h):
    first = h.clock.now.replace(minute=0, second=0, microsecond=0) + H
    # fake1 reserved for hours 1-3 and fake2 for hours 2-5 from the next whole hour
    h.am.allocate(ALICE, slice_urn("a"), _exclusive("n", "fake1"),
                  Options(start_time=first + H, end_time=first + 3 * H))
    h.am.allocate(ALICE, slice_urn("b"), _exclusive("n", "fake2"),
                  Options(start_time=first + 2 * H, end_time=first + 5 * H))
    cal = h.am.calendar(None, 8)
    assert cal["start"] == first
    free = {c["name"]: c["free"] for c in cal["components"] if c["resource"] == "cpu_milli"}
    assert free["fake1"] == [8000, 0, 0, 8000, 8000, 8000, 8000, 8000]
    assert free["fake2"] == [8000, 8000, 0, 0, 0, 8000, 8000, 8000]
    # two exclusive nodes on fake1 and fake2 for two hours: first fits from hour 5
    both = request(*(f'<node client_id="{c}" component_manager_id="{AM}" component_id='
                     f'"urn:publicid:IDN+{AUTH}+node+{c}" exclusive="true">'
                     '<sliver_type name="xen-vm"/></node>' for c in ("fake1", "fake2")))
    start, end = h.am.find_slot(ALICE, both, 2 * 3600, None, 24)
    assert (start, end) == (first + 5 * H, first + 7 * H)
    booked = h.am.allocate(ALICE, slice_urn("c"), both, Options(start_time=start, end_time=end))
    assert {i.start_time for i in booked.slivers} == {start}
    with pytest.raises(GeniError) as err:    # an hour earlier would not have fitted
        h.am.allocate(ALICE, slice_urn("d"), both,
                      Options(start_time=start - H, end_time=end - H))
    assert err.value.code is GeniCode.INSUFFICIENT_NODES
    assert h.am.find_slot(ALICE, both, 2 * 3600, None, 3) is None


def test_find_slot_skipping_agrees_with_placing_every_window(h):
    """find-slot skips windows it can prove full (admission is monotone); its answers for
    long and short requests over a busy day equal a scan placing every window."""
    from am.engine import place as engine_place
    from am.service.calendar import Timeline

    first = h.clock.now.replace(minute=0, second=0, microsecond=0) + H
    busy = [("fake1", 0, 9), ("fake2", 3, 14), ("fake3", 0, 2), ("fake3", 12, 13),
            ("fake1", 15, 16), ("fake2", 20, 22)]
    for i, (comp, a, b) in enumerate(busy):
        h.am.allocate(ALICE, slice_urn(f"busy{i}"), _exclusive("n", comp),
                      Options(start_time=first + a * H, end_time=first + b * H))
    two = request(*(f'<node client_id="n{i}" component_manager_id="{AM}" exclusive="true">'
                    '<sliver_type name="xen-vm"/></node>' for i in range(2)))
    for hours in (1, 2, 5, 8, 10, 12):
        tl = Timeline.load(h.store, first, H, 48 + hours)
        naive = next((k for k in range(48) if engine_place(
            h.am._parse(two), h.site, tl.usage_of(k, k + hours),
            slice_urn=slice_urn("probe"), mint_sliver_urn=h.am._mint).ok), None)
        found = h.am.find_slot(ALICE, two, hours * 3600, None, 48)
        assert naive is not None and found == (first + naive * H, first + (naive + hours) * H), \
            (hours, naive, found)
