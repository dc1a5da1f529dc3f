"""Hosts simulated as network namespaces, with the real container driver: three hosts, each a
network namespace with its own state directory and its own `geni-am worker --host` process
running *inside* it (`nsenter --net`, as a host agent runs on its machine), one API in the test
process, a private PostgreSQL database and Redis.

A slice with a three-container LAN on hostA and a two-container link on hostB: every job runs
in its host's world, asserted by where things appear: the LAN's bridge exists in hostA's
namespace only (not in hostB's, not in the machine's), each host's state directory holds
exactly the containers of its component, and the containers of each link ping each other.

The host namespaces are also joined to each other, each by a veth to a bridge in a namespace
of its own (the site's switch), with the inventory's host addresses (192.0.2.1-3/24, MTU 1500):
the physical network cross-host links tunnel over. A link between a container on hostA and one
on hostB is a VXLAN tunnel, one half built by each host's worker: full-size packets (1450 bytes,
don't fragment) cross, the VNI is the store's and is freed on Delete, and nothing of it is left
in either namespace.

The issue's scenario: a six-container LAN, two containers per host, over the three hosts (a
half per host, VXLAN full mesh): hostC's worker is SIGKILLed during Provision (its slivers say
the host is unreachable, the others become ready); restarted, everything is ready, nothing was
built twice, every container pings every other, and a timed transfer across hosts reads the
LAN's capacity.
"""
from __future__ import annotations

import contextlib
import os
import random
import string
import subprocess
import sys
from pathlib import Path

import pytest

from am.service.contract import Options
from drivers import hostnet
from drivers.registry import load_site
from tests import services, support
from tests.drivers.vserver.helpers import guest_test_image
from tests.jobs.conftest import AUTHORITY, FAST, REPO, USER, build_stack, claimed_redis_db, \
    make_settings, slice_urn, stop_process

pytestmark = [pytest.mark.root, pytest.mark.postgres]

HOSTS = ("hostA", "hostB", "hostC")
HEARTBEAT_S, DOWN_AFTER_S = 0.5, 4.0
GA = "http://geni-am.org/resources/rspec/ext/geniam/1"


def _inventory(folder: Path, prefix: str, netns: dict[str, str]) -> str:
    images, image = guest_test_image()
    lines = ['[drivers.vserver]', f'name_prefix = "{prefix}"',
             f'state_dir = "{folder / "site-vs"}"', f'images_dir = "{images}"',
             f'default_image = "{image}"', 'build_default_image = false', 'cpu = 2',
             'memory_mb = 2048', '']
    for i, host in enumerate(HOSTS):
        lines += [f'[hosts.{host}]', f'address = "192.0.2.{i + 1}"',
                  f'description = "simulated: network namespace {netns[host]}"',
                  f'[hosts.{host}.drivers.vserver]', f'state_dir = "{folder / host}"',
                  # namespaces and cgroups are one machine's here: each host's driver must
                  # know its own by name, or one host's reconciler would take another's for
                  # orphans (on real machines the prefix may stay the same)
                  f'name_prefix = "{host[-1].lower()}{prefix[1:]}"', '']
    for host in HOSTS:
        lines += ['[[components]]', f'name = "vs-{host}"', 'driver = "vserver"',
                  f'host = "{host}"', '']
    return "\n".join(lines)


def _node(cid: str, host: str, ip: str) -> str:
    return (f'<node client_id="{cid}" component_id="urn:publicid:IDN+{AUTHORITY}+node+vs-{host}"'
            f' exclusive="false"><sliver_type name="vserver-container"/>'
            f'<interface client_id="{cid}:if0"><ip address="{ip}" netmask="255.255.255.0" '
            f'type="ipv4"/></interface><ga:node cpu="0.1" memory_mb="64"/></node>')


def _link(cid: str, *ends: str) -> str:
    refs = "".join(f'<interface_ref client_id="{e}:if0"/>' for e in ends)
    return f'<link client_id="{cid}">{refs}</link>'


REQUEST = (f'<rspec xmlns="http://www.geni.net/resources/rspec/3" xmlns:ga="{GA}" '
           'type="request">'
           + _node("a1", "hostA", "10.211.1.1") + _node("a2", "hostA", "10.211.1.2")
           + _node("a3", "hostA", "10.211.1.3")
           + _node("b1", "hostB", "10.211.2.1") + _node("b2", "hostB", "10.211.2.2")
           + _link("lan-a", "a1", "a2", "a3") + _link("link-b", "b1", "b2") + "</rspec>")


def _free_blocks(count: int) -> list[int]:
    """`count` /30 blocks of 198.51.100.0/24 no interface of the machine uses now, at random:
    two runs of this test at once (two engineers, the suite and a loop) must not both route
    198.51.100.1 to their own cable, or each one's workers lose the database."""
    used = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True,
                          check=True).stdout
    free = [b for b in range(0, 256, 4) if f" 198.51.100.{b + 1}/" not in used
            and f" 198.51.100.{b + 2}/" not in used]
    return random.sample(free, count)


def _wire(ns: str, veth: str, block: int, ports: list[int]) -> tuple[str, list]:
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

    def __init__(self, folder: Path, stack, netns: dict[str, str], settings, addresses: dict,
                 broker: str, db_url) -> None:
        self.folder, self.stack, self.netns, self.settings = folder, stack, netns, settings
        self.addresses, self.broker, self.db_url = addresses, broker, db_url
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
                   "--state-dir", str(self.folder / f"{host}-am"), "--concurrency", "2",
                   "--lease-s", "30", "--requeue-after-s", "5",
                   "--reconcile-interval-s", str(FAST.reconcile_interval_s)]
            env = {**os.environ, "GENI_AM_AUTHORITY": AUTHORITY,
                   "GENI_AM_HOST_HEARTBEAT_S": str(HEARTBEAT_S),
                   "GENI_AM_HOST_DOWN_AFTER_S": str(DOWN_AFTER_S)}
            self.procs[host] = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True,
                                                stdout=(self.folder / f"{host}.log").open("ab"),
                                                stderr=subprocess.STDOUT)
        support.wait_until(lambda: all(self.state(h) == "up" for h in hosts),
                           f"{', '.join(hosts)} to heartbeat", 180, 0.2)

    def state(self, host: str) -> str:
        hosts = self.stack.aggregate.hosts
        hosts._read_at = -1e9           # no 1 s cache in the way of the check
        return hosts.repo.views(list(HOSTS))[host].state


@pytest.fixture(scope="module")
def netns_site(tmp_path_factory, redis_url):
    from sqlalchemy.engine import make_url

    folder = tmp_path_factory.mktemp("hostsns")
    tag = "".join(random.choices(string.ascii_lowercase + string.digits, k=4))
    netns = {h: f"gh{tag}{h[-1].lower()}" for h in HOSTS}
    switch = f"gh{tag}s"               # the site's switch: the hosts' physical network
    inventory = folder / "inventory.toml"
    servers = contextlib.ExitStack()
    broker = servers.enter_context(claimed_redis_db(redis_url))
    database = servers.enter_context(services.postgres_server())
    settings = make_settings(folder, broker_url=broker, database_url=database,
                             host_down_after_s=DOWN_AFTER_S)
    settings = settings.replace(inventory=str(inventory))
    db_url = make_url(settings.effective_database_url)
    ports = [make_url(broker.replace("redis://", "redis+x://")).port or 6379, db_url.port or 5432]
    forwarders: list[subprocess.Popen] = []
    site = stack = None
    try:
        addresses = {}
        blocks = _free_blocks(len(HOSTS))
        for i, (host, ns) in enumerate(netns.items()):
            hostnet.netns_add(ns)
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
            addresses[host], more = _wire(ns, f"gs{tag}{i}", blocks[i], ports)
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
        inventory.write_text(_inventory(folder, f"h{tag[:3]}", netns))
        stack = build_stack(settings, worker=False)
        from am.jobs.hosts import JobRouter
        stack.jobs.queue.router = JobRouter(stack.store, stack.site)
        site = NetnsSite(folder, stack, netns, settings, addresses, broker, db_url)
        site.start(*HOSTS)
        yield site
    finally:
        try:
            for name in ("ns", "tn", "six"):
                if stack is not None and stack.status(name):
                    stack.delete(name)
            support.wait_until(lambda: not _all_records(folder), "deletes to finish", 120, 0.2)
        except Exception:   # noqa: BLE001 - teardown goes on
            pass
        for proc in (site.procs.values() if site is not None else ()):
            stop_process(proc)
        for host in HOSTS if stack is not None else ():   # what a failed run left behind
            part = load_site(str(inventory), authority=AUTHORITY, host=host)
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


def _all_records(folder: Path) -> list[str]:
    return [p.name for h in HOSTS for p in (folder / h).rglob("*.json")]


def _provision_until_ready(stack, name: str) -> None:
    stack.provision(name)
    def ready():
        st = stack.status(name)
        return st if st and all(op == "geni_ready" for _, op, _ in st.values()) else None
    try:
        support.wait_until(ready, f"slice {name} to be ready", 180, 0.1)
    except AssertionError:
        raise AssertionError(f"not all ready: {stack.status(name)}") from None


def _ping(driver, src: str, dst: str, *flags: str) -> None:
    """Ping `dst` from container `src` of `driver`'s host; fail with what ping said."""
    (rec,) = [r for r in driver.state.all().values() if r.get("client_id") == src]
    argv = driver.sliver_argv(rec["sliver_urn"], ["ping", "-c", "1", "-W", "5", *flags, dst])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (src, dst, done.stdout, done.stderr)


def test_each_host_builds_its_slivers_in_its_own_namespace(netns_site):
    folder, stack, netns = netns_site.folder, netns_site.stack, netns_site.netns
    stack.aggregate.allocate(USER, slice_urn("ns"), REQUEST, Options())
    _provision_until_ready(stack, "ns")

    parts = {h: load_site(str(folder / "inventory.toml"), authority=AUTHORITY, host=h)
             for h in HOSTS}
    try:
        drivers = {h: parts[h].drivers["vserver"] for h in HOSTS}
        records = {h: drivers[h].state.all() for h in HOSTS}
        clients = {h: sorted(r["client_id"] for r in records[h].values()) for h in HOSTS}
        assert clients == {"hostA": ["a1", "a2", "a3", "lan-a"], "hostB": ["b1", "b2", "link-b"],
                           "hostC": []}
        (lan,) = [r for r in records["hostA"].values() if r.get("kind") == "link"]
        bridge = lan["bridge"]
        assert bridge and hostnet.find_link(netns["hostA"], bridge) is not None
        assert hostnet.find_link(netns["hostB"], bridge) is None
        assert hostnet.find_link(None, bridge) is None        # not in the machine's own world
        # the containers of each link reach each other
        for host, src, dst in (("hostA", "a1", "10.211.1.3"), ("hostB", "b2", "10.211.2.1")):
            _ping(drivers[host], src, dst)
    finally:
        for part in parts.values():
            part.close()


TUNNEL_REQUEST = (f'<rspec xmlns="http://www.geni.net/resources/rspec/3" xmlns:ga="{GA}" '
                  'type="request">'
                  + _node("ta", "hostA", "10.211.3.1") + _node("tb", "hostB", "10.211.3.2")
                  + '<link client_id="cross"><interface_ref client_id="ta:if0"/>'
                  '<interface_ref client_id="tb:if0"/><property source_id="ta:if0" '
                  'dest_id="tb:if0" capacity="20000"/><property source_id="tb:if0" '
                  'dest_id="ta:if0" capacity="20000"/></link></rspec>')




def test_a_link_across_hosts_is_a_vxlan_tunnel(netns_site):
    from am.store import tunnels

    folder, stack, netns = netns_site.folder, netns_site.stack, netns_site.netns
    stack.aggregate.allocate(USER, slice_urn("tn"), TUNNEL_REQUEST, Options())
    with stack.store.read() as session:
        (vni,) = tunnels.held(session).values()
    _provision_until_ready(stack, "tn")

    parts = {h: load_site(str(folder / "inventory.toml"), authority=AUTHORITY, host=h)
             for h in HOSTS}
    try:
        drivers = {h: parts[h].drivers["vserver"] for h in HOSTS}
        halves = {}
        for host, other in (("hostA", "192.0.2.2"), ("hostB", "192.0.2.1")):
            recs = [r for r in drivers[host].state.all().values() if r.get("client_id") == "cross"]
            assert len(recs) == 1, (host, recs)        # one half on each host
            halves[host] = recs[0]
            t = recs[0]["tunnel"]
            assert (t["vni"], t["remote"]) == (vni, other)
            shown = subprocess.run(["ip", "-n", netns[host], "-d", "-j", "link", "show",
                                    t["dev"]], capture_output=True, text=True, check=True).stdout
            assert f'"id":{vni}' in shown.replace(" ", ""), shown
            assert hostnet.find_link(None, t["dev"]) is None    # not in the machine's world
            # capacity shaped at this host's end (tbf, as container links are)
            (end,) = recs[0]["ends"]
            assert hostnet.qdisc_kind(netns[host], end["port"]) == "tbf"
        # full-size packets cross: 1450-byte IP packets, don't fragment, both ways
        for host, src, dst in (("hostA", "ta", "10.211.3.2"), ("hostB", "tb", "10.211.3.1")):
            _ping(drivers[host], src, dst, "-M", "do", "-s", "1422")
        # the operator sees the tunnel in each half's status; the manifest shows one link
        st = stack.aggregate.status(USER, [slice_urn("tn")], Options())
        notes = [s.resource_status for s in st.slivers if f"VNI {vni}" in s.resource_status]
        assert len(notes) == 2 and any("-> 192.0.2.2" in n for n in notes), notes
        manifest = stack.aggregate.describe(USER, [slice_urn("tn")], Options()).manifest
        assert manifest.count('<link client_id="cross"') == 1, manifest

        stack.delete("tn")
        support.wait_until(lambda: not any(r.get("client_id") in ("ta", "tb", "cross")
                                           for h in HOSTS
                                           for r in drivers[h].state.all().values()),
                           "the tunnel slice's deletes", 120, 0.2)
        with stack.store.read() as session:
            assert tunnels.held(session) == {}            # the VNI is free again
        for host in ("hostA", "hostB"):
            left = {i.name for i in hostnet.links(netns[host])}
            assert halves[host]["tunnel"]["dev"] not in left
            assert halves[host]["bridge"] not in left
            assert not any(e["port"] in left for e in halves[host]["ends"])
    finally:
        for part in parts.values():
            part.close()


LAN_KBPS = 20000
SIX = [(f"s{h[-1].lower()}{i}", h, f"10.211.4.{n * 2 + i}") for n, h in enumerate(HOSTS)
       for i in (1, 2)]
SIX_REQUEST = (f'<rspec xmlns="http://www.geni.net/resources/rspec/3" xmlns:ga="{GA}" '
               'type="request">' + "".join(_node(c, h, ip) for c, h, ip in SIX)
               + '<link client_id="lan6">'
               + "".join(f'<interface_ref client_id="{c}:if0"/>' for c, _, _ in SIX)
               + f'<property source_id="sa1:if0" dest_id="sb1:if0" capacity="{LAN_KBPS}"/>'
               + '</link></rspec>')


def _iperf_mbps(server_ns: str, client_ns: str, address: str, seconds: int = 3) -> float:
    """Mbit/s received by `address` (in `server_ns`) from `client_ns`: one TCP stream."""
    import json
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def run():
            done = subprocess.run(["ip", "netns", "exec", client_ns, "iperf3", "-J", "-c",
                                   address, "-t", str(seconds)], capture_output=True, text=True,
                                  timeout=60)
            return done.stdout if done.returncode == 0 else None   # None: not listening yet
        out = support.wait_until(run, "iperf3 to connect", 30, 0.2)
        return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e6
    finally:
        stop_process(server)


def test_six_containers_over_three_hosts_survive_a_host_killed_mid_provision(netns_site):
    """The issue's scenario (see the module doc): one LAN of six containers, two per host."""
    from am.store import Job, Sliver, tunnels

    site = netns_site
    folder, stack, netns = site.folder, site.stack, site.netns
    stack.aggregate.allocate(USER, slice_urn("six"), SIX_REQUEST, Options())
    with stack.store.read() as session:
        (vni,) = [v for (sid, cid), v in tunnels.held(session).items() if cid == "lan6"]
        rows = session.query(Sliver.urn, Sliver.component_id, Sliver.client_id).filter(
            Sliver.urn.in_(list(stack.status("six")))).all()
    on = {h: {u for u, comp, _ in rows if stack.site.host_of(comp) == h} for h in HOSTS}
    assert all(len(on[h]) == 3 for h in HOSTS), on      # two containers and a LAN half each

    stack.provision("six")
    def c_running():       # one of hostC's jobs is under way on its substrate
        with stack.store.read() as session:
            return session.query(Job.id).join(Sliver, Sliver.id == Job.sliver_id).filter(
                Sliver.urn.in_(list(on["hostC"])), Job.state == "running").first()
    support.wait_until(c_running, "a hostC job to run", 120, 0.02)
    stop_process(site.procs["hostC"], sig=9)
    support.wait_until(lambda: site.state("hostC") == "down", "hostC to be seen down", 60, 0.1)

    def others_ready():
        st = stack.status("six")
        return all(st[u][1] == "geni_ready" for h in ("hostA", "hostB") for u in on[h])
    try:
        support.wait_until(others_ready, "hostA and hostB slivers ready", 180, 0.2)
    except AssertionError:
        raise AssertionError(f"not ready: {stack.status('six')}") from None
    stack.aggregate.hosts._read_at = -1e9
    st = stack.status("six")
    for urn in on["hostC"]:
        op, error = st[urn][1], st[urn][2]
        assert op in ("geni_notready", "geni_failed"), (urn, op, error)
        assert "host hostC unreachable since" in error, error

    site.start("hostC")               # it reconciles first, then finishes its jobs
    stack.aggregate.hosts._read_at = -1e9
    try:
        stack.wait_ops("six", {"geni_ready"}, timeout=180)
    except AssertionError:
        raise AssertionError(f"not all ready: {stack.status('six')}") from None

    parts = {h: load_site(str(folder / "inventory.toml"), authority=AUTHORITY, host=h)
             for h in HOSTS}
    try:
        drivers = {h: parts[h].drivers["vserver"] for h in HOSTS}
        records = {h: [r for r in drivers[h].state.all().values()
                       if r.get("slice_urn") == slice_urn("six")] for h in HOSTS}
        for n, host in enumerate(HOSTS):
            mine = {c for c, h, _ in SIX if h == host}
            # each host's substrate holds exactly its slivers, each once
            assert sorted(r["client_id"] for r in records[host]) == sorted([*mine, "lan6"])
            assert {r["sliver_urn"] for r in records[host]} == on[host]
            # ... and built them in its own world: the containers' namespaces carry this host's
            # driver's prefix; the LAN half's bridge and VXLAN device are in this host's
            # namespace only
            prefix = drivers[host].naming.prefix
            nodes = [r for r in records[host] if r.get("kind") != "link"]
            assert all(r["netns"].startswith(prefix) and hostnet.netns_exists(r["netns"])
                       for r in nodes), nodes
            (half,) = [r for r in records[host] if r.get("kind") == "link"]
            t = half["tunnel"]
            for other in HOSTS:
                seen = {i.name for i in hostnet.links(netns[other])}
                assert (t["dev"] in seen, half["bridge"] in seen) == ((other == host),) * 2
            shown = subprocess.run(["ip", "-n", netns[host], "-d", "-j", "link", "show",
                                    t["dev"]], capture_output=True, text=True, check=True).stdout
            assert f'"id":{vni}' in shown.replace(" ", ""), shown
            fdb = subprocess.run(["bridge", "-n", netns[host], "fdb", "show", "dev", t["dev"]],
                                 capture_output=True, text=True, check=True).stdout
            others = sorted(f"192.0.2.{k + 1}" for k in range(len(HOSTS)) if k != n)
            assert sorted(t["remotes"]) == others
            assert all(f"00:00:00:00:00:00 dst {a} " in fdb for a in others), fdb
        # no container exists twice: one namespace per container of this slice, on any host
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                               check=True).stdout.split()
        made = [r["netns"] for h in HOSTS for r in records[h] if r.get("kind") != "link"]
        assert sorted(made) == sorted({*made}) and all(n in names for n in made)
        # nothing done twice: one provision job per sliver; hostA's and hostB's ran once,
        # hostC's at most once more (the attempt its worker's death cut short)
        with stack.store.read() as session:
            jobs = session.query(Sliver.urn, Job.action, Job.state, Job.attempts).join(
                Job, Job.sliver_id == Sliver.id).filter(
                Sliver.urn.in_([u for h in HOSTS for u in on[h]])).all()
        assert sorted(u for u, *_ in jobs) == sorted(u for h in HOSTS for u in on[h]), jobs
        for urn, action, state, attempts in jobs:
            assert (action, state) == ("provision", "done"), jobs
            assert attempts <= (2 if urn in on["hostC"] else 1), jobs

        # every container reaches every other, across the tunnels
        ips = {c: ip for c, _, ip in SIX}
        for src, host, _ in SIX:
            for dst, ip in ips.items():
                if dst != src:
                    _ping(drivers[host], src, ip)
        # the requested capacity, on a cross-host path (hostA -> hostB), within 10 %
        node_ns = {r["client_id"]: r["netns"] for h in HOSTS for r in records[h]
                   if r.get("kind") != "link"}
        mbps = _iperf_mbps(node_ns["sb1"], node_ns["sa1"], ips["sb1"])
        assert abs(mbps - LAN_KBPS / 1000) <= 0.1 * LAN_KBPS / 1000, mbps
    finally:
        for part in parts.values():
            part.close()
