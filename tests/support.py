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
               interval: float = 0.05) -> T:
    """Call `predicate` until it returns something true and return that; fail the test with
    `what` when `timeout` seconds pass first (the last value seen is in the message)."""
    deadline = time.monotonic() + timeout
    last: T = predicate()
    while not last:
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} "
                                 f"(last seen: {last!r})")
        time.sleep(interval)
        last = predicate()
    return last


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
