"""Allocate's admission without races: place on a snapshot, then settle under component locks.

Drivers admit a sliver by looking at the live slivers of its component (flowspace overlap, a
hybrid router's ports, exclusive use); no database constraint sees those conflicts, so two
Allocates that both read usage before either commits could both be admitted. Here:

  1. Placement (am.engine) runs outside any transaction, on a snapshot of usage taken after
     reading the usage generation, so a slow placement holds no lock.
  2. Allocate's write transaction locks the components that placement uses
     (`Store.admission_lock`: advisory locks in key order on PostgreSQL, the database itself
     on SQLite) and only then looks at usage again:
       * the usage generation has not moved since the snapshot: nothing that changes usage
         committed in between, the placement stands (one primary-key read; the usual case);
       * otherwise it places again on the usage committed now. If that placement uses only
         locked components it stands: no other Allocate can add to them before this one
         commits. If it moved to other components, their locks are taken without waiting
         and the generation is checked again; if another Allocate holds one, the transaction
         rolls back and starts over, waiting for the larger set in key order. The last
         attempt holds every component at once (one exclusive lock, `AdmissionLock.acquire_all`),
         which covers any placement.
A refusal found under the lock is the one a serial, later Allocate would get, naming the
sliver it conflicts with. Claims and the capacity CHECK stay as a backstop in the store.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from am.engine import Placement
    from am.store import Store
    from am.store.store import AdmissionLock
    from drivers.base import Usage

T = TypeVar("T")

#: Placements again within one transaction before it starts over with more locks.
MAX_REPLANS = 4
#: Transactions per Allocate; the last one locks every component.
MAX_ATTEMPTS = 3

#: Places a request on the given usage; raises GeniError for a refusal.
PlaceFn = Callable[[Mapping[str, "Usage"]], "Placement"]


@dataclass(frozen=True)
class Planned:
    """A placement and the usage generation read before the usage it was computed on."""

    placement: Placement
    generation: int | None


class StartOver(Exception):
    """The placement moved to components another transaction holds: roll back, retry."""

    def __init__(self, planned: Planned):
        super().__init__("placement moved to components locked by a concurrent Allocate")
        self.planned = planned


class AdmissionContention(Exception):
    """Every attempt lost its locks to concurrent Allocates (not expected: the last attempt
    locks every component, so only a placement outside the site could get here)."""


def components_of(placement: Placement) -> set[str]:
    return {p.spec.component_id for p in placement.slivers}


def settle(store: Store, session: Session, lock: AdmissionLock, planned: Planned,
           place: PlaceFn) -> Placement:
    """A placement that is valid now and stays valid until this transaction ends: `planned`
    if nothing changed, else a new one on committed usage (see the module docstring).
    Raises what `place` raises for a refusal, StartOver when the locks do not suffice."""
    for _ in range(MAX_REPLANS):
        generation = store.usage_generation(session)
        if generation is not None and generation == planned.generation:
            return planned.placement
        planned = Planned(place(store.usage(session)), generation)
        wanted = components_of(planned.placement)
        if lock.covers(wanted):          # locked before that usage was read
            return planned.placement
        if not lock.try_acquire(wanted):
            raise StartOver(planned)
    raise StartOver(planned)


def allocate_locked(store: Store, planned: Planned, place: PlaceFn,
                    write: Callable[[Session, Placement], T]) -> T:
    """Run `write(session, placement)` in a write transaction that holds the admission locks
    of the placement's components and a placement settled under them; returns its result."""
    wanted = components_of(planned.placement)
    for attempt in range(MAX_ATTEMPTS):
        try:
            with store.write() as session:
                lock = store.admission_lock(session)
                if attempt == MAX_ATTEMPTS - 1:
                    lock.acquire_all()
                else:
                    lock.acquire(wanted)
                return write(session, settle(store, session, lock, planned, place))
        except StartOver as again:
            planned = again.planned
            wanted |= components_of(planned.placement)
    raise AdmissionContention("concurrent Allocates kept changing where this request fits; "
                              "nothing was allocated, retry")


__all__ = ["AdmissionContention", "Planned", "allocate_locked", "components_of", "settle"]
