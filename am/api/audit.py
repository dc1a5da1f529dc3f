"""Writing the audit log off the request path.

Every API call is audited (`Store.audit`, append-only). A synchronous database write would add
a transaction to every call, so calls enqueue their record and one background thread writes
them in order, one transaction per batch (whatever is queued, up to BATCH). Records still queued
when the process is killed hard are lost (a clean stop drains the queue); a full queue blocks
the caller rather than dropping records.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import datetime, timezone
from typing import Any

from am.store.store import AuditRecord

log = logging.getLogger("am.audit")
BATCH = 500   # records per transaction at most
GATHER_S = 0.02   # pause after each batch; a record waits at most about this long (plus a commit)


_STOP = object()


class QueuedAudit:
    """An `AuditSink` that hands records to `store.audit_batch(...)` from a background thread."""

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
            batch = [self._queue.get()]
            while len(batch) < BATCH:   # whatever else is already queued goes in the same commit
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            records: list[AuditRecord] = []
            for item in batch:
                if isinstance(item, AuditRecord):   # queued as the store's record: no copy
                    records.append(item)
                    continue
                self._write(records)          # a marker or stop: everything before it first
                records = []
                if item is _STOP:
                    return
                item.event.set()
            self._write(records)
            # Let records gather for a moment: fewer commits, and callers' put() mostly finds
            # no sleeping writer to wake (a wake-up per call costs every call a GIL hand-off).
            time.sleep(GATHER_S)

    def _write(self, records: list) -> None:
        if not records:
            return
        try:
            self.store.audit_batch(records)
        except Exception:   # the database is away: log, keep serving
            log.exception("%d audit records not written (first: %s %s)", len(records),
                          records[0].method, records[0].caller_urn)

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
