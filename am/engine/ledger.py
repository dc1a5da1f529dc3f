"""In-memory usage during one placement, so two slivers of a request never take one last slot.

Starts from what the store says is reserved (`Usage` per component) and adds every sliver the
engine admits. Load (for least-used-first placement) is cached per component and recomputed
only for the component that just changed.
"""
from __future__ import annotations

from collections.abc import Mapping

from drivers.base import CPU_MILLI, MEMORY_MB, Component, SliverSpec, Usage

LOAD_RESOURCES = (CPU_MILLI, MEMORY_MB)


class Ledger:
    def __init__(self, usage: Mapping[str, Usage], slice_urn: str):
        # Callers key usage by component URN; URNs compare case-insensitively.
        self._base = {k.lower(): u for k, u in usage.items()}
        self._slice_urn = slice_urn
        self._used: dict[str, dict[str, float]] = {}
        self._added: dict[str, list[SliverSpec]] = {}
        self._holder: dict[str, str] = {}
        self._cache: dict[str, Usage] = {}
        self._load: dict[str, tuple[float, int]] = {}

    def usage(self, comp: Component) -> Usage:
        key = comp.component_id.lower()
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        base = self._base.get(key)
        added = self._added.get(key)
        if base is None and not added:
            u = Usage(component_id=comp.component_id)
        elif not added:
            u = base
        else:
            used = dict(base.used) if base else {}
            for res, amount in self._used[key].items():
                used[res] = used.get(res, 0.0) + amount
            u = Usage(component_id=comp.component_id, used=used,
                      slivers=(base.slivers if base else ()) + tuple(added),
                      exclusive_holder=self._holder.get(key) or (base.exclusive_holder if base else None))
        self._cache[key] = u
        return u

    def commit(self, comp: Component, spec: SliverSpec, demand: Mapping[str, float]) -> None:
        key = comp.component_id.lower()
        used = self._used.setdefault(key, {})
        for res, amount in demand.items():
            used[res] = used.get(res, 0.0) + float(amount)
        self._added.setdefault(key, []).append(spec)
        if spec.exclusive:
            self._holder[key] = self._slice_urn
        self._cache.pop(key, None)
        self._load.pop(key, None)

    def load(self, comp: Component) -> tuple[float, int]:
        """(fullest fraction of cpu/memory, slivers): smaller is less used."""
        key = comp.component_id.lower()
        cached = self._load.get(key)
        if cached is not None:
            return cached
        base = self._base.get(key)
        if base is None and key not in self._added:
            load = (0.0, 0)
        else:
            u = self.usage(comp)
            frac = 0.0
            for res in LOAD_RESOURCES:
                cap = comp.capacity.get(res)
                if cap:
                    frac = max(frac, float(u.used.get(res, 0.0)) / cap)
            load = (round(frac, 9), len(u.slivers))
        self._load[key] = load
        return load

    def free(self, comp: Component, resource: str) -> float | None:
        """Capacity left of one resource, or None when the component does not meter it."""
        cap = comp.capacity.get(resource)
        if cap is None:
            return None
        return cap - float(self.usage(comp).used.get(resource, 0.0))
