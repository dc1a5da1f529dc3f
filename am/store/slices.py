"""Slices and the queries that find slivers (live, by URN, expired: the reaper's)."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer

from am.states import Alloc
from am.store.models import Slice, Sliver
from am.store.sessions import Repository


def slice_key(urn: str) -> str:
    """Slice URNs match case-insensitively (authority and name are case-insensitive in GENI)."""
    return urn.strip().lower()

def live_clause(now: datetime) -> ColumnElement[bool]:
    """THE definition of a live sliver for requests: allocated or provisioned and not past
    its expiry. An expired sliver the reaper has not reached yet is gone to every caller."""
    return and_(Sliver.allocation_state != Alloc.UNALLOCATED.value, Sliver.expires > now)


class Slices(Repository):
    live_clause = staticmethod(live_clause)

    def find_slice(self, session: Session, urn: str, *, for_update: bool = False) -> Slice | None:
        """The live slice record for `urn` (case-insensitive). `for_update` locks it so the
        reaper cannot retire it under a concurrent writer."""
        query = select(Slice).where(Slice.urn_key == slice_key(urn), Slice.incarnation == 0)
        if for_update:
            query = query.with_for_update()
        return session.scalars(query).first()

    def get_or_create_slice(self, session: Session, urn: str, owner_urn: str) -> Slice:
        found = self.find_slice(session, urn, for_update=True)
        if found is not None:
            return found
        try:
            with session.begin_nested():
                new = Slice(urn=urn, urn_key=slice_key(urn), owner_urn=owner_urn, incarnation=0)
                session.add(new)
                session.flush()
            return new
        except IntegrityError:      # a concurrent Allocate created it first
            found = self.find_slice(session, urn, for_update=True)
            if found is None:
                raise
            return found

    @staticmethod
    def add_sliver(session: Session, sliver: Sliver) -> Sliver:
        """A new sliver row in the caller's transaction (written at its next flush); its
        states are set by `Transitions.transition`, never here."""
        session.add(sliver)
        return sliver

    @staticmethod
    def sliver_by_id(session: Session, sliver_id: int) -> Sliver | None:
        """The sliver with this id (from the session's identity map if loaded), unlocked."""
        return session.get(Sliver, sliver_id)

    def live_slivers(self, session: Session, now: datetime, *, slice_id: int | None = None,
                     urns: Sequence[str] | None = None, for_update: bool = False,
                     defer_spec: bool = False) -> list[Sliver]:
        """`defer_spec`: each row's spec (the biggest JSON column) is read and decoded only if
        used (Status: the service keeps decoded specs, so a poll of a big slice reads none)."""
        query = select(Sliver).where(self.live_clause(now))
        if defer_spec:
            query = query.options(defer(Sliver.spec))
        if slice_id is not None:
            query = query.where(Sliver.slice_id == slice_id)
        if urns is not None:
            query = query.where(Sliver.urn.in_(list(urns)))
        if for_update:
            query = query.with_for_update()
        return list(session.scalars(query.order_by(Sliver.id)))

    def slivers_by_urn(self, session: Session, urns: Sequence[str]) -> list[Sliver]:
        """Slivers with these URNs in any state (for URN resolution, not for acting on)."""
        return list(session.scalars(select(Sliver).where(Sliver.urn.in_(list(urns)))))
    # ---- maintenance -------------------------------------------------------------------
    def retire_empty_slices(self, session: Session) -> int:
        """Retire live slice records with no live sliver (and not shut down), so the URN can
        be used again by a new slice of the same name. Returns how many."""
        has_live = (select(func.count(Sliver.id))
                    .where(Sliver.slice_id == Slice.id,
                           Sliver.allocation_state != Alloc.UNALLOCATED.value)
                    .scalar_subquery())
        candidates = session.scalars(select(Slice.id).where(
            Slice.incarnation == 0, Slice.shutdown.is_(False), has_live == 0)).all()
        retired = 0
        for slice_id in candidates:
            # lock first, then count again in a fresh statement: a concurrent Allocate that
            # held the lock has committed its slivers by now and is counted
            row = session.scalars(select(Slice).where(Slice.id == slice_id, Slice.incarnation == 0)
                                  .with_for_update().execution_options(populate_existing=True)).first()
            if row is None or row.shutdown:
                continue
            live = session.scalar(select(func.count(Sliver.id)).where(
                Sliver.slice_id == slice_id, Sliver.allocation_state != Alloc.UNALLOCATED.value))
            if live == 0:
                row.incarnation = row.id
                retired += 1
        session.flush()
        return retired

    # ---- the reaper's and the reconciler's queries -------------------------------------
    @staticmethod
    def expired(session: Session, now: datetime) -> list[Sliver]:
        """Allocated or provisioned slivers past their expiry, locked (skipping rows another
        reaper holds), in id order."""
        return _locked_live(session, Sliver.expires <= now)

    @staticmethod
    def pending_expired(session: Session, now: datetime) -> list[Sliver]:
        """Live slivers whose pending Update was never provisioned in time, locked."""
        return _locked_live(session, Sliver.pending_until <= now)

    @staticmethod
    def windows_started(session: Session, now: datetime) -> list[Sliver]:
        """Advance reservations whose window has begun, locked, in (component, id) order."""
        return _locked_live(session, Sliver.waiting.is_(True), Sliver.starts <= now,
                            order=(Sliver.component_id, Sliver.id))

    @staticmethod
    def provisioned_on_substrate(session: Session, driver: str,
                                 operational: Sequence[str]) -> list[tuple[str, str]]:
        """(URN, component) of `driver`'s provisioned slivers in one of `operational`."""
        return [(urn, comp) for urn, comp in session.execute(
            select(Sliver.urn, Sliver.component_id).where(
                Sliver.driver == driver, Sliver.allocation_state == Alloc.PROVISIONED.value,
                Sliver.operational_state.in_(list(operational))))]

    @staticmethod
    def allocated_urns(session: Session) -> set[str]:
        """URNs of every sliver not unallocated."""
        return set(session.scalars(
            select(Sliver.urn).where(Sliver.allocation_state != Alloc.UNALLOCATED.value)))

    @staticmethod
    def lock_by_urn(session: Session, urn: str) -> Sliver | None:
        return session.scalars(select(Sliver).where(Sliver.urn == urn).with_for_update()).first()


def _locked_live(session: Session, *where: ColumnElement[bool],
                 order: Sequence = (Sliver.id,)) -> list[Sliver]:
    """Allocated or provisioned slivers matching `where`, locked FOR UPDATE SKIP LOCKED (two
    reapers never wait for each other), in `order`."""
    return list(session.scalars(
        select(Sliver).where(Sliver.allocation_state != Alloc.UNALLOCATED.value, *where)
        .order_by(*order).with_for_update(skip_locked=True)))
