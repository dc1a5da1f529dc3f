"""A chain of N containers through the AM API against Mininet's linear,N in the same run.

Three figures per N, each "build until the two ends ping, then tear down":
  api:     Allocate + Provision through the AM API v3 (XML-RPC bodies, credentials, the
           service and the job runner; in-process Flask client, no TLS; jobs run by 2 threads,
           as the AM's default worker runs them: worker_concurrency = 2), Status until every sliver is geni_ready, the ends ping over N-1
           router hops; then Delete until nothing of it is left. Each node is a guest with its
           own root filesystem, a fair CPU share and an SSH login (geni_users: one account
           with a key; after the timed part, one login is checked with OpenSSH's client).
  driver:  the same chain straight through the vserver driver (2 threads), for the API's share.
  mininet: `mn --switch lxbr --controller none --topo linear,N --test none` (Debian's mininet:
           network namespaces on Linux bridges, no own filesystems, no logins), whole run.

Run as root: .venv/bin/python bench/bench_chain.py [--nodes 20 100]
Mininet names its switches s1..sN and hosts h1..hN: do not run it beside another Mininet.
"""
from __future__ import annotations

import argparse
import dataclasses
import random
import shutil
import string
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from am.app import build_runtime                                          # noqa: E402
from am.config import Settings                                            # noqa: E402
from bench.bench_vserver import chain_specs                               # noqa: E402
from drivers import hostnet                                               # noqa: E402
from drivers.base import OperationalState                                 # noqa: E402
from drivers.vserver import VServerDriver                                 # noqa: E402
from tests.api.conftest import RSPEC_V, SLICE, ApiClient, Fixtures, code_of  # noqa: E402
from tests.conftest import SHARED                                         # noqa: E402
from tests.drivers.vserver.conftest import release_all                    # noqa: E402
from drivers.base import UserKeys                                          # noqa: E402
from tests.drivers.vserver.helpers import guest_test_image                # noqa: E402
from tests.drivers.vserver.sshclient import keypair, ssh                  # noqa: E402
from am.jobs.runner import run_job                                         # noqa: E402
from tests.drivers.vserver.test_through_am import GA                      # noqa: E402

COMP = "urn:publicid:IDN+geni-am:test+node+vs1"
USER = "urn:publicid:IDN+geni:gpo:gcf+user+alice"


def ping_through(sliver_argv, first: str, last_netns: str, n: int, tries: int = 10) -> bool:
    """The first node pings the last across n-2 routers. A chain of 100 is longer than
    Linux's default TTL (64) both ways: the echo goes with TTL 255 and the last node's
    default TTL is raised to 255 (from the host: a guest may not change its namespace's
    sysctls). The first echo waits for ARP at every hop, so a few tries."""
    hostnet.sysctl_set(last_netns, "net.ipv4.ip_default_ttl", "255")
    for _ in range(tries):
        if subprocess.run(sliver_argv(first, ["ping", "-c1", "-W3", "-t", "255",
                                              f"{net(n - 2)}.2"]),
                          capture_output=True).returncode == 0:
            return True
    return False


def check_login(logins, key) -> None:
    """One node's SSH login works (outside the timed part)."""
    login = next(iter(logins))
    out = ssh(key, login.username, login.port, "id -un", host=login.hostname or "127.0.0.1")
    assert out.returncode == 0 and out.stdout.strip() == login.username, out


def net(i: int) -> str:
    return f"10.{100 + i // 250}.{i % 250}"


def chain_rspec(n: int) -> str:
    parts = []
    for i in range(n):
        ifs, routes = [], []
        if i > 0:
            ifs.append(f'<interface client_id="n{i}:left"><ip address="{net(i - 1)}.2" '
                       'netmask="255.255.255.0" type="ipv4"/></interface>')
            routes += [f'<ga:route destination="{net(j)}.0/24" gateway="{net(i - 1)}.1"/>'
                       for j in range(i - 1)]
        if i < n - 1:
            ifs.append(f'<interface client_id="n{i}:right"><ip address="{net(i)}.1" '
                       'netmask="255.255.255.0" type="ipv4"/></interface>')
            routes += [f'<ga:route destination="{net(j)}.0/24" gateway="{net(i)}.2"/>'
                       for j in range(i + 1, n - 1)]
        router = "true" if 0 < i < n - 1 else "false"
        parts.append(f'<node client_id="n{i}" component_id="{COMP}" exclusive="false">'
                     f'<sliver_type name="vserver-container"/>{"".join(ifs)}'
                     f'<ga:node router="{router}" memory_mb="32">{"".join(routes)}</ga:node>'
                     '</node>')
    for i in range(n - 1):
        parts.append(f'<link client_id="l{i}"><interface_ref client_id="n{i}:right"/>'
                     f'<interface_ref client_id="n{i + 1}:left"/></link>')
    return (f'<rspec xmlns="http://www.geni.net/resources/rspec/3" xmlns:ga="{GA}" '
            f'type="request">{"".join(parts)}</rspec>')


class ThreadQueue:
    """The job queue of a worker with 2 threads (the default worker_concurrency)."""

    def __init__(self, threads: int = 2):
        self.store = self.site = None
        self.pool = ThreadPoolExecutor(threads)
        self.futures = []

    def submit(self, job_id: int) -> None:
        self.futures.append(self.pool.submit(run_job, self.store, self.site, job_id,
                                             worker_id="bench-chain"))

    def check(self) -> None:
        for f in [f for f in self.futures if f.done()]:
            f.result()                     # a crashed job fails the bench with its error
            self.futures.remove(f)


def through_api(n: int, work: Path, key, phases: dict[str, float]) -> tuple[float, float]:
    gcf = SHARED / "fixtures" / "gcf"
    trust = work / "trust"
    trust.mkdir()
    shutil.copy(gcf / "ca-cert.pem", trust / "ca-cert.pem")
    images, image = guest_test_image()
    prefix = "c" + "".join(random.choices(string.ascii_lowercase + string.digits, k=3))
    inv = work / "inventory.toml"
    inv.write_text(f'[drivers.vserver]\nname_prefix = "{prefix}"\nstate_dir = "{work}/vs"\n'
                   f'images_dir = "{images}"\ndefault_image = "{image}"\n'
                   'build_default_image = false\ncpu = 2\nmemory_mb = 16384\n\n'
                   '[[components]]\nname = "vs1"\ndriver = "vserver"\n')
    settings = Settings(trust_roots=str(trust), authority="geni-am:test",
                        state_dir=str(work / "am"), inventory=str(inv),
                        max_request_bytes=16 * 1024 * 1024)
    queue = ThreadQueue()
    rt = build_runtime(settings, job_queue=lambda s: (queue, []))
    queue.store, queue.site = rt.store, rt.site
    client = ApiClient(rt.app.test_client(), (gcf / "alice-cert.pem").read_text())
    cred = [Fixtures(gcf).cred("slice-cred-alice")]
    driver: VServerDriver = rt.site.drivers["vserver"]
    try:
        t0 = time.perf_counter()
        alloc = client.call("Allocate", SLICE, cred, chain_rspec(n), {})
        assert code_of(alloc) == 0, alloc
        phases["allocate"] = time.perf_counter() - t0
        prov = client.call("Provision", [SLICE], cred, {
            "geni_rspec_version": RSPEC_V, "geni_users": [{"urn": USER, "keys": [key.public]}]})
        assert code_of(prov) == 0, prov
        phases["provision call"] = time.perf_counter() - t0 - phases["allocate"]
        while True:
            status = client.call("Status", [SLICE], cred, {})
            states = {s["geni_operational_status"] for s in status["value"]["geni_slivers"]}
            if states == {"geni_ready"}:
                break
            assert "geni_failed" not in states, status
            queue.check()
            time.sleep(0.05)
        phases["until all ready"] = time.perf_counter() - t0 - sum(phases.values())
        first = next(s.sliver_urn for s in driver.observed() if "(n0)" in s.detail)
        last = next(driver.node_handle(s.sliver_urn) for s in driver.observed()
                    if f"(n{n - 1})" in s.detail)
        assert ping_through(driver.sliver_argv, first, last, n), "end-to-end ping failed"
        t1 = time.perf_counter()
        phases["ping"] = t1 - t0 - sum(phases.values())
        logins = [driver.logins(s) for s in driver_specs(rt, driver)]
        assert all(logins) and len(logins) == n, "a node without an SSH login"
        check_login(logins[0], key)
        assert code_of(client.call("Delete", [SLICE], cred, {})) == 0
        while driver.observed():
            queue.check()
            time.sleep(0.05)
        return t1 - t0, time.perf_counter() - t1
    finally:
        queue.pool.shutdown(wait=True)
        release_all(driver)
        rt.close()


def driver_specs(rt, driver: VServerDriver) -> list:
    """The node slivers' specs as the AM stored them."""
    from am.store import spec_from_dict, utcnow
    with rt.store.read() as session:
        specs = [spec_from_dict(r.spec) for r in rt.store.live_slivers(session, utcnow())]
    return [s for s in specs if s.kind.value == "node"]


def driver_only(n: int, work: Path, key) -> tuple[float, float]:
    images, image = guest_test_image()
    drv = VServerDriver({"name_prefix": "cd", "state_dir": str(work / "drv"), "cpu": 2,
                         "memory_mb": 16384, "images_dir": str(images), "default_image": image,
                         "build_default_image": False},
                        [{"name": "vs1", "driver": "vserver"}], authority="geni-am:bench")
    nodes, links = chain_specs(n, 0)
    users = (UserKeys(USER, (key.public,)),)
    nodes = [dataclasses.replace(s, cpu=None, memory_mb=32, users=users) for s in nodes]
    links = [dataclasses.replace(s, link=dataclasses.replace(s.link, capacity_kbps=None))
             for s in links]                       # unshaped, as the API's request asks
    specs = nodes + links
    random.Random(0).shuffle(specs)
    try:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            assert all(r.state is OperationalState.READY for r in pool.map(drv.provision, specs))
        assert ping_through(drv.sliver_argv, nodes[0].sliver_urn,
                            drv.node_handle(nodes[-1].sliver_urn), n), "end-to-end ping failed"
        t1 = time.perf_counter()
        check_login(drv.logins(nodes[-1]), key)
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(drv.delete, specs))
        return t1 - t0, time.perf_counter() - t1
    finally:
        release_all(drv)
        drv.close()


def mininet(n: int) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(["mn", "--switch", "lxbr", "--controller", "none", "--topo",
                          f"linear,{n}", "--test", "none"], capture_output=True, text=True,
                         timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"mn failed: {out.stderr[-500:]}")
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[20, 100])
    ap.add_argument("--skip-mininet", action="store_true")
    args = ap.parse_args()
    for n in args.nodes:
        work = Path(tempfile.mkdtemp(prefix="bench-chain-"))
        try:
            key = keypair(work, "alice")
            phases: dict[str, float] = {}
            api_up, api_down = through_api(n, work, key, phases)
            drv_up, drv_down = driver_only(n, work, key)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        mn = None if args.skip_mininet else mininet(n)
        mn_text = "skipped" if mn is None else f"{mn:.1f} s (build + teardown)"
        ratio = "" if mn is None else f"; API build / Mininet = {api_up / mn:.2f}"
        print(f"N={n}: API {api_up:.1f} s to all ready + ends pinging, delete {api_down:.1f} s; "
              f"driver only {drv_up:.1f} s, delete {drv_down:.1f} s; mininet {mn_text}{ratio}",
              flush=True)
        print(f"N={n}: API phases: " + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items()),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
