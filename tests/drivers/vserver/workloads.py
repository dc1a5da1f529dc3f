"""Tiny workloads run inside slivers (`python workloads.py <cmd> ...`): a TCP sender and
receiver for link capacity, a CPU spinner and a hog for isolation, a memory eater."""
from __future__ import annotations

import os
import socket
import sys
import time


def recv(port: int, warmup: float) -> None:
    """Accept one connection; print kbit/s over everything after `warmup` seconds."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(1)
    print("listening", flush=True)
    conn, _ = srv.accept()
    start = time.monotonic()
    counted, t0 = 0, None
    while True:
        data = conn.recv(65536)
        if not data:
            break
        now = time.monotonic()
        if now - start >= warmup:
            if t0 is None:
                t0 = now
            else:
                counted += len(data)
    t1 = time.monotonic()
    print(f"{counted * 8 / 1000 / (t1 - t0):.1f}", flush=True)


def send(host: str, port: int, seconds: float) -> None:
    s = socket.create_connection((host, port), timeout=10)
    buf = b"x" * 65536
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        s.sendall(buf)
    s.close()


def spin(seconds: float) -> None:
    """Count loop iterations in `seconds` of wall time: the well-behaved worker's throughput."""
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(1000):
            pass
        n += 1
    print(n, flush=True)


def hog(procs: int, seconds: float) -> None:
    """Busy-loop in `procs` processes; print the CPU seconds they got in total."""
    pids = []
    for _ in range(procs):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                pass
            os.write(w, f"{time.process_time():.3f}".encode())
            os._exit(0)
        os.close(w)
        pids.append((pid, r))
    total = 0.0
    for pid, r in pids:
        total += float(os.read(r, 64) or b"0")
        os.waitpid(pid, 0)
    print(f"{total:.3f}", flush=True)


def eat(mib: int) -> None:
    block = bytearray(mib * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    print("survived", flush=True)


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"recv": lambda: recv(int(args[0]), float(args[1])),
     "send": lambda: send(args[0], int(args[1]), float(args[2])),
     "spin": lambda: spin(float(args[0])),
     "hog": lambda: hog(int(args[0]), float(args[1])),
     "eat": lambda: eat(int(args[0]))}[cmd]()
