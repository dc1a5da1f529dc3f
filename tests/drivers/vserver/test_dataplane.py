"""Real data plane through the driver: h1 - r1 - h2, forwarding, order independence, Delete."""
from __future__ import annotations

import pytest

import random
import subprocess
import threading
from dataclasses import replace

from drivers import hostnet
from drivers.base import Action, OperationalState
from tests.drivers.vserver.helpers import chain, link, node, ours, ping, snapshot
from tests.support import wait_until

pytestmark = pytest.mark.root


def _gone(driver, before, timeout=3.0):
    """What the host holds of ours once it is `before` again (veths free asynchronously)."""
    wait_until(lambda: ours(snapshot(), driver.settings.name_prefix) == before,
               "the host to hold nothing more of ours", timeout,
               detail=lambda: ours(snapshot(), driver.settings.name_prefix))
    return ours(snapshot(), driver.settings.name_prefix)


def test_chain_pings_through_router_and_delete_leaves_nothing(driver):
    prefix = driver.settings.name_prefix
    before = ours(snapshot(), prefix)
    assert before.netns == before.links == before.cgroups == frozenset()
    c = chain()
    # Mixed order: l1 before its nodes, l2 after them.
    for spec in (c.l1, c.h1, c.r1, c.h2, c.l2):
        assert driver.provision(spec).state is OperationalState.READY
    assert ping(driver, c.h1, "10.201.2.2"), "h1 cannot reach h2 through r1"
    assert ping(driver, c.h2, "10.201.1.2")
    during = ours(snapshot(), prefix)
    assert len(during.netns) == 3 and len(during.cgroups) == 6
    r1 = driver.node_handle(c.r1.sliver_urn)
    assert hostnet.sysctl_get(r1, "net.ipv4.ip_forward") == "1"
    assert hostnet.sysctl_get(driver.node_handle(c.h1.sliver_urn), "net.ipv4.ip_forward") == "0"
    for spec in c.all:
        assert driver.status(spec) is OperationalState.READY
    # Idempotent: provisioning again changes nothing and keeps the path working.
    for spec in c.all:
        driver.provision(spec)
    assert ping(driver, c.h1, "10.201.2.2")
    for spec in reversed(c.all):
        driver.delete(spec)
    assert _gone(driver, before) == before
    assert driver.observed() == []
    for spec in c.all:
        driver.delete(spec)          # idempotent
        assert driver.status(spec) is OperationalState.FAILED


def test_no_forwarding_no_ping(driver):
    c = chain(router=False)
    for spec in c.all:
        driver.provision(spec)
    assert hostnet.sysctl_get(driver.node_handle(c.r1.sliver_urn), "net.ipv4.ip_forward") == "0"
    assert not ping(driver, c.h1, "10.201.2.2", timeout=1)
    assert ping(driver, c.h1, "10.201.1.1")       # the first hop is there
    # Turning forwarding on converges the running sliver.
    driver.provision(replace(c.r1, router=True))
    assert ping(driver, c.h1, "10.201.2.2")


def test_concurrent_provisioning_in_any_order(driver):
    """Node and link slivers from concurrent workers, shuffled: the wiring always completes."""
    for attempt in range(3):
        c = chain(tag=f"x{attempt}")
        specs = c.all
        random.Random(attempt).shuffle(specs)
        errors: list[BaseException] = []

        def work(spec):
            try:
                driver.provision(spec)
            except BaseException as exc:   # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(s,)) for s in specs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert ping(driver, c.h1, "10.201.2.2"), [s.client_id for s in specs]
        for spec in specs:
            driver.delete(spec)


def test_lan_bridge_links_three_nodes(driver):
    a = node("a", [("eth1", "10.9.0.1", "lan")])
    b = node("b", [("eth1", "10.9.0.2", "lan")])
    cc = node("c", [("eth1", "10.9.0.3", "lan")])
    lan = link("lan", [a, b, cc], kbps=50_000)
    before = ours(snapshot(), driver.settings.name_prefix)
    for spec in (a, lan, b, cc):
        driver.provision(spec)
    assert ping(driver, a, "10.9.0.3") and ping(driver, cc, "10.9.0.2")
    br = driver.naming.bridge(lan.sliver_urn)
    assert hostnet.find_link(None, br) is not None
    assert hostnet.qdisc_kind(driver.node_handle(a.sliver_urn), "eth1") == "tbf"
    for spec in (a, b, cc, lan):
        driver.delete(spec)
    assert _gone(driver, before) == before


def test_stop_start_restart(driver):
    c = chain()
    for spec in c.all:
        driver.provision(spec)
    h1 = driver.node_handle(c.h1.sliver_urn)
    sleeper = subprocess.Popen(driver.sliver_argv(c.h1.sliver_urn, ["sleep", "60"]))
    wait_until(lambda: driver.cgroups.pids(h1), "the sleeper to join the sliver's cgroups", 5,
               0.02)
    assert driver.perform(c.h1, Action.STOP.value) is OperationalState.NOTREADY
    sleeper.wait(timeout=5)
    assert driver.cgroups.pids(h1) == set()
    assert driver.status(c.h1) is OperationalState.NOTREADY
    assert not hostnet.find_link(h1, "eth1").up
    assert not ping(driver, c.r1, "10.201.1.2", timeout=1)
    assert driver.perform(c.h1, Action.START.value) is OperationalState.READY
    assert ping(driver, c.h1, "10.201.2.2")
    assert driver.perform(c.r1, Action.RESTART.value) is OperationalState.READY
    assert ping(driver, c.h1, "10.201.2.2")
    assert driver.perform(c.l1, Action.STOP.value) is OperationalState.NOTREADY
    assert not ping(driver, c.h1, "10.201.1.1", timeout=1)
    assert driver.perform(c.l1, Action.START.value) is OperationalState.READY
    assert ping(driver, c.h1, "10.201.1.1")


def test_orphans_are_observed_and_released(driver):
    prefix = driver.settings.name_prefix
    c = chain()
    for spec in c.all:
        driver.provision(spec)
    owned = {o.sliver_urn for o in driver.observed()}
    assert owned == {s.sliver_urn for s in c.all}
    # Debris as a crashed AM would leave it: a namespace, a veth and a cgroup nobody owns.
    stray_ns = f"{prefix}-n0123456789"
    hostnet.netns_add(stray_ns)
    hostnet.veth_add(f"{prefix}eabcdef0123", f"{prefix}pabcdef0123")
    driver.cgroups.create(f"{prefix}-n9999999999", cpu=0.1, memory_mb=16, pids_max=16)
    orphans = {o.handle for o in driver.observed() if o.sliver_urn is None}
    assert {stray_ns, f"{prefix}eabcdef0123", f"{prefix}pabcdef0123",
            f"{prefix}-n9999999999"} <= orphans
    for handle in orphans:
        driver.release(handle)
    assert {o.handle for o in driver.observed() if o.sliver_urn is None} == set()
    assert ping(driver, c.h1, "10.201.2.2"), "releasing orphans must not touch live slivers"
    # A sliver whose namespace vanished under it is no longer reported as alive.
    hostnet.netns_delete(driver.node_handle(c.h2.sliver_urn))
    assert c.h2.sliver_urn not in {o.sliver_urn for o in driver.observed()}
    assert driver.status(c.h2) is OperationalState.FAILED


def _iperf_mbps(driver, client, server, address: str, seconds: int = 3) -> float:
    """Received Mbit/s of one iperf3 TCP run from `client` to `server` (the host's iperf3
    in the two slivers' network namespaces: the shaping is on their interfaces)."""
    import json

    def in_ns(spec, argv):
        return ["ip", "netns", "exec", driver.node_handle(spec.sliver_urn), *argv]

    srv = subprocess.Popen(in_ns(server, ["iperf3", "-s", "-1", "-p", "5218"]),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def measured() -> dict:
            run = subprocess.run(in_ns(client, [
                "iperf3", "-c", address, "-p", "5218", "-t", str(seconds), "-J"]),
                capture_output=True, text=True, timeout=seconds + 30)
            result = json.loads(run.stdout or "{}")
            ok = "error" not in result and result.get("end")
            return result if ok else {}       # an error: the server was not listening yet
        result = wait_until(measured, "iperf3 to measure (its server listening)", 10, 0.1)
        return result["end"]["sum_received"]["bits_per_second"] / 1e6
    finally:
        srv.kill()
        srv.wait()


def test_link_capacity_is_enforced_and_reshaped_in_place(driver):
    a = node("a", [("eth1", "10.77.0.1", "l")])
    b = node("b", [("eth1", "10.77.0.2", "l")])
    lnk = link("l", [a, b], kbps=10_000)
    for spec in (a, b, lnk):
        driver.provision(spec)
    mbps = _iperf_mbps(driver, a, b, "10.77.0.2")
    print(f"iperf3 across a 10 Mb/s link: {mbps:.2f} Mb/s")
    assert 9.0 <= mbps <= 11.0, mbps
    # Update: the running link re-shaped (the veths stay, the tbf rate changes)
    wider = replace(lnk, link=replace(lnk.link, capacity_kbps=40_000))
    driver.check_update(lnk, wider)
    driver.update(lnk, wider)
    out = subprocess.run(["tc", "-n", driver.node_handle(a.sliver_urn), "-j", "qdisc", "show",
                          "dev", "eth1", "root"], capture_output=True, text=True).stdout
    assert "tbf" in out and '"rate":5000000' in out.replace(" ", ""), out
    driver.update(wider, replace(lnk, link=replace(lnk.link, capacity_kbps=None)))
    assert hostnet.qdisc_kind(driver.node_handle(a.sliver_urn), "eth1") != "tbf"
    for spec in (a, b, lnk):
        driver.delete(spec)
