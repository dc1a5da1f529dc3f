"""`Aggregate`: the AM API v3 domain over a Store, a Site (drivers) and a JobQueue.

Allocate is *precommit*: parse, place (engine + drivers' admission) on a snapshot of usage,
then one transaction that locks the placed components, settles the placement against what is
committed now (am.service.admission) and writes slivers, reservations and claims, with the
database constraints underneath; no substrate is touched. Provision, PerformOperationalAction,
Delete, Shutdown and the reaper are *postcommit*: they write the state change and a job row in
one transaction, and hand the job ids to the queue only after it committed. Status and Describe
read the store only. Every sliver state write goes through `Store.transition` (the table in
`am.states`); expiry is never compared here except through `Store.live_clause` (requests) and
`reap` (the periodic task).

Choices where the spec leaves room (docs/state.md lists them):
  * a shut-down slice refuses Allocate/Provision/POA/Renew/Delete with REFUSED (as the
    reference AM does); Shutdown itself always returns True;
  * Describe of a slice with no slivers here succeeds with an empty manifest (GENI v3 text);
    Status/Provision/Renew/POA on it are SEARCHFAILED; Delete returns an empty list;
  * GetVersion should advertise `geni_allocate = "geni_many"`, `geni_single_allocation = False`
    (see GENI_ALLOCATE below): repeated Allocates into one slice are allowed.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial, wraps
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from am import states
from am.config import Settings
from am.errors import GeniCode, GeniError
from am.jobs.queue import JobQueue, submit_all
from am.service import driver_actions, hybrid
from am.service import shared_lans as shared_lan_service
from am.service.admission import AdmissionContention, Planned, allocate_locked
from am.service.contract import (
    ManifestResult,
    Options,
    Principal,
    SliverInfo,
    StatusResult,
)
from am.engine.links import TUNNEL_MODE
from am.engine.stitch import STITCH_MODE
from am.service.manifests import manifest_for
from am.states import Alloc, Event, IllegalTransition, Op
from am.store import (
    Job,
    ReservationConflict,
    Slice,
    Sliver,
    Store,
    StoreError,
    pending,
    spec_from_dict,
    spec_to_dict,
    utcnow,
)
from am.store import stitch_tags, tunnels
from am.store.store import WindowConflict
from am.store.retry import retrying, transient_cause
from credentials.errors import URNError
from credentials.urn import parse_urn
from drivers.base import DriverError, SliverSpec, SubstrateDriver, UserKeys

if TYPE_CHECKING:
    from drivers.registry import Site
    from am.engine import Placement
    from drivers.base import Usage

log = logging.getLogger(__name__)

GENI_ALLOCATE = "geni_many"
GENI_SINGLE_ALLOCATION = False
SHUT_DOWN = "slice is shut down"
# A cached advertisement is rebuilt at least this often even when nothing was reserved, so its
# `generated` time stays recent; correctness comes from the usage generation, not from this.
AD_MAX_AGE_S = 60.0
KNOWN_ACTIONS = (*states.ACTIONS, "geni_updating_users_cancel")
_UPDATING_REFUSAL = ("sliver {} is geni_updating: an Update waits for Provision (which "
                     "commits it) or expiry (which reverts it); operational actions are refused "
                     "until then, Delete works")


#: Allocate option: provision an advance reservation at its start (the reaper does it).
AUTO_PROVISION = "geniam_auto_provision"


@dataclass(frozen=True)
class Window:
    """An advance reservation's window [starts, ends)."""

    starts: datetime
    ends: datetime
    auto_provision: bool = False


@dataclass(frozen=True)
class _CachedAd:
    """An advertisement and what it is valid for."""

    generation: int        # the usage generation it was built from
    components: list       # the site's inventory list it was built from (compared by identity)
    built: float           # time.monotonic() when built
    xml: str
    hosts: tuple = ()      # the hosts' states it was built with (am.service.hosts)


@dataclass
class _Target:
    """What a `urns` argument names, inside one transaction."""

    slice: Slice | None
    slice_urn: str
    slivers: list[Sliver]
    by_slice: bool
    dead: list[Sliver] = field(default_factory=list)   # named slivers already gone


def _retried(method):
    """An API call whose write transaction hit a deadlock or a serialization failure is run
    again from the start (`am.store.retry`): the transaction was rolled back and nothing was
    queued, so the call is as if never made. Still conflicting after the retries: BUSY."""
    @wraps(method)
    def wrapped(self, *args, **kwargs):
        try:
            return retrying(method, self, *args, **kwargs)
        except DBAPIError as exc:
            cause = transient_cause(exc)
            if cause is None:
                raise
            log.warning("%s: %s persisted through the retries: %s", method.__name__, cause, exc)
            raise GeniError(GeniCode.BUSY, f"the database reported a {cause} repeatedly; "
                                           "retry shortly") from None
    return wrapped


class Aggregate:
    """Implements `am.service.contract.AggregateService`."""

    def __init__(self, settings: Settings, store: Store, site: Site, queue: JobQueue, *,
                 clock: Callable[[], datetime] = utcnow):
        self.settings = settings
        self.store = store
        self.site = site
        self.queue = queue
        self.clock = clock
        self.am_urn = settings.am_urn
        self.am_urns = (settings.am_urn, f"urn:publicid:IDN+{settings.authority}+authority+cm")
        self._ads: dict[bool, _CachedAd] = {}   # available_only -> the advertisement
        self._ad_lock = threading.Lock()
        self._specs: dict[tuple[int, str, int], SliverSpec] = {}   # see _spec
        from am.service.hosts import SiteHosts
        self.hosts = SiteHosts(store, site, down_after_s=settings.host_down_after_s)
        for warning in store.sync_capacity(site.components):
            log.warning("inventory: %s", warning)

    # ---- URNs ------------------------------------------------------------------------------
    def resolve_slice(self, urns: Sequence[str]) -> str:
        with self._db(), self.store.read() as session:
            return self._classify(session, urns)[0]

    def _classify(self, session: Session, urns: Sequence[str]) -> tuple[str, list[Sliver] | None]:
        """(slice URN, sliver rows or None when a slice URN was given). BADARGS / SEARCHFAILED."""
        if isinstance(urns, str) or not urns:
            raise GeniError(GeniCode.BADARGS, "urns must be a non-empty list of URNs")
        parsed = []
        for text in urns:
            try:
                parsed.append(parse_urn(text))
            except URNError as exc:
                raise GeniError(GeniCode.BADARGS, str(exc)) from None
        types = {u.type for u in parsed}
        if not types <= {"slice", "sliver"}:
            bad = next(str(u) for u in parsed if u.type not in ("slice", "sliver"))
            raise GeniError(GeniCode.BADARGS, f"{bad} is neither a slice nor a sliver URN")
        if "slice" in types:
            if len(parsed) != 1:
                raise GeniError(GeniCode.BADARGS, "give exactly one slice URN, or sliver URNs "
                                                  "of one slice, not a mix")
            return urns[0], None
        rows = self.store.slivers_by_urn(session, list(dict.fromkeys(urns)))
        found = {r.urn for r in rows}
        missing = [u for u in urns if u not in found]
        if missing:
            raise GeniError(GeniCode.SEARCHFAILED, f"no sliver {missing[0]} at this aggregate")
        slice_ids = {r.slice_id for r in rows}
        if len(slice_ids) != 1:
            raise GeniError(GeniCode.BADARGS, "the slivers named belong to more than one slice")
        return rows[0].slice.urn, rows

    def _target(self, session: Session, urns: Sequence[str], *, lock: bool = False,
                defer_spec: bool = False) -> _Target:
        now = self.clock()
        slice_urn, rows = self._classify(session, urns)
        if rows is None:
            slc = self.store.find_slice(session, slice_urn, for_update=lock)
            slivers = [] if slc is None else self.store.live_slivers(
                session, now, slice_id=slc.id, for_update=lock, defer_spec=defer_spec)
            return _Target(slc, slc.urn if slc else slice_urn, slivers, True)
        live = {s.id for s in self.store.live_slivers(session, now, urns=[r.urn for r in rows],
                                                      for_update=lock)}
        slc = rows[0].slice
        return _Target(slc, slc.urn, [r for r in rows if r.id in live], False,
                       [r for r in rows if r.id not in live])

    def _require_live(self, target: _Target, verb: str) -> None:
        if target.dead:
            raise GeniError(GeniCode.SEARCHFAILED, f"sliver {target.dead[0].urn} is gone "
                                                   "(deleted or expired)")
        if not target.slivers:
            raise GeniError(GeniCode.SEARCHFAILED,
                            f"slice {target.slice_urn} has no slivers at this aggregate to {verb}")

    @staticmethod
    def _refuse_if_shut_down(target_slice: Slice | None) -> None:
        if target_slice is not None and target_slice.shutdown:
            raise GeniError(GeniCode.REFUSED, f"{SHUT_DOWN}: {target_slice.urn}")

    # ---- ListResources ----------------------------------------------------------------------
    def advertisement(self, options: Options) -> str:
        """The advertisement RSpec, built once per usage generation and variant. A hit costs
        one primary-key read of the generation counter (bumped by every transaction that
        changes capacity, reservations or live slivers, in any process sharing the database)
        and returns the very same string object, so the API layer can memoise its compressed
        and XML-RPC-escaped forms by identity."""
        variant = bool(options.available_only)
        comps = self.site.components
        if options.start_time is not None:   # availability in a window: never cached
            start = options.start_time.replace(microsecond=0)
            end = (options.end_time or start + timedelta(hours=1)).replace(microsecond=0)
            if end <= start:
                raise GeniError(GeniCode.BADARGS, f"geni_end_time {_iso(end)} is not after "
                                                  f"geni_start_time {_iso(start)}")
            with self._db(), self.store.read() as session:
                return self._build_advertisement(comps, self.store.usage_between(
                    session, start, end), variant)
        with self._db():
            hit = self._cached_advertisement(variant, self.store.current_generation(), comps)
        if hit is not None:
            return hit
        with self._db(), self.store.read() as session:
            generation = self.store.usage_generation(session)   # before the usage it validates
            with self._ad_lock:   # one build at a time; threads that waited find it cached
                hit = self._cached_advertisement(variant, generation, comps)
                if hit is not None:
                    return hit
                xml = self._build_advertisement(comps, self.store.usage(session), variant)
                if generation is not None:
                    self._ads[variant] = _CachedAd(generation, comps, time.monotonic(), xml,
                                                   self.hosts.key())
                return xml

    def _cached_advertisement(self, variant: bool, generation: int | None,
                              comps: list) -> str | None:
        cached = self._ads.get(variant)
        if (cached is None or generation is None or cached.generation != generation
                or cached.components is not comps   # the site's inventory was refreshed
                or time.monotonic() - cached.built > AD_MAX_AGE_S
                or cached.hosts != self.hosts.key()):   # a host went down or came back
            return None
        return cached.xml

    def _build_advertisement(self, comps: list, usage: dict, available_only: bool) -> str:
        from rspec.advertisement import AdLink, build_advertisement, default_opstate
        free: dict[str, dict[str, float]] = {}
        available: dict[str, bool] = {}
        hosts = self.hosts.component_hosts()
        shaping: dict[str, tuple[str, ...]] = {}
        for comp in comps:
            used = usage.get(comp.component_id)
            free[comp.component_id] = {r: max(0.0, c - (used.used.get(r, 0.0) if used else 0.0))
                                       for r, c in comp.capacity.items()}
            driver = self.site.drivers.get(comp.driver)
            # each driver decides from every resource its component has (slots, tables, ...)
            available[comp.component_id] = (driver is not None and driver.available(comp, used)
                                            and not hosts.get(comp.component_id, ("", "", ""))[2])
            if driver is not None and (driver.capabilities.links or driver.link_shaping(comp)):
                shaping[comp.component_id] = driver.link_shaping(comp)   # what links honour
        links = [AdLink(component_id=f"urn:publicid:IDN+{self.settings.authority}+link+{l.name}",
                        name=l.name, interface_refs=tuple(e.interface_id for e in l.ends),
                        capacity_kbps=l.capacity_kbps) for l in self.site.links]
        return build_advertisement(comps, am_urn=self.am_urn, available=available,
                                   available_only=available_only, links=links,
                                   opstate=default_opstate(sorted(self.site.sliver_types())),
                                   free=free, shaping=shaping, hosts=hosts,
                                   stitching=self._stitching_ad(usage, available_only))

    # ---- stitching (docs/stitching.md) ------------------------------------------------------
    def _stitching_ad(self, usage: Mapping[str, Usage], available_only: bool) -> str | None:
        """The advertisement's `<stitching>`: this aggregate and its edge ports, each with its
        VLAN range (only the tags free now when `available_only`)."""
        from am.engine.ledger import Ledger
        from am.engine.stitch import stitched_tags
        from rspec.stitching import EdgeAd, stitching_ad
        if not self.site.edges:
            return None
        ledger = Ledger(usage, "")
        ads = []
        for edge in self.site.edges:
            vlans = frozenset(range(edge.vlan_range[0], edge.vlan_range[1] + 1))
            comp = self.site.component(edge.component_id)
            if available_only and comp is not None:
                vlans -= set(stitched_tags(ledger, comp, edge))
            ads.append(EdgeAd(port_id=edge.interface_id, remote_port_id=edge.remote_port,
                              vlans=vlans, capacity_kbps=edge.capacity_kbps, mtu=edge.mtu,
                              node_id=edge.component_id))
        return stitching_ad(self.am_urn, self.settings.effective_public_url, ads)

    def stitching_version(self) -> dict | None:
        """GetVersion's `geniam_stitching`: what this AM's edge ports offer (None: it has none,
        so it does not stitch)."""
        from rspec import namespaces
        from rspec.stitching import STITCHING_MODE
        if not self.site.edges:
            return None
        return {"aggregate": self.am_urn, "namespace": namespaces.STITCH2,
                "stitchingmode": STITCHING_MODE,
                "vlan_negotiation": True, "vlan_translation": False,
                "edge_ports": [{"port": e.interface_id, "remote_aggregate": e.remote_aggregate,
                                "remote_port": e.remote_port,
                                "vlan_range": f"{e.vlan_range[0]}-{e.vlan_range[1]}"}
                               for e in self.site.edges]}

    def operational_actions(self) -> list[dict]:
        """GetVersion's `geniam_operational_actions`: every action PerformOperationalAction
        takes here, the options it reads and what it applies to (the GENI ones, the actions
        some configured driver adds, and the shared-LAN actions when some driver builds LANs)."""
        out = [{"action": a, "options": ["geni_users"] if a == "geni_update_users" else [],
                "applies_to": "provisioned slivers whose driver supports it"}
               for a in KNOWN_ACTIONS]
        out += [{"action": a, "options": list(driver_actions.ACTION_OPTIONS),
                 "applies_to": "slivers of the drivers that advertise it ("
                               + ", ".join(sorted(k for k, d in self.site.drivers.items()
                                                  if a in d.capabilities.actions)) + ")"}
                for a in driver_actions.advertised_actions(self.site)]
        if any(d.capabilities.links for d in self.site.drivers.values()):
            out += [{"action": shared_lan_service.SHARE,
                     "options": [shared_lan_service.LAN_OPTION, shared_lan_service.TOKEN_OPTION],
                     "applies_to": "a provisioned LAN (link) sliver: other slices may join it "
                                   "by the token (link_shared_vlan)"},
                    {"action": shared_lan_service.UNSHARE,
                     "options": [shared_lan_service.LAN_OPTION],
                     "applies_to": "a shared LAN sliver: ends the share, detaching every "
                                   "other slice's member"}]
        return out

    # ---- calendar and find-slot (extensions) ------------------------------------------------
    def calendar(self, start: datetime | None, hours: int) -> dict:
        """Free capacity per component and metered resource in each hour of [start, +hours)
        (start: the next whole hour by default)."""
        from am.service.calendar import Timeline, free_table
        start = self._hour(start)
        with self._db():
            tl = Timeline.load(self.store, start, timedelta(hours=1), _hours(hours))
        return {"start": start, "step_s": 3600, "hours": tl.n,
                "components": free_table(tl, self.site.components)}

    def find_slot(self, principal: Principal, request_xml: str, duration_s: float,
                  start: datetime | None, hours: int) -> tuple[datetime, datetime] | None:
        """The earliest whole-hour window of `duration_s` in [start, +hours) in which the
        whole request fits (as an Allocate with that geni_start_time would place it), or None."""
        from am.engine import place as engine_place
        from am.service.calendar import Timeline
        request = self._parse(request_xml)
        if not duration_s or duration_s <= 0 or duration_s > self.settings.max_lease_s:
            raise GeniError(GeniCode.BADARGS, f"duration must be more than 0 and at most "
                                              f"{self.settings.max_lease_s} s")
        start = self._hour(start)
        width = max(1, math.ceil(duration_s / 3600))
        with self._db():
            tl = Timeline.load(self.store, start, timedelta(hours=1), _hours(hours) + width)
        slice_urn = f"urn:publicid:IDN+{self.settings.authority}+slice+find-slot"

        def fits(usage: Mapping[str, Usage]) -> bool:
            placement = engine_place(request, self.site, usage, slice_urn=slice_urn,
                                     mint_sliver_urn=self._mint)
            return placement.ok and bool(placement.slivers)

        # Admission is monotone: more held never admits more. So a window that holds all the
        # window before it held fails as that one did (`shrank` False); and when the request
        # does not fit even the core [k + m, k + width) that every window from k to k + m
        # contains, none of those windows fits. After a failed window the largest such m is
        # found by bisection (the core shrinks as m grows), and that many windows are skipped:
        # a long request over a busy month costs a few placements per skip, not one a window.
        skip_to = 0
        for k, shrank, usage in tl.windows(width, _hours(hours)):
            if k < skip_to or not shrank:
                continue
            if fits(usage()):
                begins = start + timedelta(hours=k)
                return begins, begins + timedelta(seconds=duration_s)
            if width >= 8:
                failing, fitting = 0, width       # the core at `failing` is known not to fit
                while fitting - failing > 1:
                    m = (failing + fitting) // 2
                    if fits(tl.usage_of(k + m, k + width)):
                        fitting = m
                    else:
                        failing = m
                skip_to = k + failing + 1
        return None

    def _hour(self, start: datetime | None) -> datetime:
        """`start` (default now) rounded up to a whole hour, never in the past."""
        now = self.clock()
        when = max(start or now, now)
        floor = when.replace(minute=0, second=0, microsecond=0)
        return floor if floor == when else floor + timedelta(hours=1)

    # ---- Allocate ---------------------------------------------------------------------------
    @_retried
    def allocate(self, principal: Principal, slice_urn: str, request_xml: str,
                 options: Options) -> ManifestResult:
        try:
            parse_urn(slice_urn, "slice")
        except URNError as exc:
            raise GeniError(GeniCode.BADARGS, str(exc)) from None
        now = self.clock()
        window = self._window(now, principal, options)
        expires = (window.ends if window else
                   self._expiry(now, self.settings.allocation_ttl_s, principal, options.end_time))
        with self._db(), self.store.read() as session:
            self._refuse_if_shut_down(self.store.find_slice(session, slice_urn))
        request = self._parse(request_xml)
        if not (request.nodes or request.links or request.openflow):
            raise GeniError(GeniCode.BADARGS, "the request names no resources at this aggregate")
        if window is None:
            place = partial(self._place, request, slice_urn)
        else:   # placed on what is held in the window, whatever is held now
            def place(_now_usage: Mapping[str, Usage]) -> Placement:
                with self.store.read() as session:
                    usage = self.store.usage_between(session, window.starts, window.ends)
                    try:
                        return self._place(request, slice_urn, usage)
                    except GeniError as exc:   # name the windows it ran into
                        named = [c.component_id for c in self.site.components
                                 if c.component_id in exc.message]
                        held = self.store.windows_on(session, named, window.starts,
                                                     window.ends)
                        if held:
                            exc.message += "; in that window " + ", ".join(
                                f"{c} is reserved from {_iso(b)} to {_iso(e)}"
                                for c, b, e in held)
                        raise
        with self._db(), self.store.read() as session:
            generation = self.store.usage_generation(session)   # before the usage it validates
            usage = self.store.usage(session) if window is None else {}
        planned = Planned(place(usage), generation)
        # settled and written under the placed components' admission locks
        # (am.service.admission): racing Allocates end as if run one after the other
        return self._admit(planned, place,
                           partial(self._write_allocation, principal, slice_urn, request,
                                   expires, window), "nothing was allocated")

    def _window(self, now: datetime, principal: Principal, options: Options) -> Window | None:
        """The advance reservation window asked for (gcf's geni_start_time and geni_end_time),
        or None. OUTOFRANGE for a start in the past, a window longer than `max_lease_s` or
        one ending after the slice credential; BADARGS for an end not after the start."""
        if options.start_time is None:
            return None
        start = options.start_time.replace(microsecond=0)
        if start <= now:
            raise GeniError(GeniCode.OUTOFRANGE, f"geni_start_time {_iso(start)} is not in the "
                                                 f"future (now {_iso(now)})")
        cred = (principal.credential_expires.replace(microsecond=0)
                if principal.credential_expires is not None else None)
        longest = start + timedelta(seconds=self.settings.max_lease_s)
        auto = bool(options.extra.get(AUTO_PROVISION))
        if options.end_time is None:
            end = min(filter(None, (longest, cred)))
            if end <= start:
                raise GeniError(GeniCode.OUTOFRANGE, f"the slice credential expires at "
                                                     f"{_iso(end)}, before geni_start_time "
                                                     f"{_iso(start)}")
            return Window(start, end, auto)
        end = options.end_time.replace(microsecond=0)
        if end <= start:
            raise GeniError(GeniCode.BADARGS, f"geni_end_time {_iso(end)} is not after "
                                              f"geni_start_time {_iso(start)}")
        if cred is not None and end > cred:
            raise GeniError(GeniCode.OUTOFRANGE, f"the window ends at {_iso(end)}, after the "
                                                 f"slice credential expires ({_iso(cred)})")
        if end > longest:
            raise GeniError(GeniCode.OUTOFRANGE, f"the window is longer than the longest lease "
                                                 f"here ({self.settings.max_lease_s} s)")
        return Window(start, end, auto)

    def _admit(self, planned: Planned, place, write, unchanged: str) -> ManifestResult:
        """`allocate_locked` with its failures as GENI errors (`unchanged` says what stayed)."""
        try:
            with self._db():
                return allocate_locked(self.store, planned, place, write)
        except ReservationConflict as exc:
            raise GeniError(_conflict_code(exc), f"{exc}; {unchanged}") from None
        except AdmissionContention as exc:
            raise GeniError(GeniCode.BUSY, str(exc)) from None
        except StoreError as exc:
            raise GeniError(GeniCode.ERROR, str(exc)) from None

    def _place(self, request, slice_urn: str, usage: Mapping[str, Usage]) -> Placement:
        """The request placed on `usage`, or GeniError naming every refused element."""
        from am.engine import place

        for node in request.nodes:   # nothing is placed on a host that is not up
            down = self.hosts.blocked(node.component_id) if node.component_id else None
            if down is not None:
                raise GeniError(GeniCode.UNAVAILABLE, f"node {node.client_id}: component "
                                                      f"{node.component_id} cannot be used "
                                                      f"now: {down.why()}; nothing was "
                                                      "allocated")
        placement = place(request, self.hosts.placement_site(), usage, slice_urn=slice_urn,
                          mint_sliver_urn=self._mint, best_effort=False,
                          shared_lans=shared_lan_service.refs_for(self.store, request))
        if placement.refusals:
            raise _refused(request, placement.refusals)
        if not placement.slivers:
            raise GeniError(GeniCode.BADARGS, "nothing in the request could be placed here")
        return placement

    def _write_allocation(self, principal: Principal, slice_urn: str, request,
                          expires: datetime, window: Window | None, session: Session,
                          placement: Placement) -> ManifestResult:
        """The slivers, reservations and claims of a settled placement (inside the write
        transaction that holds their components' admission locks)."""
        slc = self.store.get_or_create_slice(session, slice_urn, principal.urn)
        self._refuse_if_shut_down(slc)
        elements = _element_index(request)
        rows: list[Sliver] = []
        # reserve in one global order, so racing writers on PostgreSQL cannot deadlock
        for planned in sorted(placement.slivers, key=lambda p: p.spec.component_id):
            rows.append(self._new_row(session, slc, request, elements, expires, planned,
                                      window=window))
        slc.expires = max(filter(None, (slc.expires, expires)))
        manifest = manifest_for(rows, am_urn=self.am_urn, foreign_xml=request.foreign_xml,
                                expires=expires)
        return ManifestResult(manifest=manifest, slice_urn=slc.urn,
                              slivers=tuple(_info(r) for r in rows))

    # ---- Update -----------------------------------------------------------------------------
    @_retried
    def update(self, principal: Principal, urns: Sequence[str], request_xml: str,
               options: Options) -> ManifestResult:
        """AM API Update: the slice's slivers here (or the named ones) changed to the request
        (am.service.update says how). All-or-nothing unless geni_best_effort, where each new
        or changed element that does not fit is left out (new) or left as it is (existing)."""
        from am.service.update import Updater, bind_request, without

        request = self._parse(request_xml)
        now = self.clock()
        pending_until = self._expiry(now, self.settings.allocation_ttl_s, principal,
                                     options.end_time)
        with self._db(), self.store.read() as session:
            target = self._target(session, urns)
            self._refuse_if_shut_down(target.slice)
            self._require_live(target, "update")
            rows = target.slivers
            waiting = next((r for r in rows if r.waiting), None)
            if waiting is not None:
                raise GeniError(GeniCode.UNSUPPORTED,
                                f"sliver {waiting.urn} is an advance reservation (from "
                                f"{_iso(waiting.starts)}); Update it after its start, or "
                                "delete it and allocate again")
            stitched = next((r.client_id for r in rows if r.kind == "link" and
                             ((r.spec or {}).get("link") or {}).get("mode") == STITCH_MODE),
                            None) \
                or next((l.client_id for l in request.links if l.stitched), None)
            if stitched is not None:
                raise GeniError(GeniCode.UNSUPPORTED,
                                f"link {stitched} is stitched to another aggregate: Update does "
                                "not renegotiate its VLAN; delete the slice and stitch it again")
            before = {r.id: r.version for r in rows}
            held: dict[str, dict[str, float]] = {}
            for row in rows:
                per = held.setdefault(row.component_id.lower(), {})
                for resource, amount in self.store.held(session, row)[0].items():
                    per[resource] = per.get(resource, 0.0) + amount
            generation = self.store.usage_generation(session)
            usage = self.store.usage(session)
        slice_urn = target.slice_urn
        request = bind_request(request, rows)
        by_client = {r.client_id: r.urn for r in rows}
        urns_here = {r.urn for r in rows}
        refused: set[str] = set()
        refusals: list[str] = []

        def mint(client_id: str = "") -> str:
            return by_client.get(client_id) or self._mint()

        def place(current: Mapping[str, Usage]) -> Placement:
            from am.engine import place as engine_place
            placement = engine_place(request, self.site,
                                     without(current, held, urns_here, slice_urn),
                                     slice_urn=slice_urn, mint_sliver_urn=mint,
                                     best_effort=options.best_effort,
                                     shared_lans=shared_lan_service.refs_for(self.store,
                                                                             request))
            if placement.refusals and not options.best_effort:
                raise _refused(request, placement.refusals, "; the slice is unchanged")
            refused.clear()
            refused.update(r.client_id for r in placement.refusals)
            refusals[:] = [str(r) for r in placement.refusals]
            return placement

        def write(session: Session, placement: Placement) -> ManifestResult:
            live = {r.id: r for r in self.store.live_slivers(session, self.clock(),
                                                              urns=list(urns_here),
                                                              for_update=True)}
            if {i: r.version for i, r in live.items()} != before:
                raise GeniError(GeniCode.BUSY, f"slice {slice_urn} changed while this Update "
                                               "was placed; nothing was changed, retry")
            slc = self.store.find_slice(session, slice_urn, for_update=True)
            self._refuse_if_shut_down(slc)
            elements = _element_index(request)
            updater = Updater(self.store, session, self.site, now=now,
                              pending_until=pending_until,
                              element_for=partial(_element_for, request, elements),
                              new_row=partial(self._new_row, session, slc, request, elements,
                                              pending_until))
            after = updater.apply([live[i] for i in sorted(live)], placement, refused)
            self.store.flush(session)
            slc.expires = max(filter(None, (slc.expires, *(r.expires for r in after))))
            manifest = manifest_for(after, am_urn=self.am_urn, foreign_xml=request.foreign_xml,
                                    users=self.store.user_keys(session, slc.id),
                                    expires=max((r.expires for r in after), default=None))
            return ManifestResult(manifest=manifest, slice_urn=slc.urn,
                                  slivers=tuple(_info(r) for r in after),
                                  output="; ".join(refusals))

        return self._admit(Planned(place(usage), generation), place, write,
                           "the slice is unchanged")

    def _new_row(self, session: Session, slc: Slice, request, elements, expires: datetime,
                 planned, *, window: Window | None = None) -> Sliver:
        """A new allocated sliver (reserved) for a planned one, as Allocate writes it (with a
        window: an advance reservation, waiting for its start)."""
        spec = planned.spec
        if spec.link is not None and spec.link.mode == TUNNEL_MODE:
            # a half of a cross-host link: both halves hold one site-wide VNI
            self.store.flush(session)
            spec = dataclasses.replace(spec, params={**spec.params,
                                                     "vni": tunnels.claim(session, slc,
                                                                          spec.client_id)})
        row = Sliver(urn=spec.sliver_urn, slice=slc, client_id=spec.client_id,
                     kind=spec.kind.value, driver=planned.driver,
                     component_id=spec.component_id, sliver_type=spec.sliver_type,
                     allocation_state=Alloc.UNALLOCATED.value, operational_state=None,
                     expires=expires, spec=spec_to_dict(spec),
                     element_xml=_element_for(request, elements, spec),
                     facts={}, error="", resource_status="",
                     starts=window.starts if window else None, waiting=window is not None,
                     auto_provision=bool(window and window.auto_provision))
        self.store.slices.add_sliver(session, row)
        self.store.transition(session, row, Event.ALLOCATE)
        self.store.reserve(session, row, planned.demand, planned.claims, now=self.clock())
        if spec.link is not None and spec.link.mode == STITCH_MODE:
            # the tag on every local hop of its path, racing like any claim
            stitch_tags.claim(session, row, [(h[0], h[1]) for h in spec.params.get("hops", ())],
                              spec.link.vlan_tag)
        shared_lan_service.register(session, row)      # a link joining a shared LAN
        return row

    def _parse(self, request_xml: str):
        from rspec.errors import RSpecError
        from rspec.request import parse_request
        try:
            return parse_request(request_xml, am_urns=self.am_urns,
                                 known_sliver_types=self.site.accepted_sliver_types(),
                                 max_bytes=self.settings.max_request_bytes)
        except RSpecError as exc:
            raise GeniError.from_library(exc, GeniCode.BADARGS) from None

    def _mint(self, _client_id: str = "") -> str:
        return f"urn:publicid:IDN+{self.settings.authority}+sliver+{uuid.uuid4().hex}"

    def _expiry(self, now: datetime, ttl_s: float, principal: Principal,
                end_time: datetime | None) -> datetime:
        """min(now + ttl, credential expiry, requested end time), or OUTOFRANGE if in the past."""
        candidates = [now + timedelta(seconds=ttl_s)]
        if principal.credential_expires is not None:
            candidates.append(principal.credential_expires.replace(microsecond=0))
        if end_time is not None:
            if end_time <= now:
                raise GeniError(GeniCode.OUTOFRANGE, f"geni_end_time {_iso(end_time)} is not "
                                                     "in the future")
            candidates.append(end_time.replace(microsecond=0))
        expires = min(candidates)
        if expires <= now:
            raise GeniError(GeniCode.OUTOFRANGE, "the credential has expired")
        return expires

    # ---- Provision --------------------------------------------------------------------------
    @_retried
    def provision(self, principal: Principal, urns: Sequence[str], options: Options) -> ManifestResult:
        now = self.clock()
        start = self.settings.start_on_provision if options.start is None else options.start
        expires = self._expiry(now, self.settings.max_lease_s, principal, options.end_time)
        queued: list[Job] = []
        with self._db(), self.store.write() as session:
            target = self._target(session, urns, lock=True)
            self._refuse_if_shut_down(target.slice)
            self._require_live(target, "provision")
            chosen = hybrid.with_forwarding_slivers(self.store, session, target.slivers,
                                                    self.clock(), lock=True)
            self._check_users(chosen, options.users)
            if target.by_slice:
                chosen = [s for s in chosen if s.allocation_state == Alloc.ALLOCATED.value
                          or s.operational_state == Op.UPDATING.value]
                if not chosen:
                    raise GeniError(GeniCode.UNSUPPORTED, f"slice {target.slice_urn} has no "
                                                          "allocated slivers and no pending "
                                                          "update left to provision")
            waiting = next((r for r in chosen if r.waiting), None)
            if waiting is not None:
                raise GeniError(GeniCode.UNAVAILABLE,
                                f"sliver {waiting.urn} is reserved from {_iso(waiting.starts)}; "
                                "it can be provisioned from then on (or Allocate with "
                                f"{AUTO_PROVISION} to have it provisioned at its start)")
            done: list[Sliver] = []
            infos: list[SliverInfo] = []
            deleted: list[int] = []
            for row in chosen:
                if row.operational_state == Op.UPDATING.value:   # commit a pending Update
                    row.expires = self._extend(session, row, expires)
                    job = self._commit_update(session, row)
                    if job is None:
                        deleted.extend(self._unallocate(session, row, Event.DELETE))
                    else:
                        queued.append(job)
                        done.append(row)
                    infos.append(_info(row))
                    continue
                try:
                    self.store.transition(session, row, Event.PROVISION, flush=False)
                except IllegalTransition as exc:
                    if not options.best_effort:
                        raise
                    infos.append(_info(row, error=exc.message))
                    continue
                if row.starts is None:     # an advance reservation keeps its window's end
                    row.expires = self._extend(session, row, expires)
                queued.append(self.store.add_job(session, row, "provision",
                                                 {"start": True} if start else None,
                                                 flush=False))
                done.append(row)
                infos.append(_info(row))
            if options.users:
                self.store.put_user_keys(session, target.slice.id, options.users)
            if done:
                target.slice.expires = max(filter(None, (target.slice.expires, expires)))
            self.store.flush(session)
            jobs = [job.id for job in _links_first(queued, done)] + deleted
            users = self.store.user_keys(session, target.slice.id)
            manifest = manifest_for(done, am_urn=self.am_urn, users=users, expires=expires)
        self._submit(jobs)
        return ManifestResult(manifest=manifest, slice_urn=target.slice_urn, slivers=tuple(infos))

    def _extend(self, session: Session, row: Sliver, expires: datetime) -> datetime:
        """`expires`, or the start of the first reservation window the sliver would run into
        (UNAVAILABLE if that is now)."""
        now = self.clock()
        try:
            self.store.extend(session, row, expires, now)
            return expires
        except WindowConflict as exc:
            if exc.at <= max(now, row.expires):
                raise GeniError(GeniCode.UNAVAILABLE, str(exc)) from None
            self.store.extend(session, row, exc.at, now)
            return exc.at

    def _commit_update(self, session: Session, row: Sliver) -> Job | None:
        """Provision of a geni_updating sliver: its update job (None for a pending removal,
        which the caller deletes). The pending change can no longer be reverted."""
        change = pending.pending_of(row)
        if change is None or change.op == pending.REMOVE:
            return None
        self.store.transition(session, row, Event.UPDATE_COMMIT, error="")
        row.pending_until = None
        return self.store.add_job(session, row, "update", flush=False)

    # ---- Status / Describe ------------------------------------------------------------------
    def status(self, principal: Principal, urns: Sequence[str], options: Options) -> StatusResult:
        with self._db(), self.store.read() as session:
            target = self._target(session, urns, defer_spec=True)   # see _spec
            self._require_live(target, "report on")
            return StatusResult(slice_urn=target.slice_urn,
                                slivers=tuple(self._status_info(s) for s in target.slivers))

    def _status_info(self, row: Sliver) -> SliverInfo:
        """A sliver's Status entry; one on a host that is not up says so (am.service.hosts)."""
        override = self.hosts.status_override(row) if self.hosts.active else None
        if override is None:
            return _info(row, live=self._live_status(row))
        return dataclasses.replace(_info(row), operational_status=override[0],
                                   error=override[1])

    def _live_status(self, row: Sliver) -> str | None:
        """A provisioned sliver's geni_resource_status as its driver reports it now (e.g. a
        NetFPGA slot's counters); None keeps the stored text. A driver error is not the
        caller's: it is logged and the stored text is shown."""
        if row.allocation_state != Alloc.PROVISIONED.value:
            return None
        if self.hosts.active and self.site.host_of(row.component_id) is not None:
            return None   # on another machine: the API process never reaches into a host
        driver = self.site.drivers.get(row.driver)
        if driver is None or type(driver).live_status is SubstrateDriver.live_status:
            return None
        try:
            return driver.live_status(self._spec(row))
        except Exception as exc:   # noqa: BLE001 - a report, never a failure of Status
            log.warning("live status of %s: %s", row.urn, exc)
            return None

    def _spec(self, row: Sliver) -> SliverSpec:
        """The row's spec decoded, kept per (id, URN, row version): every change of a row bumps
        its version (and a reused id comes with a new URN). Status, polled while a big slice
        comes up, would otherwise decode every sliver's spec on every call."""
        key = (row.id, row.urn, row.version)
        spec = self._specs.get(key)
        if spec is None:
            if len(self._specs) >= _SPEC_CACHE:
                self._specs.clear()
            spec = self._specs[key] = spec_from_dict(row.spec)
        return spec

    def describe(self, principal: Principal, urns: Sequence[str], options: Options) -> ManifestResult:
        with self._db(), self.store.read() as session:
            target = self._target(session, urns)
            if target.dead:
                self._require_live(target, "describe")
            users = self.store.user_keys(session, target.slice.id) if target.slice else ()
            expires = max((s.expires for s in target.slivers), default=None)
            manifest = manifest_for(target.slivers, am_urn=self.am_urn, users=users,
                                    expires=expires)
            return ManifestResult(manifest=manifest, slice_urn=target.slice_urn,
                                  slivers=tuple(_info(s) for s in target.slivers))

    # ---- PerformOperationalAction -----------------------------------------------------------
    @_retried
    def perform_action(self, principal: Principal, urns: Sequence[str], action: str,
                       options: Options) -> list[SliverInfo]:
        if action in shared_lan_service.ACTIONS:
            return self._share_action(urns, action, options)
        extra = action not in KNOWN_ACTIONS   # a driver's own action (am.service.driver_actions)
        if extra and action not in driver_actions.advertised_actions(self.site):
            supported = (*KNOWN_ACTIONS, *shared_lan_service.ACTIONS,
                         *driver_actions.advertised_actions(self.site))
            raise GeniError(GeniCode.UNSUPPORTED, f"operational action {action!r} is not "
                                                  f"supported (supported: {', '.join(supported)})")
        action_opts = driver_actions.job_options(action, options.extra) if extra else {}
        if action == "geni_update_users" and not options.users:
            raise GeniError(GeniCode.BADARGS, "geni_update_users needs the geni_users option")
        queued: list[Job] = []
        infos: list[SliverInfo] = []
        with self._db(), self.store.write() as session:
            target = self._target(session, urns, lock=True)
            self._refuse_if_shut_down(target.slice)
            self._require_live(target, "act on")
            chosen = hybrid.with_forwarding_slivers(self.store, session, target.slivers,
                                                    self.clock(), lock=True)
            updating = [r for r in chosen if r.operational_state == Op.UPDATING.value]
            if updating and not options.best_effort:
                raise GeniError(GeniCode.REFUSED, _UPDATING_REFUSAL.format(updating[0].urn))
            if action == "geni_update_users":
                self._check_users(chosen, options.users)
            if extra and target.by_slice:   # a slice-wide driver action: the slivers that have it
                chosen = [r for r in chosen if self._driver_has(r, action)] or chosen
            for row in chosen:
                try:
                    if row.operational_state == Op.UPDATING.value:
                        raise GeniError(GeniCode.REFUSED, _UPDATING_REFUSAL.format(row.urn))
                    self._check_driver_action(row, action)
                    if extra:
                        driver_actions.check_for_sliver(self.site.drivers.get(row.driver),
                                                        spec_from_dict(row.spec), row.urn,
                                                        action_opts)
                        self.store.transition(session, row, Event.DRIVER_ACTION, error="")
                        queued.append(self.store.add_job(session, row, states.DRIVER_ACTION, {
                            "action": action, "options": action_opts}, flush=False))
                    elif action == "geni_updating_users_cancel":
                        self.store.transition(session, row, Event.UPDATE_USERS_CANCEL)
                    else:
                        job = states.ACTIONS[action]
                        self.store.transition(session, row, job.start, error="")
                        queued.append(self.store.add_job(session, row, job.job, flush=False))
                except GeniError as exc:
                    if not options.best_effort:
                        raise
                    infos.append(_info(row, error=exc.message))
                    continue
                infos.append(_info(row))
            if action == "geni_update_users" and queued:
                self.store.put_user_keys(session, target.slice.id, options.users)
            self.store.flush(session)
            jobs = [job.id for job in queued]
        self._submit(jobs)
        return infos

    def _share_action(self, urns: Sequence[str], action: str,
                      options: Options) -> list[SliverInfo]:
        """geni_sharelan / geni_unsharelan (am.service.shared_lans): a record, and for unshare
        the foreign members' link slivers deleted (their delete jobs detach them)."""
        jobs: list[int] = []
        with self._db(), self.store.write() as session:
            target = self._target(session, urns, lock=True)
            self._refuse_if_shut_down(target.slice)
            self._require_live(target, "act on")
            if action == shared_lan_service.SHARE:
                lan = shared_lan_service.share(session, target.slivers, target.slice_urn,
                                               options.extra, self.clock())
            else:
                lan = shared_lan_service.lan_of(target.slivers, options.extra, action)
                foreign = shared_lan_service.unshare(session, target.slivers, options.extra,
                                                     self.clock())
                jobs = self._unallocate_all(session, foreign, Event.DELETE)
            info = _info(lan)
        self._submit(jobs)
        return [info]

    def _check_users(self, rows: Sequence[Sliver], users: Sequence[UserKeys]) -> None:
        """BADARGS, before anything is written, when a driver of `rows` cannot give these
        geni_users accounts (`SubstrateDriver.check_users`: e.g. a container refuses root)."""
        if not users:
            return
        for kind in sorted({r.driver for r in rows}):
            driver = self.site.drivers.get(kind)
            if driver is None:
                continue
            try:
                driver.check_users(users)
            except DriverError as exc:
                raise GeniError(GeniCode.BADARGS, f"geni_users: {exc}") from None

    def _driver_has(self, row: Sliver, action: str) -> bool:
        driver = self.site.drivers.get(row.driver)
        return driver is not None and action in driver.capabilities.actions

    def _check_driver_action(self, row: Sliver, action: str) -> None:
        if action not in KNOWN_ACTIONS and not self._driver_has(row, action):
            raise GeniError(GeniCode.UNSUPPORTED, f"sliver {row.urn} ({row.driver}) does not "
                                                  f"support {action}")
        driver = self.site.drivers.get(row.driver)
        base = "geni_update_users" if action == "geni_updating_users_cancel" else action
        if driver is not None and base not in driver.capabilities.actions:
            raise GeniError(GeniCode.UNSUPPORTED, f"sliver {row.urn} ({row.driver}) does not "
                                                  f"support {action}")

    # ---- Renew ------------------------------------------------------------------------------
    @_retried
    def renew(self, principal: Principal, urns: Sequence[str], expiration: datetime,
              options: Options) -> list[SliverInfo]:
        now = self.clock()
        expiration = expiration.replace(microsecond=0)
        if expiration <= now:
            raise GeniError(GeniCode.OUTOFRANGE, f"expiration {_iso(expiration)} is in the past")
        limit = now + timedelta(seconds=self.settings.max_lease_s)
        why = f"the longest lease here is {self.settings.max_lease_s} s (until {_iso(limit)})"
        if principal.credential_expires is not None and principal.credential_expires < limit:
            limit = principal.credential_expires.replace(microsecond=0)
            why = f"the slice credential expires at {_iso(limit)}"
        granted, error = expiration, ""
        if expiration > limit:
            if options.extend_alap:
                granted = limit
            elif options.best_effort:
                error = f"cannot renew to {_iso(expiration)}: {why}"
            else:
                raise GeniError(GeniCode.OUTOFRANGE, f"cannot renew to {_iso(expiration)}: {why}")
        infos: list[SliverInfo] = []
        with self._db(), self.store.write() as session:
            target = self._target(session, urns, lock=True)
            self._refuse_if_shut_down(target.slice)
            self._require_live(target, "renew")
            for row in target.slivers:
                self.store.transition(session, row, Event.RENEW)
                if error:
                    infos.append(_info(row, error=error))
                    continue
                try:
                    self.store.extend(session, row, granted, now)
                except WindowConflict as exc:
                    if options.extend_alap and exc.at > row.expires:
                        self.store.extend(session, row, exc.at, now)
                        row.expires = exc.at
                        infos.append(_info(row))
                        continue
                    if not options.best_effort:
                        raise GeniError(GeniCode.OUTOFRANGE,
                                        f"cannot renew to {_iso(granted)}: {exc}") from None
                    infos.append(_info(row, error=f"cannot renew to {_iso(granted)}: {exc}"))
                    continue
                row.expires = granted
                if row.pending_until is not None:   # a renewed pending Update waits as long
                    row.pending_until = granted
                infos.append(_info(row))
            if not error and target.slice is not None:
                target.slice.expires = max(s.expires for s in target.slivers)
        return infos

    # ---- Delete -----------------------------------------------------------------------------
    @_retried
    def delete(self, principal: Principal, urns: Sequence[str], options: Options) -> list[SliverInfo]:
        jobs: list[int] = []
        infos: list[SliverInfo] = []
        with self._db(), self.store.write() as session:
            target = self._target(session, urns, lock=True)
            self._refuse_if_shut_down(target.slice)
            for row in target.dead:   # already gone: Delete is idempotent
                infos.append(SliverInfo(sliver_urn=row.urn, expires=row.expires,
                                        allocation_status=Alloc.UNALLOCATED.value,
                                        client_id=row.client_id))
            rows = hybrid.with_forwarding_slivers(self.store, session, target.slivers,
                                                  self.clock(), lock=True)
            jobs = self._unallocate_all(session, rows, Event.DELETE)
            infos.extend(SliverInfo(sliver_urn=row.urn, expires=row.expires,
                                    allocation_status=Alloc.UNALLOCATED.value,
                                    client_id=row.client_id) for row in rows)
        self._submit(jobs)
        return infos

    def _unallocate(self, session: Session, row: Sliver, event: Event) -> list[int]:
        return self._unallocate_all(session, [row], event)

    def _unallocate_all(self, session: Session, rows: Sequence[Sliver], event: Event) -> list[int]:
        """Delete or expire slivers (locked by the caller): their states, reservations, claims
        and holds go in this transaction, in a few statements however many there are (the
        decision is recorded; the substrate work is queued): a provisioned sliver gets a
        delete job that cleans the substrate. Returns the job ids."""
        # a shared LAN going away detaches the other slices' links to it first
        foreign = shared_lan_service.ending(session, rows, self.clock())
        first = self._unallocate_all(session, foreign, Event.DELETE) if foreign else []
        provisioned = [r.id for r in rows if r.allocation_state == Alloc.PROVISIONED.value]
        self.store.transition_many(session, rows, event)
        self.store.release_many(session, rows)
        stitch_tags.release(session, [r.id for r in rows if r.kind == "link"])
        tunnels.release(session, rows)
        return first + self.store.add_jobs(session, provisioned, "delete")

    # ---- Shutdown ---------------------------------------------------------------------------
    @_retried
    def shutdown(self, principal: Principal, slice_urn: str, options: Options) -> bool:
        try:
            parse_urn(slice_urn, "slice")
        except URNError as exc:
            raise GeniError(GeniCode.BADARGS, str(exc)) from None
        jobs: list[int] = []
        with self._db(), self.store.write() as session:
            slc = self.store.get_or_create_slice(session, slice_urn, principal.urn)
            if slc.shutdown:
                return True
            slc.shutdown, slc.shutdown_at, slc.shutdown_by = True, self.clock(), principal.urn
            for row in self.store.live_slivers(session, self.clock(), slice_id=slc.id,
                                               for_update=True):
                if row.pending is not None:      # a pending Update is dropped
                    pending.revert(session, self.store, row)
                state = states.as_state(row.allocation_state, row.operational_state)
                if states.allowed(state, Event.SHUTDOWN):
                    self.store.transition(session, row, Event.SHUTDOWN,
                                          error=f"{SHUT_DOWN} by {principal.urn}")
                    jobs.append(self.store.add_job(session, row, "stop").id)
        self._submit(jobs)
        return True

    # ---- the reaper -------------------------------------------------------------------------
    @_retried
    def reap(self, now: datetime | None = None) -> list[str]:
        """Expire every sliver past its expiry: free its reservations, queue a delete job for
        provisioned ones, retire slice records left empty. Returns the expired sliver URNs."""
        now = now or self.clock()
        jobs: list[int] = []
        expired: list[str] = []
        with self._db(), self.store.write() as session:
            rows = self.store.slices.expired(session, now)
            jobs.extend(self._unallocate_all(session, rows, Event.EXPIRE))
            expired.extend(row.urn for row in rows)
            for row in self.store.slices.pending_expired(session, now):
                pending.revert(session, self.store, row)   # an Update never provisioned
            jobs.extend(self._start_windows(session, now))
            self.store.retire_empty_slices(session)
        self._submit(jobs)
        return expired

    def _start_windows(self, session: Session, now: datetime) -> list[int]:
        """Advance reservations whose window began: they hold like any live sliver from now
        on, and those allocated with geniam_auto_provision are provisioned (jobs returned)."""
        jobs: list[int] = []
        start = self.settings.start_on_provision
        for row in self.store.slices.windows_started(session, now):
            self.store.start_waiting(session, row)
            if row.auto_provision and not row.slice.shutdown:
                self.store.transition(session, row, Event.PROVISION)
                jobs.append(self.store.add_job(session, row, "provision",
                                               {"start": True} if start else None).id)
        return jobs

    # ---- plumbing ---------------------------------------------------------------------------
    def _submit(self, job_ids: list[int]) -> None:
        """Hand one call's committed jobs to the queue together (`submit_many`: a broker queue
        batches them into few messages; a queue with only `submit` gets one call per id). A
        failure here loses nothing: the jobs stay queued in the database and the reconciler
        re-sends them (am.jobs.runner.requeue_interrupted)."""
        submit_all(self.queue, job_ids)

    @contextmanager
    def _db(self) -> Iterator[None]:
        """Database trouble becomes a GENI error, never a traceback."""
        try:
            yield
        except StaleDataError:
            raise GeniError(GeniCode.BUSY, "the sliver changed under this request; retry") from None
        except OperationalError as exc:
            if transient_cause(exc):
                raise   # `_retried` runs the whole call again
            log.warning("database busy or unavailable: %s", exc)
            raise GeniError(GeniCode.BUSY, "the database is busy; retry shortly") from None
        except SQLAlchemyError as exc:
            if transient_cause(exc):
                raise
            log.exception("database error")
            raise GeniError(GeniCode.DBERROR, f"database error: {type(exc).__name__}") from None


#: link modes made by the nodes' own component (am.engine.links): no other sliver's work needed
_LOCAL_LINK_MODES = ("veth", "bridge")
#: decoded specs kept for Status (cleared when full: a Status of more slivers decodes as before)
_SPEC_CACHE = 2048


def _links_first(jobs: Sequence[Job], rows: Sequence[Sliver]) -> list[Job]:
    """A Provision's jobs in the order they go to the queue: first its links local to one
    component (veth pairs and bridges between that component's own nodes), then the rest in
    their own order. Any order is correct (drivers wire such a link and its nodes in whichever
    order the workers run them), but a node provisioned after its links are wired converges
    its network once, where a node made first converges again for every link that reaches it
    (a router in a chain: three times; docs/vserver.md, Performance). Other links (a card's
    wire, a stitched or tunnelled link) need what their ends' slivers make: they keep their
    place after the nodes."""
    local = {row.id for row in rows if row.kind == "link"
             and ((row.spec or {}).get("link") or {}).get("mode") in _LOCAL_LINK_MODES}
    return sorted(jobs, key=lambda job: job.sliver_id not in local)


def _info(row: Sliver, *, error: str | None = None, live: str | None = None) -> SliverInfo:
    return SliverInfo(sliver_urn=row.urn, allocation_status=row.allocation_state,
                      expires=row.expires, operational_status=row.operational_state,
                      error=row.error if error is None else error,
                      resource_status=live or row.resource_status or "", client_id=row.client_id,
                      start_time=row.starts, logins=ssh_commands(row))


def ssh_commands(row: Sliver) -> tuple[str, ...]:
    """The SSH command of each login a provisioned node sliver has (as its manifest says)."""
    if row.allocation_state != Alloc.PROVISIONED.value:
        return ()
    out = []
    for login in (row.facts or {}).get("logins", ()):
        host, user, port = login.get("hostname"), login.get("username"), login.get("port")
        if host and user:
            out.append(f"ssh -p {port or 22} {user}@{host}")
    return tuple(out)


def _element_index(request) -> dict[tuple[str, str], str]:
    """(kind, client_id) -> the request element's original XML, for the manifest."""
    index: dict[tuple[str, str], str] = {}
    for node in request.nodes:
        if node.element_xml:
            index[("node", node.client_id)] = node.element_xml
    for link in request.links:
        if link.element_xml:
            index[("link", link.client_id)] = link.element_xml
    return index


def _element_for(request, index: dict[tuple[str, str], str], spec) -> str:
    if spec.openflow is not None:
        # OpenFlow slivers have no client_id: match the request model (equality ignores XML)
        return next((of.element_xml or "" for of in request.openflow if of == spec.openflow), "")
    return index.get((spec.kind.value, spec.client_id), "")


def _refused(request, refusals, tail: str = "") -> GeniError:
    """One GeniError for a placement's refusals (mixed codes: the first refusal's)."""
    codes = {r.code for r in refusals}
    code = refusals[0].code if len(codes) > 1 else codes.pop()
    return GeniError(_code(code), _refusal_message(request, refusals) + tail)


def _refusal_message(request, refusals) -> str:
    """The refusals grouped by cause, one line each with the elements it refused, led by a
    summary (the shortfall when nodes did not fit: how many were asked, how many found room).
    A single refusal is one line: `client_id: reason`."""
    if len(refusals) == 1:
        return f"{refusals[0].client_id}: {refusals[0].reason}"
    nodes = {n.client_id: n for n in request.nodes}
    short = [r for r in refusals if r.client_id in nodes and r.code in CAPACITY_CODES]
    if short:
        head = f"short by {len(short)} of the {len(nodes)} requested node(s)"
        exclusive = [cid for cid, n in nodes.items() if _exclusive(n)]
        if exclusive:
            refused = sum(1 for r in short if r.client_id in exclusive)
            head += f" ({len(exclusive)} exclusive node(s) asked, {len(exclusive) - refused} free)"
    else:
        head = f"{len(refusals)} element(s) refused"
    groups: dict[tuple[str, str], list[str]] = {}
    for r in refusals:
        groups.setdefault((r.code, _node_neutral(r.reason, r.client_id)), []).append(r.client_id)
    lines = [f"{head}, for {len(groups)} reason(s):"]
    for (code, reason), ids in groups.items():
        named = ", ".join(ids[:GROUP_NAMES]) + (f" and {len(ids) - GROUP_NAMES} more"
                                                 if len(ids) > GROUP_NAMES else "")
        lines.append(f"  {code} x{len(ids)} ({named}): {reason}")
    return "\n".join(lines)


#: How many client_ids a grouped refusal line names before it says "and N more".
GROUP_NAMES = 8


def _exclusive(node) -> bool:
    return bool(node.exclusive) or (node.sliver_type or "").lower() == "raw-pc"


def _node_neutral(reason: str, client_id: str) -> str:
    """A refusal's reason without the element's own name, so equal causes group together."""
    if not client_id:
        return reason
    reason = re.sub(rf"\bnode {re.escape(client_id)}(?![\w.-])", "the node", reason)
    return re.sub(rf"(?<![\w.-]){re.escape(client_id)}(?![\w.-])", "it", reason)


#: Refusal codes that mean "not enough room", as opposed to a request the site cannot serve.
CAPACITY_CODES = frozenset({"INSUFFICIENT_NODES", "TOOBIG"})


def _code(name: str) -> GeniCode:
    try:
        return GeniCode[name]
    except KeyError:
        return GeniCode.ERROR


def _conflict_code(exc: ReservationConflict) -> GeniCode:
    if exc.kind == "claim" and "vlan" in exc.what.lower():
        return GeniCode.VLAN_UNAVAILABLE
    if exc.what.startswith("kbps:"):
        return GeniCode.INSUFFICIENT_BANDWIDTH
    return GeniCode.INSUFFICIENT_NODES


#: The longest horizon of calendar and find-slot (hours).
MAX_HOURS = 24 * 90


def _hours(hours: int) -> int:
    if not isinstance(hours, int) or isinstance(hours, bool) or not 1 <= hours <= MAX_HOURS:
        raise GeniError(GeniCode.BADARGS, f"hours must be a whole number from 1 to {MAX_HOURS}")
    return hours


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = ["Aggregate", "GENI_ALLOCATE", "GENI_SINGLE_ALLOCATION"]
