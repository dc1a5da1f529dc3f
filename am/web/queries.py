"""What the dashboard shows, read from the store as plain dataclasses (no ORM objects leak
into templates, so a template can never trigger a lazy load or a write)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from am.states import Alloc, Op
from am.store import Slice, Sliver, Store, utcnow
from am.store.audit import AuditRecord

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drivers.registry import Site

AUDIT_PAGE_SIZE = 50
FAILURES_LIMIT = 200


@dataclass(frozen=True)
class Usage:
    """One resource's use: `resource` is e.g. cpu, memory_mb, kbps."""

    resource: str
    used: float
    capacity: float

    @property
    def percent(self) -> float:
        return 0.0 if self.capacity <= 0 else min(100.0, 100.0 * self.used / self.capacity)


@dataclass(frozen=True)
class ComponentUsage:
    component_id: str
    name: str
    driver: str
    resources: tuple[Usage, ...]


@dataclass(frozen=True)
class DriverUsage:
    driver: str
    components: int
    resources: tuple[Usage, ...]


@dataclass(frozen=True)
class Overview:
    live_slices: int
    live_slivers: int
    by_allocation: dict[str, int]
    by_operational: dict[str, int]
    failed_slivers: int
    jobs: dict[str, int]
    drivers: tuple[DriverUsage, ...]
    components: tuple[ComponentUsage, ...]


@dataclass(frozen=True)
class SliceRow:
    id: int
    urn: str
    owner_urn: str
    created: datetime
    expires: datetime | None
    shutdown: bool
    live_slivers: int
    failed_slivers: int


@dataclass(frozen=True)
class SliverRow:
    id: int
    urn: str
    client_id: str
    kind: str
    driver: str
    component_id: str
    sliver_type: str | None
    allocation_state: str
    operational_state: str | None
    expires: datetime
    error: str
    live: bool
    substrate: str = "real"      # "real", "emulated", "simulated" or "fake" (substrate_label)


def substrate_label(comp, driver: str) -> str:
    """What a sliver of `comp` really is, for people: "fake" (the mocked-driver harness:
    nothing runs), "emulated" (hardware emulated on a real packet engine, e.g. the NetFPGA
    card), "simulated" (libvirt's test driver: no guest runs), or "real"."""
    if driver == "fake":
        return "fake"
    if comp is None:
        return "real"
    kinds = " ".join(comp.hardware_types).lower()
    if "emulated" in kinds:
        return "emulated"
    if "simulated" in kinds or str((comp.extra or {}).get("uri", "")).startswith("test:"):
        return "simulated"
    return "real"


@dataclass(frozen=True)
class SliceDetail:
    slice: SliceRow
    slivers: tuple[SliverRow, ...]


@dataclass(frozen=True)
class FailedSliver:
    slice_id: int
    slice_urn: str
    sliver: SliverRow
    updated: datetime


@dataclass(frozen=True)
class FailedJob:
    id: int
    action: str
    attempts: int
    error: str
    updated: datetime
    slice_id: int
    slice_urn: str
    sliver_urn: str
    client_id: str


@dataclass(frozen=True)
class AuditPage:
    entries: tuple[AuditEntryRow, ...]
    page: int
    pages: int
    total: int


@dataclass(frozen=True)
class AuditEntryRow(AuditRecord):
    """An audit record as the dashboard lists it: with its row id."""
    id: int


class DashboardQueries:
    """Read-only queries over a Store (and the site's components for names and drivers)."""

    def __init__(self, store: Store, site: Site, *, clock=None):
        self.store = store
        self.site = site
        self.clock = clock or utcnow

    # ---- overview ---------------------------------------------------------------------------
    def overview(self) -> Overview:
        alloc, ops, slices, jobs = self.store.read_models.overview_counts(self.clock())
        components = self._component_usage()
        return Overview(live_slices=slices, live_slivers=sum(alloc.values()),
                        by_allocation=alloc, by_operational=ops,
                        failed_slivers=ops.get(Op.FAILED.value, 0), jobs=jobs,
                        drivers=_by_driver(components), components=components)

    def _component_usage(self) -> tuple[ComponentUsage, ...]:
        known = {c.component_id.lower(): c for c in self.site.components}
        rows: dict[str, list[Usage]] = {}
        for component_id, resource, capacity, used in self.store.capacity_rows():
            rows.setdefault(component_id, []).append(Usage(resource, used, capacity))
        out = []
        for component_id, usages in rows.items():
            comp = known.get(component_id.lower())
            out.append(ComponentUsage(component_id=component_id,
                                      name=comp.name if comp else component_id.rsplit("+", 1)[-1],
                                      driver=comp.driver if comp else "(not in inventory)",
                                      resources=tuple(usages)))
        return tuple(sorted(out, key=lambda c: (c.driver, c.name)))

    # ---- slices -----------------------------------------------------------------------------
    def slices(self) -> list[SliceRow]:
        """Live slice records (not retired), newest first."""
        return [_slice_row(s, live, failed)
                for s, live, failed in self.store.read_models.slices_with_counts(self.clock())]

    def slice_detail(self, slice_id: int) -> SliceDetail | None:
        now = self.clock()
        found = self.store.read_models.slice_with_slivers(slice_id)
        if found is None:
            return None
        record, slivers = found
        rows = [_sliver_row(s, now) for s in slivers]
        rows = [replace(r, substrate=substrate_label(self._component(r.component_id), r.driver))
                for r in rows]
        live = sum(r.live for r in rows)
        failed = sum(r.live and r.operational_state == Op.FAILED.value for r in rows)
        rows.sort(key=lambda r: (not r.live, r.id))
        return SliceDetail(_slice_row(record, live, failed), tuple(rows))

    def _component(self, component_id: str):
        find = getattr(self.site, "component", None)
        return find(component_id) if find and component_id else None

    def live_sliver_records(self, slice_id: int) -> list[Sliver]:
        """The live slivers of a slice as store rows (detached), for the manifest builder."""
        with self.store.read() as session:
            return self.store.live_slivers(session, self.clock(), slice_id=slice_id)

    # ---- failures ---------------------------------------------------------------------------
    def failures(self, limit: int = FAILURES_LIMIT) -> tuple[list[FailedSliver], list[FailedJob]]:
        """Live slivers in geni_failed and failed jobs, newest first."""
        now = self.clock()
        failed_slivers, failed_jobs = self.store.read_models.failures(now, limit)
        slivers = [FailedSliver(slc.id, slc.urn, _sliver_row(s, now), s.updated)
                   for s, slc in failed_slivers]
        jobs = [FailedJob(j.id, j.action, j.attempts, j.error, j.updated, slc.id, slc.urn,
                          s.urn, s.client_id)
                for j, s, slc in failed_jobs]
        return slivers, jobs

    # ---- audit log --------------------------------------------------------------------------
    def audit_page(self, page: int, size: int = AUDIT_PAGE_SIZE) -> AuditPage:
        """Page `page` (1-based) of the audit log, newest first."""
        total, found = self.store.read_models.audit_page((page - 1) * size, size)
        entries = tuple(AuditEntryRow(id=e.id, ts=e.ts, caller_urn=e.caller_urn,
                                      tool_urn=e.tool_urn, method=e.method, target=e.target,
                                      outcome=e.outcome, message=e.message,
                                      duration_ms=e.duration_ms) for e in found)
        return AuditPage(entries, page, max(1, -(-total // size)), total)


def _slice_row(s: Slice, live: int, failed: int) -> SliceRow:
    return SliceRow(s.id, s.urn, s.owner_urn, s.created, s.expires, s.shutdown, live, failed)


def _sliver_row(s: Sliver, now: datetime) -> SliverRow:
    live = s.allocation_state != Alloc.UNALLOCATED.value and s.expires > now
    return SliverRow(s.id, s.urn, s.client_id, s.kind, s.driver, s.component_id, s.sliver_type,
                     s.allocation_state, s.operational_state, s.expires, s.error or "", live)


def _resource_family(resource: str) -> str:
    """Per-port bandwidth (`kbps:eth1`) adds up to `kbps` at driver level."""
    return resource.split(":", 1)[0]


def _by_driver(components: Iterable[ComponentUsage]) -> tuple[DriverUsage, ...]:
    totals: dict[str, dict[str, list[float]]] = {}
    counts: Counter[str] = Counter()
    for comp in components:
        counts[comp.driver] += 1
        for u in comp.resources:
            used_cap = totals.setdefault(comp.driver, {}).setdefault(_resource_family(u.resource),
                                                                      [0.0, 0.0])
            used_cap[0] += u.used
            used_cap[1] += u.capacity
    return tuple(DriverUsage(d, counts[d], tuple(Usage(r, uc[0], uc[1])
                                                 for r, uc in sorted(res.items())))
                 for d, res in sorted(totals.items()))


__all__ = ["AUDIT_PAGE_SIZE", "AuditEntryRow", "AuditPage", "ComponentUsage", "DashboardQueries",
           "DriverUsage", "FailedJob", "FailedSliver", "Overview", "SliceDetail", "SliceRow",
           "SliverRow", "Usage"]
