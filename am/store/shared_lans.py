"""Shared LANs (ProtoGENI's geni_sharelan): which LAN sliver a slice shares under which token,
and which link slivers of other slices joined it.

A repository of its own. A share is a row naming the owner's LAN sliver, its component and the
token joiners give in `<sharedvlan:link_shared_vlan name="TOKEN"/>`; a token is unique among
active shares (a partial UNIQUE index), so two slices cannot share under one name. Unsharing
keeps the row with `revoked` set, so a joiner naming a revoked token is told it was unshared
rather than that it never existed. Members are the joining slices' link slivers; they are
detached (deleted) when the share ends: geni_unsharelan, or the owner's LAN going away.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, delete, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from am.states import Alloc
from am.store.models import URN, Base, Sliver
from am.store.types import UTCDateTime


class SharedLan(Base):
    """A LAN sliver shared under `token` (active while `revoked` is null)."""

    __tablename__ = "shared_lans"
    __table_args__ = (Index("ix_shared_lans_token_active", "token", unique=True,
                            sqlite_where=text("revoked IS NULL"),
                            postgresql_where=text("revoked IS NULL")),
                      Index(None, "lan_sliver_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token: Mapped[str] = mapped_column(String(255))
    lan_sliver_id: Mapped[int] = mapped_column(ForeignKey("slivers.id"))
    lan_client_id: Mapped[str] = mapped_column(String(255))
    slice_urn: Mapped[str] = mapped_column(URN)
    component_id: Mapped[str] = mapped_column(URN)
    created: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SharedLanMember(Base):
    """A link sliver of another slice joined to a shared LAN."""

    __tablename__ = "shared_lan_members"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shared_lan_id: Mapped[int] = mapped_column(ForeignKey("shared_lans.id"), index=True)
    sliver_id: Mapped[int] = mapped_column(ForeignKey("slivers.id"), unique=True)


@dataclass(frozen=True)
class ShareRef:
    """What placement needs of an active share (plain data: the engine has no database)."""

    token: str
    component_id: str
    lan_sliver_urn: str
    slice_urn: str


def active(session: Session, token: str) -> SharedLan | None:
    return session.scalars(select(SharedLan).where(SharedLan.token == token,
                                                   SharedLan.revoked.is_(None))).first()


def last_revoked(session: Session, token: str) -> SharedLan | None:
    return session.scalars(select(SharedLan).where(SharedLan.token == token,
                                                   SharedLan.revoked.is_not(None))
                           .order_by(SharedLan.revoked.desc())).first()


def of_lan(session: Session, lan_sliver_ids: Iterable[int]) -> list[SharedLan]:
    """The active shares of these LAN slivers."""
    ids = sorted(set(lan_sliver_ids))
    if not ids:
        return []
    return list(session.scalars(select(SharedLan).where(SharedLan.lan_sliver_id.in_(ids),
                                                        SharedLan.revoked.is_(None))))


def refs(session: Session, tokens: Iterable[str]) -> dict[str, ShareRef]:
    """token -> the share, for the tokens that are shared now."""
    names = sorted(set(tokens))
    if not names:
        return {}
    rows = session.execute(select(SharedLan.token, SharedLan.component_id, Sliver.urn,
                                  SharedLan.slice_urn)
                           .join(Sliver, Sliver.id == SharedLan.lan_sliver_id)
                           .where(SharedLan.token.in_(names), SharedLan.revoked.is_(None)))
    return {t: ShareRef(t, c, u, s) for t, c, u, s in rows}


def share(session: Session, lan: Sliver, token: str, slice_urn: str, now: datetime) -> SharedLan:
    row = SharedLan(token=token, lan_sliver_id=lan.id, lan_client_id=lan.client_id or "",
                    slice_urn=slice_urn, component_id=lan.component_id, created=now)
    session.add(row)
    session.flush()
    return row


def join(session: Session, shared: SharedLan, sliver: Sliver) -> None:
    session.add(SharedLanMember(shared_lan_id=shared.id, sliver_id=sliver.id))
    session.flush()


def members(session: Session, shared_ids: Iterable[int]) -> list[int]:
    """The sliver ids joined to these shares."""
    ids = sorted(set(shared_ids))
    if not ids:
        return []
    return list(session.scalars(select(SharedLanMember.sliver_id).where(
        SharedLanMember.shared_lan_id.in_(ids)).order_by(SharedLanMember.sliver_id)))


def member_slivers(session: Session, shared_ids: Iterable[int]) -> list[Sliver]:
    """The members of these shares that are still allocated, by id, locked on PostgreSQL
    (the caller detaches them)."""
    ids = members(session, shared_ids)
    if not ids:
        return []
    q = select(Sliver).where(Sliver.id.in_(ids), Sliver.allocation_state != Alloc.UNALLOCATED.value)
    if session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update()
    return list(session.scalars(q.order_by(Sliver.id)))


def revoke(session: Session, shares: Iterable[SharedLan], now: datetime) -> None:
    for row in shares:
        row.revoked = now
    session.flush()


def leave(session: Session, sliver_ids: Iterable[int]) -> None:
    """These slivers are no longer members of any share (idempotent)."""
    ids = sorted(set(sliver_ids))
    if ids:
        session.execute(delete(SharedLanMember).where(SharedLanMember.sliver_id.in_(ids)))


__all__ = ["ShareRef", "SharedLan", "SharedLanMember", "active", "join", "last_revoked",
           "leave", "members", "of_lan", "refs", "revoke", "share"]
