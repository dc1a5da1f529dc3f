"""What the durable audit of state-changing calls costs: Allocate / Delete latency over TLS.

State-changing calls (Allocate, Delete, ...) answer only once their audit entry is committed
(`am/api/audit.py`); read-only calls (GetVersion) stay fire-and-forget. Starts `geni-am serve`
(development authority, 100 fake nodes, SQLite in a temporary state directory, or a scratch
PostgreSQL database with `--postgres`) and measures from this process, on one kept connection:
GetVersion p50 (the control: no audit wait), Allocate p50/p99 and Delete p50/p99 (each Allocate
followed by a Delete of the slice); then `--clients` client processes doing Allocate + Delete on
their own slices for `--seconds`, as state-changing calls per second (their audit records share
commits). At the end the audit table is counted against the calls made, and the audit writer
alone is timed in this process against the same database: what a caller waits for a durable
record (the commit it now waits for) next to a fire-and-forget one, and how many records
16 threads of durable callers get per commit.

Run it in a checkout before the change and after it to see the difference:

    .venv/bin/python bench/bench_audit.py [--calls 200] [--clients 8] [--seconds 5] [--postgres]
"""
from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_api import (REQUEST, am_proxy, free_port, pct, start_server, stop_server,  # noqa: E402
                       wait_until_serving)


def _check(result: dict, what: str) -> None:
    if result["code"]["geni_code"] != 0:
        raise SystemExit(f"{what} failed: {result}")


def _slice_cred(dev_dir: Path, name: str) -> dict:
    from credentials.authority import DevAuthority

    path = DevAuthority(dev_dir).slice(name, owner="alice")
    return {"geni_type": "geni_sfa", "geni_version": "3", "geni_value": path.read_text()}


def _client(url: str, files: dict, slice_urn: str, cred: dict, seconds: float, start_at: float,
            q) -> None:
    am = am_proxy(url, files, keep=True)
    _check(am.GetVersion(), "GetVersion")
    while time.time() < start_at:
        time.sleep(0.001)
    calls, end = 0, start_at + seconds
    while time.time() < end:
        _check(am.Allocate(slice_urn, [cred], REQUEST, {}), "Allocate")
        _check(am.Delete([slice_urn], [cred], {}), "Delete")
        calls += 2
    q.put(calls)


def durable_writer() -> bool:
    """Whether this checkout's audit writer has durable records (not before the change)."""
    import inspect

    from am.api.audit import QueuedAudit
    return "durable" in inspect.signature(QueuedAudit.__call__).parameters


@contextlib.contextmanager
def _database(postgres: bool) -> Iterator[str]:
    if not postgres:
        yield ""
        return
    from tests.services import postgres_server
    with postgres_server() as url:
        yield url


def writer_alone(url: str, calls: int = 300, threads: int = 16) -> None:
    """QueuedAudit over the store at `url`: durable vs fire-and-forget latency, shared commits."""
    import threading

    from am.api.audit import QueuedAudit
    from am.store import open_store

    store = open_store(url)
    real, commits = store.audit_batch, []

    def counting(records) -> None:
        commits.append(len(records))
        real(records)

    store.audit_batch = counting
    audit = QueuedAudit(store)
    try:
        args = ("urn:publicid:IDN+bench+user+alice", None, "v3.Allocate", "urn:x", 0, "", 1.0)
        for durable in (False, True):
            samples = []
            for _ in range(calls):
                t = time.perf_counter()
                audit(*args, durable=durable)
                samples.append((time.perf_counter() - t) * 1000)
            audit.flush()
            label = "durable (waits for its commit)" if durable else "fire-and-forget"
            print(f"  audit writer alone, {label:<31}: p50 {statistics.median(samples):6.3f} ms"
                  f"  p99 {pct(samples, 99):6.3f} ms")
        commits.clear()

        def caller() -> None:
            for _ in range(calls // 10):
                audit(*args, durable=True)

        workers = [threading.Thread(target=caller) for _ in range(threads)]
        t = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - t
        made = threads * (calls // 10)
        print(f"  audit writer alone, {threads} durable callers: {made} records in "
              f"{len(commits)} commits ({made / max(len(commits), 1):.1f} per commit), "
              f"{made / elapsed:.0f} records/s")
    finally:
        audit.close()
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="sequential Allocate + Delete pairs")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--postgres", action="store_true",
                        help="a scratch PostgreSQL database instead of SQLite")
    args = parser.parse_args()

    from am.bootstrap import ensure_dev_authority
    from am.config import Settings
    from am.store import open_store

    state = tempfile.mkdtemp(prefix="geniam-bench-audit-")
    port = free_port()
    with _database(args.postgres) as database_url:
        settings, dev = ensure_dev_authority(Settings(state_dir=state, port=port,
                                                      database_url=database_url))
        top = settings.authority.split(":", 1)[0]
        server, server_log, url, files = start_server(
            state, port, args.threads, dev,
            {"GENI_AM_DATABASE_URL": database_url} if database_url else None)
        made = 0
        try:
            wait_until_serving(url, files, server, server_log)
            backend = "PostgreSQL" if database_url else "SQLite"
            print(f"server: {url} ({backend}, 100 fake nodes, {args.threads} threads); "
                  f"load average {os.getloadavg()[0]:.2f}")
            am = am_proxy(url, files, True)
            slice_urn = f"urn:publicid:IDN+{top}+slice+bench0"
            cred = _slice_cred(dev.authority_dir, "bench0")
            gv, alloc, delete = [], [], []
            for _ in range(10):   # warm caches (credential verification, advertisement)
                _check(am.Allocate(slice_urn, [cred], REQUEST, {}), "Allocate")
                _check(am.Delete([slice_urn], [cred], {}), "Delete")
                made += 2
            for _ in range(args.calls):
                t = time.perf_counter()
                _check(am.GetVersion(), "GetVersion")
                gv.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                _check(am.Allocate(slice_urn, [cred], REQUEST, {}), "Allocate")
                alloc.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                _check(am.Delete([slice_urn], [cred], {}), "Delete")
                delete.append((time.perf_counter() - t) * 1000)
                made += 3
            made += 1   # the first GetVersion above
            for label, samples in (("GetVersion", gv), ("Allocate", alloc), ("Delete", delete)):
                print(f"  sequential {label:<10} p50 {statistics.median(samples):6.2f} ms  "
                      f"p99 {pct(samples, 99):6.2f} ms  ({len(samples)} calls)")
            creds = [(f"urn:publicid:IDN+{top}+slice+bench{i + 1}",
                      _slice_cred(dev.authority_dir, f"bench{i + 1}")) for i in range(args.clients)]
            q: mp.Queue = mp.Queue()
            start_at = time.time() + 2.0
            procs = [mp.Process(target=_client, args=(url, files, urn, c, args.seconds, start_at,
                                                      q)) for urn, c in creds]
            for p in procs:
                p.start()
            counts = [q.get(timeout=args.seconds + 60) for _ in procs]
            for p in procs:
                p.join()
            made += sum(counts) + args.clients   # each client's GetVersion too
            print(f"  {args.clients} clients, Allocate + Delete: "
                  f"{sum(counts) / args.seconds:6.0f} state-changing calls/s")
        finally:
            stop_server(server)
        store = open_store(settings.effective_database_url)
        try:
            rows = len(store.audit_entries(limit=10 ** 7))
        finally:
            store.close()
        print(f"  audit entries {rows} for {made} calls")
        if durable_writer():
            writer_alone(settings.effective_database_url)
        shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
