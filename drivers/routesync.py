"""Keeping a forwarding plane in step with the routes a virtual router's control plane holds.

A hybrid virtual router routes in one place (a Xen VM, a container) and forwards in another
(Dom0, a NetFPGA slot, an OpenFlow switch). The AM is the glue: it knows the control plane's
route set and makes the forwarding table equal to it at start, on every route change, and
empties it at stop and delete. Every plane is a small `ForwardingPlane` (install / remove /
read), so the diff-and-apply below is written once and each backend stays a thin adapter.

The control plane's route set is kept per sliver in a `ControlPlaneRoutes` file: it starts as
the request's routes and is replaced by what an operational action pushes. (Reading routes out
of a running guest's routing daemon is not done here; see docs/xen.md.)
"""
from __future__ import annotations

import ipaddress
import json
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rspec.model import Route


#: The operational action that pushes a route change (option `ROUTES_OPTION`) or, without
#: the option, re-syncs the forwarding plane with the control plane's current routes.
SYNC_ROUTES_ACTION = "geniam_sync_routes"
#: The PerformOperationalAction option carrying the control plane's new route set.
ROUTES_OPTION = "geniam_routes"


class RouteError(ValueError):
    """A route is malformed (bad prefix, bad gateway); the message names the route."""


class RouteTableFull(RouteError):
    """More routes than the forwarding plane's table holds (GENI code TOOBIG)."""


@dataclass(frozen=True, order=True)
class FibEntry:
    """A route as a forwarding table holds it: a normalised prefix, next hop and out-device.

    `device` is the plane's own name for the egress (a Dom0 vif, a NetFPGA port); `None`
    gateway means directly connected.
    """

    prefix: str                # "10.2.0.0/24" (host bits cleared)
    gateway: str | None = None
    device: str | None = None

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.prefix)


def _canonical_v4(text: str) -> int | None:
    """The address as an integer if `text` is already a canonical dotted quad, else None
    (then `ipaddress` decides, with its error messages). inet_aton/inet_ntoa are C: a
    10,000-route sync parses 20,000 addresses, which `ipaddress` made the bulk of its time."""
    try:
        packed = socket.inet_aton(text)
    except (OSError, TypeError, ValueError):
        return None
    return int.from_bytes(packed, "big") if socket.inet_ntoa(packed) == text else None


def _fast_normalise(route: Route) -> Route | None:
    """`normalise` for a route already in canonical form (the common case: what the request
    parser, a route push or a stored set hands over); None when it is not (slow path)."""
    addr, slash, plen = route.destination.partition("/")
    if not slash or not plen.isdigit() or str(int(plen)) != plen or int(plen) > 32:
        return None
    ip = _canonical_v4(addr)
    if ip is None or ip & (0xFFFFFFFF >> int(plen)):          # host bits: the slow path says so
        return None
    gw = route.gateway
    if gw is not None and _canonical_v4(gw) is None:
        return None
    return route


def normalise(route: Route) -> Route:
    """The route with its prefix in canonical form; RouteError when it is not IPv4 CIDR.

    Host bits are refused rather than silently cleared: "10.0.0.1/24" is most likely a typo.
    """
    fast = _fast_normalise(route) if isinstance(route.destination, str) else None
    if fast is not None:
        return fast
    try:
        net = ipaddress.IPv4Network(route.destination, strict=True)
    except ValueError as exc:
        raise RouteError(f"route destination {route.destination!r} is not an IPv4 prefix: "
                         f"{exc}") from None
    gw = route.gateway
    if gw is not None:
        try:
            gw = str(ipaddress.IPv4Address(gw))
        except ValueError:
            raise RouteError(f"route to {route.destination}: gateway {gw!r} is not an IPv4 "
                             "address") from None
    return Route(destination=str(net), gateway=gw, interface=route.interface)


def normalise_all(routes: Iterable[Route]) -> tuple[Route, ...]:
    """Canonical, de-duplicated routes; two routes to one prefix are an error (one FIB slot)."""
    out: dict[str, Route] = {}
    for r in routes:
        n = normalise(r)
        prev = out.get(n.destination)
        if prev is not None and prev != n:
            raise RouteError(f"two different routes to {n.destination}: via {prev.gateway} and "
                             f"via {n.gateway}")
        out[n.destination] = n
    return tuple(out.values())


@dataclass(frozen=True)
class SyncResult:
    added: int
    removed: int
    kept: int


def sync(desired: Iterable[FibEntry], current: Iterable[FibEntry],
         add: Callable[[list[FibEntry]], None],
         remove: Callable[[list[FibEntry]], None]) -> SyncResult:
    """Make `current` equal `desired`: remove what is no longer wanted first (so a changed
    next hop for one prefix never meets its old entry), then add what is missing. Batches are
    sorted so planes see a deterministic order."""
    want = set(desired)
    have = set(current)
    stale = sorted(have - want)
    missing = sorted(want - have)
    if stale:
        remove(stale)
    if missing:
        add(missing)
    return SyncResult(added=len(missing), removed=len(stale), kept=len(want & have))


class ForwardingPlane(Protocol):
    """Where one virtual router's packets are forwarded; entries belong to that router only."""

    def install(self, entries: list[FibEntry]) -> None: ...
    def remove(self, entries: list[FibEntry]) -> None: ...
    def read(self) -> set[FibEntry]: ...
    def clear(self) -> None: ...


def sync_plane(plane: ForwardingPlane, desired: Iterable[FibEntry]) -> SyncResult:
    """Bring a plane's table to `desired` with the fewest changes."""
    return sync(desired, plane.read(), plane.install, plane.remove)


class RoutesDriver(Protocol):
    """What a driver offers to the AM for route changes of its routers.

    `check_routes` is pure (the AM calls it inside the PerformOperationalAction request, so a
    bad or over-size route set is refused before any state changes); `set_routes` replaces the
    control plane's route set and syncs a running router's forwarding plane (in the job)."""

    def check_routes(self, spec, routes: Iterable[Route]) -> tuple[Route, ...]: ...
    def set_routes(self, spec, routes: Iterable[Route]) -> SyncResult | None: ...


def accepts_routes(driver: object) -> bool:
    """True if `driver` declares route changes (`Capabilities.routes`: it implements
    `RoutesDriver`)."""
    return bool(getattr(getattr(driver, "capabilities", None), "routes", False))


class ControlPlaneRoutes:
    """The route set each router's control plane holds, one small JSON file per sliver.

    A file (not process memory) because the API server, job workers and the periodic sync run
    in different processes; writes are atomic (rename) so a reader never sees half a file.
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, handle: str) -> Path:
        return self.directory / f"{handle}.routes.json"

    def get(self, handle: str) -> tuple[Route, ...] | None:
        try:
            data = json.loads(self._path(handle).read_text())
        except FileNotFoundError:
            return None
        return tuple(Route(destination=r["destination"], gateway=r.get("gateway"),
                           interface=r.get("interface")) for r in data)

    def put(self, handle: str, routes: Iterable[Route]) -> tuple[Route, ...]:
        routes = normalise_all(routes)
        tmp = self._path(handle).with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps([{"destination": r.destination, "gateway": r.gateway,
                                    "interface": r.interface} for r in routes]))
        os.replace(tmp, self._path(handle))
        return routes

    def drop(self, handle: str) -> None:
        self._path(handle).unlink(missing_ok=True)


def parse_routes_option(value: object) -> tuple[Route, ...]:
    """Routes from an operational action's options: a list of {destination, gateway?,
    interface?} tables (the shape our RSpec extension uses). RouteError when malformed."""
    if not isinstance(value, (list, tuple)):
        raise RouteError("routes must be a list of {destination, gateway, interface} structs")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("destination"), str):
            raise RouteError(f"routes[{i}] must be a struct with a string 'destination'")
        for key in ("gateway", "interface"):
            if item.get(key) is not None and not isinstance(item[key], str):
                raise RouteError(f"routes[{i}].{key} must be a string")
        extra = set(item) - {"destination", "gateway", "interface"}
        if extra:
            raise RouteError(f"routes[{i}] has unknown key(s): {', '.join(sorted(extra))}")
        out.append(Route(destination=item["destination"], gateway=item.get("gateway"),
                         interface=item.get("interface")))
    return normalise_all(out)


__all__ = ["ControlPlaneRoutes", "FibEntry", "ForwardingPlane", "ROUTES_OPTION", "RouteError",
           "RouteTableFull", "RoutesDriver", "SYNC_ROUTES_ACTION", "SyncResult", "accepts_routes",
           "normalise", "normalise_all", "parse_routes_option", "sync", "sync_plane"]
