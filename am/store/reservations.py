"""Reservations, claims and holds: what a sliver holds on its component, now and over time."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import hashlib

from am.states import Alloc
from am.store.errors import ReservationConflict, StoreError, WindowConflict
from am.store.models import Capacity, Claim, Hold, Reservation, Sliver
from am.store.sessions import CHUNK, Repository, chunks, mark_usage_changed
from am.store.types import utcnow


def hold_key(component_id: str, token: str) -> int:
    """The `holds.key` of a token on a component: 63 bits of a keyed hash (a collision only
    makes two tokens conflict, never lets two holders share one)."""
    digest = hashlib.blake2b(f"{component_id.strip().lower()}\0{token}".encode(), digest_size=8,
                             person=b"geniam-holds").digest()
    return int.from_bytes(digest, "big", signed=True)


#: The hold every node sliver has on its component: shared, or exclusive.
USE_TOKEN = "use"


def peak(intervals: Iterable[tuple[datetime, datetime, float]], start: datetime,
         end: datetime, extra: float = 0.0, limit: float | None = None
         ) -> tuple[float, datetime | None, tuple[datetime, datetime] | None]:
    """The most held at once in [start, end) by `intervals` (begin, end, amount), and (when
    `limit` is given) the first time the held amount plus `extra` exceeds it and the interval
    that tipped it over. Half-open: an interval ending when another begins never overlaps it."""
    events: list[tuple[datetime, int, float, tuple[datetime, datetime]]] = []
    for b, e, amount in intervals:
        b, e = max(b, start), min(e, end)
        if b < e and amount:
            events.append((b, 1, amount, (b, e)))
            events.append((e, 0, -amount, (b, e)))
    events.sort(key=lambda ev: (ev[0], ev[1]))     # ends before begins at the same instant
    held = top = 0.0
    first: datetime | None = None
    culprit = None
    for t, _, amount, iv in events:
        held += amount
        top = max(top, held)
        if first is None and limit is not None and held + extra > limit + 1e-6:
            first, culprit = t, iv
    return top, first, culprit



class Reservations(Repository):
    def reserve(self, session: Session, sliver: Sliver, demand: Mapping[str, float],
                claims: Iterable[str], *, now: datetime | None = None) -> None:
        """Reserve `demand` on the sliver's component and take its claims, or raise
        ReservationConflict (the caller's transaction must then roll back). Over time too:
        from now (or its window's start) to its expiry, nothing may overlap a reservation
        window it conflicts with (`WindowConflict`). A `waiting` sliver (advance reservation)
        holds its demand and claims only in its window."""
        comp = sliver.component_id
        mark_usage_changed(session)
        now = now or utcnow()
        start = sliver.starts if sliver.waiting and sliver.starts else now
        holds = self._holds_of(sliver, claims)
        if sliver.waiting:
            self._note_waiting(session)
        if self._windows_matter(session, sliver):
            self._check_windows(session, sliver, demand, holds, start, sliver.expires)
        for resource, amount in sorted(demand.items()):
            if amount <= 0:
                continue
            if sliver.waiting:      # held in its window only: not in what is used now
                session.add(Reservation(sliver_id=sliver.id, component_id=comp,
                                        resource=resource, amount=float(amount)))
                continue
            try:
                with session.begin_nested():
                    result = cast(CursorResult[Any], session.execute(
                        update(Capacity)
                        .where(Capacity.component_id == comp, Capacity.resource == resource)
                        .values(used=Capacity.used + float(amount))))
            except IntegrityError:
                raise ReservationConflict(comp, f"{resource} capacity", "capacity") from None
            if result.rowcount == 0:
                raise StoreError(f"component {comp} has no recorded {resource!r} capacity "
                                 "(inventory not synchronised)")
            session.add(Reservation(sliver_id=sliver.id, component_id=comp, resource=resource,
                                    amount=float(amount)))
        if not sliver.waiting:
            for token in sorted(set(claims)):
                try:
                    with session.begin_nested():
                        session.add(Claim(component_id=comp, token=token, sliver_id=sliver.id))
                        session.flush()
                except IntegrityError:
                    raise ReservationConflict(comp, f"claim {token!r}", "claim") from None
        try:
            with session.begin_nested():
                for token, shared in holds:
                    session.add(Hold(sliver_id=sliver.id, component_id=comp, token=token,
                                     key=hold_key(comp, token), shared=shared, starts=start,
                                     ends=sliver.expires))
                session.flush()
        except IntegrityError:     # PostgreSQL's exclusion constraint: a racing window
            raise ReservationConflict(comp, "a reservation window", "claim") from None
        session.flush()

    @staticmethod
    def _holds_of(sliver: Sliver, claims: Iterable[str]) -> list[tuple[str, bool]]:
        """(token, shared) the sliver holds on its component over time: its claims, and a
        node's use of its component (exclusive or shared)."""
        holds = [(t, False) for t in sorted(set(claims))]
        if sliver.kind == "node":
            holds.append((USE_TOKEN, not bool((sliver.spec or {}).get("exclusive"))))
        return holds

    _WAITING_KEY = "geniam_any_waiting"

    @classmethod
    def _note_waiting(cls, session: Session) -> None:
        """This transaction now holds an advance reservation (see `_windows_matter`)."""
        session.info[cls._WAITING_KEY] = (session.get_transaction(), True)

    @classmethod
    def _windows_matter(cls, session: Session, sliver: Sliver) -> bool:
        """Whether `_check_windows` can find anything for this sliver. A live sliver can only
        run into advance reservations (what live slivers hold now is settled by capacity and
        claims), so with none in the database, its window checks are skipped: one query per
        transaction instead of several per sliver (Provision of a 1,000-sliver slice)."""
        if sliver.waiting:
            return True
        txn = session.get_transaction()
        cached = session.info.get(cls._WAITING_KEY)
        if cached is not None and cached[0] is txn:
            return cached[1]
        any_waiting = session.scalar(
            select(Sliver.id).where(Sliver.waiting.is_(True),
                                    Sliver.allocation_state != Alloc.UNALLOCATED.value)
            .limit(1)) is not None
        session.info[cls._WAITING_KEY] = (txn, any_waiting)
        return any_waiting

    def _check_windows(self, session: Session, sliver: Sliver, demand: Mapping[str, float],
                       holds: Sequence[tuple[str, bool]], start: datetime,
                       end: datetime, *, counted: bool = False) -> None:
        """WindowConflict if the sliver, held over [start, end), would overlap a window it
        conflicts with: a hold on the same token (unless both shared), or more of a resource
        than the component has at some instant. A sliver holding now is checked against
        advance reservations only (what is held now is `Capacity.used`, under its CHECK;
        `counted`: the sliver's own demand is already in it)."""
        comp = sliver.component_id
        for token, shared in holds:
            query = (select(Hold.starts, Hold.ends).where(
                Hold.key == hold_key(comp, token), Hold.starts < end, Hold.ends > start,
                Hold.sliver_id != sliver.id).order_by(Hold.starts).limit(1))
            if shared:
                query = query.where(Hold.shared.is_(False))
            other = session.execute(query).first()
            if other is not None:
                what = ("exclusive use" if token == USE_TOKEN else f"claim {token!r}")
                raise WindowConflict(comp, what, "claim", other[0], other[1],
                                     max(other[0], start))
        wanted = {r: a for r, a in demand.items() if a > 0}
        if not wanted:
            return
        caps = dict(session.execute(select(Capacity.resource, Capacity.capacity).where(
            Capacity.component_id == comp, Capacity.resource.in_(list(wanted)))).all())
        rows = session.execute(
            select(Reservation.resource, Reservation.amount,
                   func.coalesce(Sliver.starts, Sliver.created), Sliver.expires)
            .join(Sliver, Sliver.id == Reservation.sliver_id)
            .where(Reservation.component_id == comp, Reservation.resource.in_(list(wanted)),
                   Sliver.allocation_state != Alloc.UNALLOCATED.value, Sliver.id != sliver.id,
                   Sliver.expires > start, func.coalesce(Sliver.starts, Sliver.created) < end,
                   *(() if sliver.waiting else (Sliver.waiting.is_(True),)))).all()
        if not rows:
            return
        for resource, amount in sorted(wanted.items()):
            cap = caps.get(resource)
            if cap is None:
                continue
            base = 0.0 if sliver.waiting else float(session.scalar(
                select(Capacity.used).where(Capacity.component_id == comp,
                                            Capacity.resource == resource)) or 0.0)
            if counted:
                base -= amount
            ivs = [(b, e, a) for r, a, b, e in rows if r == resource]
            _, first, culprit = peak(ivs, start, end, extra=amount + base, limit=cap)
            if first is not None and culprit is not None:
                raise WindowConflict(comp, f"{resource} capacity", "capacity", culprit[0],
                                     culprit[1], first)

    def extend(self, session: Session, sliver: Sliver, expires: datetime,
               now: datetime | None = None) -> None:
        """Move the sliver's expiry to `expires` with its holds; a later expiry must not run
        into a window it conflicts with (WindowConflict, whose `at` is the latest end that
        would fit). The caller sets `sliver.expires` after this returns."""
        now = now or utcnow()
        if expires > sliver.expires and self._windows_matter(session, sliver):
            demand, claims = self.held(session, sliver)
            self._check_windows(session, sliver, demand, self._holds_of(sliver, claims),
                                max(sliver.expires, now), expires,
                                counted=not sliver.waiting)
        # Core, not ORM: no autoflush or session synchronisation per sliver (no Hold is loaded)
        session.connection().execute(update(Hold.__table__)
                                     .where(Hold.__table__.c.sliver_id == sliver.id)
                                     .values(ends=expires))

    def start_waiting(self, session: Session, sliver: Sliver) -> None:
        """An advance reservation's window began: what it holds in its window it now holds
        like any live sliver (`Capacity.used`, claims)."""
        mark_usage_changed(session)
        for res in session.scalars(select(Reservation).where(Reservation.sliver_id == sliver.id)):
            try:
                with session.begin_nested():
                    session.execute(update(Capacity)
                                    .where(Capacity.component_id == res.component_id,
                                           Capacity.resource == res.resource)
                                    .values(used=Capacity.used + res.amount))
            except IntegrityError:
                raise ReservationConflict(res.component_id, f"{res.resource} capacity",
                                          "capacity") from None
        for token in session.scalars(select(Hold.token).where(Hold.sliver_id == sliver.id,
                                                              Hold.token != USE_TOKEN)):
            session.add(Claim(component_id=sliver.component_id, token=token,
                              sliver_id=sliver.id))
        sliver.waiting = False
        session.flush()

    @staticmethod
    def held(session: Session, sliver: Sliver) -> tuple[dict[str, float], tuple[str, ...]]:
        """What the sliver holds now: amount per resource, and its claim tokens."""
        demand: dict[str, float] = {}
        for resource, amount in session.execute(select(Reservation.resource, Reservation.amount)
                                                .where(Reservation.sliver_id == sliver.id)):
            demand[resource] = demand.get(resource, 0.0) + amount
        claims = set(session.scalars(select(Hold.token).where(
            Hold.sliver_id == sliver.id, Hold.token != USE_TOKEN)))
        claims.update(session.scalars(select(Claim.token).where(Claim.sliver_id == sliver.id)))
        return demand, tuple(sorted(claims))

    def rereserve(self, session: Session, sliver: Sliver, demand: Mapping[str, float],
                  claims: Iterable[str]) -> None:
        """Make the sliver hold exactly `demand` and `claims` on its (current) component:
        an Update changing what a sliver needs, or a commit or revert of one. Raises
        ReservationConflict like `reserve` (the caller's transaction must roll back)."""
        self.release(session, sliver)
        self.reserve(session, sliver, demand, claims)

    def release_many(self, session: Session, slivers: Sequence[Sliver]) -> None:
        """`release` for many slivers at once (idempotent): their reservations summed per
        component and resource and given back with one UPDATE each, in (component, resource)
        order (the one order every writer updates capacity rows in), and their reservation,
        claim and hold rows deleted by sliver id in chunks."""
        if not slivers:
            return
        mark_usage_changed(session)
        session.flush()
        waiting = {s.id for s in slivers if s.waiting}
        back: dict[tuple[str, str], float] = {}
        ids = sorted(s.id for s in slivers)
        for chunk in chunks(ids, CHUNK):
            for sliver_id, comp, resource, amount in session.execute(
                    select(Reservation.sliver_id, Reservation.component_id,
                           Reservation.resource, Reservation.amount)
                    .where(Reservation.sliver_id.in_(chunk))):
                if sliver_id not in waiting:
                    back[(comp, resource)] = back.get((comp, resource), 0.0) + amount
        conn = session.connection()
        for (comp, resource), amount in sorted(back.items()):
            conn.execute(update(Capacity.__table__)
                         .where(Capacity.__table__.c.component_id == comp,
                                Capacity.__table__.c.resource == resource)
                         .values(used=Capacity.__table__.c.used - amount))
        for model in (Reservation, Claim, Hold):
            table = model.__table__
            for chunk in chunks(ids, CHUNK):
                conn.execute(delete(table).where(table.c.sliver_id.in_(chunk)))

    def release(self, session: Session, sliver: Sliver) -> None:
        """Give back everything the sliver holds (idempotent)."""
        mark_usage_changed(session)
        for res in session.scalars(select(Reservation).where(Reservation.sliver_id == sliver.id)):
            if not sliver.waiting:
                session.execute(update(Capacity)
                                .where(Capacity.component_id == res.component_id,
                                       Capacity.resource == res.resource)
                                .values(used=Capacity.used - res.amount))
            session.delete(res)
        session.execute(delete(Claim).where(Claim.sliver_id == sliver.id))
        session.execute(delete(Hold).where(Hold.sliver_id == sliver.id))
        session.flush()

