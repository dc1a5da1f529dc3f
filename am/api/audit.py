"""Writing the audit log: a state-changing call is answered only once its entry is committed.

Every API call is audited (`Store.audit_batch`, append-only) by one background thread that
writes batches, one transaction per batch, in the order the records were queued.

* A **durable** record (a state-changing method, refusals included; the method tables say which,
  `am/api/v3.py` / `v2.py`) is handed to the writer and its caller waits until the batch holding
  it has committed; only then does the answer go out. The writer wakes for it at once and writes
  whatever else is queued in the same transaction, so concurrent callers share commits.
* Other records (read-only methods) are queued and the caller goes on; between batches the
  writer lets them gather for GATHER_S (fewer commits, and no wake-up per call).

What is guaranteed: an answered state-changing call has its audit entry committed. A hard kill
can still lose read-only calls' records queued in the last ~GATHER_S, and a state-changing call
killed before it answered may have committed its state without its entry (the slice and sliver
states show it). A clean stop (`close`) writes everything queued.

When the write fails (database away) or takes longer than `sync_wait_s`, the waiting caller gets
`AuditUnconfirmed` instead of hanging: the method table logs the record and still answers (the
state change itself has committed; hiding it from the caller would be worse) and the metrics
count it (`geniam_calls_unaudited_total`). Records of a failed write are kept and written again
with backoff (RETRY_MIN_S .. RETRY_MAX_S), after the fresh records and in their own transactions,
so a record the database keeps refusing cannot hold up new ones; while fresh batches commit, a
refused retry is split into single records, and one refused while the next ones are written is
dropped (logged with its fields). A retried record
keeps its time stamp but gets a later id than the records written in between. At most
`max_pending` records wait for a retry (beyond, the oldest are dropped, logged). "Committed" is
as durable as the database makes a commit: SQLite in WAL mode with synchronous=NORMAL keeps it
through a process kill, not necessarily through a power cut.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import datetime, timezone
from typing import Any

from am.api.dispatch import AuditUnconfirmed
from am.store.store import AuditRecord

log = logging.getLogger("am.audit")
BATCH = 500          # records per transaction at most
GATHER_S = 0.02      # pause after each batch unless a durable record arrives
SYNC_WAIT_S = 10.0   # longest a state-changing call waits for its entry before answering anyway
RETRY_MIN_S, RETRY_MAX_S = 0.25, 5.0   # backoff between attempts to write failed records


class _Durable:
    """A record whose caller waits: `done` is set once its batch committed or failed."""

    __slots__ = ("record", "done", "error")

    def __init__(self, record: AuditRecord):
        self.record = record
        self.done = threading.Event()
        self.error = ""


class _Marker:
    def __init__(self, event: threading.Event):
        self.event = event


_STOP = object()


class QueuedAudit:
    """An `AuditSink` that hands records to `store.audit_batch(...)` from a background thread.

    `sync_wait_s` bounds both how long a durable record's caller waits for its commit and how
    long any caller waits for room in a full queue (`max_pending` records)."""

    def __init__(self, store: Any, max_pending: int = 10000, sync_wait_s: float = SYNC_WAIT_S):
        if not sync_wait_s > 0 or max_pending < 1:
            raise ValueError(f"QueuedAudit needs sync_wait_s > 0 and max_pending >= 1, not "
                             f"{sync_wait_s!r} and {max_pending!r}")
        self.store = store
        self.max_pending = max_pending
        self.sync_wait_s = sync_wait_s
        self._queue: queue.Queue = queue.Queue(max_pending)
        self._wake = threading.Event()        # a durable record is queued: skip the pause
        self._backlog: list[AuditRecord] = []  # failed writes, retried (writer thread only)
        self._retry_delay = RETRY_MIN_S
        self._retry_at = 0.0
        self._db_ok = True   # the last fresh batch committed (see _retry)
        self._thread = threading.Thread(target=self._run, name="geni-am-audit", daemon=True)
        self._thread.start()

    # ---- the callers' side ---------------------------------------------------------------
    def __call__(self, caller: str, tool: str | None, method: str, target: str, code: int,
                 message: str, duration_ms: float, *, durable: bool = False) -> None:
        """Queue one record; with `durable`, return only once it is committed (or raise
        `AuditUnconfirmed` when the write failed or did not finish within `sync_wait_s`)."""
        record = AuditRecord(datetime.now(timezone.utc), caller, tool, method, target, code,
                             message, duration_ms)
        deadline = time.monotonic() + self.sync_wait_s
        item: AuditRecord | _Durable = _Durable(record) if durable else record
        try:
            self._queue.put(item, timeout=self.sync_wait_s)
        except queue.Full:
            raise AuditUnconfirmed(f"the audit queue stayed full ({self.max_pending} records) "
                                   f"for {self.sync_wait_s:g} s; record not queued") from None
        if not isinstance(item, _Durable):
            return
        self._wake.set()
        if not item.done.wait(max(0.0, deadline - time.monotonic())):
            raise AuditUnconfirmed(f"not committed within {self.sync_wait_s:g} s "
                                   "(the writer still holds it and keeps trying)")
        if item.error:
            raise AuditUnconfirmed(item.error)

    def queued(self) -> int:
        """Records handed over but not yet taken by the writer (approximate)."""
        return self._queue.qsize()

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything queued so far has been written, or its write has failed (and
        records waiting for a retry have been tried once more): tests, shutdown."""
        done = threading.Event()
        try:
            self._queue.put(_Marker(done), timeout=timeout)
        except queue.Full:
            return
        done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, try the failed records once more, stop the writer."""
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.error("audit writer stuck at shutdown: %d queued records not written",
                      self._queue.qsize())
            return
        self._thread.join(timeout)

    # ---- the writer thread ---------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._wake.clear()
            records: list[AuditRecord] = []
            waiters: list[_Durable] = []
            for item in self._take():
                if isinstance(item, AuditRecord):   # queued as the store's record: no copy
                    records.append(item)
                elif isinstance(item, _Durable):
                    records.append(item.record)
                    waiters.append(item)
                else:                               # a marker or stop: everything before it first
                    self._commit(records, waiters)
                    records, waiters = [], []
                    self._retry(force=True)
                    if item is _STOP:
                        if self._backlog:
                            log.error("%d audit records never written (database refused them "
                                      "until shutdown)", len(self._backlog))
                        return
                    item.event.set()
            self._commit(records, waiters)
            self._retry(force=False)
            # Let read-only records gather for a moment: fewer commits, and callers' put()
            # mostly finds no sleeping writer to wake. A durable record cuts the pause short.
            self._wake.wait(GATHER_S)

    def _take(self) -> list[Any]:
        """Whatever is queued (at most BATCH), waiting for the first item; while failed
        records wait for a retry, only until the retry is due."""
        timeout = max(0.0, self._retry_at - time.monotonic()) if self._backlog else None
        try:
            batch = [self._queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        while len(batch) < BATCH:   # whatever else is already queued goes in the same commit
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _commit(self, records: list[AuditRecord], waiters: list[_Durable]) -> None:
        """Write fresh records in one transaction and release their waiters; on failure keep
        the records for a retry."""
        if not records:
            return
        try:
            self.store.audit_batch(records)
        except Exception as exc:   # the database is away: keep the records, keep serving
            self._db_ok = False
            log.exception("%d audit records not written, kept for a retry (first: %s %s)",
                          len(records), records[0].method, records[0].caller_urn)
            self._keep(records)
            for waiter in waiters:
                waiter.error = f"the audit write failed ({type(exc).__name__}: {exc}); retrying"
                waiter.done.set()
            return
        self._db_ok = True
        for waiter in waiters:
            waiter.done.set()

    def _keep(self, records: list[AuditRecord]) -> None:
        if not self._backlog:
            self._retry_delay = RETRY_MIN_S
            self._retry_at = time.monotonic() + self._retry_delay
        self._backlog.extend(records)
        excess = len(self._backlog) - self.max_pending
        if excess > 0:
            lost = self._backlog[:excess]
            del self._backlog[:excess]
            log.error("%d audit records dropped: more than %d wait for a retry (oldest lost: "
                      "%s %s at %s)", excess, self.max_pending, lost[0].method,
                      lost[0].caller_urn, lost[0].ts.isoformat())

    def _retry(self, *, force: bool) -> None:
        """Write the records of earlier failed writes, BATCH per transaction (`force`: now,
        whatever the backoff says). While fresh batches commit, a refusal may be about the
        records rather than the database: the refused batch is then tried record by record."""
        if not self._backlog or (not force and time.monotonic() < self._retry_at):
            return
        while self._backlog:
            chunk = self._backlog[:BATCH]
            try:
                self.store.audit_batch(chunk)
            except Exception as exc:
                if self._db_ok and self._one_by_one(chunk):
                    continue
                self._retry_delay = min(self._retry_delay * 2, RETRY_MAX_S)
                self._retry_at = time.monotonic() + self._retry_delay
                log.error("%d audit records still not written (%s: %s); next try in %.2f s",
                          len(self._backlog), type(exc).__name__, exc, self._retry_delay)
                return
            del self._backlog[:len(chunk)]
            log.warning("%d audit records written late, after a failed write", len(chunk))
        self._retry_delay = RETRY_MIN_S

    def _one_by_one(self, chunk: list[AuditRecord]) -> bool:
        """Write the backlog's first `chunk` one record per transaction. A record refused while
        a later one is written is the record's fault: dropped (logged). Refused records after
        the last written one stay first in the backlog (the database may have gone away).
        False when nothing could be written (the backlog is then unchanged)."""
        refused: list[tuple[AuditRecord, Exception]] = []
        wrote = False
        for record in chunk:
            try:
                self.store.audit_batch([record])
            except Exception as exc:
                refused.append((record, exc))
                continue
            wrote = True
            for bad, exc in refused:
                log.error("audit record dropped, refused on its own while others are written "
                          "(%s: %s): %s %s %s -> %d %r at %s", type(exc).__name__, exc,
                          bad.method, bad.caller_urn, bad.target, bad.outcome,
                          bad.message[:200], bad.ts.isoformat())
            refused = []
        if wrote:
            self._backlog[:len(chunk)] = [record for record, _ in refused]
        return wrote
