"""`am.store.retry`: which errors are transient, and the bounded back-off around them."""
from __future__ import annotations

import psycopg.errors
import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from am.store.retry import TxRetry, retry_counts, retry_transient, transient_cause


def _wrapped(orig: Exception) -> OperationalError:
    return OperationalError("UPDATE slivers ...", {}, orig)


def test_deadlocks_and_serialization_failures_are_transient_and_nothing_else():
    assert transient_cause(_wrapped(psycopg.errors.DeadlockDetected("x"))) == "deadlock"
    assert transient_cause(_wrapped(psycopg.errors.SerializationFailure("x"))) == \
        "serialization failure"
    assert transient_cause(psycopg.errors.DeadlockDetected("x")) == "deadlock"
    assert transient_cause(_wrapped(psycopg.errors.UndefinedTable("x"))) is None
    assert transient_cause(IntegrityError("INSERT", {}, Exception("unique"))) is None
    assert transient_cause(ValueError("deadlock")) is None


def test_a_transaction_is_rerun_until_it_passes_and_at_most_attempts_times():
    calls: list[int] = []

    @retry_transient(TxRetry(attempts=4, base_s=0.0001, cap_s=0.001))
    def flaky(fail_times: int) -> str:
        calls.append(1)
        if len(calls) <= fail_times:
            raise _wrapped(psycopg.errors.DeadlockDetected("cycle"))
        return "committed"

    before = retry_counts().get("deadlock", 0)
    assert flaky(2) == "committed" and len(calls) == 3
    assert retry_counts()["deadlock"] == before + 2
    calls.clear()
    with pytest.raises(OperationalError):
        flaky(10)
    assert len(calls) == 4   # bounded


def test_other_errors_are_not_retried():
    calls: list[int] = []

    @retry_transient()
    def broken() -> None:
        calls.append(1)
        raise _wrapped(psycopg.errors.UndefinedTable("no such table"))

    with pytest.raises(OperationalError):
        broken()
    assert calls == [1]


def test_back_off_grows_and_is_capped():
    policy = TxRetry(attempts=8, base_s=0.01, cap_s=0.5)
    assert [policy.delay(n, rng=lambda: 1.0) for n in range(8)] == \
        [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.5, 0.5]
    assert policy.delay(3, rng=lambda: 0.0) == 0.04
