"""Small helpers every test folder shares: URNs and waiting on a condition.

Tests wait for what they assert (a state, a file, a port) with `wait_until` instead of a fixed
`time.sleep`, so a slow machine only makes them slower, never wrong, and a fast one never
waits longer than it must.
"""
from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: The slice authority most tests use (an SA under the test AM's authority).
TEST_AUTHORITY = "geni-am:test:sa"


def slice_urn(name: str = "demo", authority: str = TEST_AUTHORITY) -> str:
    """A slice URN under `authority`."""
    return f"urn:publicid:IDN+{authority}+slice+{name}"


def wait_until(predicate: Callable[[], T], what: str = "condition", timeout: float = 20.0,
               interval: float = 0.05, *, detail: Callable[[], object] | None = None,
               ignoring: tuple[type[BaseException], ...] = (),
               give_up: Callable[[], object] | None = None) -> T:
    """Call `predicate` until it returns something true and return that; fail the test with
    `what` when `timeout` seconds pass first (the last value seen is in the message, and what
    `detail()` says, if given: the rows or log lines that explain the wait).

    `ignoring`: exceptions of these types from `predicate` mean "not yet" (a server not
    listening yet); the last one is what the message shows. `give_up`: asked after each miss;
    something true from it fails the wait at once, saying that (a server process that exited
    will never answer)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            last: object = predicate()
        except ignoring as exc:
            last = exc
        else:
            if last:
                return last  # type: ignore[return-value]
        if give_up is not None and (reason := give_up()):
            raise AssertionError(f"gave up waiting for {what}: {reason} (last seen: {last!r})")
        if time.monotonic() >= deadline:
            more = f"\n{detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} "
                                 f"(last seen: {last!r}){more}")
        time.sleep(interval)


def exited(proc: subprocess.Popen, log: Callable[[], str] | None = None) -> Callable[[], str]:
    """A `give_up` for `wait_until`: says so (with the tail of `log()`) once `proc` exited."""
    def check() -> str:
        if proc.poll() is None:
            return ""
        return f"the process exited with {proc.returncode}" + (f":\n{log()}" if log else "")
    return check


def stays(predicate: Callable[[], object], what: str = "condition", duration: float = 0.5,
          interval: float = 0.05) -> None:
    """Assert that `predicate` stays true for `duration` seconds (for "nothing happens" checks,
    where there is no event to wait on)."""
    deadline = time.monotonic() + duration
    while True:
        value = predicate()
        if not value:
            raise AssertionError(f"{what} stopped holding (saw {value!r})")
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)


def open_jobs(store) -> list[tuple]:
    """(id, action, state, error) of the jobs still queued or running in `store`."""
    from sqlalchemy import select

    from am.store import Job, JobState
    with store.read() as session:
        return [tuple(r) for r in session.execute(
            select(Job.id, Job.action, Job.state, Job.error)
            .where(Job.state.in_((JobState.QUEUED, JobState.RUNNING))).order_by(Job.id))]


def wait_jobs_quiet(store, timeout: float = 30.0, interval: float = 0.2) -> None:
    """Wait until no job is queued or running (the reconciler re-sent what faults interrupted);
    a timeout names the jobs still open."""
    wait_until(lambda: not open_jobs(store), "every job to finish", timeout, interval,
               detail=lambda: f"jobs still open: {open_jobs(store)}")


def read_banner(proc: subprocess.Popen, timeout: float) -> str:
    """What serve prints on stdout up to its "--- end ---" line (less if it exits first)."""
    lines: list[str] = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.strip() == "--- end ---":
            break
    return "".join(lines)


def locks_taken(handler: Callable[..., object], *args: object, times: int = 2) -> list[str]:
    """Call a signal handler `times` times (as the interpreter would, and a second signal) under
    a profiler; return the lock-taking calls it made (acquire, __enter__, Event.set/wait), after
    checking it made any call at all. A Python signal handler runs in the main thread between
    two bytecodes, so one that takes a lock the interrupted code holds hangs the process."""
    import sys
    calls: list[str] = []

    def record(frame, event, arg):
        if event == "call":
            calls.append(frame.f_code.co_qualname)
        elif event == "c_call":
            calls.append(getattr(arg, "__qualname__", repr(arg)))
    sys.setprofile(record)
    try:
        for _ in range(times):
            handler(*args)
    finally:
        sys.setprofile(None)
    assert calls, "the handler made no call at all: is it the one under test?"
    return [c for c in calls if c.rsplit(".", 1)[-1] in ("acquire", "__enter__", "set", "wait")]
