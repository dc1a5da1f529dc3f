"""API latency and throughput over TLS, from client processes separate from the server.

Starts `geni-am serve` (development authority, 100 fake nodes, SQLite, all under a temporary
state directory) as a subprocess, then measures from this process:
  * GetVersion and authorized ListResources, p50/p99, with a new TLS connection per call and
    with one kept connection;
  * Allocate p50 (kept connection; each Allocate is followed by an untimed Delete);
  * Allocate p50 also while live slivers pile up (`--accumulate`);
  * calls per second with 16 concurrent client processes, for GetVersion, ListResources
    (plain and geni_compressed) on kept connections and on a new connection per call, with the
    server's and the clients' CPU time per call (server and clients share the machine's cores).
Targets: ListResources p50 <= 5 ms on a new connection, Allocate <= 50 ms, >= 300 calls/s.

    .venv/bin/python bench/bench_api.py [--calls 300] [--clients 16] [--seconds 5] [--accumulate 400]
"""
from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import shutil
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


def _worker(url: str, files: dict, method: str, cred: dict, keep: bool, seconds: float,
            start_at: float, q) -> None:
    am = am_proxy(url, files, keep=keep)
    call = _caller(am, method, cred)
    call()
    while time.time() < start_at:
        time.sleep(0.001)
    cpu0 = sum(os.times()[:2])
    n, end = 0, start_at + seconds
    while time.time() < end:
        call()
        n += 1
    q.put((n, sum(os.times()[:2]) - cpu0))


def _caller(am, method: str, cred: dict):
    if method == "GetVersion":
        return am.GetVersion
    opts = {"geni_rspec_version": RSPEC_V}
    if method == "ListResources/compressed":
        opts["geni_compressed"] = True
    return lambda: am.ListResources([cred], opts)


def _cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def throughput(url: str, files: dict, cred: dict, method: str, keep: bool, clients: int,
               seconds: float, server_pid: int) -> str:
    """calls/s with `clients` client processes, plus server and client CPU per call."""
    q: mp.Queue = mp.Queue()
    start_at = time.time() + 2.0
    procs = [mp.Process(target=_worker, args=(url, files, method, cred, keep, seconds,
                                              start_at, q)) for _ in range(clients)]
    for p in procs:
        p.start()
    while time.time() < start_at:
        time.sleep(0.001)
    server0 = _cpu_s(server_pid)
    results = [q.get(timeout=seconds + 60) for _ in procs]
    server_cpu = _cpu_s(server_pid) - server0
    for p in procs:
        p.join()
    calls = sum(n for n, _ in results)
    client_cpu = sum(c for _, c in results)
    per = max(calls, 1)
    conn = "kept conn" if keep else "new conn "
    return (f"{clients} clients, {conn}, {method:<24}: {calls / seconds:6.0f} calls/s   "
            f"(server CPU {server_cpu / per * 1000:5.2f} ms/call, "
            f"clients {client_cpu / per * 1000:5.2f} ms/call)")


def raw_response(port: int, files: dict, request: str) -> bytes:
    """The response body exactly as the server sends it."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context(files))
    try:
        conn.request("POST", "/", request.encode(), {"Content-Type": "text/xml"})
        return conn.getresponse().read()
    finally:
        conn.close()


def start_server(state: str, port: int, threads: int, dev,
                 extra_env: dict[str, str] | None = None):
    """`geni-am serve` over 100 fake nodes in `state` (its dev authority `dev`), as a
    subprocess: (process, its log file, URL, client TLS files for `am_proxy`)."""
    env = dict(os.environ, GENI_AM_FAKE_NODES="100", GENI_AM_STATE_DIR=state, **(extra_env or {}))
    # the server logs every call: to a file, never to a pipe nobody drains (it would block)
    log = Path(state) / "server.log"
    server = subprocess.Popen([sys.executable, "-m", "am", "serve", "--state-dir", state,
                               "--port", str(port), "--threads", str(threads)],
                              env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"),
                              cwd=str(REPO))
    files = {"ca": str(dev.trust_roots / "ca-cert.pem"), "cert": str(dev.user_cert),
             "key": str(dev.user_key)}
    return server, log, f"https://127.0.0.1:{port}/", files


def wait_until_serving(url: str, files: dict, server: subprocess.Popen, log: Path,
                       timeout_s: float = 60) -> None:
    """Until the AM at `url` answers GetVersion; SystemExit (with its log tail) if it died."""
    deadline = time.time() + timeout_s
    while True:
        try:
            am_proxy(url, files, True).GetVersion()
            return
        except (OSError, ssl.SSLError, xmlrpc.client.ProtocolError):
            if server.poll() is not None or time.time() > deadline:
                print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
                raise SystemExit("server did not start") from None
            time.sleep(0.2)


def stop_server(server: subprocess.Popen) -> None:
    """SIGTERM (the AM drains and exits), SIGKILL if it has not exited 15 s later."""
    server.terminate()
    try:
        server.wait(15)
    except subprocess.TimeoutExpired:
        server.kill()


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
    parser.add_argument("--accumulate", type=int, default=400,
                        help="live slivers to pile up while timing Allocate (0: skip)")
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
    server, server_log, url, files = start_server(state, port, args.threads, dev)
    user_cred = {"geni_type": "geni_sfa", "geni_version": "3",
                 "geni_value": dev.user_credential.read_text()}
    slice_cred = {"geni_type": "geni_sfa", "geni_version": "3",
                  "geni_value": Path(slice_cred_path).read_text()}
    try:
        wait_until_serving(url, files, server, server_log)
        print(f"server: {url} (100 fake nodes, {args.threads} threads); client: separate process; "
              f"load average {os.getloadavg()[0]:.2f}")
        lr_opts = {"geni_rspec_version": RSPEC_V}
        for keep in (False, True):
            am = am_proxy(url, files, keep)
            label = "kept connection" if keep else "new connection per call"
            am.ListResources([user_cred], lr_opts)   # warm caches
            gv = timed(am.GetVersion, args.calls)
            lr = timed(lambda: am.ListResources([user_cred], lr_opts), args.calls)
            print(f"{label:>24}: GetVersion    p50 {pct(gv, 50):6.2f} ms  p99 {pct(gv, 99):6.2f} ms")
            print(f"{label:>24}: ListResources p50 {pct(lr, 50):6.2f} ms  p99 {pct(lr, 99):6.2f} ms")
        raw = raw_response(port, files, xmlrpc.client.dumps(([user_cred], lr_opts), "ListResources"))
        t = time.perf_counter()
        for _ in range(20):
            body = xmlrpc.client.loads(raw)[0][0]["value"]
        print(f"{'':>24}  (advertisement {len(body) / 1024:.0f} KB, response {len(raw) / 1024:.0f} KB; "
              f"the client alone spends {(time.perf_counter() - t) / 20 * 1000:.2f} ms "
              "parsing one response)")
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
        if args.accumulate:
            piled = []
            for _ in range(args.accumulate):
                t = time.perf_counter()
                result = am.Allocate(slice_urn, [slice_cred], REQUEST, {})
                piled.append((time.perf_counter() - t) * 1000)
                if result["code"]["geni_code"] != 0:
                    raise SystemExit(f"Allocate failed: {result}")
            tail = piled[-50:]
            print(f"{'kept connection':>24}: Allocate      p50 {statistics.median(tail):6.2f} ms  "
                  f"with {args.accumulate - 50}-{args.accumulate} live slivers "
                  f"(first 50: p50 {statistics.median(piled[:50]):.2f} ms)")
            am.Delete([slice_urn], [slice_cred], {})
        for method, keep in (("GetVersion", True), ("ListResources", True),
                             ("ListResources/compressed", True), ("GetVersion", False),
                             ("ListResources", False)):
            print(throughput(url, files, user_cred, method, keep, args.clients, args.seconds,
                             server.pid))
        print(f"({os.cpu_count()} cores shared by the server and the clients; "
              f"load average now {os.getloadavg()[0]:.2f})")
    finally:
        stop_server(server)
        shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
