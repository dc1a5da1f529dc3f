"""API latency and throughput over TLS, from client processes separate from the server.

Starts `geni-am serve` (development authority, 100 fake nodes, SQLite, all under a temporary
state directory) as a subprocess, then measures from this process:
  * GetVersion and authorized ListResources, p50/p99, with a new TLS connection per call and
    with one kept connection;
  * Allocate p50 (kept connection; each Allocate is followed by an untimed Delete);
  * calls per second (ListResources, kept connections) with 16 concurrent client processes.
Targets: ListResources p50 <= 5 ms on a new connection, Allocate <= 50 ms, >= 300 calls/s.

    .venv/bin/python bench/bench_api.py [--calls 300] [--clients 16] [--seconds 5]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RSPEC_V = {"type": "GENI", "version": "3"}
REQUEST = ('<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request">'
           '<node client_id="n1" exclusive="false"/></rspec>')


class Transport(xmlrpc.client.SafeTransport):
    def __init__(self, context: ssl.SSLContext, keep: bool):
        super().__init__(context=context)
        self.keep = keep

    def make_connection(self, host):
        if not self.keep:
            self.close()
        return super().make_connection(host)


def context(files: dict) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=files["ca"])
    ctx.check_hostname = False
    ctx.load_cert_chain(files["cert"], files["key"])
    return ctx


def am_proxy(url: str, files: dict, keep: bool) -> xmlrpc.client.ServerProxy:
    return xmlrpc.client.ServerProxy(url, transport=Transport(context(files), keep))


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        result = fn()
        out.append((time.perf_counter() - t) * 1000)
        if result["code"]["geni_code"] != 0:
            raise SystemExit(f"call failed: {result}")
    return out


def _worker(url: str, files: dict, cred: dict, seconds: float, start_at: float, q) -> None:
    am = am_proxy(url, files, keep=True)
    am.GetVersion()
    while time.time() < start_at:
        time.sleep(0.001)
    n, end = 0, start_at + seconds
    while time.time() < end:
        am.ListResources([cred], {"geni_rspec_version": RSPEC_V})
        n += 1
    q.put(n)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()

    from am.bootstrap import ensure_dev_authority
    from am.config import Settings
    from credentials.authority import DevAuthority

    state = tempfile.mkdtemp(prefix="geniam-bench-")
    port = free_port()
    settings, dev = ensure_dev_authority(Settings(state_dir=state, port=port))
    slice_cred_path = DevAuthority(dev.authority_dir).slice("bench", owner="alice")
    top = settings.authority.split(":", 1)[0]
    slice_urn = f"urn:publicid:IDN+{top}+slice+bench"
    env = dict(os.environ, GENI_AM_FAKE_NODES="100", GENI_AM_STATE_DIR=state)
    server = subprocess.Popen([sys.executable, "-m", "am", "serve", "--state-dir", state,
                               "--port", str(port), "--threads", str(args.threads)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              cwd=str(REPO))
    url = f"https://127.0.0.1:{port}/"
    files = {"ca": str(dev.trust_roots / "ca-cert.pem"), "cert": str(dev.user_cert),
             "key": str(dev.user_key)}
    user_cred = {"geni_type": "geni_sfa", "geni_version": "3",
                 "geni_value": dev.user_credential.read_text()}
    slice_cred = {"geni_type": "geni_sfa", "geni_version": "3",
                  "geni_value": Path(slice_cred_path).read_text()}
    try:
        deadline = time.time() + 60
        while True:
            try:
                am_proxy(url, files, True).GetVersion()
                break
            except (OSError, ssl.SSLError, xmlrpc.client.ProtocolError):
                if server.poll() is not None or time.time() > deadline:
                    print(server.stderr.read().decode()[-3000:], file=sys.stderr)
                    raise SystemExit("server did not start")
                time.sleep(0.2)
        print(f"server: {url} (100 fake nodes, {args.threads} threads); client: separate process")
        lr_opts = {"geni_rspec_version": RSPEC_V}
        for keep in (False, True):
            am = am_proxy(url, files, keep)
            label = "kept connection" if keep else "new connection per call"
            am.ListResources([user_cred], lr_opts)   # warm caches
            gv = timed(am.GetVersion, args.calls)
            lr = timed(lambda: am.ListResources([user_cred], lr_opts), args.calls)
            print(f"{label:>24}: GetVersion    p50 {pct(gv, 50):6.2f} ms  p99 {pct(gv, 99):6.2f} ms")
            print(f"{label:>24}: ListResources p50 {pct(lr, 50):6.2f} ms  p99 {pct(lr, 99):6.2f} ms")
        am = am_proxy(url, files, True)
        alloc = []
        for _ in range(max(20, args.calls // 6)):
            t = time.perf_counter()
            result = am.Allocate(slice_urn, [slice_cred], REQUEST, {})
            alloc.append((time.perf_counter() - t) * 1000)
            if result["code"]["geni_code"] != 0:
                raise SystemExit(f"Allocate failed: {result}")
            am.Delete([slice_urn], [slice_cred], {})
        print(f"{'kept connection':>24}: Allocate      p50 {statistics.median(alloc):6.2f} ms  "
              f"p99 {pct(alloc, 99):6.2f} ms")
        q: mp.Queue = mp.Queue()
        start_at = time.time() + 2.0
        procs = [mp.Process(target=_worker, args=(url, files, user_cred, args.seconds, start_at, q))
                 for _ in range(args.clients)]
        for p in procs:
            p.start()
        total = sum(q.get(timeout=args.seconds + 60) for _ in procs)
        for p in procs:
            p.join()
        print(f"{args.clients} concurrent clients (kept connections, ListResources): "
              f"{total / args.seconds:.0f} calls/s on {os.cpu_count()} cores")
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
