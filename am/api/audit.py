"""Writing the audit log off the request path.

Every API call is audited (`Store.audit`, append-only). A synchronous database write would add
a transaction to every call, so calls enqueue their record and one background thread writes
them in order. Records still queued when the process is killed hard are lost (a clean stop
drains the queue); a full queue blocks the caller rather than dropping records.
"""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

log = logging.getLogger("am.audit")


@dataclass(frozen=True)
class AuditRecord:
    ts: datetime
    caller: str
    tool: str | None
    method: str
    target: str
    code: int
    message: str
    duration_ms: float


_STOP = object()


class QueuedAudit:
    """An `AuditSink` that hands records to `store.audit(...)` from a background thread."""

    def __init__(self, store: Any, max_pending: int = 10000):
        self.store = store
        self._queue: queue.Queue = queue.Queue(max_pending)
        self._thread = threading.Thread(target=self._run, name="geni-am-audit", daemon=True)
        self._thread.start()

    def __call__(self, caller: str, tool: str | None, method: str, target: str, code: int,
                 message: str, duration_ms: float) -> None:
        self._queue.put(AuditRecord(datetime.now(timezone.utc), caller, tool, method, target,
                                    code, message, duration_ms))

    def _run(self) -> None:
        while True:
            record = self._queue.get()
            if record is _STOP:
                return
            if isinstance(record, _Marker):
                record.event.set()
                continue
            try:
                self.store.audit(caller_urn=record.caller, tool_urn=record.tool,
                                 method=record.method, target=record.target,
                                 outcome=record.code, message=record.message,
                                 duration_ms=record.duration_ms, ts=record.ts)
            except Exception:   # the database is away: log, keep serving
                log.exception("audit record for %s %s not written", record.method, record.caller)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything queued so far is written (tests, shutdown)."""
        done = threading.Event()
        self._queue.put(_Marker(done))
        done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout)


class _Marker:
    def __init__(self, event: threading.Event):
        self.event = event
