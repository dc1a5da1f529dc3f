"""Workloads run inside guests by bench/bench_isolation.py (copied in; the guest's python3).

Well-behaved ones print one number, their work rate over SECONDS:
  spin S            loop iterations (CPU)
  spawn S           processes started and reaped (fork)
  fsync S DIR       4 KiB writes each followed by fsync, in DIR (disk)
  tcp_recv PORT S   accepts one connection; bytes received in S seconds after a short warm-up
  tcp_send HOST PORT S
Misbehaving ones run for S seconds and print what they managed:
  hog N S           N busy processes
  eat MIB S         allocates MIB again and again (each over the limit is OOM-killed: retried)
  bomb S            every process forks until S (bounded fan-out, 3 generations)
  ddirect S DIR     O_DIRECT writes (busybox dd), 16 MiB rewritten in place
  udp_flood HOST PORT S
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time


def spin(s: float) -> None:
    n, end = 0, time.monotonic() + s
    while time.monotonic() < end:
        for _ in range(1000):
            pass
        n += 1
    print(n)


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


def tcp_recv(port: int, s: float) -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(1)
    print("listening", flush=True)
    conn, _ = srv.accept()
    start = time.monotonic()
    total = 0
    while True:
        data = conn.recv(1 << 16)
        if not data:
            break
        if time.monotonic() - start > 0.3:
            total += len(data)
    print(total)


def tcp_send(host: str, port: int, s: float) -> None:
    c = socket.create_connection((host, port), timeout=10)
    end, buf = time.monotonic() + s, b"x" * 65536
    while time.monotonic() < end:
        c.sendall(buf)
    c.close()


def hog(n: int, s: float) -> None:
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            end = time.monotonic() + s
            while time.monotonic() < end:
                pass
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    print("done")


def eat(mib: int, s: float) -> None:
    end, killed = time.monotonic() + s, 0
    code = (f"b = bytearray({mib} * 1048576)\n"
            "for i in range(0, len(b), 4096): b[i] = 1\n")
    while time.monotonic() < end:
        if subprocess.run([sys.executable, "-c", code]).returncode != 0:
            killed += 1
    print(f"{killed} allocations killed")


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
    {"spin": lambda: spin(float(a[0])), "spawn": lambda: spawn(float(a[0])),
     "fsync": lambda: fsync(float(a[0]), a[1]),
     "tcp_recv": lambda: tcp_recv(int(a[0]), float(a[1])),
     "tcp_send": lambda: tcp_send(a[0], int(a[1]), float(a[2])),
     "hog": lambda: hog(int(a[0]), float(a[1])), "eat": lambda: eat(int(a[0]), float(a[1])),
     "bomb": lambda: bomb(float(a[0])), "ddirect": lambda: ddirect(float(a[0]), a[1]),
     "udp_flood": lambda: udp_flood(a[0], int(a[1]), float(a[2]))}[cmd]()
    sys.stdout.flush()
