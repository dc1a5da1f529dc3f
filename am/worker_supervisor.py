"""`geni-am worker` supervises its Celery worker process and starts a new one when it dies.

A Celery worker can end on an error it considers unrecoverable (kombu's Redis transport did so
after a broker restart, see am/jobs/redis_transport.py), be killed by the kernel's OOM killer,
or lose its main process to a crash in a native library. The jobs are safe either way (the
database holds them and the reconciler re-sends them), but the machine has one worker fewer
until somebody restarts it. So `geni-am worker` runs the Celery worker as a child process
(`geni-am worker --no-supervise ...`, same settings, same node name) and restarts it with
back-off: 1 s, doubling to 30 s while it keeps dying young, back to 1 s after it ran a minute.

Not restarted: a child that exits 0 (it was asked to stop), or with a configuration error
(exit 2, or the BSD codes 64 EX_USAGE / 78 EX_CONFIG): those would only fail again. The
supervisor checks the settings, the database and the inventory itself before the first start,
so a broken configuration never loops. SIGTERM / SIGINT to the supervisor are passed on to
the child as SIGTERM (Celery's warm shutdown: running jobs finish), and the supervisor exits
with the child. The child asks the kernel for SIGTERM if the supervisor itself is killed
(`PR_SET_PDEATHSIG`), so it never outlives it.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger("am.worker")

#: Exit statuses that mean "the configuration is wrong": restarting cannot help.
CONFIG_EXITS = frozenset({2, 64, 78})


@dataclass(frozen=True)
class RestartPolicy:
    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    healthy_after_s: float = 60.0   # a child that lived this long resets the back-off

    def next_delay(self, exit_code: int, lived_s: float, previous_delay_s: float) -> float | None:
        """Seconds to wait before the next start, or None: do not restart."""
        if exit_code == 0 or exit_code in CONFIG_EXITS:
            return None
        if lived_s >= self.healthy_after_s or previous_delay_s <= 0:
            return self.first_delay_s
        return min(self.max_delay_s, previous_delay_s * 2)


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the supervisor dies (Linux prctl)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class SupervisorCounts:
    starts: int = 0
    restarts: int = 0


class Supervisor:
    """Run `argv` as a child process, restarting it by `policy` until told to stop."""

    def __init__(self, argv: Sequence[str], *, policy: RestartPolicy = RestartPolicy(),
                 popen: Callable[..., subprocess.Popen] = subprocess.Popen):
        self.argv = list(argv)
        self.policy = policy
        self.counts = SupervisorCounts()
        self._popen = popen
        self._stop = threading.Event()
        self._signalled = False   # set by the signal handler, which must take no lock
        self._child: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def stop(self) -> None:
        """Stop supervising; the running child gets SIGTERM (warm shutdown)."""
        self._stop.set()
        with self._lock:
            child = self._child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    def _on_signal(self, *_: object) -> None:
        """SIGTERM/SIGINT: the same as stop(), without a lock.

        A Python signal handler runs in the main thread between two bytecodes, possibly while
        that thread holds `_lock` (starting a child) or the Event's lock (inside its wait): a
        handler that took either would hang the supervisor for ever. So it only sets a flag
        and signals the child it can see; the loop notices the flag within 0.2 s."""
        self._signalled = True
        child = self._child
        if child is not None and child.returncode is None:
            try:
                os.kill(child.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _stopping(self) -> bool:
        return self._signalled or self._stop.is_set()

    def _pause(self, seconds: float) -> bool:
        """Sleep up to `seconds` in short steps; True when told to stop meanwhile."""
        deadline = time.monotonic() + seconds
        while not self._stopping():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(0.2, left))
        return True

    def run(self) -> int:
        delay = 0.0
        while not self._stopping():
            started = time.monotonic()
            with self._lock:
                self._child = self._popen(self.argv, preexec_fn=_die_with_parent)
                child = self._child
            if self._stopping():   # stop() or a signal came between the loop's check and the start
                child.send_signal(signal.SIGTERM)
            self.counts.starts += 1
            log.info("worker process %d started", child.pid)
            code = child.wait()
            lived = time.monotonic() - started
            if self._stopping():
                return 0 if code in (0, -signal.SIGTERM) else code
            delay = self.policy.next_delay(code, lived, delay)
            if delay is None:
                log.info("worker process %d exited with %d: not restarting", child.pid, code)
                return code
            reason = f"signal {-code}" if code < 0 else f"status {code}"
            log.warning("worker process %d died (%s) after %.1f s; starting a new one in %.0f s",
                        child.pid, reason, lived, delay)
            self.counts.restarts += 1
            if self._pause(delay):
                return 0
        return 0

    def run_until_signalled(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            return self.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


__all__ = ["CONFIG_EXITS", "RestartPolicy", "Supervisor", "SupervisorCounts"]
