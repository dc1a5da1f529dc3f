"""API calls on one big slice: Allocate, Provision, Status, Delete and ListResources, per sliver.

For each size N (default 100, 1,000 and 10,000 fake slivers, `--sizes`), a fresh AM (the
service layer in this process, fake nodes, SQLite in a temporary directory or `--database`) with
no job worker: one Allocate of N nodes into one slice, one Provision of the slice, Status of
it, ListResources (advertisement rebuilt: usage changed), then Delete of the slice, Status after
it, and ListResources again. Each call's time is printed in total and per sliver: a path whose
cost grows faster than the slice shows up as a per-sliver figure that grows with N. The
calls go straight to `am.service.aggregate.Aggregate` (no TLS, XML-RPC or credential checks:
`bench_api.py` measures those per call). The delete jobs Delete queues are then run by an
embedded worker, with Status sampled until the substrate is clean (`--drain`).

Target: Delete answers about as fast as Provision; a 10,000-sliver Delete within 2 s.

    .venv/bin/python bench/bench_scale.py [--sizes 100,1000,10000] [--database URL] [--drain]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select  # noqa: E402

from am.errors import GeniError  # noqa: E402
from am.service.contract import Options  # noqa: E402
from am.store import Job  # noqa: E402
from tests.jobs.conftest import (  # noqa: E402
    USER,
    build_stack,
    make_settings,
    request_xml,
    slice_urn,
    write_inventory,
)

RSPEC_V = {"type": "GENI", "version": "3"}
PER_NODE = 100   # slivers per fake node


def timed(fn):
    t = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t


def live_in_status(stack, name: str) -> int:
    try:
        return len(stack.aggregate.status(USER, [slice_urn(name)], Options()).slivers)
    except GeniError:
        return 0   # SEARCHFAILED: nothing live left


def run(n: int, database: str, drain: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="geniam-bench-scale-") as tmp:
        folder = Path(tmp)
        nodes = max(1, -(-n // PER_NODE))
        write_inventory(folder, nodes=nodes, cpu=float(PER_NODE * 2),
                        memory_mb=float(PER_NODE * 1024))
        settings = make_settings(folder, database_url=database)
        stack = build_stack(settings, worker=False)
        try:
            name = f"scale{n}"
            urn = slice_urn(name)
            rspec = request_xml(settings, n)
            figures = []
            _, t = timed(lambda: stack.aggregate.allocate(USER, urn, rspec, Options()))
            figures.append(("Allocate", t))
            _, t = timed(lambda: stack.aggregate.provision(USER, [urn], Options()))
            figures.append(("Provision", t))
            st, t = timed(lambda: stack.aggregate.status(USER, [urn], Options()))
            assert len(st.slivers) == n
            figures.append(("Status", t))
            _, t = timed(lambda: stack.aggregate.advertisement(Options()))
            figures.append(("ListResources", t))
            deleted, t = timed(lambda: stack.aggregate.delete(USER, [urn], Options()))
            assert len(deleted) == n
            figures.append(("Delete", t))
            left, t = timed(lambda: live_in_status(stack, name))
            figures.append(("Status after", t))
            _, t = timed(lambda: stack.aggregate.advertisement(Options()))
            figures.append(("ListResources after", t))
            with stack.store.read() as s:
                delete_jobs = s.scalar(select(func.count()).select_from(Job)
                                       .where(Job.action == "delete", Job.state == "queued"))
            line = "  ".join(f"{what} {secs:7.3f} s = {secs / n * 1000:6.3f} ms/sliver"
                             for what, secs in figures)
            print(f"{n:6d} slivers on {nodes} nodes: {line}")
            print(f"{'':6s}  after Delete: {left} slivers live in Status, {delete_jobs} delete "
                  "jobs queued for the substrate")
            if drain:
                _drain(stack, n)
        finally:
            stack.close()


def _drain(stack, n: int) -> None:
    """Run the queued jobs (provision, then delete) with an embedded worker; print the queue."""
    stack.jobs.start_embedded_worker(concurrency=2)
    t0 = time.perf_counter()
    while True:
        with stack.store.read() as s:
            open_jobs = s.scalar(select(func.count()).select_from(Job)
                                 .where(Job.state.in_(("queued", "running"))))
        if not open_jobs:
            break
        time.sleep(0.5)
    print(f"{'':6s}  the worker finished every queued job in {time.perf_counter() - t0:.1f} s "
          f"({n} provisions and {n} deletes)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000",
                        help="comma-separated sliver counts (default 100,1000,10000)")
    parser.add_argument("--database", default="", help="database URL (default: SQLite)")
    parser.add_argument("--drain", action="store_true",
                        help="then run the queued jobs with an embedded worker")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print(f"service layer in-process, no worker during the calls; database "
          f"{args.database or 'SQLite'}; load average {os.getloadavg()[0]:.2f}")
    for n in sizes:
        with contextlib.suppress(KeyboardInterrupt):
            run(n, args.database, args.drain)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
