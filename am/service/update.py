"""Update (AM API v3 optional method, v4 core): a slice's slivers changed to a new request.

The new request is placed like an Allocate, with three differences:
  * the slivers being updated (the slice's, or the named ones) are taken out of the usage it
    is placed on, so a sliver that stays does not compete with itself;
  * a request element whose client_id names an existing sliver gets that sliver's URN (and so
    the same MACs), and a node of a provisioned sliver stays on its component (naming another
    component is refused: a running sliver does not move);
  * the placement is then compared with what exists, sliver by sliver (`diff`):
      unchanged  same spec: nothing happens (same URN, the substrate is not touched);
      new        a new sliver, geni_allocated, as Allocate makes it;
      changed    allocated: the new spec at once; provisioned: geni_updating with the new spec
                 `Pending` until Provision commits it (an `update` job reconfigures in place);
      removed    allocated: deleted at once; provisioned: geni_updating with a pending removal
                 that Provision carries out (a delete job).
Everything is written in the one admission transaction (am.service.admission): a refused
Update leaves the slice exactly as it was. While a change is pending the sliver holds, per
resource, the larger of what it holds now and what it will need, and both sets of claims, so
neither the running sliver nor the commit can lose its room. A pending change not provisioned
(or renewed) before `pending_until` is reverted by the reaper (`revert`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from am.errors import GeniCode, GeniError
from am.states import Alloc, Event
from am.store import Sliver, Store, spec_from_dict, spec_to_dict
from am.store.pending import CHANGE, REMOVE, Pending, pending_of, revert
from drivers.base import DriverError, Usage

if TYPE_CHECKING:
    from drivers.registry import Site
    from sqlalchemy.orm import Session

    from am.engine import Placement
    from am.engine.plan import PlannedSliver

@dataclass
class Outcome:
    """What an Update did, sliver by sliver (URNs)."""

    unchanged: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)    # best effort: "client_id: reason"


def without(usage: Mapping[str, Usage], held: Mapping[str, Mapping[str, float]],
            urns: set[str], slice_urn: str) -> dict[str, Usage]:
    """`usage` minus what the slivers `urns` hold (`held`: component -> resource -> amount),
    so placement sees their room as free and their specs as absent."""
    out: dict[str, Usage] = {}
    for comp_id, use in usage.items():
        minus = held.get(comp_id.lower())
        specs = tuple(s for s in use.slivers if s.sliver_urn not in urns)
        if minus is None and len(specs) == len(use.slivers):
            out[comp_id] = use
            continue
        used = {r: a - (minus or {}).get(r, 0.0) for r, a in use.used.items()}
        holder = use.exclusive_holder
        if holder == slice_urn and not any(s.exclusive for s in specs):
            holder = None
        out[comp_id] = Usage(component_id=use.component_id, used=used, slivers=specs,
                             exclusive_holder=holder)
    return out


def bind_request(request, rows: Iterable[Sliver]):
    """The request with each node that names a provisioned sliver's client_id bound to that
    sliver's component (and each one naming an allocated sliver kept where it is unless it
    says otherwise). UNSUPPORTED for a running sliver asked to move."""
    where = {r.client_id: r for r in rows if r.kind == "node"}
    nodes = []
    for node in request.nodes:
        row = where.get(node.client_id)
        if row is None:
            nodes.append(node)
            continue
        if node.component_id and node.component_id.lower() != row.component_id.lower():
            if row.allocation_state == Alloc.PROVISIONED.value:
                raise GeniError(GeniCode.UNSUPPORTED,
                                f"node {node.client_id} (sliver {row.urn}) runs on "
                                f"{row.component_id}; Update cannot move a provisioned sliver "
                                f"to {node.component_id} (delete it and add a new client_id)")
            nodes.append(node)
            continue
        nodes.append(dataclasses.replace(node, component_id=row.component_id))
    return dataclasses.replace(request, nodes=tuple(nodes))


class Updater:
    """The write half of one Update, inside the admission transaction."""

    def __init__(self, store: Store, session: Session, site: Site, *, now: datetime,
                 pending_until: datetime,
                 element_for: Callable[[Any], str], new_row: Callable[[Any], Sliver]):
        self.store, self.session, self.site = store, session, site
        self.now, self.pending_until = now, pending_until
        self.element_for = element_for      # PlannedSliver.spec -> request element XML
        self.new_row = new_row              # PlannedSliver -> allocated Sliver row
        self.outcome = Outcome()

    def apply(self, rows: list[Sliver], placement: Placement, refused: set[str]) -> list[Sliver]:
        """Write the difference between `rows` (the slivers updated) and `placement`; returns
        the slivers the slice has here afterwards (among those considered)."""
        planned = {p.spec.sliver_urn: p for p in placement.slivers}
        after: list[Sliver] = []
        for row in sorted(rows, key=lambda r: (r.component_id, r.id)):
            p = planned.pop(row.urn, None)
            if p is None:
                if row.client_id in refused:     # best effort: left as it is
                    self.outcome.unchanged.append(row.urn)
                    after.append(row)
                elif self._remove(row):
                    after.append(row)
                continue
            self._change(row, p)
            after.append(row)
        for p in sorted(planned.values(), key=lambda p: p.spec.component_id):
            row = self.new_row(p)
            self.outcome.added.append(row.urn)
            after.append(row)
        return after

    # ---- one sliver -----------------------------------------------------------------------
    def _remove(self, row: Sliver) -> bool:
        """True if the sliver stays until Provision (a provisioned one)."""
        self.outcome.removed.append(row.urn)
        if row.allocation_state == Alloc.ALLOCATED.value:
            self.store.transition(self.session, row, Event.DELETE)
            self.store.release(self.session, row)
            return False
        old = self._pending(row)
        pending = Pending(op=REMOVE, before=old.before if old else row.operational_state,
                          old_demand=old.old_demand if old else self.store.held(self.session, row)[0],
                          old_claims=old.old_claims if old else self.store.held(self.session, row)[1])
        self.store.transition(self.session, row, Event.UPDATE)
        if old is not None and old.op == CHANGE:     # give back what the dropped change held
            self.store.rereserve(self.session, row, pending.old_demand, pending.old_claims)
        self._set_pending(row, pending)
        return True

    def _change(self, row: Sliver, p: PlannedSliver) -> None:
        new = spec_to_dict(p.spec)
        xml = self.element_for(p.spec)
        if row.kind != p.spec.kind.value:
            raise GeniError(GeniCode.BADARGS, f"client_id {row.client_id} names a {row.kind} "
                                              f"here and a {p.spec.kind.value} in the request")
        old = self._pending(row)
        if row.allocation_state == Alloc.ALLOCATED.value:
            if new == row.spec:
                row.element_xml = xml or row.element_xml
                self.outcome.unchanged.append(row.urn)
                return
            row.spec, row.element_xml = new, xml
            row.component_id, row.driver, row.sliver_type = (p.spec.component_id, p.driver,
                                                             p.spec.sliver_type)
            self.store.rereserve(self.session, row, p.demand, p.claims)
            self.outcome.changed.append(row.urn)
            return
        if new == row.spec:                      # back to (or still) what runs
            if old is not None:
                revert(self.session, self.store, row)
            row.element_xml = xml or row.element_xml
            self.outcome.unchanged.append(row.urn)
            return
        if old is not None and old.op == CHANGE and old.spec == new:
            self.outcome.changed.append(row.urn)   # the same change again
            return
        driver = self.site.drivers.get(row.driver)
        try:
            if driver is None:
                raise DriverError(f"driver {row.driver!r} is not configured at this AM")
            driver.check_update(spec_from_dict(row.spec), p.spec)
        except DriverError as exc:
            raise GeniError(GeniCode.UNSUPPORTED, f"sliver {row.urn} ({row.client_id}) cannot "
                                                  f"be changed in place: {exc}") from None
        held = (old.old_demand, old.old_claims) if old else self.store.held(self.session, row)
        pending = Pending(op=CHANGE, before=old.before if old else row.operational_state,
                          old_demand=dict(held[0]), old_claims=tuple(held[1]), spec=new,
                          element_xml=xml, demand=dict(p.demand), claims=tuple(p.claims),
                          component_id=p.spec.component_id, driver=p.driver)
        self.store.transition(self.session, row, Event.UPDATE)
        self.store.rereserve(self.session, row, *pending.holding())
        self._set_pending(row, pending)
        self.outcome.changed.append(row.urn)

    def _set_pending(self, row: Sliver, pending: Pending) -> None:
        row.pending = pending.to_json()
        row.pending_until = self.pending_until

    @staticmethod
    def _pending(row: Sliver) -> Pending | None:
        return pending_of(row)


__all__ = ["Outcome", "Updater", "bind_request", "without"]
