"""Read models: the counts and listings the dashboard, the metrics endpoint, the hosts CLI and
the calendar show. Read-only queries, each in one read transaction (so the figures of one
answer come from one snapshot); callers turn the rows into their own plain values.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, Float, Row, cast, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from am.states import Alloc, JobState, Op
from am.store.models import AuditEntry, Job, Reservation, Slice, Sliver
from am.store.sessions import Repository
from am.store.slices import live_clause


class ReadModels(Repository):
    # ---- dashboard ---------------------------------------------------------------------
    def overview_counts(self, now: datetime) -> tuple[dict, dict, int, dict]:
        """Live slivers by allocation state, by operational state (None as "none"), the
        number of slices with a live sliver, and jobs by state."""
        live = live_clause(now)
        with self.read() as session:
            alloc = dict(session.execute(select(Sliver.allocation_state, func.count(Sliver.id))
                                         .where(live).group_by(Sliver.allocation_state)).all())
            ops = {(k or "none"): v for k, v in session.execute(
                select(Sliver.operational_state, func.count(Sliver.id)).where(live)
                .group_by(Sliver.operational_state)).all()}
            slices = session.scalar(select(func.count(func.distinct(Sliver.slice_id)))
                                    .where(live)) or 0
            jobs = dict(session.execute(select(Job.state, func.count(Job.id))
                                        .group_by(Job.state)).all())
        return alloc, ops, slices, jobs

    def slices_with_counts(self, now: datetime) -> list[tuple[Slice, int, int]]:
        """Slice records not retired, newest first, each with its live and failed slivers."""
        with self.read() as session:
            records = list(session.scalars(select(Slice).where(Slice.incarnation == 0)
                                           .order_by(Slice.id.desc())))
            counts = self._sliver_counts(session, [s.id for s in records], now)
        return [(s, *counts.get(s.id, (0, 0))) for s in records]

    @staticmethod
    def _sliver_counts(session: Session, slice_ids: list[int], now: datetime) -> dict[int, tuple[int, int]]:
        if not slice_ids:
            return {}
        live: dict[int, int] = dict.fromkeys(slice_ids, 0)
        failed: dict[int, int] = dict.fromkeys(slice_ids, 0)
        for slice_id, op in session.execute(
                select(Sliver.slice_id, Sliver.operational_state)
                .where(Sliver.slice_id.in_(slice_ids), live_clause(now))):
            live[slice_id] += 1
            failed[slice_id] += op == Op.FAILED.value
        return {i: (live[i], failed[i]) for i in slice_ids}

    def slice_with_slivers(self, slice_id: int) -> tuple[Slice, list[Sliver]] | None:
        """A slice record and all its sliver rows (live or not) by id, or None."""
        with self.read() as session:
            record = session.get(Slice, slice_id)
            if record is None:
                return None
            return record, list(session.scalars(select(Sliver).where(Sliver.slice_id == slice_id)
                                                .order_by(Sliver.id)))

    def failures(self, now: datetime, limit: int) -> tuple[list[tuple[Sliver, Slice]],
                                                            list[tuple[Job, Sliver, Slice]]]:
        """Live slivers in geni_failed with their slices, and failed jobs with their slivers
        and slices, newest first (in one read)."""
        with self.read() as session:
            slivers = [(s, slc) for s, slc in session.execute(
                select(Sliver, Slice).join(Slice, Sliver.slice_id == Slice.id)
                .where(live_clause(now), Sliver.operational_state == Op.FAILED.value)
                .order_by(Sliver.updated.desc(), Sliver.id.desc()).limit(limit))]
            jobs = [(j, s, slc) for j, s, slc in session.execute(
                select(Job, Sliver, Slice).join(Sliver, Job.sliver_id == Sliver.id)
                .join(Slice, Sliver.slice_id == Slice.id)
                .where(Job.state == JobState.FAILED)
                .order_by(Job.updated.desc(), Job.id.desc()).limit(limit))]
        return slivers, jobs

    def audit_page(self, offset: int, limit: int) -> tuple[int, list[AuditEntry]]:
        """(entries in the audit log, `limit` entries from `offset`, newest first)."""
        with self.read() as session:
            total = session.scalar(select(func.count(AuditEntry.id))) or 0
            entries = list(session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())
                                           .offset(offset).limit(limit)))
        return total, entries

    # ---- metrics -----------------------------------------------------------------------
    def live_counts(self, now: datetime) -> tuple[list[tuple[str, str | None, str, int]],
                                                  list[tuple[str, int]]]:
        """(live slivers counted by (allocation, operational, driver), jobs by state)."""
        with self.read() as session:
            rows = session.execute(
                select(Sliver.allocation_state, Sliver.operational_state, Sliver.driver,
                       func.count()).where(live_clause(now))
                .group_by(Sliver.allocation_state, Sliver.operational_state, Sliver.driver)).all()
            job_rows = session.execute(select(Job.state, func.count()).group_by(Job.state)).all()
        return ([(alloc, op, driver, n) for alloc, op, driver, n in rows],
                [(state, n) for state, n in job_rows])

    def expiring_by_allocation(self, now: datetime, until: datetime) -> dict[str, int]:
        """Live slivers expiring by `until`, counted by allocation state."""
        with self.read() as session:
            rows = session.execute(
                select(Sliver.allocation_state, func.count()).where(
                    live_clause(now), Sliver.expires <= until)
                .group_by(Sliver.allocation_state)).all()
        return {alloc: int(n) for alloc, n in rows}

    # ---- hosts CLI ---------------------------------------------------------------------
    def allocated_by_component(self) -> dict[str, int]:
        """Slivers not unallocated, counted by lower-cased component URN."""
        with self.read() as session:
            return dict(session.execute(
                select(func.lower(Sliver.component_id), func.count())
                .where(Sliver.allocation_state != Alloc.UNALLOCATED.value)
                .group_by(func.lower(Sliver.component_id))).all())

    # ---- calendar ----------------------------------------------------------------------
    def held_between(self, start: datetime,
                     end: datetime) -> tuple[Sequence[Row[int, str, str, str, int, float, float]],
                                             Sequence[Row[int, str, str, float]]]:
        """What live slivers hold over [start, end), as plain Core rows: (id, urn, component,
        slice urn, version, begin, expiry) per sliver, its times as seconds since the epoch
        computed by the database (turning 10,000 timestamps into datetimes was most of the
        read), by id; and (sliver id, component, resource, amount) per reservation."""
        begins = func.coalesce(Sliver.starts, Sliver.created)
        overlap = (Sliver.allocation_state != Alloc.UNALLOCATED.value, Sliver.expires > start,
                   begins < end)
        with self.read() as session:
            conn = session.connection()
            live = conn.execute(select(Sliver.id, Sliver.urn, Sliver.component_id, Slice.urn,
                                       Sliver.version, _epoch(begins, self.dialect),
                                       _epoch(Sliver.expires, self.dialect))
                                .join(Slice).where(*overlap).order_by(Sliver.id)).all()
            held = conn.execute(
                select(Reservation.sliver_id, Reservation.component_id, Reservation.resource,
                       Reservation.amount)
                .join(Sliver, Sliver.id == Reservation.sliver_id).where(*overlap)).all()
        return live, held


def _epoch(column: ColumnElement[datetime] | InstrumentedAttribute[datetime],
           dialect: str) -> ColumnElement[float]:
    """`column` (a naive UTC timestamp) as seconds since the epoch, a float, in SQL."""
    if dialect == "sqlite":
        return (func.julianday(column) - 2440587.5) * 86400.0
    return cast(func.extract("epoch", column), Float)


__all__ = ["ReadModels"]
