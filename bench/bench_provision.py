"""Provision N fake slivers (no injected latency) and report slivers per second to geni_ready.

  redis:    the service in this process, 2 `geni-am worker` processes on Redis (`--pool`,
            default prefork with one child each); target >= 300 slivers/s on 2 cores.
  embedded: the service and the embedded worker (threads) in this process, no broker server.

With `start_on_provision` (the default) one Provision job per sliver provisions and starts it.
Allocations are made beforehand; timing starts at the first Provision call and stops when every
sliver is geni_ready (the time the last Provision call returned is printed too).

    .venv/bin/python bench/bench_provision.py [--slivers 1000] [--mode redis|embedded|both]
        [--redis redis://127.0.0.1:6379] [--database postgresql+psycopg://...]
        [--pool prefork|threads|solo] [--concurrency 1]

A PostgreSQL URL names a database that is dropped and re-created (it must not be in use).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from am.store import Sliver  # noqa: E402
from tests.jobs.conftest import (  # noqa: E402
    FAST,
    build_stack,
    make_settings,
    stop_process,
    worker_process,
    write_inventory,
)

PER_SLICE = 10
#: The workers run with production job timing: with the tests' short grace (2 s) the reconciler
#: would re-send every job still waiting in a 1,000-job backlog, and the duplicates (harmless,
#: the lease and the done-check stop them) would cost the workers time.
PRODUCTION_TIMING = ("--lease-s", "300", "--requeue-after-s", "60", "--reconcile-interval-s", "60")


def _count(stack, op: str) -> int:
    with stack.store.read() as s:
        return int(s.scalar(select(func.count()).select_from(Sliver)
                            .where(Sliver.operational_state == op)))


def _wait_all(stack, op: str, total: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while True:
        n = _count(stack, op)
        if n >= total:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"only {n} of {total} slivers reached {op}")
        time.sleep(0.02)


def _group_cpu_s(pgids: set[int]) -> float:
    """User + system CPU seconds of every live process in these process groups (the worker
    processes and their pool children), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in pgids:          # field 5 of stat: process group
            total += int(fields[11]) + int(fields[12])   # utime, stime
    return total / tick


def _fresh_postgres(url: str) -> None:
    """Drop and re-create the database `url` names (a clean schema per run)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    admin.dispose()


def run(mode: str, slivers: int, redis_url: str, database: str, pool: str,
        concurrency: int) -> None:
    if database.startswith("postgresql"):
        _fresh_postgres(database)
    with tempfile.TemporaryDirectory(prefix="bench-provision-", dir=str(Path.home())) as d:
        tmp = Path(d)
        write_inventory(tmp, nodes=max(20, slivers // 6 + 1))
        broker = redis_url if mode == "redis" else ""
        settings = make_settings(tmp, broker_url=broker, database_url=database,
                                 reaper_interval_s=3600)
        if broker:
            import redis
            redis.Redis.from_url(broker).flushdb()
        stack = build_stack(settings, worker=(mode == "embedded"), policy=FAST)
        workers = []
        try:
            if mode == "redis":
                workers = [worker_process(settings, tmp / f"worker{i}.log",
                                          concurrency=concurrency,
                                          extra=("--loglevel", "WARNING", "--pool", pool,
                                                 *PRODUCTION_TIMING))
                           for i in range(2)]
                time.sleep(3.0)   # let both workers connect
            names = [f"b{i}" for i in range(slivers // PER_SLICE)]
            for name in names:
                stack.allocate(name, n=PER_SLICE)
            total = len(names) * PER_SLICE
            pgids = {w.pid for w in workers}
            wcpu0 = _group_cpu_s(pgids)
            cpu0 = os.times()
            t0 = time.perf_counter()
            for name in names:
                stack.provision(name)
            t_api = time.perf_counter()
            if settings.start_on_provision:
                _wait_all(stack, "geni_ready", total)
            else:
                _wait_all(stack, "geni_notready", total)
                for name in names:
                    stack.action(name, "geni_start")
                _wait_all(stack, "geni_ready", total)
            t1 = time.perf_counter()
            cpu1 = os.times()
            wcpu = _group_cpu_s(pgids) - wcpu0
            detail = (f"{mode}, pool {pool} x{concurrency}" if mode == "redis"
                      else f"{mode}, {settings.worker_concurrency} threads")
            print(f"{detail}: {total} slivers to geni_ready in {t1 - t0:6.2f} s = "
                  f"{total / (t1 - t0):6.0f} slivers/s (Provision calls took {t_api - t0:5.2f} s; "
                  f"CPU: bench process {cpu1.user + cpu1.system - cpu0.user - cpu0.system:5.2f} s"
                  + (f", workers {wcpu:5.2f} s" if workers else "") + "; "
                  f"db {stack.store.dialect}; load {os.getloadavg()[0]:.2f})", flush=True)
        finally:
            for w in workers:
                stop_process(w)
            stack.close()


@contextlib.contextmanager
def _claimed_redis_db(base: str):
    """A Redis database index nobody else uses right now, claimed like the tests claim theirs
    (tests/jobs/conftest.py), so flushing it never wipes a concurrent test run's queue."""
    import redis

    admin = redis.Redis.from_url(f"{base}/0")
    token = f"bench-{os.getpid()}-{time.time()}"
    for index in range(15, 0, -1):
        if admin.set(f"geni-am-test:db-claim:{index}", token, nx=True, ex=900):
            break
    else:
        raise SystemExit("no free Redis database index (1..15)")
    try:
        yield f"{base}/{index}"
    finally:
        if admin.get(f"geni-am-test:db-claim:{index}") == token.encode():
            admin.delete(f"geni-am-test:db-claim:{index}")
        admin.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slivers", type=int, default=1000)
    p.add_argument("--mode", choices=("redis", "embedded", "both"), default="both")
    p.add_argument("--redis", default="redis://127.0.0.1:6379",
                   help="Redis server; a free database index on it is claimed for the run")
    p.add_argument("--database", default="", help="default: SQLite in a temporary directory")
    p.add_argument("--pool", choices=("prefork", "threads", "solo"), default="prefork",
                   help="pool of the two worker processes (redis mode)")
    p.add_argument("--concurrency", type=int, default=1, help="per worker process (redis mode)")
    args = p.parse_args()
    server = urlsplit(args.redis)
    with _claimed_redis_db(f"{server.scheme}://{server.netloc}") as redis_url:
        for mode in (("redis", "embedded") if args.mode == "both" else (args.mode,)):
            run(mode, args.slivers, redis_url, args.database, args.pool, args.concurrency)


if __name__ == "__main__":
    main()
