"""Capacity over time: the free capacity per component per step (the client's `calendar`),
and the earliest window in which a whole request fits (`find-slot`).

Both read what is held over the horizon once (`Timeline.load`: every live sliver's time, from
when it was made or its window's start to its expiry, its reservations and its spec) and then
work in memory: per component and resource the busiest amount in each step (a sweep), per
component the slivers in each step (buckets). A candidate window is then placed by the same
engine as Allocate (drivers' admission included) on the usage of that window, so the answer
is what an Allocate with that geni_start_time would get at that moment.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select

from am.states import Alloc
from am.store import Reservation, Slice, Sliver, Store
from drivers.base import SliverSpec, Usage


def step_peaks(intervals: Iterable[tuple[datetime, datetime, float]], start: datetime,
               step: timedelta, n: int) -> list[float]:
    """The most held at once by `intervals` within each of the `n` steps from `start`
    (times turned into step positions once; the sweep is then plain arithmetic)."""
    size = step.total_seconds()
    events: list[tuple[float, float]] = []
    for b, e, amount in intervals:
        if b < e and amount:
            events += [((b - start).total_seconds() / size, amount),
                       ((e - start).total_seconds() / size, -amount)]
    events.sort()                                  # releases before takes at one instant
    peaks = [0.0] * n
    held = 0.0
    i, count = 0, len(events)
    for k in range(n):
        while i < count and events[i][0] <= k:     # held when the step begins
            held += events[i][1]
            i += 1
        top = held
        while i < count and events[i][0] < k + 1:
            held += events[i][1]
            top = max(top, held)
            i += 1
        peaks[k] = top if top > 0 else 0.0
    return peaks


def window_max(values: Sequence[float], width: int) -> list[float]:
    """max(values[k:k+width]) for every k (a monotone deque: linear time)."""
    out: list[float] = []
    q: deque[int] = deque()
    for i, v in enumerate(values):
        while q and values[q[-1]] <= v:
            q.pop()
        q.append(i)
        if q[0] <= i - width:
            q.popleft()
        if i >= width - 1:
            out.append(values[q[0]])
    return out


@dataclass
class Timeline:
    """What is held over [start, start + n steps) at this AM, read once."""

    start: datetime
    step: timedelta
    n: int
    peaks: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    buckets: dict[str, list[list[tuple[int, str]]]] = field(default_factory=dict)
    raw: dict[int, tuple[str, int]] = field(default_factory=dict)     # id -> (urn, version)
    specs: dict[int, SliverSpec] = field(default_factory=dict)        # decoded when needed
    store: Store | None = None

    @classmethod
    def load(cls, store: Store, start: datetime, step: timedelta, n: int) -> Timeline:
        end = start + n * step
        begins = func.coalesce(Sliver.starts, Sliver.created)
        overlap = (Sliver.allocation_state != Alloc.UNALLOCATED.value, Sliver.expires > start,
                   begins < end)
        tl = cls(start, step, n)
        per: dict[tuple[str, str], list[tuple[datetime, datetime, float]]] = {}
        with store.read() as session:
            for comp, res, amount, b, e in session.execute(
                    select(Reservation.component_id, Reservation.resource, Reservation.amount,
                           begins, Sliver.expires)
                    .join(Sliver, Sliver.id == Reservation.sliver_id).where(*overlap)):
                per.setdefault((comp, res), []).append((b, e, amount))
            live = session.execute(select(Sliver.id, Sliver.urn, Sliver.component_id,
                                          Slice.urn, Sliver.version, begins, Sliver.expires)
                                   .join(Slice).where(*overlap).order_by(Sliver.id)).all()
        tl.store = store
        for (comp, res), ivs in per.items():
            tl.peaks.setdefault(comp, {})[res] = step_peaks(ivs, start, step, n)
        for sid, urn, comp, slice_urn, version, b, e in live:
            tl.raw[sid] = (urn, version)
            slots = tl.buckets.get(comp)
            if slots is None:
                slots = tl.buckets[comp] = [[] for _ in range(n)]
            first = max(0, math.floor((b - start) / step))
            last = min(n, math.ceil((e - start) / step))
            for k in range(first, last):
                slots[k].append((sid, slice_urn))
        return tl

    def _specs_of(self, ids: Iterable[int]) -> dict[int, SliverSpec]:
        """Decoded specs of these slivers (only those a candidate window needs, once each)."""
        missing = [i for i in ids if i not in self.specs]
        if missing and self.store is not None:
            with self.store.read() as session:
                rows = [(i, *self.raw[i]) for i in missing]
                decoded = self.store._decoded(session, [(i, u, "", "", v) for i, u, v in rows])
            self.specs.update(zip(missing, decoded))
        return self.specs

    def usage(self, k: int, width: int, wide: dict[tuple[str, str], list[float]]
              ) -> dict[str, Usage]:
        """The usage of steps [k, k + width) (`wide`: window maxima per (comp, resource))."""
        out: dict[str, Usage] = {}
        for comp in set(self.peaks) | set(self.buckets):
            used = {res: wide[(comp, res)][k] for res in self.peaks.get(comp, {})}
            seen: dict[int, str] = {}
            for slot in self.buckets.get(comp, ())[k:k + width]:
                for sid, slice_urn in slot:
                    seen[sid] = slice_urn
            specs = self._specs_of(seen)
            holder = next((s for sid, s in seen.items() if specs[sid].exclusive), None)
            out[comp] = Usage(component_id=comp, used=used,
                              slivers=tuple(specs[sid] for sid in seen),
                              exclusive_holder=holder)
        return out

    def widened(self, width: int) -> dict[tuple[str, str], list[float]]:
        return {(comp, res): window_max(vals, width)
                for comp, per in self.peaks.items() for res, vals in per.items()}


def free_table(tl: Timeline, components: Iterable) -> list[dict]:
    """Per component and metered resource: its capacity and the free amount in each step."""
    rows = []
    for comp in components:
        for res, cap in sorted(comp.capacity.items()):
            held = tl.peaks.get(comp.component_id, {}).get(res, [0.0] * tl.n)
            rows.append({"component_id": comp.component_id, "name": comp.name,
                         "resource": res, "capacity": float(cap),
                         "free": [max(0.0, float(cap) - h) for h in held]})
    return rows


__all__ = ["Timeline", "free_table", "step_peaks", "window_max"]
