"""Capacity rows and usage: what each component has and what live slivers hold on it."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from am.states import Alloc
from am.store.admission import AdmissionLock
from am.store.codec import spec_from_dict
from am.store.models import Capacity, Reservation, Slice, Sliver
from am.store.reservations import peak
from am.store.sessions import CHUNK, Database, Repository, chunks, mark_usage_changed
from drivers.base import Component, SliverSpec, Usage


class Capacities(Repository):
    def __init__(self, db: Database):
        super().__init__(db)
        # decoded SliverSpec per (sliver URN, row version): an Update may change a sliver's
        # spec, and every write of the row bumps its version; see usage()
        self._specs: dict[tuple[str, int], SliverSpec] = {}

    def sync_capacity(self, components: Iterable[Component]) -> list[str]:
        """Record each component's capacities (keeping what is used). Returns warnings for
        resources whose new capacity is below what live reservations already use (the
        capacity is kept at the used amount until those slivers go).

        Several processes starting at once on a new database may insert the same rows: the
        loser of that race rolls back and syncs again against the winner's rows."""
        components = list(components)
        for attempt in range(3):
            try:
                return self._sync_capacity_once(components)
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _sync_capacity_once(self, components: list[Component]) -> list[str]:
        warnings: list[str] = []
        with self.write() as session:
            existing = {(c.component_id, c.resource): c for c in session.scalars(select(Capacity))}
            for comp in components:
                for resource, amount in comp.capacity.items():
                    row = existing.get((comp.component_id, resource))
                    if row is None:
                        session.add(Capacity(component_id=comp.component_id, resource=resource,
                                             capacity=float(amount), used=0.0))
                        mark_usage_changed(session)
                        continue
                    if float(amount) < row.used:
                        warnings.append(f"{comp.component_id} {resource}: capacity {amount} "
                                        f"is below the {row.used} already reserved")
                    kept = max(float(amount), row.used)
                    if row.capacity != kept:
                        row.capacity = kept
                        mark_usage_changed(session)
        return warnings

    def admission_lock(self, session: Session) -> AdmissionLock:
        """Per-component admission locks for this write transaction (see `AdmissionLock`)."""
        return AdmissionLock(session, whole_database=self.dialect != "postgresql")
    def usage(self, session: Session, component_ids: Iterable[str] | None = None) -> dict[str, Usage]:
        """What is reserved per component, as the engine's admission checks want it. It counts
        every sliver that still holds a reservation (an expired one until the reaper frees it),
        so it agrees with the CHECK constraint that guards the same numbers.

        Cost: two narrow queries (used amounts; URN, component and slice of live slivers). A
        sliver's spec changes only by an Update, so decoded specs are kept per sliver URN and
        row version and only new or rewritten slivers' specs are read and decoded. Full scans (no
        `component_ids`) replace the kept set with exactly the live slivers, so it stays bounded.
        (Keyed by URN and row version: an Update rewrites a spec under the same URN.)"""
        ids = None if component_ids is None else list(component_ids)
        used: dict[str, dict[str, float]] = {}
        cap_q = select(Capacity.component_id, Capacity.resource, Capacity.used).where(
            Capacity.used > 1e-9)
        if ids is not None:
            cap_q = cap_q.where(Capacity.component_id.in_(ids))
        for component_id, resource, amount in session.execute(cap_q):
            used.setdefault(component_id, {})[resource] = amount
        live_q = (select(Sliver.id, Sliver.urn, Sliver.component_id, Slice.urn, Sliver.version)
                  .join(Slice)
                  .where(Sliver.allocation_state != Alloc.UNALLOCATED.value,
                         Sliver.waiting.is_(False))
                  .order_by(Sliver.id))
        if ids is not None:
            live_q = live_q.where(Sliver.component_id.in_(ids))
        live = session.execute(live_q).all()
        known = self._specs
        missing = [row[0] for row in live if (row[1], row[4]) not in known]
        fresh: dict[tuple[str, int], SliverSpec] = {}
        by_id = {row[0]: (row[1], row[4]) for row in live}
        for chunk in range(0, len(missing), 500):
            for row_id, spec in session.execute(select(Sliver.id, Sliver.spec).where(
                    Sliver.id.in_(missing[chunk:chunk + 500]))):
                fresh[by_id[row_id]] = spec_from_dict(spec)
        specs: dict[str, list[SliverSpec]] = {}
        exclusive: dict[str, str] = {}
        for _, urn, component_id, slice_urn, version in live:
            spec = known.get((urn, version)) or fresh[(urn, version)]
            specs.setdefault(component_id, []).append(spec)
            if spec.exclusive:
                exclusive[component_id] = slice_urn
        if ids is None:   # a full scan knows every live sliver: keep exactly those
            self._specs = {(urn, v): known.get((urn, v)) or fresh[(urn, v)]
                           for _, urn, _, _, v in live}
        keys = set(used) | set(specs) | (set(ids) if ids is not None else set())
        return {cid: Usage(component_id=cid, used=used.get(cid, {}), slivers=tuple(specs.get(cid, ())),
                           exclusive_holder=exclusive.get(cid)) for cid in keys}

    def usage_between(self, session: Session, start: datetime, end: datetime) -> dict[str, Usage]:
        """What is held at the busiest instant of [start, end) per component and resource,
        and the specs of every sliver whose time overlaps it: the usage an advance
        reservation for that window is admitted against (drivers' own checks run on it as on
        `usage`). A live sliver counts from when it was made (or its window's start) to its
        expiry."""
        # One range scan of ix_slivers_window (no ORDER BY: sorting here keeps the planner on
        # the index), then the reservations of just those slivers by sliver id.
        begins = func.coalesce(Sliver.starts, Sliver.created)
        live = sorted(session.execute(
            select(Sliver.id, Sliver.urn, Sliver.component_id, Slice.urn, Sliver.version,
                   begins, Sliver.expires).join(Slice)
            .where(Sliver.allocation_state != Alloc.UNALLOCATED.value, Sliver.expires > start,
                   begins < end)).all(), key=lambda row: row[0])
        when = {row[0]: (row[5], row[6]) for row in live}
        per: dict[tuple[str, str], list[tuple[datetime, datetime, float]]] = {}
        ids = list(when)
        for chunk in chunks(ids, CHUNK):     # by sliver id: no scan of every reservation
            for sliver_id, comp, resource, amount in session.execute(
                    select(Reservation.sliver_id, Reservation.component_id,
                           Reservation.resource, Reservation.amount)
                    .where(Reservation.sliver_id.in_(chunk))):
                b, e = when[sliver_id]
                per.setdefault((comp, resource), []).append((b, e, amount))
        used: dict[str, dict[str, float]] = {}
        for (comp, resource), ivs in per.items():
            used.setdefault(comp, {})[resource] = peak(ivs, start, end)[0]
        specs: dict[str, list[SliverSpec]] = {}
        exclusive: dict[str, str] = {}
        for spec, (_, _, comp, slice_urn, *_rest) in zip(self._decoded(session, live), live):
            specs.setdefault(comp, []).append(spec)
            if spec.exclusive:
                exclusive[comp] = slice_urn
        return {cid: Usage(component_id=cid, used=used.get(cid, {}),
                           slivers=tuple(specs.get(cid, ())), exclusive_holder=exclusive.get(cid))
                for cid in set(used) | set(specs)}

    @staticmethod
    def windows_on(session: Session, component_ids: Iterable[str], start: datetime,
                   end: datetime) -> list[tuple[str, datetime, datetime]]:
        """(component, from, until) of the live slivers on these components whose time
        overlaps [start, end), earliest first (to name them in a refusal)."""
        begins = func.coalesce(Sliver.starts, Sliver.created)
        return [(comp, since, until) for comp, since, until in session.execute(
            select(Sliver.component_id, begins, Sliver.expires).where(
                Sliver.component_id.in_(list(component_ids)),
                Sliver.allocation_state != Alloc.UNALLOCATED.value,
                Sliver.expires > start, begins < end).order_by(begins).limit(5))]

    def specs_of(self, live: Sequence[Sequence[Any]]) -> list[SliverSpec]:
        """`_decoded` in a read of its own (the calendar's specs of the windows it places)."""
        with self.read() as session:
            return self._decoded(session, live)

    def _decoded(self, session: Session, live: Sequence[Sequence[Any]]) -> list[SliverSpec]:
        """The specs of `live` rows (id, urn, component, slice urn, version), from the kept
        decoded specs where possible; the ones decoded here are kept too."""
        known = self._specs
        missing = [row[0] for row in live if (row[1], row[4]) not in known]
        fresh: dict[int, SliverSpec] = {}
        for chunk in range(0, len(missing), 500):
            for row_id, spec in session.execute(select(Sliver.id, Sliver.spec).where(
                    Sliver.id.in_(missing[chunk:chunk + 500]))):
                fresh[row_id] = spec_from_dict(spec)
        for row in live:     # kept like usage()'s (bounded: a full scan replaces the set)
            if row[0] in fresh:
                known[(row[1], row[4])] = fresh[row[0]]
        return [known.get((row[1], row[4])) or fresh[row[0]] for row in live]

    def capacity_rows(self) -> list[tuple[str, str, float, float]]:
        with self.read() as session:
            return [(c.component_id, c.resource, c.capacity, c.used)
                    for c in session.scalars(select(Capacity).order_by(Capacity.component_id,
                                                                       Capacity.resource))]

