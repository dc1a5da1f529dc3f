"""Hybrid virtual routers in the aggregate: a control-plane sliver (Xen VM) and the
forwarding-plane sliver placed for it (a NetFPGA slot) live and die together.

Placement (`am.engine.nodes.NodePlacer.place_forwarding`) records the pair in the specs'
params: the control sliver's `forwarding_sliver` names its forwarding sliver and the
forwarding sliver's `control_sliver` names its control plane. An operation that names only the
router's (control) sliver URN — Provision, PerformOperationalAction, Delete — also acts on its
forwarding sliver, so a route change reaches the plane that forwards and Delete frees the slot.
Once both halves are provisioned the control plane is plugged into the plane's CPU port
(`plug_control_plane`, called by the provision job).
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from drivers.base import SliverSpec

from am.store import Sliver, Store, spec_from_dict
from am.store.codec import stored_param

if TYPE_CHECKING:
    from drivers.registry import Site


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


def plug_control_plane(store: Store, site: Site, spec: SliverSpec) -> bool:
    """After a provision of either half of a hybrid router: plug the control plane into its
    forwarding plane's CPU port (a NetFPGA slot's), so packets the plane punts to software
    reach the control-plane guest. The two halves are provisioned by separate jobs in any
    order; each job tries once its own half is done, so the later of the two plugs it (both
    may: plugging is idempotent). True when the port was plugged now."""
    control_urn = spec.params.get("control_sliver")
    forwarding_urn = spec.params.get("forwarding_sliver")
    partner = control_urn or forwarding_urn
    if not isinstance(partner, str):
        return False
    with store.read() as session:
        rows = store.slivers_by_urn(session, [partner])
        if not rows:
            return False
        other = (spec_from_dict(rows[0].spec), rows[0].driver)
    if control_urn:
        (cspec, ckind), fspec, fkind = other, spec, _driver_kind(site, spec)
    else:
        (fspec, fkind), cspec, ckind = other, spec, _driver_kind(site, spec)
    fdriver, cdriver = site.drivers.get(fkind), site.drivers.get(ckind)
    # both declare it (drivers.base.Capabilities): a plane with a CPU port, a control plane
    # that can be plugged into one
    if fdriver is None or cdriver is None or not fdriver.capabilities.cpu_ports or \
            not cdriver.capabilities.control_ports:
        return False
    wire = fdriver.control_port(fspec)         # type: ignore[attr-defined]
    return bool(wire) and cdriver.plug_control_port(cspec, wire)   # type: ignore[attr-defined]


def _driver_kind(site: Site, spec: SliverSpec) -> str | None:
    comp = site.component(spec.component_id)
    return comp.driver if comp is not None else None


__all__ = ["plug_control_plane", "with_forwarding_slivers"]
