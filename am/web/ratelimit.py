"""How fast the dashboard token may be guessed: failed attempts limited per client and in total.

The dashboard token is one shared secret that anyone who reaches the login form may try, so
failed attempts are counted in sliding windows: at most `per_address` failures per client
address and `overall` failures from all addresses together within `window_s` seconds (a
distributed guesser is slowed as well). Over either limit an attempt is refused *before* the
token is compared, so even the right token is refused during a lockout: otherwise the answer
to a locked-out guess would still say whether it was right.

An attempt is counted as failed when it begins (`begin`) and un-counted if the token was right
(`succeeded`): concurrent guesses from many request threads can never slip past the limit
between the check and the count. A success un-counts only its own attempt; it does not clear
the earlier failures of its address, nor touch any other address.

Memory is bounded: each address keeps at most `per_address` timestamps, the total at most
`overall`, and at most `max_addresses` addresses are tracked (the least recently active is
forgotten first; entries whose window has passed are dropped as time moves on).

Who the client is: `client_address` follows `am.auth.CallerSource`'s rule of trust. Only a
request whose peer is one of the `trusted_proxies` is attributed to the address that proxy
forwards (the last `X-Forwarded-For` entry, the one the proxy itself added); anyone else's
`X-Forwarded-For` is ignored, so a guesser cannot pick a fresh address per request. IPv6
clients are counted per /64, the block one host usually controls.
"""
from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

FORWARDED_FOR_HEADER = "X-Forwarded-For"
_FORWARDED_FOR_ENVIRON = "HTTP_X_FORWARDED_FOR"
MAX_TRACKED_ADDRESSES = 10_000
IPV6_PREFIX = 64


def client_address(environ: Mapping[str, Any], trusted_proxies: Collection[str]) -> str:
    """The address failed attempts are counted against: the direct peer, or, when the peer is
    a trusted proxy, the client address it forwards in `X-Forwarded-For` (its last entry). A
    trusted proxy that forwards none (or garbage) is counted as itself: its clients then share
    one allowance, which errs on the side of limiting."""
    remote = str(environ.get("REMOTE_ADDR", ""))
    if remote in trusted_proxies:
        forwarded = str(environ.get(_FORWARDED_FOR_ENVIRON, "")).rsplit(",", 1)[-1]
        client = _normalised(forwarded.strip())
        if client:
            return client
    return _normalised(remote) or remote or "unknown"


def _normalised(text: str) -> str | None:
    """A canonical spelling of an IP address (IPv6 as its /64), or None if it is not one."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        network = ipaddress.IPv6Network((address.packed, IPV6_PREFIX), strict=False)
        return str(network)
    return str(address)


@dataclass(frozen=True)
class Attempt:
    """A token attempt let through and counted as failed until `LoginLimiter.succeeded`."""

    address: str
    at: float


@dataclass(frozen=True)
class Lockout:
    """A refused attempt: the token must not be evaluated. `scope` is "address" (this client's
    limit) or "global" (all clients together); `report` is true for the first refusal of this
    scope (and address) in a window: log and count that one, not every attempt."""

    address: str
    scope: str
    retry_after_s: float
    report: bool

    @property
    def retry_after_header(self) -> str:
        """Whole seconds for `Retry-After` (at least 1)."""
        return str(max(1, math.ceil(self.retry_after_s)))


@dataclass
class _Tracked:
    failures: deque[float] = field(default_factory=deque)
    reported_at: float | None = None
    seen: float = 0.0          # last failure or report: entries are kept in this order


class LoginLimiter:
    """Sliding-window limits on failed token attempts; thread-safe; `clock` is monotonic
    seconds (tests inject their own)."""

    def __init__(self, *, per_address: int, overall: int, window_s: float,
                 max_addresses: int = MAX_TRACKED_ADDRESSES,
                 clock: Callable[[], float] = time.monotonic):
        for name, value in (("per_address", per_address), ("overall", overall),
                            ("max_addresses", max_addresses)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive whole number, not {value!r}")
        if (isinstance(window_s, bool) or not isinstance(window_s, (int, float))
                or not math.isfinite(window_s) or window_s <= 0):
            raise ValueError(f"window_s must be a positive finite number, not {window_s!r}")
        self.per_address = per_address
        self.overall = overall
        self.window_s = float(window_s)
        self.max_addresses = max_addresses
        self.clock = clock
        self._addresses: OrderedDict[str, _Tracked] = OrderedDict()
        self._all: deque[float] = deque()
        self._global_reported_at: float | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any, *,
                      clock: Callable[[], float] = time.monotonic) -> "LoginLimiter":
        return cls(per_address=settings.dashboard_login_attempts,
                   overall=settings.dashboard_login_global_attempts,
                   window_s=settings.dashboard_login_window_s, clock=clock)

    @property
    def tracked_addresses(self) -> int:
        with self._lock:
            return len(self._addresses)

    def begin(self, address: str) -> Attempt | Lockout:
        """Before a token is compared: a `Lockout` (do not compare it), or an `Attempt`, already
        counted as failed; call `succeeded` with it if the token was right."""
        with self._lock:
            now = self.clock()
            horizon = now - self.window_s
            self._forget_before(horizon)
            tracked = self._addresses.get(address)
            if tracked is not None:
                _drop_until(tracked.failures, horizon)
                if len(tracked.failures) >= self.per_address:
                    report = tracked.reported_at is None or tracked.reported_at <= horizon
                    if report:
                        tracked.reported_at = now
                        self._touch(address, tracked, now)
                    return Lockout(address, "address", tracked.failures[0] - horizon, report)
            if len(self._all) >= self.overall:
                report = self._global_reported_at is None or self._global_reported_at <= horizon
                if report:
                    self._global_reported_at = now
                return Lockout(address, "global", self._all[0] - horizon, report)
            if tracked is None:
                tracked = self._addresses[address] = _Tracked()
            tracked.failures.append(now)
            self._all.append(now)
            self._touch(address, tracked, now)
            while len(self._addresses) > self.max_addresses:
                self._addresses.popitem(last=False)
            return Attempt(address, now)

    def succeeded(self, attempt: Attempt) -> None:
        """The attempt's token was right: it no longer counts as a failure."""
        with self._lock:
            tracked = self._addresses.get(attempt.address)
            if tracked is not None:
                _remove_one(tracked.failures, attempt.at)
            _remove_one(self._all, attempt.at)

    def _touch(self, address: str, tracked: _Tracked, now: float) -> None:
        tracked.seen = now
        self._addresses.move_to_end(address)

    def _forget_before(self, horizon: float) -> None:
        """Drop failures that left the window, and addresses with nothing left in it."""
        _drop_until(self._all, horizon)
        while self._addresses:
            address, tracked = next(iter(self._addresses.items()))
            if tracked.seen > horizon:
                break
            del self._addresses[address]


def _drop_until(times: deque[float], horizon: float) -> None:
    while times and times[0] <= horizon:
        times.popleft()


def _remove_one(times: deque[float], at: float) -> None:
    try:
        times.remove(at)
    except ValueError:
        pass     # already out of the window, or its address was forgotten


__all__ = ["Attempt", "FORWARDED_FOR_HEADER", "LoginLimiter", "Lockout",
           "MAX_TRACKED_ADDRESSES", "client_address"]
