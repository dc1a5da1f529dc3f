"""What placement produces: planned slivers (spec + driver + reservation) and refusals."""
from __future__ import annotations

from dataclasses import dataclass, field

from drivers.base import SliverSpec


@dataclass(frozen=True)
class PlannedSliver:
    """One sliver to write at Allocate: its spec, its driver kind and what to reserve.

    `demand` is keyed by resource names of `Component.capacity` on `spec.component_id`
    (e.g. "cpu", "memory_mb", "guest_routers", "kbps:port3"); `claims` are unique tokens
    (e.g. "vlan:101") no two live slivers may hold on that component.
    """

    spec: SliverSpec
    driver: str
    demand: dict[str, float] = field(default_factory=dict)
    claims: tuple[str, ...] = ()


@dataclass(frozen=True)
class Refusal:
    """Why one request element (node, link or OpenFlow sliver) was not placed.

    `code` is a GENI code name (am.errors.GeniCode): BADARGS, UNSUPPORTED, INSUFFICIENT_NODES,
    TOOBIG, VLAN_UNAVAILABLE, INSUFFICIENT_BANDWIDTH.
    """

    client_id: str
    code: str
    reason: str

    def __str__(self) -> str:
        return f"{self.client_id}: {self.reason}"


@dataclass(frozen=True)
class Placement:
    slivers: list[PlannedSliver] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Everything asked for was placed."""
        return not self.refusals

    def message(self) -> str:
        """All refusals in one line, for a GeniError's output."""
        return "; ".join(str(r) for r in self.refusals)
