"""A site of three hosts against one: Provision of one slice to all geni_ready.

Each host is its own `geni-am worker --host` process (prefork, `--concurrency` each) with its
own fake substrate state directory (`latency_s` per substrate operation, so a job costs what a
slow substrate costs); one API in this process, Redis and a private PostgreSQL database
(tests/services.py). The same slice (`--per-host` nodes on each of three hosts, or all of
them on one host) is provisioned and timed until every sliver is geni_ready.

This measures the job routing and the hosts' parallelism, not containers: the slice has no
cross-host links (their tunnels' throughput is bench/bench_tunnel.py's).

    .venv/bin/python bench/bench_hosts.py [--per-host 50] [--latency-s 0.05] [--concurrency 2]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from am.service.contract import Options  # noqa: E402
from tests import services, support  # noqa: E402
from tests.jobs.conftest import AUTHORITY, USER, build_stack, claimed_redis_db, \
    make_settings, slice_urn, stop_process  # noqa: E402


def _inventory(folder: Path, hosts: list[str], latency: float) -> str:
    lines = ['[drivers.fake]', f'state_dir = "{folder / "site"}"', f'latency_s = {latency}',
             'cpu = 1000.0', 'memory_mb = 10000000.0', '']
    for i, h in enumerate(hosts):
        lines += [f'[hosts.{h}]', f'[hosts.{h}.drivers.fake]', f'state_dir = "{folder / h}"', '']
    for h in hosts:
        lines += ['[[components]]', f'name = "pc-{h}"', 'driver = "fake"',
                  'isolation = "hypervisor"', f'host = "{h}"', '']
    return "\n".join(lines)


def _request(am_urn: str, hosts: list[str], per_host: int) -> str:
    nodes = "".join(
        f'<node client_id="n-{h}-{i}" component_manager_id="{am_urn}" '
        f'component_id="urn:publicid:IDN+{AUTHORITY}+node+pc-{h}" exclusive="false">'
        f'<sliver_type name="xen-vm"/></node>' for h in hosts for i in range(per_host))
    return f'<rspec type="request" xmlns="http://www.geni.net/resources/rspec/3">{nodes}</rspec>'


def run(hosts: list[str], per_host: int, args, redis_url: str) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-hosts-") as tmp, \
            claimed_redis_db(redis_url) as broker, services.postgres_server() as database:
        folder = Path(tmp)
        (folder / "inventory.toml").write_text(_inventory(folder, hosts, args.latency_s))
        settings = make_settings(folder, broker_url=broker, database_url=database)
        stack = build_stack(settings, worker=False)
        from am.jobs.hosts import JobRouter
        stack.jobs.queue.router = JobRouter(stack.store, stack.site)
        procs = []
        try:
            env = {**os.environ, "GENI_AM_AUTHORITY": AUTHORITY, "GENI_AM_HOST_HEARTBEAT_S": "1"}
            for h in hosts:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "am", "worker", "--host", h, "--broker", broker,
                     "--database", database, "--inventory", settings.inventory,
                     "--state-dir", str(folder / f"{h}-am"), "--concurrency",
                     str(args.concurrency), "--loglevel", "WARNING"],
                    cwd=REPO, env=env, start_new_session=True,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            repo = stack.aggregate.hosts.repo
            support.wait_until(lambda: all(v.state == "up" for v in repo.views(hosts).values()),
                               "hosts up", 300, 0.2)
            stack.aggregate.allocate(USER, slice_urn("bench"),
                                     _request(settings.am_urn, hosts, per_host), Options())
            started = time.monotonic()
            stack.provision("bench")
            stack.wait_ops("bench", {"geni_ready"}, timeout=1800)
            return time.monotonic() - started
        finally:
            for p in procs:
                stop_process(p)
            stack.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-host", type=int, default=50)
    ap.add_argument("--latency-s", type=float, default=0.05)
    ap.add_argument("--concurrency", type=int, default=2)
    args = ap.parse_args()
    with services.redis_server() as redis_url:
        three = run(["hostA", "hostB", "hostC"], args.per_host, args, redis_url)
        one = run(["hostA"], 3 * args.per_host, args, redis_url)
    n = 3 * args.per_host
    print(f"{n} slivers, fake substrate {args.latency_s} s per operation (2 per sliver), "
          f"{args.concurrency} worker processes per host; load {os.getloadavg()[0]:.1f}")
    print(f"three hosts: {three:.1f} s to all geni_ready ({n / three:.1f} slivers/s)")
    print(f"one host:    {one:.1f} s to all geni_ready ({n / one:.1f} slivers/s)")
    print(f"ratio one/three: {one / three:.2f}")


if __name__ == "__main__":
    main()
