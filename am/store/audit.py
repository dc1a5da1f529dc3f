"""The audit log: append-only (the database refuses UPDATE and DELETE on it)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select

from am.store.models import AuditEntry
from am.store.sessions import Repository
from am.store.types import utcnow


@dataclass(frozen=True)
class AuditRecord:
    ts: datetime
    caller_urn: str
    tool_urn: str | None
    method: str
    target: str
    outcome: int
    message: str
    duration_ms: float


class AuditLog(Repository):
    def audit(self, *, caller_urn: str, method: str, target: str, outcome: int,
              message: str = "", duration_ms: float = 0.0, tool_urn: str | None = None,
              ts: datetime | None = None) -> None:
        """Append one entry. There is no way to change or remove entries through the store,
        and the database rejects UPDATE/DELETE on the table (triggers in the migration)."""
        with self.write() as session:
            session.add(AuditEntry(ts=ts or utcnow(), caller_urn=caller_urn, tool_urn=tool_urn,
                                   method=method, target=target[:4000], outcome=int(outcome),
                                   message=message[:4000], duration_ms=float(duration_ms)))

    def audit_batch(self, records: Sequence[AuditRecord]) -> None:
        """Append several entries in one transaction with one multi-row INSERT (the API's
        background audit writer drains its queue with this: one commit per batch, no ORM
        unit of work per entry)."""
        if not records:
            return
        with self.write() as session:
            session.execute(insert(AuditEntry.__table__), [
                {"ts": r.ts, "caller_urn": r.caller_urn, "tool_urn": r.tool_urn,
                 "method": r.method, "target": r.target[:4000], "outcome": int(r.outcome),
                 "message": r.message[:4000], "duration_ms": float(r.duration_ms)}
                for r in records])

    def audit_entries(self, *, limit: int = 100, caller_urn: str | None = None) -> list[AuditRecord]:
        with self.read() as session:
            query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
            if caller_urn is not None:
                query = query.where(AuditEntry.caller_urn == caller_urn)
            return [AuditRecord(e.ts, e.caller_urn, e.tool_urn, e.method, e.target, e.outcome,
                                e.message, e.duration_ms) for e in session.scalars(query)]

