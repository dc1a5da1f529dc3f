"""Stitching VLAN tags: which tag each stitched link holds on each hop of its path here.

A repository of its own (one concern, one small module): the rows say "sliver S holds tag T on
hop H" for every local hop of a stitched link's path (the edge port, and any other hop of this
aggregate the path names). (hop, tag) is UNIQUE, so two Allocates racing for one tag on one hop
end as other claims do: the second one's insert fails inside its transaction, which rolls back
whole (`ReservationConflict`, answered as VLAN_UNAVAILABLE naming the hop and the tag). Rows go
when the sliver is deleted or expires (`release`), in the same transaction as its other claims;
a renewed sliver keeps its rows (they hold as long as the sliver lives).
"""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from am.store.models import URN, Base, Sliver
from am.store.store import ReservationConflict, mark_usage_changed


class StitchTag(Base):
    """One VLAN tag held on one stitching hop (a port URN, lowercased) by one live sliver."""

    __tablename__ = "stitch_tags"
    __table_args__ = (UniqueConstraint("hop", "tag"), Index(None, "sliver_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hop: Mapped[str] = mapped_column(URN)
    tag: Mapped[int] = mapped_column(Integer)
    sliver_id: Mapped[int] = mapped_column(ForeignKey("slivers.id"))
    hop_name: Mapped[str] = mapped_column(String(255))   # the request's hop id, for messages


def claim(session: Session, sliver: Sliver, hops: Iterable[tuple[str, str]], tag: int) -> None:
    """Hold `tag` on every (hop URN, hop id) for `sliver`, or raise ReservationConflict naming
    the first hop where another live sliver holds it (the caller's transaction rolls back)."""
    mark_usage_changed(session)
    for hop, name in sorted(set(hops)):
        try:
            with session.begin_nested():
                session.add(StitchTag(hop=hop.strip().lower(), tag=int(tag),
                                      sliver_id=sliver.id, hop_name=name))
                session.flush()
        except IntegrityError:
            raise ReservationConflict(hop, f"VLAN {tag} on hop {name} ({hop})",
                                      "claim") from None


def release(session: Session, sliver_ids: Iterable[int]) -> None:
    """Free every tag the slivers hold (idempotent)."""
    ids = sorted(set(sliver_ids))
    if ids:
        session.execute(delete(StitchTag).where(StitchTag.sliver_id.in_(ids)))


def taken(session: Session, hop: str) -> set[int]:
    """The tags live slivers hold on `hop`."""
    return set(session.scalars(select(StitchTag.tag).where(
        StitchTag.hop == hop.strip().lower())))


def held(session: Session, sliver_id: int) -> dict[str, int]:
    """hop URN -> tag, for one sliver."""
    return dict(session.execute(select(StitchTag.hop, StitchTag.tag).where(
        StitchTag.sliver_id == sliver_id)).all())


__all__ = ["StitchTag", "claim", "held", "release", "taken"]
