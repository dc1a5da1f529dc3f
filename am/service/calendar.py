"""Capacity over time: the free capacity per component per step (the client's `calendar`),
and the earliest window in which a whole request fits (`find-slot`).

Both read what is held over the horizon once (`Timeline.load`: two queries, every live
sliver's time as seconds computed by the database, from when it was made or its window's start
to its expiry, and its reservations) and then work in memory: per component and resource the
busiest amount in each step (a sweep over the events), per component each sliver's span of
steps. Windows are walked incrementally (`Timeline.windows`: a sliver enters and leaves once),
and a candidate window is placed by the same engine as Allocate (drivers' admission included)
on that window's usage, so the answer is what an Allocate with that geni_start_time would get
at that moment. Specs are decoded only for the windows placed (and kept by the store).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from am.store import Store
from drivers.base import SliverSpec, Usage


def position_peaks(intervals: Iterable[tuple[float, float, float]], n: int) -> list[float]:
    """The most held at once by `intervals` (begin, end, amount; in steps from the start, as
    floats) within each of the `n` steps. Steps without an event inside are filled a run at a
    time, so the cost follows the events, not the horizon."""
    events: list[tuple[float, float]] = []
    for b, e, amount in intervals:
        if b < e and amount:
            events += [(b, amount), (e, -amount)]
    events.sort()                                  # releases before takes at one instant
    peaks = [0.0] * n
    held = 0.0
    i, count, k = 0, len(events), 0
    while k < n:
        while i < count and events[i][0] <= k:     # held when the step begins
            held += events[i][1]
            i += 1
        nxt = events[i][0] if i < count else math.inf
        if nxt >= k + 1:                           # steps up to the next event's are flat
            flat = n if nxt == math.inf else min(n, math.floor(nxt))
            peaks[k:flat] = [held if held > 0 else 0.0] * (flat - k)
            k = flat
            continue
        top = held
        while i < count and events[i][0] < k + 1:
            held += events[i][1]
            top = max(top, held)
            i += 1
        peaks[k] = top if top > 0 else 0.0
        k += 1
    return peaks


@dataclass
class Timeline:
    """What is held over [start, start + n steps) at this AM, read once."""

    start: datetime
    step: timedelta
    n: int
    peaks: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    #: per component: (first step, step after the last, sliver id, slice URN) of each sliver
    spans: dict[str, list[tuple[int, int, int, str]]] = field(default_factory=dict)
    raw: dict[int, tuple[str, int]] = field(default_factory=dict)     # id -> (urn, version)
    specs: dict[int, SliverSpec] = field(default_factory=dict)        # decoded when needed
    store: Store | None = None

    @classmethod
    def load(cls, store: Store, start: datetime, step: timedelta, n: int) -> Timeline:
        tl = cls(start, step, n)
        # One row per live sliver with its times as seconds since the epoch, then its
        # reservations by sliver id; both as plain Core rows (see `held_between`).
        live, held = store.read_models.held_between(start, start + n * step)
        tl.store = store
        origin, size = start.timestamp(), step.total_seconds()
        spans: dict[int, tuple[float, float]] = {}
        for sid, urn, comp, slice_urn, version, b, e in live:
            tl.raw[sid] = (urn, version)
            # in steps from `start`; seconds rounded to the millisecond first, so the database's
            # float arithmetic never moves a sliver that starts on the hour into the hour before
            b, e = round(float(b) - origin, 3) / size, round(float(e) - origin, 3) / size
            spans[sid] = (b, e)
            first, last = max(0, math.floor(b)), min(n, math.ceil(e))
            if first < last:
                tl.spans.setdefault(comp, []).append((first, last, sid, slice_urn))
        per: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
        for sid, comp, res, amount in held:
            if sid in spans:
                per.setdefault((comp, res), []).append((*spans[sid], amount))
        for (comp, res), ivs in per.items():
            tl.peaks.setdefault(comp, {})[res] = position_peaks(ivs, n)
        return tl

    def _specs_of(self, ids: Iterable[int]) -> dict[int, SliverSpec]:
        """Decoded specs of these slivers (only those a candidate window needs, once each)."""
        missing = [i for i in ids if i not in self.specs]
        if missing and self.store is not None:
            rows = [(i, *self.raw[i]) for i in missing]
            decoded = self.store.capacity.specs_of([(i, u, "", "", v) for i, u, v in rows])
            self.specs.update(zip(missing, decoded))
        return self.specs

    def _usage(self, comp: str, used: dict[str, float], seen: dict[int, str]) -> Usage:
        specs = self._specs_of(seen)
        holder = next((s for sid, s in seen.items() if specs[sid].exclusive), None)
        return Usage(component_id=comp, used=used, slivers=tuple(specs[sid] for sid in seen),
                     exclusive_holder=holder)

    def usage_of(self, a: int, b: int) -> dict[str, Usage]:
        """The usage of steps [a, b) (read directly; `windows` walks many cheaply)."""
        out: dict[str, Usage] = {}
        for comp in set(self.peaks) | set(self.spans):
            used = {res: max(vals[a:b], default=0.0)
                    for res, vals in self.peaks.get(comp, {}).items()}
            seen = {sid: slc for first, last, sid, slc in self.spans.get(comp, ())
                    if first < b and last > a}
            out[comp] = self._usage(comp, used, seen)
        return out

    def windows(self, width: int, count: int
                ) -> Iterator[tuple[int, bool, Callable[[], dict[str, Usage]]]]:
        """(k, shrank, usage) for the windows [k, k + width), k = 0 .. count - 1, in order;
        `usage()` gives that window's usage (valid until the next step).

        Incremental: a sliver enters the window once and leaves once, and a component's
        `Usage` is rebuilt, when asked for, only if its slivers or its busiest amounts changed
        (the same dict, updated in place). `shrank` says whether anything left the window since
        the previous one; when nothing did, this window holds at least all the previous one
        held (a sliver busy in the step that left is still busy when the next step begins), so
        a request that did not fit there does not fit here either."""
        comps = sorted(set(self.peaks) | set(self.spans))
        enter: dict[int, list[tuple[str, int, str]]] = {}
        leave: dict[int, list[tuple[str, int]]] = {}
        for comp, spans in self.spans.items():
            for first, last, sid, slice_urn in spans:
                enter.setdefault(first, []).append((comp, sid, slice_urn))
                leave.setdefault(last, []).append((comp, sid))
        active: dict[str, dict[int, str]] = {c: {} for c in comps}
        usage: dict[str, Usage] = {}
        built: dict[str, dict[str, float]] = {}
        dirty: set[str] = set(comps)      # changed since the usage was last built
        current = 0

        def build() -> dict[str, Usage]:
            k = current
            for comp in comps:
                used = {res: max(vals[k:k + width], default=0.0)   # asked-for k only
                        for res, vals in self.peaks.get(comp, {}).items()}
                if comp in dirty or built.get(comp) != used:
                    built[comp] = used
                    usage[comp] = self._usage(comp, used, active[comp])
            dirty.clear()
            return usage

        entered = -1          # every sliver whose first step <= entered is in
        for k in range(count):
            current = k
            shrank = k == 0
            for step in range(entered + 1, k + width):
                for comp, sid, slice_urn in enter.get(step, ()):
                    active[comp][sid] = slice_urn
                    dirty.add(comp)
            entered = max(entered, k + width - 1)
            for comp, sid in leave.get(k, ()):      # last == k: busy up to step k - 1 only
                if active[comp].pop(sid, None) is not None:
                    dirty.add(comp)
                    shrank = True
            yield k, shrank, build


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


__all__ = ["Timeline", "free_table", "position_peaks"]
