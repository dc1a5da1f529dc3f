"""The restart policy of `geni-am worker`'s supervisor, and its loop on a stand-in child."""
from __future__ import annotations

import signal
import sys
import threading

from am.worker_supervisor import CONFIG_EXITS, RestartPolicy, Supervisor
from tests.support import locks_taken, wait_until


def test_policy_backs_off_and_never_restarts_clean_or_configuration_exits():
    policy = RestartPolicy(first_delay_s=1, max_delay_s=30, healthy_after_s=60)
    assert policy.next_delay(0, 5, 0) is None
    for code in CONFIG_EXITS:
        assert policy.next_delay(code, 5, 0) is None
    delays = [0.0]
    for _ in range(7):   # dying young again and again: 1, 2, 4, ... up to 30
        delays.append(policy.next_delay(-signal.SIGKILL, 0.5, delays[-1]))
    assert delays[1:] == [1, 2, 4, 8, 16, 30, 30]
    assert policy.next_delay(1, 120, 30) == 1   # it had been healthy: start over


def test_supervisor_restarts_until_a_configuration_exit(tmp_path):
    # a child that dies with status 1 twice, then exits with 2 (configuration error)
    counter = tmp_path / "runs"
    script = ("import pathlib, sys; p = pathlib.Path(sys.argv[1]); "
              "n = int(p.read_text()) + 1 if p.exists() else 1; p.write_text(str(n)); "
              "sys.exit(1 if n < 3 else 2)")
    sup = Supervisor([sys.executable, "-c", script, str(counter)],
                     policy=RestartPolicy(first_delay_s=0.01, max_delay_s=0.02))
    assert sup.run() == 2
    assert counter.read_text() == "3" and sup.counts.starts == 3 and sup.counts.restarts == 2


def _running_sleeper() -> tuple[Supervisor, threading.Thread, list[int]]:
    """A supervisor of a child that sleeps a minute, running in a thread, its child started."""
    sup = Supervisor([sys.executable, "-c", "import time; time.sleep(60)"])
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(sup.run()))
    runner.start()
    wait_until(lambda: sup.counts.starts > 0, "the child's start", timeout=10)
    return sup, runner, result


def test_stop_ends_the_child_with_sigterm_and_the_supervisor_with_0():
    sup, runner, result = _running_sleeper()
    sup.stop()
    runner.join(10)
    assert result == [0] and sup.counts.restarts == 0


def test_the_signal_handler_takes_no_lock_and_stops_the_child():
    """The handler runs between two bytecodes of the main thread, which may hold the
    supervisor's lock or the Event's: it must take neither (a second SIGTERM used to be able
    to hang `geni-am worker`, as it did `serve`)."""
    sup, runner, result = _running_sleeper()
    locking = locks_taken(sup._on_signal, signal.SIGTERM, None)
    runner.join(10)
    assert result == [0] and sup.counts.restarts == 0
    assert locking == []
