"""The generic diff-and-apply of route sync, and route parsing."""
from __future__ import annotations

import pytest

from drivers.routesync import FibEntry, RouteError, normalise_all, parse_routes_option, sync
from rspec.model import Route


def test_sync_removes_stale_before_adding_missing():
    calls = []
    cur = {FibEntry("10.0.0.0/8", "1.1.1.1", "a"), FibEntry("10.1.0.0/16", None, "a")}
    want = {FibEntry("10.0.0.0/8", "1.1.1.2", "a"), FibEntry("10.1.0.0/16", None, "a")}
    res = sync(want, cur, lambda e: calls.append(("add", e)), lambda e: calls.append(("rm", e)))
    assert calls == [("rm", [FibEntry("10.0.0.0/8", "1.1.1.1", "a")]),
                     ("add", [FibEntry("10.0.0.0/8", "1.1.1.2", "a")])]
    assert (res.added, res.removed, res.kept) == (1, 1, 1)
    assert sync(want, want, calls.append, calls.append).added == 0 and len(calls) == 2


def test_route_validation():
    assert normalise_all([Route("10.0.0.0/8"), Route("10.0.0.0/8")]) == (Route("10.0.0.0/8"),)
    with pytest.raises(RouteError, match="two different routes"):
        normalise_all([Route("10.0.0.0/8", "1.1.1.1"), Route("10.0.0.0/8", "1.1.1.2")])
    with pytest.raises(RouteError, match="gateway"):
        normalise_all([Route("10.0.0.0/8", "x")])
    assert parse_routes_option([{"destination": "10.0.0.0/8", "gateway": "1.1.1.1"}]) == \
        (Route("10.0.0.0/8", "1.1.1.1"),)
    for bad in ("x", [1], [{"destination": "10.0.0.0/8", "via": "1.1.1.1"}],
                [{"destination": "10.0.0.0/8", "gateway": 5}]):
        with pytest.raises(RouteError):
            parse_routes_option(bad)


@pytest.mark.parametrize("destination", ["10.0.0.0/24", "10.0.0.1/24", "0.0.0.0/0", "10.0.0.0/024",
                                         "10.0.0.0", "1.2.3/24", "10.0.0.0/33", "010.0.0.0/8",
                                         "255.255.255.255/32", "10.1.0.0/15", "a/24", "10.0.0.0/+8"])
@pytest.mark.parametrize("gateway", [None, "10.0.0.1", "10.0.0.01", "1.2.3", "0x0a000001"])
def test_normalise_matches_ipaddress_on_every_form(destination, gateway):
    """The canonical-form fast path (inet_aton) gives what the ipaddress path gives, and the
    same refusals, for canonical and non-canonical spellings alike."""
    import ipaddress

    try:
        want = Route(str(ipaddress.IPv4Network(destination, strict=True)),
                     str(ipaddress.IPv4Address(gateway)) if gateway else None)
    except ValueError:
        with pytest.raises(RouteError):
            normalise_all([Route(destination, gateway)])
    else:
        assert normalise_all([Route(destination, gateway)]) == (want,)
