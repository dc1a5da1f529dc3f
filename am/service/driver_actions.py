"""Operational actions a driver advertises beyond the GENI ones (`Capabilities.actions`).

PerformOperationalAction accepts such an action when the sliver's driver lists it; the POA
options the action takes are checked here, in the request (pure driver calls, no substrate),
so a malformed or over-size route set is refused with BADARGS / TOOBIG before any state
changes. What passes is carried into the job's args for `am.jobs.runner`.

Options known today: `geniam_routes` (a list of {destination, gateway?, interface?} structs),
the route set a virtual router's control plane now holds.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from am.errors import GeniCode, GeniError
from drivers.base import SliverSpec
from drivers.routesync import (
    ROUTES_OPTION,
    RouteError,
    RouteTableFull,
    accepts_routes,
    parse_routes_option,
)

GENI_ACTIONS = frozenset({"geni_start", "geni_stop", "geni_restart", "geni_update_users",
                          "geni_updating_users_cancel"})
#: POA options a driver action may take, carried into the job (others are not stored).
ACTION_OPTIONS = (ROUTES_OPTION,)


def advertised_actions(site: Any) -> tuple[str, ...]:
    """Every non-GENI action some configured driver advertises, sorted."""
    found = {a for d in site.drivers.values() for a in d.capabilities.actions}
    return tuple(sorted(found - GENI_ACTIONS))


def job_options(action: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options of `options` (the POA's, as given) that a driver action takes; BADARGS
    when one is malformed. Routes are stored normalised (the job re-validates them)."""
    out: dict[str, Any] = {}
    if ROUTES_OPTION in options:
        try:
            routes = parse_routes_option(options[ROUTES_OPTION])
        except RouteError as exc:
            raise GeniError(GeniCode.BADARGS, f"option {ROUTES_OPTION}: {exc}") from None
        out[ROUTES_OPTION] = [{"destination": r.destination, "gateway": r.gateway,
                               "interface": r.interface} for r in routes]
    return out


def check_for_sliver(driver: Any, spec: SliverSpec, sliver_urn: str,
                     opts: Mapping[str, Any]) -> None:
    """Refuse (GeniError) options this sliver's driver cannot take: a route set for a driver
    without routers, one naming an interface the node lacks, one larger than its table."""
    if ROUTES_OPTION not in opts:
        return
    if driver is None or not accepts_routes(driver):
        raise GeniError(GeniCode.BADARGS, f"sliver {sliver_urn} does not take option "
                                          f"{ROUTES_OPTION} (its driver keeps no routes)")
    routes = parse_routes_option(opts[ROUTES_OPTION])
    try:
        driver.check_routes(spec, routes)
    except RouteTableFull as exc:
        raise GeniError(GeniCode.TOOBIG, f"sliver {sliver_urn}: {exc}") from None
    except RouteError as exc:
        raise GeniError(GeniCode.BADARGS, f"sliver {sliver_urn}: {exc}") from None
    except Exception as exc:   # noqa: BLE001 - e.g. DriverError: component gone from inventory
        raise GeniError(GeniCode.ERROR, f"sliver {sliver_urn}: {exc}") from None


__all__ = ["ACTION_OPTIONS", "GENI_ACTIONS", "advertised_actions", "check_for_sliver",
           "job_options"]
