"""GetVersion latency while idle clients hold TCP connections open to the direct-TLS port.

Starts `geni-am serve` (development authority, fake nodes, under a temporary state directory) as
a subprocess, then from this process times GetVersion (a new TLS connection per call, and one
kept connection) first with no other client, then while `--idle` sockets are held open by a
thread that connects and never sends (a socket the server closes is reopened at once; a few
send a partial ClientHello and stall). Target: p99 < 0.1 s under 64 idle connections.

`--repo DIR` serves from another checkout (e.g. an older commit in a worktree) for a
before/after comparison with the same client:

    .venv/bin/python bench/bench_slowclients.py [--idle 64] [--calls 100] [--repo DIR]
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_api import am_proxy, free_port, pct, stop_server, wait_until_serving  # noqa: E402


class IdleClients:
    """`n` TCP connections held open without a handshake, reopened when the server closes
    them (what a slow or hostile client does)."""

    def __init__(self, port: int, n: int):
        self.port, self.n = port, n
        self.reopened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._socks: list[socket.socket] = []

    def _open(self, i: int) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port))
        if i % 8 == 0:
            s.sendall(b"\x16\x03\x01\x02\x00\x01")   # the start of a ClientHello, then nothing
        s.setblocking(False)
        return s

    def _run(self) -> None:
        self._socks = [self._open(i) for i in range(self.n)]
        while not self._stop.wait(0.05):
            for i, s in enumerate(self._socks):
                try:
                    if s.recv(1) == b"":
                        raise ConnectionResetError
                except BlockingIOError:
                    continue
                except OSError:
                    pass
                s.close()
                self._socks[i] = self._open(i)
                self.reopened += 1

    def __enter__(self) -> "IdleClients":
        self._thread.start()
        while len(self._socks) < self.n:
            time.sleep(0.01)
        time.sleep(0.3)   # the server has accepted them all
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        for s in self._socks:
            s.close()


def timed_calls(url: str, files: dict, keep: bool, n: int) -> list[float]:
    am = am_proxy(url, files, keep)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        result = am.GetVersion()
        out.append(time.perf_counter() - t)
        if result["code"]["geni_code"] != 0:
            raise SystemExit(f"GetVersion failed: {result}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=64, help="idle connections held open")
    parser.add_argument("--calls", type=int, default=100, help="GetVersion calls per figure")
    parser.add_argument("--threads", type=int, default=16, help="server request threads")
    parser.add_argument("--repo", default=str(REPO), help="checkout the server runs from")
    args = parser.parse_args()

    from am.bootstrap import ensure_dev_authority
    from am.config import Settings

    state = tempfile.mkdtemp(prefix="geniam-bench-slow-")
    port = free_port()
    _settings, dev = ensure_dev_authority(Settings(state_dir=state, port=port))
    repo = str(Path(args.repo).resolve())
    log = Path(state) / "server.log"
    env = dict(os.environ, GENI_AM_FAKE_NODES="10", GENI_AM_STATE_DIR=state, PYTHONPATH=repo)
    server = subprocess.Popen([sys.executable, "-m", "am", "serve", "--state-dir", state,
                               "--port", str(port), "--threads", str(args.threads)],
                              env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"), cwd=repo)
    files = {"ca": str(dev.trust_roots / "ca-cert.pem"), "cert": str(dev.user_cert),
             "key": str(dev.user_key)}
    url = f"https://127.0.0.1:{port}/"
    try:
        wait_until_serving(url, files, server, log)
        print(f"server from {repo}, {args.threads} request threads; {args.calls} GetVersion "
              f"calls per line; load average {os.getloadavg()[0]:.2f}")
        for idle in (0, args.idle):
            for keep in (False, True):
                label = "kept connection" if keep else "new connection per call"
                if idle:
                    with IdleClients(port, idle) as clients:
                        samples = timed_calls(url, files, keep, args.calls)
                    extra = f"  (idle sockets the server closed and we reopened: {clients.reopened})"
                else:
                    samples = timed_calls(url, files, keep, args.calls)
                    extra = ""
                print(f"{idle:3d} idle, {label:>23}: p50 {pct(samples, 50) * 1000:8.2f} ms  "
                      f"p99 {pct(samples, 99) * 1000:8.2f} ms  max {max(samples) * 1000:8.2f} ms"
                      f"{extra}")
    finally:
        stop_server(server)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
