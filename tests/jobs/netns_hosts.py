"""A site of hosts simulated as network namespaces on this machine (root), for
tests/jobs/test_hosts_netns.py and bench/bench_hosts.py --containers.

Each host is a network namespace with its own state directories and its own
`geni-am worker --host` process running *inside* it (`nsenter --net`, as a host agent runs on
its machine), with the real container driver. Each host has a cable to the machine (a veth on
a free /30 of 198.51.100.0/24, with a forwarder on the machine's end to the database and
broker on loopback). The hosts' physical network, the one cross-host links tunnel over, is a
bridge in a namespace of its own (the site's switch) with a veth to each host at the
inventory's host addresses (192.0.2.<n>/24, MTU 1500). One API (the caller's stack), a
private PostgreSQL database and a claimed Redis database.

On one machine the hosts share `/run/netns` and the cgroup tree, so each host's driver gets
its own `name_prefix`; otherwise one host's reconciler would take another's containers for
orphans.
"""
from __future__ import annotations

import contextlib
import os
import random
import string
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from drivers import hostnet
from drivers.registry import load_site
from tests import services, support
from tests.drivers.vserver.helpers import guest_test_image
from tests.jobs.conftest import AUTHORITY, FAST, REPO, build_stack, claimed_redis_db, \
    make_settings, stop_process


def inventory(folder: Path, hosts: Sequence[str], prefix: str, netns: dict[str, str], *,
              memory_mb: int = 2048) -> str:
    images, image = guest_test_image()
    lines = ['[drivers.vserver]', f'name_prefix = "{prefix}"',
             f'state_dir = "{folder / "site-vs"}"', f'images_dir = "{images}"',
             f'default_image = "{image}"', 'build_default_image = false', 'cpu = 2',
             f'memory_mb = {memory_mb}', '']
    for i, host in enumerate(hosts):
        lines += [f'[hosts.{host}]', f'address = "192.0.2.{i + 1}"',
                  f'description = "simulated: network namespace {netns[host]}"',
                  f'[hosts.{host}.drivers.vserver]', f'state_dir = "{folder / host}"',
                  # namespaces and cgroups are one machine's here: each host's driver must
                  # know its own by name, or one host's reconciler would take another's for
                  # orphans (on real machines the prefix may stay the same)
                  f'name_prefix = "{host[-1].lower()}{prefix[1:]}"', '']
    for host in hosts:
        lines += ['[[components]]', f'name = "vs-{host}"', 'driver = "vserver"',
                  f'host = "{host}"', '']
    return "\n".join(lines)


def free_blocks(count: int) -> list[int]:
    """`count` /30 blocks of 198.51.100.0/24 no interface of the machine uses now, at random:
    two runs at once (two engineers, the suite and a loop) must not both route
    198.51.100.1 to their own cable, or each one's workers lose the database."""
    used = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True,
                          check=True).stdout
    free = [b for b in range(0, 256, 4) if f" 198.51.100.{b + 1}/" not in used
            and f" 198.51.100.{b + 2}/" not in used]
    return random.sample(free, count)


def wire(ns: str, veth: str, block: int, ports: list[int]) -> tuple[str, list]:
    """The host's cable to the site network: a veth from the machine into the host's
    namespace (198.51.100.block+1 here, +2 there), and a forwarder on the machine's end to
    the database and broker on loopback (TCP only, to ports the suite's servers use)."""
    here, there = f"198.51.100.{block + 1}", f"198.51.100.{block + 2}"
    subprocess.run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "site0",
                    "netns", ns], check=True)
    subprocess.run(["ip", "addr", "add", f"{here}/30", "dev", veth], check=True)
    subprocess.run(["ip", "link", "set", veth, "up"], check=True)
    subprocess.run(["ip", "-n", ns, "addr", "add", f"{there}/30", "dev", "site0"], check=True)
    subprocess.run(["ip", "-n", ns, "link", "set", "site0", "up"], check=True)
    forwarders = [subprocess.Popen(["socat", f"TCP-LISTEN:{port},bind={here},reuseaddr,fork",
                                    f"TCP:127.0.0.1:{port}"], start_new_session=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                  for port in ports]
    return here, forwarders


class NetnsSite:
    """The site: its folder, the API's stack, host -> namespace, host -> worker process."""

    def __init__(self, folder: Path, hosts: Sequence[str], stack, netns: dict[str, str],
                 settings, addresses: dict, broker: str, db_url, *, heartbeat_s: float,
                 down_after_s: float, concurrency: int) -> None:
        self.folder, self.hosts, self.stack, self.netns = folder, list(hosts), stack, netns
        self.settings, self.addresses, self.broker, self.db_url = settings, addresses, broker, \
            db_url
        self.heartbeat_s, self.down_after_s, self.concurrency = heartbeat_s, down_after_s, \
            concurrency
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, *hosts: str) -> None:
        """Start the hosts' agents, each inside its namespace, and wait until each beats."""
        for host in hosts:
            at = self.addresses[host]   # the host reaches the database and broker over its cable
            cmd = ["nsenter", f"--net=/run/netns/{self.netns[host]}", sys.executable, "-m", "am",
                   "worker", "--host", host,
                   "--broker", self.broker.replace("127.0.0.1", at).replace("localhost", at),
                   "--database", self.db_url.set(host=at).render_as_string(hide_password=False),
                   "--inventory", str(self.folder / "inventory.toml"),
                   "--state-dir", str(self.folder / f"{host}-am"),
                   "--concurrency", str(self.concurrency),
                   "--lease-s", "30", "--requeue-after-s", "5",
                   "--reconcile-interval-s", str(FAST.reconcile_interval_s)]
            env = {**os.environ, "GENI_AM_AUTHORITY": AUTHORITY,
                   "GENI_AM_HOST_HEARTBEAT_S": str(self.heartbeat_s),
                   "GENI_AM_HOST_DOWN_AFTER_S": str(self.down_after_s)}
            self.procs[host] = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True,
                                                stdout=(self.folder / f"{host}.log").open("ab"),
                                                stderr=subprocess.STDOUT)
        support.wait_until(lambda: all(self.state(h) == "up" for h in hosts),
                           f"{', '.join(hosts)} to heartbeat", 180, 0.2)

    def state(self, host: str) -> str:
        hosts = self.stack.aggregate.hosts
        hosts._read_at = -1e9           # no 1 s cache in the way of the check
        return hosts.repo.views(self.hosts)[host].state


@contextlib.contextmanager
def netns_hosts(folder: Path, hosts: Sequence[str], redis_url: str, *,
                heartbeat_s: float = 0.5, down_after_s: float = 4.0, concurrency: int = 2,
                memory_mb: int = 2048) -> Iterator[NetnsSite]:
    """The site of `hosts`, every host's worker started and beating; on exit the workers are
    stopped, whatever containers are left are released and the namespaces removed."""
    from sqlalchemy.engine import make_url

    tag = "".join(random.choices(string.ascii_lowercase + string.digits, k=4))
    netns = {h: f"gh{tag}{h[-1].lower()}" for h in hosts}
    switch = f"gh{tag}s"               # the site's switch: the hosts' physical network
    inv = folder / "inventory.toml"
    servers = contextlib.ExitStack()
    broker = servers.enter_context(claimed_redis_db(redis_url))
    database = servers.enter_context(services.postgres_server())
    settings = make_settings(folder, broker_url=broker, database_url=database,
                             host_down_after_s=down_after_s)
    settings = settings.replace(inventory=str(inv))
    db_url = make_url(settings.effective_database_url)
    ports = [make_url(broker.replace("redis://", "redis+x://")).port or 6379, db_url.port or 5432]
    forwarders: list[subprocess.Popen] = []
    site = stack = None
    try:
        addresses = {}
        blocks = free_blocks(len(hosts))
        for i, (host, ns) in enumerate(netns.items()):
            hostnet.netns_add(ns)
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
            addresses[host], more = wire(ns, f"gs{tag}{i}", blocks[i], ports)
            forwarders += more
        # the hosts' own network: each host's phy0 on one bridge (the switch), at the
        # inventory addresses
        hostnet.netns_add(switch)
        subprocess.run(["ip", "-n", switch, "link", "add", "sw", "type", "bridge"], check=True)
        subprocess.run(["ip", "-n", switch, "link", "set", "sw", "up"], check=True)
        for i, ns in enumerate(netns.values()):
            subprocess.run(["ip", "link", "add", "phy0", "netns", ns, "type", "veth", "peer",
                            "name", f"p{i}", "netns", switch], check=True)
            subprocess.run(["ip", "-n", switch, "link", "set", f"p{i}", "master", "sw", "up"],
                           check=True)
            subprocess.run(["ip", "-n", ns, "addr", "add", f"192.0.2.{i + 1}/24", "dev", "phy0"],
                           check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", "phy0", "up"], check=True)
        inv.write_text(inventory(folder, hosts, f"h{tag[:3]}", netns, memory_mb=memory_mb))
        stack = build_stack(settings, worker=False)
        from am.jobs.hosts import JobRouter
        stack.jobs.queue.router = JobRouter(stack.store, stack.site)
        site = NetnsSite(folder, hosts, stack, netns, settings, addresses, broker, db_url,
                         heartbeat_s=heartbeat_s, down_after_s=down_after_s,
                         concurrency=concurrency)
        site.start(*hosts)
        yield site
    finally:
        for proc in (site.procs.values() if site is not None else ()):
            stop_process(proc)
        for host in hosts if stack is not None else ():   # what a failed run left behind
            part = load_site(str(inv), authority=AUTHORITY, host=host)
            drv = part.drivers["vserver"]
            for item in drv.observed():
                try:
                    drv.release(item.handle)
                except Exception:   # noqa: BLE001
                    pass
            part.close()
        for proc in forwarders:
            stop_process(proc)
        if stack is not None:
            stack.close()
        servers.close()
        for i, ns in enumerate([*netns.values(), switch]):
            hostnet.netns_delete(ns)
            subprocess.run(["ip", "link", "del", f"gs{tag}{i}"], capture_output=True)


__all__ = ["NetnsSite", "netns_hosts"]
