"""Deadlocks and serialization failures are transient: retry the transaction, with back-off.

PostgreSQL aborts one transaction of a lock cycle ("deadlock detected", SQLSTATE 40P01) and,
under SERIALIZABLE or REPEATABLE READ, one of two conflicting ones ("could not serialize",
40001). The aborted transaction did nothing; run again a moment later it succeeds. Every write
transaction of the API and of the job body goes through `retrying` (or `@retry_transient`),
which re-runs the *whole* transaction function up to `attempts` times with jittered exponential
back-off, and re-raises the last error when the cycle persists (the caller then answers BUSY,
or the job is retried later as a whole). Writers also take row locks in one global order
(slice, then slivers by id, then jobs, leases, capacity, the usage counter), so cycles are rare.
"""
from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import DBAPIError

log = logging.getLogger("am.store")

#: SQLSTATE -> what it means; both say "this transaction was rolled back, try it again".
TRANSIENT_SQLSTATES = {"40P01": "deadlock", "40001": "serialization failure"}


def transient_cause(exc: BaseException) -> str | None:
    """"deadlock" / "serialization failure" if `exc` (a SQLAlchemy error, or the driver's own)
    is a transient conflict, else None."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return TRANSIENT_SQLSTATES.get(code) if isinstance(code, str) else None


@dataclass(frozen=True)
class TxRetry:
    """delay before retry n (0-based) = uniform(0.5, 1) * min(cap_s, base_s * 2**n)."""

    attempts: int = 6
    base_s: float = 0.01
    cap_s: float = 0.5

    def delay(self, retry: int, rng: Callable[[], float] = random.random) -> float:
        return min(self.cap_s, self.base_s * (2 ** retry)) * (0.5 + 0.5 * rng())


DEFAULT = TxRetry()

_counts: Counter[str] = Counter()
_counts_lock = threading.Lock()


def retry_counts() -> dict[str, int]:
    """Transient conflicts retried in this process so far, by cause (for tests and benches)."""
    with _counts_lock:
        return dict(_counts)


P = ParamSpec("P")
R = TypeVar("R")


def retrying(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """`fn(*args, **kwargs)`, re-run on a transient conflict (DEFAULT policy). `fn` must be a
    whole transaction: everything it wrote is rolled back when the conflict is raised."""
    return _run(DEFAULT, fn, args, kwargs)


def retry_transient(policy: TxRetry = DEFAULT) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator form of `retrying` for a function that is one transaction."""
    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
            return _run(policy, fn, args, kwargs)
        return wrapped
    return wrap


def _run(policy: TxRetry, fn: Callable[..., R], args: tuple, kwargs: dict) -> R:
    for attempt in range(policy.attempts):
        try:
            return fn(*args, **kwargs)
        except DBAPIError as exc:
            cause = transient_cause(exc)
            if cause is None or attempt == policy.attempts - 1:
                raise
            with _counts_lock:
                _counts[cause] += 1
            delay = policy.delay(attempt)
            log.info("%s in %s (attempt %d of %d); retrying in %.0f ms", cause,
                     getattr(fn, "__qualname__", fn), attempt + 1, policy.attempts, delay * 1000)
            time.sleep(delay)
    raise AssertionError("unreachable")


__all__ = ["DEFAULT", "TRANSIENT_SQLSTATES", "TxRetry", "retry_counts", "retry_transient",
           "retrying", "transient_cause"]
