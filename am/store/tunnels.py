"""Tunnel ids: which VXLAN network identifier (VNI) each cross-host link holds.

A repository of its own (one concern, one small module). A link whose ends sit on two hosts is
two link slivers, one half per host, that must agree on one VNI; the row is keyed by the link
(its slice and client_id), so both halves, written in one Allocate, read the same id. `vni`
is UNIQUE site-wide: two Allocates racing for one id settle as other claims do, at the insert
(the loser's savepoint rolls back and it takes the next free id; no error reaches the user
while ids remain). The row goes when the last live half of the link is deleted or expires
(`release`, in the same transaction as the slivers' other claims).
"""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from am.store.models import Base, Slice, Sliver
from am.store.store import ReservationConflict, mark_usage_changed

VNI_FIRST, VNI_LAST = 1, (1 << 24) - 1     # the 24-bit VXLAN id space
UNALLOCATED = "geni_unallocated"


class Tunnel(Base):
    """One VNI held by one cross-host link (its halves are the slice's link slivers with
    this client_id)."""

    __tablename__ = "tunnels"
    __table_args__ = (UniqueConstraint("vni"), UniqueConstraint("slice_id", "client_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vni: Mapped[int] = mapped_column(Integer)
    slice_id: Mapped[int] = mapped_column(ForeignKey("slices.id"))
    client_id: Mapped[str] = mapped_column(String(255))


def claim(session: Session, slc: Slice, client_id: str, *, first: int = VNI_FIRST) -> int:
    """The VNI of link `client_id` of `slc`: the one it holds already (its other half), or the
    lowest free one, taken now. Raises ReservationConflict when the id space is exhausted."""
    mark_usage_changed(session)
    held = session.scalar(select(Tunnel.vni).where(Tunnel.slice_id == slc.id,
                                                   Tunnel.client_id == client_id))
    if held is not None:
        return int(held)
    taken = _taken(session)
    vni = max(first, VNI_FIRST)
    while vni <= VNI_LAST:
        if vni not in taken:
            try:
                with session.begin_nested():
                    session.add(Tunnel(vni=vni, slice_id=slc.id, client_id=client_id))
                    session.flush()
                return vni
            except IntegrityError:    # another Allocate took it meanwhile: the next one
                taken.add(vni)
        vni += 1
    raise ReservationConflict(client_id, f"a VXLAN id for link {client_id} (all "
                                         f"{VNI_LAST} are in use)", "claim")


def _taken(session: Session) -> set[int]:
    """The VNIs held now, as this transaction sees them (a rival may take more before our
    insert: the UNIQUE id settles it)."""
    return set(session.scalars(select(Tunnel.vni)))


def release(session: Session, rows: Iterable[Sliver]) -> None:
    """Free the VNI of every tunnel link among `rows` (already unallocated by the caller)
    whose halves are now all gone (idempotent)."""
    keys = {(r.slice_id, r.client_id) for r in rows
            if r.kind == "link" and ((r.spec or {}).get("link") or {}).get("mode") == "tunnel"}
    for slice_id, client_id in sorted(keys):
        live = session.scalar(select(Sliver.id).where(
            Sliver.slice_id == slice_id, Sliver.client_id == client_id, Sliver.kind == "link",
            Sliver.allocation_state != UNALLOCATED).limit(1))
        if live is None:
            session.execute(delete(Tunnel).where(Tunnel.slice_id == slice_id,
                                                 Tunnel.client_id == client_id))


def held(session: Session) -> dict[tuple[int, str], int]:
    """(slice id, link client_id) -> VNI, for every live tunnel."""
    return {(s, c): v for s, c, v in session.execute(
        select(Tunnel.slice_id, Tunnel.client_id, Tunnel.vni)).all()}


__all__ = ["Tunnel", "claim", "held", "release"]
