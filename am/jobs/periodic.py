"""Periodic work (reaper, reconciler) without Celery beat.

Every worker process (and the embedded worker of `geni-am serve`) runs a `PeriodicTimer`
thread. Each tick it tries to *claim* the current period; only the process that wins sends
the `geni_am.reap` / `geni_am.reconcile` task, which any worker then executes. So exactly one
run is queued per period however many workers there are, and losing any one worker (the one
that would have run beat) never stops the reaper.

Claims:
  * Redis broker: `SET <key> <owner> NX PX <period>` on the broker's Redis: atomic, shared by
    every machine, and expires by itself.
  * embedded broker: a stamp file under the broker directory, read and rewritten under an
    exclusive `flock`, shared by every process on this machine.

The timer only publishes messages; it never touches the database, so a prefork worker's parent
process holds no database connection that forked children could inherit.
"""
from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)


class PeriodClaim(Protocol):
    def claim(self, name: str, period_s: float) -> bool:
        """True if the caller may run `name` now (nobody ran it in the last `period_s`)."""


class RedisClaim:
    """Period claims in Redis (production: several workers on several machines)."""

    def __init__(self, url: str, owner: str, prefix: str = "geni-am:periodic:"):
        import redis

        self._redis = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        self.owner = owner
        self.prefix = prefix

    def claim(self, name: str, period_s: float) -> bool:
        # Claim a little less than a period so a timer that fires slightly early next time is
        # not starved by its own previous claim.
        ttl_ms = max(1, int(period_s * 900))
        return bool(self._redis.set(self.prefix + name, self.owner, nx=True, px=ttl_ms))

    def close(self) -> None:
        self._redis.close()


class FileClaim:
    """Period claims in stamp files (embedded broker: processes on one machine)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def claim(self, name: str, period_s: float) -> bool:
        path = self.folder / f"{name}.stamp"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.read(fd, 64).decode("ascii", "replace").strip()
            try:
                last = float(raw)
            except ValueError:
                last = 0.0
            now = time.time()
            if now - last < period_s * 0.9:
                return False
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, f"{now:.3f}".encode("ascii"))
            return True
        finally:
            os.close(fd)   # releases the flock

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class PeriodicTask:
    name: str                       # claim key and log name
    period_s: float
    run: Callable[[], object]       # e.g. lambda: queue.send_periodic(REAP)
    at_startup: bool = False        # first run ignores the claim (a restarted worker reconciles at once)


class PeriodicTimer:
    """A daemon thread that runs each `PeriodicTask` once per period (when it wins the claim),
    starting with an immediate run at start-up (the reconciler "at start-up")."""

    def __init__(self, tasks: Sequence[PeriodicTask], claim: PeriodClaim, *,
                 tick_s: float | None = None):
        if not tasks:
            raise ValueError("PeriodicTimer needs at least one task")
        for task in tasks:
            if not task.period_s > 0:
                raise ValueError(f"periodic task {task.name!r}: period must be > 0")
        self.tasks = tuple(tasks)
        self.claim = claim
        self.tick_s = tick_s if tick_s is not None else min(1.0, min(t.period_s for t in tasks) / 4)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_due = {t.name: 0.0 for t in self.tasks}
        self._started = {t.name: False for t in self.tasks}
        self.runs: dict[str, int] = {t.name: 0 for t in self.tasks}

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("PeriodicTimer already started")
        self._thread = threading.Thread(target=self._loop, name="geni-am-periodic", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        close = getattr(self.claim, "close", None)
        if close is not None:
            close()

    def tick(self) -> None:
        """One pass: run every task that is due locally and wins the shared claim."""
        now = time.monotonic()
        for task in self.tasks:
            if now < self._next_due[task.name]:
                continue
            self._next_due[task.name] = now + task.period_s
            try:
                first = not self._started[task.name]
                self._started[task.name] = True
                won = self.claim.claim(task.name, task.period_s)
                if not won and not (first and task.at_startup):
                    continue
                task.run()
                self.runs[task.name] += 1
            except Exception:
                # A broker or Redis outage must not kill the timer; try again next period.
                log.exception("periodic %s failed; retrying next period", task.name)
                self._next_due[task.name] = now + min(task.period_s, 5.0)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.tick_s)


__all__ = ["FileClaim", "PeriodClaim", "PeriodicTask", "PeriodicTimer", "RedisClaim"]
