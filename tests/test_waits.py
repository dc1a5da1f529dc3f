"""Tests wait on a condition with `tests.support.wait_until` (or `stays`), never with a polling
loop of their own around `time.sleep`: one helper times out the same way everywhere, says what
it waited for and what it saw last, and gives up early when the thing waited on died.

The check reads every module under tests/ (a simple AST walk): a `while` or `for` loop whose
body calls `sleep` is a hand-written wait unless ALLOWED names it, with the reason."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import exited, stays, wait_until

TESTS = Path(__file__).resolve().parent

#: "path under tests/::function": why its loop around sleep is not a wait on a condition
ALLOWED = {
    # the helpers themselves
    "support.py::wait_until": "the one polling loop",
    "support.py::stays": "the one 'nothing happens for a while' loop",
    # pacing, not waiting: these loops do work between sleeps and stop on their own terms
    "client/conftest.py::DelayedWorker._loop": "a queue worker thread that delays each job "
                                              "(the client's progress display is under test)",
    "jobs/test_scale_out.py::Api.call": "a client failing over between API processes, "
                                             "backing off between tries",
    "chaos/lifecycle.py::ChaosClient.call": "a chaos client's retries with jittered back-off",
    "chaos/lifecycle.py::ChaosClient.wait_ready": "a soak client: a timeout is an anomaly it "
                                             "records and reports at the end, not a failure",
    # programs run inside guests to load them, not test code
    "drivers/vserver/forkbomb.py::bomb": "the fork bomb run inside a container",
    "drivers/vserver/workloads.py::bomb": "workloads run inside containers",
}


def _sleeps(loop: ast.AST) -> bool:
    """Whether the loop's own body (not a function defined in it) calls sleep."""
    todo = list(ast.iter_child_nodes(loop))
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(node, ast.Call):
            func = node.func
            if ((isinstance(func, ast.Attribute) and func.attr == "sleep")
                    or (isinstance(func, ast.Name) and func.id == "sleep")):
                return True
        todo.extend(ast.iter_child_nodes(node))
    return False


def polling_loops(source: str) -> list[tuple[str, int]]:
    """(enclosing function's qualified name, line) of each loop around sleep in `source`."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, scope: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, [*scope, child.name])
                continue
            if isinstance(child, (ast.While, ast.For, ast.AsyncFor)) and _sleeps(child):
                found.append((".".join(scope) or "<module>", child.lineno))
            visit(child, scope)

    visit(ast.parse(source), [])
    return found


@pytest.mark.parametrize("source", [
    "import time\nwhile not ready():\n    time.sleep(0.1)\n",
    "def w():\n    for _ in range(50):\n        if ok():\n            return\n        sleep(0.1)\n",
    "def w():\n    while True:\n        try:\n            go()\n        except OSError:\n"
    "            time.sleep(0.05)\n",
])
def test_the_check_sees_a_polling_loop(source):
    assert polling_loops(source)


@pytest.mark.parametrize("source", [
    "wait_until(ready, 'ready')\n",
    "for spec in specs:\n    driver.provision(spec)\n",
    "for i in range(3):\n    fake.behaviour[i] = lambda: time.sleep(0.08)\n",
    "time.sleep(0.1)\n",
])
def test_the_check_leaves_the_rest(source):
    assert polling_loops(source) == []


def test_no_test_module_polls_by_hand():
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        rel = path.relative_to(TESTS).as_posix()
        for where, line in polling_loops(path.read_text(encoding="utf-8")):
            if f"{rel}::{where}" not in ALLOWED:
                offenders.append(f"{rel}:{line} ({where})")
    assert offenders == [], ("polling loops around sleep (use tests.support.wait_until, or "
                             "say in ALLOWED why it is not a wait): " + ", ".join(offenders))


def test_every_allowance_is_still_needed():
    present = set()
    for path in sorted(TESTS.rglob("*.py")):
        rel = path.relative_to(TESTS).as_posix()
        present.update(f"{rel}::{where}" for where, _ in polling_loops(path.read_text("utf-8")))
    assert set(ALLOWED) - present == set()


# ---- wait_until itself -----------------------------------------------------------------------
def test_wait_until_returns_the_value_that_ended_the_wait():
    seen = iter([0, "", "there"])
    assert wait_until(lambda: next(seen), "a value", timeout=5, interval=0.01) == "there"


def test_wait_until_says_what_it_waited_for_and_saw_last():
    with pytest.raises(AssertionError, match=r"waiting for the answer \(last seen: 0\)\nrows: 3"):
        wait_until(lambda: 0, "the answer", timeout=0.05, interval=0.01,
                   detail=lambda: "rows: 3")


def test_wait_until_treats_ignored_exceptions_as_not_yet():
    tries = iter([ConnectionRefusedError("not yet"), ConnectionRefusedError("not yet"), "up"])

    def connect():
        value = next(tries)
        if isinstance(value, Exception):
            raise value
        return value
    assert wait_until(connect, "a connection", timeout=5, interval=0.01,
                      ignoring=(OSError,)) == "up"
    with pytest.raises(KeyError):           # anything else is an error, at once
        wait_until(lambda: {}["x"], "a key", timeout=5, ignoring=(OSError,))


def test_wait_until_gives_up_early_when_the_process_exited():
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait(10)
    with pytest.raises(AssertionError, match="the process exited with 3:\nlog tail"):
        wait_until(lambda: False, "a port", timeout=30, give_up=exited(proc, lambda: "log tail"))


def test_stays_fails_when_the_condition_stops_holding():
    values = iter([True, True, False])
    with pytest.raises(AssertionError, match="stopped holding"):
        stays(lambda: next(values), "the lease", duration=5, interval=0.01)
