"""Hosts simulated as network namespaces, with the real container driver (tests/jobs/
netns_hosts.py): three hosts, each a network namespace with its own state directory and its own
`geni-am worker --host` process running *inside* it (`nsenter --net`, as a host agent runs on
its machine), one API in the test process, a private PostgreSQL database and Redis.

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

import subprocess
from pathlib import Path

import pytest

from am.service.contract import Options
from drivers import hostnet
from drivers.registry import load_site
from tests import support
from tests.jobs.conftest import AUTHORITY, USER, slice_urn, stop_process
from tests.jobs.netns_hosts import netns_hosts

pytestmark = [pytest.mark.root, pytest.mark.postgres]

HOSTS = ("hostA", "hostB", "hostC")
HEARTBEAT_S, DOWN_AFTER_S = 0.5, 4.0
GA = "http://geni-am.org/resources/rspec/ext/geniam/1"


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


@pytest.fixture(scope="module")
def netns_site(tmp_path_factory, redis_url):
    folder = tmp_path_factory.mktemp("hostsns")
    with netns_hosts(folder, HOSTS, redis_url, heartbeat_s=HEARTBEAT_S,
                     down_after_s=DOWN_AFTER_S) as site:
        try:
            yield site
        finally:
            try:
                for name in ("ns", "tn", "six"):
                    if site.stack.status(name):
                        site.stack.delete(name)
                support.wait_until(lambda: not _all_records(folder), "deletes to finish", 120,
                                   0.2)
            except Exception:   # noqa: BLE001 - teardown goes on (the site releases the rest)
                pass


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
    # a server that outlives a failed attempt (not -1), in its own process group for stop_process
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        def run():
            done = subprocess.run(["ip", "netns", "exec", client_ns, "iperf3", "-J", "-c",
                                   address, "-t", str(seconds)], capture_output=True, text=True,
                                  timeout=60)
            try:    # not listening yet, or a run cut short: iperf3 reports an "error"
                return json.loads(done.stdout)["end"]["sum_received"]["bits_per_second"]
            except (ValueError, KeyError, TypeError):
                return None
        return support.wait_until(run, "an iperf3 run to complete", 30, 0.2) / 1e6
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
