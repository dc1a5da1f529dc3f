"""Hybrid virtual routers in the aggregate: a control-plane sliver (Xen VM) and the
forwarding-plane sliver placed for it (a NetFPGA slot) live and die together.

Placement (`am.engine.nodes.NodePlacer.place_forwarding`) records the pair in the specs'
params: the control sliver's `forwarding_sliver` names its forwarding sliver and the
forwarding sliver's `control_sliver` names its control plane. An operation that names only the
router's (control) sliver URN — Provision, PerformOperationalAction, Delete — also acts on its
forwarding sliver, so a route change reaches the plane that forwards and Delete frees the slot.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from am.store import Sliver, Store
from am.store.codec import stored_param


def with_forwarding_slivers(store: Store, session: Session, rows: list[Sliver],
                            now: datetime, *, lock: bool = False) -> list[Sliver]:
    """`rows` plus the live forwarding slivers of the hybrid routers among them (once each,
    in sliver id order so concurrent writers lock in one order)."""
    wanted = [stored_param(r.spec, "forwarding_sliver") for r in rows]
    have = {r.urn for r in rows}
    extra = sorted({u for u in wanted if isinstance(u, str) and u not in have})
    if not extra:
        return rows
    more = store.live_slivers(session, now, urns=extra, for_update=lock)
    return sorted([*rows, *more], key=lambda r: r.id)


__all__ = ["with_forwarding_slivers"]
