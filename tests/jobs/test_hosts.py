"""A site of three hosts: each host's own `geni-am worker --host` process, with its own
substrate state (here the fake driver's, one state directory per host from
`[hosts.<name>.drivers.fake]`), one API (in this process), one Redis and one database.

What is checked, on one module-scoped site:
  * a sliver's jobs run on its component's host only (each host's substrate holds exactly
    the slivers of its components, each created once);
  * a job sent to the wrong host's queue is refused there and re-routed, never run there;
  * a host whose worker is SIGKILLed mid-Provision goes down: its slivers report it (never a
    transient state), ListResources shows its components unavailable and why, Allocate
    places nothing there, the other hosts' slivers become ready; while it is down the
    reconciler re-sends its waiting jobs, so its queue holds duplicates; restarted, it
    reconciles and finishes, and no job runs twice (each sliver's driver is called at most
    once more than before the kill, however many copies of its job were queued);
  * a worker for a host the inventory does not name, or with a host removed from the
    inventory while it holds live slivers, refuses to start and says why.
"""
from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
import sys
from pathlib import Path

import pytest

from am.errors import GeniCode, GeniError
from am.jobs.celery_queue import RUN_JOB, RUN_JOBS
from am.jobs.hosts import host_queue
from am.service.contract import Options
from am.store import Job, Sliver
from drivers.fake_state import FakeStateStore
from tests import services, support
from tests.jobs.conftest import (
    AUTHORITY,
    FAST,
    REPO,
    USER,
    build_stack,
    claimed_redis_db,
    make_settings,
    slice_urn,
    stop_process,
)

pytestmark = pytest.mark.postgres     # a private database of its own (services.postgres_server)

HOSTS = ("hostA", "hostB", "hostC")
LATENCY_S = 0.6          # per fake operation: Provision is in flight long enough to kill it
HEARTBEAT_S = 0.3
DOWN_AFTER_S = 2.0


def _inventory(folder: Path, hosts=HOSTS) -> str:
    lines = ['[site]', 'name = "three-hosts"', '', '[drivers.fake]',
             f'state_dir = "{folder / "site-fake"}"', f'latency_s = {LATENCY_S}', '']
    for i, host in enumerate(hosts):
        lines += [f'[hosts.{host}]', f'address = "192.0.2.{i + 1}"',
                  f'[hosts.{host}.drivers.fake]', f'state_dir = "{folder / host}"', '']
    for host in hosts:
        lines += ['[[components]]', f'name = "pc-{host}"', 'driver = "fake"',
                  'isolation = "hypervisor"', f'host = "{host}"', '']
    return "\n".join(lines)


def _node_urn(host: str) -> str:
    return f"urn:publicid:IDN+{AUTHORITY}+node+pc-{host}"


def _request(settings, per_host: int = 2, hosts=HOSTS, prefix: str = "n") -> str:
    nodes = "".join(
        f'<node client_id="{prefix}-{host}-{i}" component_manager_id="{settings.am_urn}" '
        f'component_id="{_node_urn(host)}" exclusive="false">'
        f'<sliver_type name="xen-vm"/></node>'
        for host in hosts for i in range(per_host))
    return f'<rspec type="request" xmlns="http://www.geni.net/resources/rspec/3">{nodes}</rspec>'


class Site:
    def __init__(self, folder: Path, stack, procs: dict, settings):
        self.folder, self.stack, self.procs, self.settings = folder, stack, procs, settings

    def worker(self, host: str, *extra: str, inventory: str | None = None,
               wait: bool = False) -> subprocess.Popen:
        s = self.settings
        cmd = [sys.executable, "-m", "am", "worker", "--host", host, "--broker", s.broker_url,
               "--database", s.effective_database_url, "--inventory",
               inventory or s.inventory, "--state-dir", str(self.folder / f"{host}-state"),
               "--concurrency", "2", "--lease-s", str(FAST.lease_s),
               "--requeue-after-s", str(FAST.queued_grace_s),
               "--reconcile-interval-s", str(FAST.reconcile_interval_s), "--loglevel", "INFO",
               *extra]
        env = {**os.environ, "GENI_AM_AUTHORITY": AUTHORITY,
               "GENI_AM_HOST_HEARTBEAT_S": str(HEARTBEAT_S),
               "GENI_AM_HOST_DOWN_AFTER_S": str(DOWN_AFTER_S)}
        log = (self.folder / f"{host}.log").open("ab")
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        if wait:
            try:
                proc.wait(120)
            finally:
                stop_process(proc)
        return proc

    def start(self, *hosts: str) -> None:
        """Start the hosts' agents together and wait until each heartbeats (a loaded 2-core
        machine takes tens of seconds to start three)."""
        for host in hosts:
            self.procs[host] = self.worker(host)
        support.wait_until(lambda: all(self.state(h) == "up" for h in hosts),
                           f"{', '.join(hosts)} to heartbeat", 180, 0.2)

    def state(self, host: str) -> str:
        return self.stack.aggregate.hosts.repo.views(list(HOSTS))[host].state

    def substrate(self, host: str, counter: str = "created") -> dict[str, int]:
        """sliver URN -> times created (or another of FakeCounters), on that host's substrate."""
        store = FakeStateStore(self.folder / host)
        try:
            return {r.sliver_urn: getattr(store.counters(r.sliver_urn), counter)
                    for r in store.all()}
        finally:
            store.close()

    def queued_jobs(self, host: str) -> Counter:
        """job id -> how many messages for it wait in the host's queue on the broker (a
        message runs one job, or a batch of them)."""
        import ast

        import redis
        client = redis.Redis.from_url(self.settings.broker_url)
        try:
            out: Counter = Counter()
            for key in client.keys(f"{host_queue(host)}*"):
                if client.type(key) == b"list":
                    for m in client.lrange(key, 0, -1):
                        headers = json.loads(m)["headers"]
                        if headers["task"] in (RUN_JOB, RUN_JOBS):
                            (arg, *_) = ast.literal_eval(headers["argsrepr"])
                            out.update(arg if isinstance(arg, list) else [arg])
            return out
        finally:
            client.close()

    def log(self, host: str) -> str:
        return (self.folder / f"{host}.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def site(tmp_path_factory, redis_url):
    folder = tmp_path_factory.mktemp("hosts")
    (folder / "inventory.toml").write_text(_inventory(folder))
    with claimed_redis_db(redis_url) as broker, services.postgres_server() as database:
        settings = make_settings(folder, broker_url=broker, database_url=database,
                                 host_down_after_s=DOWN_AFTER_S)
        stack = build_stack(settings, worker=False)
        from am.jobs.hosts import JobRouter
        stack.jobs.queue.router = JobRouter(stack.store, stack.site)
        the_site = Site(folder, stack, {}, settings)
        try:
            the_site.start(*HOSTS)
            yield the_site
        finally:
            for proc in the_site.procs.values():
                stop_process(proc)
            stack.close()


def _slivers_by_host(stack, name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {h: [] for h in HOSTS}
    with stack.store.read() as session:
        for urn, comp in session.query(Sliver.urn, Sliver.component_id).filter(
                Sliver.urn.in_(list(stack.status(name)))):
            out[stack.site.host_of(comp)].append(urn)
    return out


def test_jobs_run_on_their_hosts_and_a_dead_host_says_so(site):
    stack = site.stack
    stack.aggregate.allocate(USER, slice_urn("six"), _request(site.settings), Options())
    by_host = _slivers_by_host(stack, "six")
    assert all(len(v) == 2 for v in by_host.values())

    stack.provision("six")
    # kill hostA's agent (supervisor and Celery worker) while its jobs are in flight
    support.wait_until(lambda: any(s[1] == "geni_configuring" or s[1] == "geni_ready"
                                   for u, s in stack.status("six").items()
                                   if u in by_host["hostB"]), "provision to start", 30, 0.05)
    stop_process(site.procs["hostA"], sig=9)
    calls_at_death = site.substrate("hostA", "provision_calls")
    support.wait_until(lambda: site.state("hostA") == "down",
                       "hostA to be seen down", 30, 0.1)
    stack.aggregate.hosts._read_at = -1e9          # no 1 s cache in the way of the check

    def others_ready():
        st = stack.status("six")
        return all(st[u][1] == "geni_ready" for h in ("hostB", "hostC") for u in by_host[h])
    support.wait_until(others_ready, "hostB and hostC slivers ready", 60, 0.1)
    st = stack.status("six")
    for urn in by_host["hostA"]:
        op, error = st[urn][1], st[urn][2]
        assert op in ("geni_notready", "geni_failed"), (urn, op)
        assert "host hostA unreachable since" in error, error

    # ListResources: hostA's component unavailable, and why
    ad = stack.aggregate.advertisement(Options())
    node_a = ad[ad.index(f'component_id="{_node_urn("hostA")}"'):]
    node_a = node_a[:node_a.index("</node>")]
    assert '<available now="false"/>' in node_a
    assert 'host_state="down"' in node_a and "host hostA unreachable since" in node_a
    # Allocate places nothing on it
    with pytest.raises(GeniError) as refused:
        stack.aggregate.allocate(USER, slice_urn("late"), _request(site.settings, 1, ("hostA",)),
                                 Options())
    assert refused.value.code == GeniCode.UNAVAILABLE and "hostA" in refused.value.message

    # a hostA job sent to hostB's queue is refused there and never runs there
    with stack.store.read() as session:
        job_a = session.query(Job.id).join(Sliver, Sliver.id == Job.sliver_id).filter(
            Sliver.urn == by_host["hostA"][0]).order_by(Job.id.desc()).first()[0]
    stack.jobs.app.send_task(RUN_JOB, args=(job_a,), queue=host_queue("hostB"))
    support.wait_until(lambda: f"job {job_a} belongs to {host_queue('hostA')}" in site.log("hostB"),
                       "hostB to refuse hostA's job", 30, 0.1)

    # while hostA is down the reconciler re-sends its waiting jobs to its queue, pass after
    # pass: duplicates of one job pile up there
    support.wait_until(lambda: any(n > 1 for n in site.queued_jobs("hostA").values()),
                       "hostA's queue to hold one job twice", 30, 0.2,
                       detail=lambda: site.queued_jobs("hostA"))
    # hostA comes back: it reconciles, then finishes its jobs; nothing is done twice
    site.start("hostA")
    stack.aggregate.hosts._read_at = -1e9
    stack.wait_ops("six", {"geni_ready"}, timeout=90)
    for host in HOSTS:
        made = site.substrate(host)
        assert set(made) == set(by_host[host]), (host, made)
        assert all(n == 1 for n in made.values()), (host, made)
    # every message of every duplicate was taken, yet each hostA sliver's driver was called
    # at most once more than when its worker died (once: a call cut short is made again)
    support.wait_until(lambda: not site.queued_jobs("hostA"), "hostA's queue to drain", 30, 0.2)
    calls = site.substrate("hostA", "provision_calls")
    assert all(calls[u] - calls_at_death.get(u, 0) <= 1 and calls[u] >= 1
               for u in by_host["hostA"]), (calls_at_death, calls)
    for host in ("hostB", "hostC"):
        assert set(site.substrate(host, "provision_calls").values()) == {1}
    assert "reconciled before taking work" in site.log("hostA")


def test_worker_for_unknown_host_refuses_to_start(site):
    proc = site.worker("hostZ", wait=True)
    assert proc.returncode != 0
    assert "host 'hostZ' is not named in the inventory (hosts: hostA, hostB, hostC)" \
        in site.log("hostZ")


def test_host_removed_with_live_slivers_is_refused_naming_them(site):
    stack = site.stack
    if not stack.status("six"):
        pytest.fail("needs the slice of the first test")
    smaller = site.folder / "two-hosts.toml"
    smaller.write_text(_inventory(site.folder, HOSTS[:2]))
    proc = site.worker("hostA", inventory=str(smaller), wait=True)
    assert proc.returncode != 0
    out = site.log("hostA")
    with stack.store.read() as session:
        on_c = [u for (u,) in session.query(Sliver.urn).filter(
            Sliver.component_id == _node_urn("hostC"))]
    assert "inventory no longer names host hostC holds live sliver(s)" in out
    assert all(urn in out for urn in on_c)


def test_hosts_command_and_metrics_show_the_hosts(site):
    s = site.settings
    env = {**os.environ, "GENI_AM_HOST_DOWN_AFTER_S": str(DOWN_AFTER_S)}
    out = subprocess.run([sys.executable, "-m", "am", "hosts", "--database",
                          s.effective_database_url, "--inventory", s.inventory, "--json"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    import json
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert set(rows) >= set(HOSTS)
    assert all(rows[h]["state"] == "up" and rows[h]["age_s"] < 30 for h in HOSTS)
    assert sum(rows[h]["slivers"] for h in HOSTS) == 6

    from am.metrics import AMMetrics
    text = AMMetrics(store=site.stack.store, hosts=site.stack.aggregate.hosts).render().decode()
    for host in HOSTS:
        assert f'geniam_host_up{{host="{host}"}} 1.0' in text
        assert f'geniam_host_heartbeat_age_seconds{{host="{host}"}}' in text

    # one host stopped: the command says so and exits 1 (for monitoring)
    stop_process(site.procs["hostC"], sig=9)
    support.wait_until(lambda: site.state("hostC") == "down", "hostC to be seen down", 30, 0.1)
    out = subprocess.run([sys.executable, "-m", "am", "hosts", "--database",
                          s.effective_database_url, "--inventory", s.inventory],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("hostC"))
    assert " down " in line
