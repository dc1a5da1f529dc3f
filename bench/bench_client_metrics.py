"""Client round trips over TLS (keep-alive) and /metrics scrape cost with live slivers.

    .venv/bin/python bench/bench_client_metrics.py [--slivers 40]

Starts a real AM (cheroot TLS, SQLite store, fake site, a worker thread) in a temp dir.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from am.client import AMClient  # noqa: E402
from credentials.authority import DevAuthority  # noqa: E402
from tests.client.conftest import AM_AUTHORITY, request_rspec, start_am  # noqa: E402


def timed(label: str, n: int, fn) -> None:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    elapsed = time.perf_counter() - started
    print(f"{label:<40} {n:>5} x  {elapsed / n * 1000:8.2f} ms each  ({n / elapsed:8.1f}/s)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slivers", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        authority = DevAuthority.init(root / "authority", authority="geni-am")
        authority.user("alice")
        authority.server_cert(AM_AUTHORITY, ["127.0.0.1"])
        runtime, server, worker = start_am(root / "am", authority, nodes=max(4, args.slivers))
        d = authority.dir
        try:
            url = f"https://127.0.0.1:{server.port}/"
            cred = authority.slice("bench", "alice")
            with AMClient(url, d / "alice-cert.pem", d / "alice-key.pem", ca=d / "ca-cert.pem",
                          credentials=[d / "alice-cred.xml", cred]) as client:
                timed("GetVersion (TLS keep-alive)", 200, client.get_version)
                timed("ListResources", 30, client.list_resources)
                timed("ListResources compressed", 30,
                      lambda: client.list_resources(compressed=True))
                slice_urn = "urn:publicid:IDN+geni-am+slice+bench"
                client.allocate(slice_urn, request_rspec(args.slivers))
                client.provision(slice_urn)
                started = time.perf_counter()
                result = client.wait(slice_urn, start=True, interval=0.05, timeout=120)
                print(f"wait --start for {args.slivers} slivers: "
                      f"{time.perf_counter() - started:.2f} s, {result.polls} polls, "
                      f"{result.progress.ready} ready")
                timed("Status (whole slice)", 30, lambda: client.status(slice_urn))
            app = runtime.app.test_client()
            timed(f"/metrics scrape ({args.slivers} live slivers)", 50,
                  lambda: app.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}))
        finally:
            server.stop()
            worker.stop()
            runtime.close()


if __name__ == "__main__":
    main()
