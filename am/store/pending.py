"""A provisioned sliver's pending Update (`Sliver.pending`): what it becomes, what it holds.

Written by Update (am.service.update), committed by the update job (am.jobs.runner) after the
driver reconfigured the sliver, reverted by the reaper when `pending_until` passes, by
Shutdown, or by an Update back to the running spec. While pending, the sliver holds per
resource the larger of its old and new demand and both claim sets (`Pending.holding`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from am.states import Alloc, Event, Op

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from am.store.models import Sliver
    from am.store.store import Store

CHANGE = "change"
REMOVE = "remove"


@dataclass(frozen=True)
class Pending:
    """A provisioned sliver's change waiting for Provision (stored as `Sliver.pending`)."""

    op: str                                   # CHANGE | REMOVE
    before: str                               # the operational state to return to on revert
    old_demand: dict[str, float]              # what the running sliver holds
    old_claims: tuple[str, ...]
    spec: dict[str, Any] | None = None        # CHANGE: the new spec (codec dict)
    element_xml: str = ""
    demand: dict[str, float] = field(default_factory=dict)
    claims: tuple[str, ...] = ()
    component_id: str = ""
    driver: str = ""

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "old_claims": list(self.old_claims),
                "claims": list(self.claims)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Pending:
        return cls(**{**data, "old_claims": tuple(data.get("old_claims", ())),
                      "claims": tuple(data.get("claims", ()))})

    def holding(self) -> tuple[dict[str, float], tuple[str, ...]]:
        """What the sliver holds while the change is pending: the larger of old and new per
        resource, and both claim sets."""
        demand = dict(self.old_demand)
        for resource, amount in self.demand.items():
            demand[resource] = max(demand.get(resource, 0.0), amount)
        return demand, tuple(sorted(set(self.old_claims) | set(self.claims)))


def pending_of(row: Sliver) -> Pending | None:
    return Pending.from_json(row.pending) if row.pending else None


def revert(session: Session, store: Store, row: Sliver) -> None:
    """Drop the sliver's pending change: the state it had and what it held before."""
    pending = pending_of(row)
    row.pending, row.pending_until = None, None
    if pending is None:
        return
    if row.operational_state == Op.UPDATING.value:
        store.transition(session, row, Event.UPDATE_REVERT,
                         (Alloc.PROVISIONED, Op(pending.before)))
    store.rereserve(session, row, pending.old_demand, pending.old_claims)


def commit(session: Session, store: Store, row: Sliver, facts: Mapping[str, Any],
           resource_status: str) -> None:
    """The update job reconfigured the sliver: the new spec is the sliver's now."""
    pending = Pending.from_json(row.pending or {})
    assert pending.spec is not None, f"{row.urn}: a pending removal has no spec to commit"
    row.spec, row.element_xml = pending.spec, pending.element_xml or row.element_xml
    row.facts, row.resource_status = dict(facts), resource_status
    row.pending, row.pending_until = None, None
    store.rereserve(session, row, pending.demand, pending.claims)


__all__ = ["CHANGE", "REMOVE", "Pending", "commit", "pending_of", "revert"]
