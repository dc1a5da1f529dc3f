"""The periodic route sync: every running virtual router's forwarding plane made equal to the
routes its control plane holds.

Route changes pushed through PerformOperationalAction are applied at once by their job; this
pass repairs drift in between (an operator flushed a Dom0 table, a card was reset, a job was
lost). It reads the store for live, ready slivers whose driver advertises
`geniam_sync_routes` and asks the driver to sync each one. It never changes a sliver's state
(nothing the experimenter asked for is happening) and never waits: a sliver whose lease a job
holds is skipped, since that job syncs on its own. A driver error is reported and logged; the
reconciler, not this pass, decides when a sliver has failed.

Run it on a timer in a worker process (see docs/hybrid-routers.md, "Periodic sync").
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from am.states import Alloc, Op
from am.store import Store, spec_from_dict, utcnow
from drivers.base import DriverError
from drivers.routesync import SYNC_ROUTES_ACTION

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drivers.registry import Site

log = logging.getLogger(__name__)


@dataclass
class RouteSyncReport:
    synced: list[str] = field(default_factory=list)        # sliver URNs brought in step
    busy: list[str] = field(default_factory=list)          # a job held the sliver: skipped
    failed: dict[str, str] = field(default_factory=dict)   # sliver URN -> driver's error

    def as_dict(self) -> dict:
        return {"synced": len(self.synced), "busy": len(self.busy), "failed": dict(self.failed)}


def _here(site, component_id: str) -> bool:
    """On a site of many hosts, each host's worker syncs only its own components' routers
    (and a process that is no host's agent only those on no host)."""
    if not getattr(site, "hosts", None):
        return True
    if getattr(site, "host", None) is not None:
        return site.component(component_id) is not None
    return site.host_of(component_id) is None


def sync_all_routers(store: Store, site: Site, *, worker_id: str = "route-sync",
                     lease_s: float = 120.0, now: datetime | None = None) -> RouteSyncReport:
    """Sync every live, ready router sliver of a driver that offers `geniam_sync_routes`."""
    kinds = {k for k, d in site.drivers.items() if SYNC_ROUTES_ACTION in d.capabilities.actions}
    report = RouteSyncReport()
    if not kinds:
        return report
    with store.read() as session:
        todo = [(row.id, row.urn, row.driver, spec_from_dict(row.spec))
                for row in store.live_slivers(session, now or utcnow())
                if row.driver in kinds and row.allocation_state == Alloc.PROVISIONED.value
                and row.operational_state == Op.READY.value and _here(site, row.component_id)]
    for sliver_id, urn, kind, spec in todo:
        if not store.acquire_lease(sliver_id, worker_id, None, lease_s):
            report.busy.append(urn)
            continue
        try:
            site.drivers[kind].perform(spec, SYNC_ROUTES_ACTION)
            report.synced.append(urn)
        except DriverError as exc:
            log.warning("route sync of %s failed: %s", urn, exc)
            report.failed[urn] = str(exc)
        except Exception as exc:   # noqa: BLE001 - one broken driver must not stop the pass
            log.exception("route sync of %s crashed", urn)
            report.failed[urn] = f"internal error: {type(exc).__name__}: {exc}"
        finally:
            store.release_lease(sliver_id, worker_id)
    return report


__all__ = ["RouteSyncReport", "sync_all_routers"]
