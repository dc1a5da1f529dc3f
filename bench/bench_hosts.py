"""A site of three hosts against one: Provision of one slice to all geni_ready.

Default (fake substrate): each host is its own `geni-am worker --host` process (prefork,
`--concurrency` each) with its own fake substrate state directory (`latency_s` per substrate
operation, so a job costs what a slow substrate costs); one API in this process, Redis and a
private PostgreSQL database (tests/services.py). The same slice (`--per-host` nodes on each of
three hosts, or all of them on one host) is provisioned and timed until every sliver is
geni_ready. This measures the job routing and the hosts' parallelism, not containers.

`--containers` (root): real containers on hosts simulated as network namespaces
(tests/jobs/netns_hosts.py: each host its own namespace, state directories and worker inside
it, the hosts joined by a switch namespace). The slice: `--per-host` containers on each of
three hosts, paired by links that each cross two hosts (VXLAN tunnels, a half per host), and
the same containers and links all on one host (veth pairs there), in one run. One ping over
a cross-host link checks the three-host slice works.

    .venv/bin/python bench/bench_hosts.py [--per-host 50] [--latency-s 0.05] [--concurrency 2]
    .venv/bin/python bench/bench_hosts.py --containers [--per-host 50] [--concurrency 2]
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


GA = "http://geni-am.org/resources/rspec/ext/geniam/1"


def _pairs(hosts: list[str], per_host: int) -> list[tuple[tuple[str, int], tuple[str, int]]]:
    """Containers (host index, i) paired so that, on three hosts, every pair crosses two:
    for each even i, (A_i, B_i), (B_i+1, C_i+1), (C_i, A_i+1); every container once."""
    out = []
    for i in range(0, per_host, 2):
        out += [((0, i), (1, i)), ((1, i + 1), (2, i + 1)), ((2, i), (0, i + 1))]
    return out


def _container_request(hosts: list[str], per_host: int, place: list[str]) -> str:
    """`place[k]`: the host of original host k's containers (all one host, or each its own)."""
    nodes, links = [], []
    for k, ((ha, ia), (hb, ib)) in enumerate(_pairs(hosts, per_host)):
        net = f"10.{212 + k // 250}.{k % 250}"
        ends = []
        for n, (h, i) in enumerate(((ha, ia), (hb, ib))):
            cid = f"c{h}-{i}"
            ends.append(cid)
            nodes.append(
                f'<node client_id="{cid}" component_id="urn:publicid:IDN+{AUTHORITY}+node+'
                f'vs-{place[h]}" exclusive="false"><sliver_type name="vserver-container"/>'
                f'<interface client_id="{cid}:if0"><ip address="{net}.{n + 1}" '
                f'netmask="255.255.255.0" type="ipv4"/></interface>'
                f'<ga:node memory_mb="32"/></node>')
        links.append(f'<link client_id="l{k}">' + "".join(
            f'<interface_ref client_id="{e}:if0"/>' for e in ends) + '</link>')
    return (f'<rspec xmlns="http://www.geni.net/resources/rspec/3" xmlns:ga="{GA}" '
            f'type="request">{"".join(nodes)}{"".join(links)}</rspec>')


def run_containers(hosts: list[str], per_host: int, args, redis_url: str) -> tuple[float, int]:
    """Seconds from Provision to all geni_ready, real containers over `hosts` (namespaces),
    and how many slivers (so jobs) that was."""
    from drivers.registry import load_site
    from tests.jobs.netns_hosts import netns_hosts

    sites = ["hostA", "hostB", "hostC"]
    place = sites if len(hosts) == 3 else ["hostA"] * 3
    with tempfile.TemporaryDirectory(prefix="bench-hosts-") as tmp, \
            netns_hosts(Path(tmp), hosts, redis_url, heartbeat_s=1.0, down_after_s=60.0,
                        concurrency=args.concurrency,
                        memory_mb=64 * 3 * per_host + 1024) as site:
        stack = site.stack
        stack.aggregate.allocate(USER, slice_urn("bench"),
                                 _container_request(sites, per_host, place), Options())
        started = time.monotonic()
        stack.provision("bench")
        def ready():     # polled once a second: Status of hundreds of slivers costs CPU too
            st = stack.status("bench")
            return all(op == "geni_ready" for _, op, _ in st.values())
        support.wait_until(ready, "all containers ready", 3600, 1.0)
        took, slivers = time.monotonic() - started, len(stack.status("bench"))
        # one ping over the first link (cA-0 to cB-0: across hosts on the three-host site)
        part = load_site(str(Path(tmp) / "inventory.toml"), authority=AUTHORITY, host=place[0])
        try:
            drv = part.drivers["vserver"]
            (rec,) = [r for r in drv.state.all().values() if r.get("client_id") == "c0-0"]
            done = subprocess.run(drv.sliver_argv(rec["sliver_urn"], [
                "ping", "-c", "1", "-W", "5", "10.212.0.2"]), capture_output=True, timeout=60)
            if done.returncode != 0:
                raise SystemExit(f"ping over link l0 failed: {done.stdout!r} {done.stderr!r}")
        finally:
            part.close()
        stack.delete("bench")
        return took, slivers


def main_containers(args) -> None:
    if args.per_host % 2:
        raise SystemExit("--per-host must be even with --containers (containers are paired)")
    with services.redis_server() as redis_url:
        three, jobs3 = run_containers(["hostA", "hostB", "hostC"], args.per_host, args,
                                      redis_url)
        one, jobs1 = run_containers(["hostA"], args.per_host, args, redis_url)
    n, links = 3 * args.per_host, 3 * args.per_host // 2
    print(f"{n} containers, {links} links (each across two hosts on the three-host site, "
          f"veth pairs on one host), {args.concurrency} worker processes per host; "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"three hosts: {three:.1f} s to all geni_ready ({n / three:.2f} containers/s, "
          f"{jobs3} slivers: {jobs3 / three:.1f} jobs/s)")
    print(f"one host:    {one:.1f} s to all geni_ready ({n / one:.2f} containers/s, "
          f"{jobs1} slivers: {jobs1 / one:.1f} jobs/s)")
    print(f"ratio one/three: {one / three:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-host", type=int, default=50)
    ap.add_argument("--latency-s", type=float, default=0.05)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--containers", action="store_true",
                    help="real containers on hosts simulated as network namespaces (root)")
    args = ap.parse_args()
    if args.containers:
        main_containers(args)
        return
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
