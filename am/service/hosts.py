"""What the API says and does about the site's hosts (a site of many machines).

The API process never asks a host anything: it reads the hosts' heartbeats from the database
(`am.store.hosts`) and decides from them, at most once per `REFRESH_S`:

  * ListResources: a component on a host that is not up is `available now="false"`, and its
    `geniam:component` says the host, its state and why;
  * Allocate: placement sees only the components of hosts that are up (a component named
    in the request on a down host is refused, naming the host);
  * Status: a provisioned sliver on a host that is not up reports, without changing what is
    stored, `geni_notready` while its job waits ("waiting: host hostA unreachable since T")
    and `geni_failed` if it was running ("host hostA unreachable since T"): never a
    transient state nobody is working on. Once the host beats again the stored state shows.
"""
from __future__ import annotations

import copy
import threading
import time

from am.states import Alloc, Op
from am.store.hosts import UP, HostRepository, HostView

REFRESH_S = 1.0

#: stored operational states in which a job is (or will be) working on the sliver
_WAITING = {op.value for op in (Op.PENDING_ALLOCATION, Op.CONFIGURING, Op.STOPPING,
                                Op.UPDATING_USERS)}


class SiteHosts:
    """The hosts' states as the API sees them, refreshed from the database."""

    def __init__(self, store, site, *, down_after_s: float):
        self.site = site
        self.repo = HostRepository(store, down_after_s=down_after_s)
        self._lock = threading.Lock()
        self._views: dict[str, HostView] = {}
        self._read_at = -1e9

    @property
    def active(self) -> bool:
        return bool(getattr(self.site, "hosts", None))

    def views(self) -> dict[str, HostView]:
        if not self.active:
            return {}
        with self._lock:
            if time.monotonic() - self._read_at >= REFRESH_S:
                self._views = self.repo.views(sorted(self.site.hosts))
                self._read_at = time.monotonic()
            return self._views

    def not_up(self) -> dict[str, HostView]:
        return {name: v for name, v in self.views().items() if v.state != UP}

    def key(self) -> tuple:
        """What the advertisement depends on (its cache is keyed by it too)."""
        return tuple(sorted((n, v.state) for n, v in self.views().items()))

    def component_hosts(self) -> dict[str, tuple[str, str, str]]:
        """component URN -> (host, state, why unavailable) for the advertisement."""
        views = self.views()
        out: dict[str, tuple[str, str, str]] = {}
        for comp in self.site.components:
            host = self.site.host_of(comp.component_id)
            if host is None or host not in views:
                continue
            view = views[host]
            out[comp.component_id] = (host, view.state, view.why())
        return out

    def blocked(self, component_id: str) -> HostView | None:
        """The host view if the component's host is not up, else None."""
        host = self.site.host_of(component_id)
        if host is None:
            return None
        view = self.views().get(host)
        return view if view is not None and view.state != UP else None

    def placement_site(self):
        """The site placement may use: without the components of hosts that are not up."""
        down = self.not_up()
        if not down:
            return self.site
        keep = [c for c in self.site.components if self.site.host_of(c.component_id) not in down]
        view = copy.copy(self.site)
        view.__dict__ = dict(self.site.__dict__)
        for attr in ("by_sliver_type",):
            view.__dict__.pop(attr, None)
        view.__dict__["components"] = keep
        return view

    def status_override(self, row) -> tuple[str, str] | None:
        """(operational state, error) a provisioned sliver on a host that is not up reports
        instead of the stored ones; None: the stored state stands."""
        if row.allocation_state != Alloc.PROVISIONED.value:
            return None
        view = self.blocked(row.component_id)
        if view is None:
            return None
        if row.operational_state in _WAITING:
            return Op.NOTREADY.value, f"waiting: {view.why()}"
        if row.operational_state == Op.FAILED.value:
            return None
        return Op.FAILED.value, view.why()


__all__ = ["REFRESH_S", "SiteHosts"]
