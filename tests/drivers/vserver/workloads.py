"""Workloads run inside container slivers (`python3 workloads.py <cmd> ...`), by the tests
(tests/drivers/vserver/test_limits.py) and by bench/bench_isolation.py: one module for both.

Well-behaved ones print one number, their work rate:
  spin S              loop iterations in S seconds (CPU)
  spawn S             processes started and reaped in S seconds (fork)
  fsync S DIR         4 KiB writes each followed by fsync, in DIR (disk)
  recv PORT WARMUP    accepts one connection; kbit/s received after WARMUP seconds
  send HOST PORT S    sends to recv for S seconds
Misbehaving ones print what they managed:
  hog N S             N busy processes for S seconds; the CPU seconds they got in all
  eat MIB [S]         one allocation of MIB ("survived"); with S, allocations again and again
                      for S seconds, each in a new process (one over the limit is OOM-killed)
  bomb S              every process forks until S (bounded fan-out, 3 generations)
  ddirect S DIR       O_DIRECT writes (busybox dd), 16 MiB rewritten in place
  udp_flood HOST PORT S
"""
from __future__ import annotations

import os
import socket
import subprocess
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


def spawn(s: float) -> None:
    n, end = 0, time.monotonic() + s
    while time.monotonic() < end:
        try:
            pid = os.fork()
        except OSError:
            continue
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        n += 1
    print(n)


def fsync(s: float, d: str) -> None:
    path = os.path.join(d, "well-behaved.dat")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    n, end, block = 0, time.monotonic() + s, b"x" * 4096
    while time.monotonic() < end:
        os.pwrite(fd, block, (n % 256) * 4096)
        os.fsync(fd)
        n += 1
    os.close(fd)
    print(n)


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


def eat(mib: int, seconds: float | None = None) -> None:
    """One allocation of `mib` MiB touched page by page ("survived" if not killed); with
    `seconds`, allocations in new processes again and again, counting those killed."""
    if seconds is None:
        block = bytearray(mib * 1024 * 1024)
        for i in range(0, len(block), 4096):
            block[i] = 1
        print("survived", flush=True)
        return
    end, killed = time.monotonic() + seconds, 0
    code = (f"b = bytearray({mib} * 1048576)\n"
            "for i in range(0, len(b), 4096): b[i] = 1\n")
    while time.monotonic() < end:
        if subprocess.run([sys.executable, "-c", code]).returncode != 0:
            killed += 1
    print(f"{killed} allocations killed", flush=True)


def bomb(s: float) -> None:
    end = time.monotonic() + s
    depth = 0
    children = 0
    while time.monotonic() < end:
        if depth < 3 and children < 10:
            try:
                pid = os.fork()
            except OSError:
                time.sleep(0.001)
                continue
            if pid == 0:
                depth += 1
                children = 0
                continue
            children += 1
        else:
            time.sleep(0.01)
    if depth:
        os._exit(0)
    time.sleep(0.5)
    print("done")


def ddirect(s: float, d: str) -> None:
    """busybox dd with O_DIRECT (this python has no aligned buffers): 16 MiB at a time."""
    path = os.path.join(d, "hog.dat")
    n, end = 0, time.monotonic() + s
    while time.monotonic() < end:
        subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", "count=16", "oflag=direct",
                        "conv=notrunc"], stderr=subprocess.DEVNULL, check=True)
        n += 16
    print(f"{n} MiB")


def udp_flood(host: str, port: int, s: float) -> None:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    end, buf, n = time.monotonic() + s, b"z" * 1400, 0
    while time.monotonic() < end:
        try:
            u.sendto(buf, (host, port))
            n += 1
        except OSError:
            pass
    print(n)


if __name__ == "__main__":
    cmd, *a = sys.argv[1:]
    {"recv": lambda: recv(int(a[0]), float(a[1])),
     "send": lambda: send(a[0], int(a[1]), float(a[2])),
     "spin": lambda: spin(float(a[0])), "spawn": lambda: spawn(float(a[0])),
     "fsync": lambda: fsync(float(a[0]), a[1]),
     "hog": lambda: hog(int(a[0]), float(a[1])),
     "eat": lambda: eat(int(a[0]), float(a[1]) if len(a) > 1 else None),
     "bomb": lambda: bomb(float(a[0])), "ddirect": lambda: ddirect(float(a[0]), a[1]),
     "udp_flood": lambda: udp_flood(a[0], int(a[1]), float(a[2]))}[cmd]()
    sys.stdout.flush()
