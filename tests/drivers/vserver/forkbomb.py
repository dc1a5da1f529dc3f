"""Workloads for the pids limit, run inside a sliver (tests/drivers/vserver/test_limits.py).

  bomb SECONDS   every process keeps forking until SECONDS have passed; prints how many forks
                 failed with EAGAIN and with any other errno. Bounded even if no limit holds:
                 a process forks at most FANOUT children and only GENERATIONS deep
                 (1 + 10 + 100 + 1000 processes at most), and all of them exit at the deadline.
  spawn N        starts N `sleep` processes, prints "N seconds" once they all run, kills them.
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import time

FANOUT = 10
GENERATIONS = 3


def bomb(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    root, generation, children = True, 0, 0
    while time.monotonic() < deadline:
        if children >= FANOUT or generation >= GENERATIONS:
            time.sleep(0.01)
            continue
        try:
            pid = os.fork()
        except OSError as exc:
            _report(write_end, b"E" if exc.errno == errno.EAGAIN else b"X")
            time.sleep(0.002)
            continue
        if pid == 0:
            if root:
                os.close(read_end)
            root, generation, children = False, generation + 1, 0
        else:
            children += 1
    if not root:
        os._exit(0)
    os.close(write_end)
    reports = b""
    while chunk := os.read(read_end, 65536):      # EOF once every descendant has exited
        reports += chunk
    print(reports.count(b"E"), reports.count(b"X"))


def _report(fd: int, what: bytes) -> None:
    try:
        os.write(fd, what)
    except BlockingIOError:
        pass   # the pipe is full: enough failures have been counted


def spawn(n: int) -> None:
    start = time.monotonic()
    procs = [subprocess.Popen(["sleep", "60"]) for _ in range(n)]
    elapsed = time.monotonic() - start
    print(len(procs), f"{elapsed:.4f}", flush=True)
    for p in procs:
        p.kill()
        p.wait()


if __name__ == "__main__":
    {"bomb": lambda a: bomb(float(a[0])), "spawn": lambda a: spawn(int(a[0]))}[sys.argv[1]](
        sys.argv[2:])
