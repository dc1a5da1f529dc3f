"""Real VMs: a private libvirtd, QEMU guests booted from a Debian image, SSH logins, links and
the two router modes, on the slice h1 - r1 (dom0 forwarding) - r2 (guest forwarding) - h2."""
from __future__ import annotations

import json
import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from drivers.base import (
    Action,
    DriverError,
    ForwardingMode,
    InterfaceSpec,
    LinkEnd,
    LinkSpec,
    OperationalState,
    ResourceKind,
    SliverSpec,
    Usage,
    UserKeys,
)
from drivers.xen import XenDriver
from drivers.xen.domain import deterministic_mac
from rspec.model import Route
from tests.drivers.vserver.sshclient import keypair, refused, ssh
from tests.drivers.xen import realvms
from tests.drivers.xen.realvms import AUTH
from tests.support import wait_until

pytestmark = [pytest.mark.root, pytest.mark.slow]

HOST = f"urn:publicid:IDN+{AUTH}+node+vmhost"
SLICE = f"urn:publicid:IDN+{AUTH}+slice+vms{os.getpid()}"
PREFIX = "gxr"


def user(name: str, *keys: str) -> UserKeys:
    return UserKeys(urn=f"urn:publicid:IDN+{AUTH}+user+{name}", keys=keys)


def node(name: str, ifaces, *, routes=(), router=False, forwarding=None, users=(), **kw):
    return SliverSpec(sliver_urn=f"urn:publicid:IDN+{AUTH}+sliver+{name}-{os.getpid()}",
                      slice_urn=SLICE, client_id=name, kind=ResourceKind.NODE,
                      component_id=HOST, sliver_type="xen-vm", router=router,
                      forwarding=forwarding, users=users, routes=tuple(routes),
                      interfaces=tuple(InterfaceSpec(client_id=f"{name}:{i}", name=f"eth{n}",
                                                     ips=((ip, "255.255.255.0"),),
                                                     link_client_id=link)
                                       for n, (i, ip, link) in enumerate(ifaces, start=1)),
                      **kw)


def link(name: str, a: str, b: str, kbps: int | None = None) -> SliverSpec:
    ends = tuple(LinkEnd(sliver_urn="", node_client_id=n, interface_client_id=i,
                         component_id=HOST) for n, i in (a.split("/"), b.split("/")))
    return SliverSpec(sliver_urn=f"urn:publicid:IDN+{AUTH}+sliver+{name}-{os.getpid()}",
                      slice_urn=SLICE, client_id=name, kind=ResourceKind.LINK,
                      component_id=HOST, link=LinkSpec(ends=ends, capacity_kbps=kbps))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    store = realvms.image_store()
    daemon = realvms.start_libvirtd()
    dom0 = realvms.netns(f"gxrdom0-{os.getpid()}")
    state = tmp_path_factory.mktemp("xenreal")
    driver = XenDriver({"uri": daemon.uri, "image_store": str(store.root), "domain_type": "qemu",
                        "state_dir": str(state), "dom0_netns": dom0, "ifname_prefix": PREFIX,
                        "memory_mb": 4096, "default_memory_mb": 256},
                       [{"name": "vmhost"}], authority=AUTH)
    alice = keypair(state, "alice")
    users = (user("alice", alice.public),)
    specs = {
        "h1": node("h1", [("if0", "10.91.1.2", "l1")], users=users,
                   routes=[Route("10.91.0.0/16", "10.91.1.1")]),
        "r1": node("r1", [("if0", "10.91.1.1", "l1"), ("if1", "10.91.2.1", "l2")],
                   router=True, forwarding=ForwardingMode.DOM0, users=users,
                   routes=[Route("10.91.3.0/24", "10.91.2.2", "r1:if1")]),
        "r2": node("r2", [("if0", "10.91.2.2", "l2"), ("if1", "10.91.3.1", "l3")],
                   router=True, forwarding=ForwardingMode.GUEST, users=users,
                   routes=[Route("10.91.1.0/24", "10.91.2.1", "r2:if0")]),
        "h2": node("h2", [("if0", "10.91.3.2", "l3")], users=users,
                   routes=[Route("10.91.0.0/16", "10.91.3.1")]),
    }
    links = [link("l1", "h1/h1:if0", "r1/r1:if0", kbps=200_000), link("l2", "r1/r1:if1", "r2/r2:if0"),
             link("l3", "r2/r2:if1", "h2/h2:if0")]
    before = realvms.host_links()
    try:
        for s in (*specs.values(), *links):
            assert driver.admit(s, Usage(component_id=HOST)).ok
        results = {k: driver.provision(s) for k, s in specs.items()}
        for lk in links:
            driver.provision(lk)
        with ThreadPoolExecutor(4) as pool:
            states = dict(zip(specs, pool.map(driver.wait_ready, specs.values())))
        yield {"driver": driver, "daemon": daemon, "dom0": dom0, "specs": specs, "links": links,
               "results": results, "states": states, "alice": alice, "state": state,
               "before": before, "store": store}
    finally:
        for s in (*specs.values(), *links):
            try:
                driver.delete(s)
            except DriverError:
                pass
        driver.close()
        realvms.stop_libvirtd(daemon)
        subprocess.run(["ip", "netns", "del", dom0], check=False)


def login(lab, name: str, key=None, username: str = "alice", command: str = "hostname"):
    port = lab["results"][name].logins[0].port
    return ssh(key or lab["alice"], username, port, command, timeout=60)


def test_every_vm_is_ready_and_takes_the_key(lab):
    d = lab["driver"]
    assert lab["states"] == {k: OperationalState.READY for k in lab["specs"]}
    for name, spec in lab["specs"].items():
        assert d.status(spec) is OperationalState.READY
        out = login(lab, name, command="hostname; id -un")
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == [name, "alice"]
    # keys only: a key the VM was not given is refused, and so is root
    stranger = keypair(lab["state"], "stranger")
    assert refused(login(lab, "h1", key=stranger))
    assert refused(login(lab, "h1", username="root"))


def test_h1_pings_h2_through_the_dom0_and_the_guest_router(lab):
    out = login(lab, "h1", command="ping -c 3 -W 5 10.91.3.2")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ttl=62" in out.stdout                 # two routers on the way: r1 in Dom0, r2 in its VM
    # r1 forwards in Dom0: its own table holds the route, entered from its interfaces
    d, r1 = lab["driver"], lab["specs"]["r1"]
    plane = d.dom0_plane(r1)
    routes = {(e.prefix, e.gateway) for e in plane.read()}
    assert ("10.91.3.0/24", "10.91.2.2") in routes and ("10.91.1.0/24", None) in routes
    # r2 forwards inside its VM
    out = login(lab, "r2", command="cat /proc/sys/net/ipv4/ip_forward")
    assert out.stdout.strip() == "1"
    # its NICs carry the request's interface names (eth1, eth2), each with the MAC of its own
    # interface in the manifest, whatever order the kernel found them in
    out = login(lab, "r2", command="for d in /sys/class/net/eth*; do "
                                   "echo ${d##*/} $(cat $d/address); done")
    r2 = lab["results"]["r2"]
    assert dict(line.split() for line in out.stdout.splitlines()) == {
        "eth0": deterministic_mac(r2.handle, "geni-mgmt"),        # the management NIC
        "eth1": r2.macs["r2:if0"], "eth2": r2.macs["r2:if1"]}
    # r1's VM is its control plane only: no data NIC inside, forwarding off
    out = login(lab, "r1", command="ls /sys/class/net; cat /proc/sys/net/ipv4/ip_forward")
    assert out.stdout.split() == ["eth0", "lo", "0"]
    # ping runs with root for its raw socket; nothing else does
    out = login(lab, "h1", command="id -u; cat /proc/self/status | grep ^Uid")
    assert out.stdout.split()[0] != "0" and "\t0\t" not in out.stdout


def test_links_are_bridges_of_taps_shaped_to_capacity(lab):
    d, h1 = lab["driver"], lab["specs"]["h1"]
    bridge = d._iface_bridge(h1, h1.interfaces[0])
    out = subprocess.run(["ip", "-j", "link", "show", "master", bridge], capture_output=True,
                         text=True, check=True).stdout
    ports = {p["ifname"] for p in json.loads(out)}
    assert len(ports) == 2 and any(p.startswith(PREFIX) for p in ports)
    for p in ports:
        q = json.loads(subprocess.run(["tc", "-j", "qdisc", "show", "dev", p, "root"],
                                      capture_output=True, text=True, check=True).stdout)
        assert q[0]["kind"] == "tbf"


def test_update_users_adds_a_key_that_logs_in(lab):
    d, h2 = lab["driver"], lab["specs"]["h2"]
    bob = keypair(lab["state"], "bob")
    assert refused(login(lab, "h2", key=bob, username="bob"))
    updated = h2.__class__(**{**h2.__dict__, "users": (*h2.users, user("bob", bob.public))})
    assert d.perform(updated, Action.UPDATE_USERS.value) is OperationalState.READY
    out = login(lab, "h2", key=bob, username="bob", command="id -un")
    assert out.returncode == 0 and out.stdout.strip() == "bob", out.stderr
    assert [lg.username for lg in d.logins(updated)] == ["alice", "bob"]
    lab["specs"]["h2"] = updated


def test_restart_keeps_the_configuration(lab):
    d, h2 = lab["driver"], lab["specs"]["h2"]
    first = realvms.qemu_pid(lab["daemon"], d.provision(h2).handle)
    assert d.perform(h2, Action.RESTART.value) is OperationalState.CONFIGURING   # under way
    assert d.wait_ready(h2) is OperationalState.READY
    assert realvms.qemu_pid(lab["daemon"], d.provision(h2).handle) != first   # a new boot
    out = login(lab, "h1", command="ping -c 2 -W 5 10.91.3.2")
    assert out.returncode == 0, out.stdout
    out = login(lab, "h2", command="hostname; /sbin/ip -4 -o addr")
    assert out.stdout.split()[0] == "h2" and "10.91.3.2/24" in out.stdout


def test_unknown_image_and_too_much_memory_are_refused(lab):
    d = lab["driver"]
    adm = d.admit(node("x1", [], disk_image="windows-xp"), Usage(component_id=HOST))
    assert not adm.ok and adm.reason_code == "BADARGS"
    assert "windows-xp" in adm.reason and "vm-initramfs" in adm.reason
    adm = d.admit(node("x2", [], memory_mb=64 * 1024), Usage(component_id=HOST))
    assert not adm.ok and adm.reason_code == "TOOBIG" and "MiB" in adm.reason


def test_a_guest_that_never_boots_fails_with_its_console(lab):
    d = lab["driver"]
    bad = node("bad", [], disk_image="broken-init", users=lab["specs"]["h1"].users)
    assert d.admit(bad, Usage(component_id=HOST)).ok
    d.provision(bad)
    try:
        assert d.perform(bad, Action.START.value) is OperationalState.CONFIGURING
        with pytest.raises(DriverError) as err:
            d.wait_ready(bad)
        assert not err.value.transient
        assert "Kernel panic" in str(err.value) and "console" in str(err.value)
        assert d.status(bad) is OperationalState.FAILED
        assert "Kernel panic" in d.vm_failure(bad)
    finally:
        d.delete(bad)


def test_a_vm_killed_behind_the_ams_back_is_failed_and_not_observed(lab):
    d = lab["driver"]
    k = node("k1", [], users=lab["specs"]["h1"].users)
    handle = d.provision(k).handle
    try:
        assert d.wait_ready(k) is OperationalState.READY
        assert handle in {o.handle for o in d.observed()}
        os.kill(realvms.qemu_pid(lab["daemon"], handle), signal.SIGKILL)
        wait_until(lambda: d.status(k) is OperationalState.FAILED, "the killed VM to be failed",
                   30, 0.1, detail=lambda: d.status(k))
        assert "killed outside the AM" in d.vm_failure(k)
        # the reconciler sees it failed, with the reason
        seen = {o.handle: o for o in d.observed()}
        assert seen[handle].state is OperationalState.FAILED
        assert "killed outside the AM" in seen[handle].detail
    finally:
        d.delete(k)


def test_libvirtd_down_is_a_retryable_error(lab, tmp_path):
    d = XenDriver({"uri": f"qemu:///system?socket={tmp_path}/no-such-sock",
                   "image_store": str(lab["store"].root), "domain_type": "qemu",
                   "state_dir": str(tmp_path / "st"), "ifname_prefix": PREFIX},
                  [{"name": "vmhost"}], authority=AUTH)
    try:
        with pytest.raises(DriverError) as err:
            d.provision(node("down", [], users=lab["specs"]["h1"].users))
        assert err.value.transient and "cannot connect to libvirt" in str(err.value)
    finally:
        d.close()


def test_zz_delete_leaves_nothing_behind(lab):
    d, daemon = lab["driver"], lab["daemon"]
    for s in (*lab["specs"].values(), *lab["links"]):
        d.delete(s)
        d.delete(s)                                    # idempotent
    import libvirt
    conn = libvirt.open(daemon.uri)
    try:
        assert [x.name() for x in conn.listAllDomains()] == []
    finally:
        conn.close()
    # this run's own names only (another run of this module may be up on the machine)
    hexes = {r.handle.split("-", 1)[1][:8]
             for r in lab["results"].values()}
    bridges = {d._iface_bridge(s, i) for s in lab["specs"].values() for i in s.interfaces}
    left = {n for n in realvms.host_links() - lab["before"]
            if n in bridges or any(h in n for h in hexes)}
    assert left == set()
    dom0_links = subprocess.run(["ip", "-n", lab["dom0"], "-o", "link"], capture_output=True,
                                text=True, check=True).stdout
    assert "vr" not in dom0_links
    rules = json.loads(subprocess.run(["ip", "-j", "-n", lab["dom0"], "rule"],
                                      capture_output=True, text=True, check=True).stdout)
    assert [r for r in rules if r.get("priority") == 1000] == []
    tables = subprocess.run(["ip", "-n", lab["dom0"], "route", "show", "table", "all"],
                            capture_output=True, text=True, check=True).stdout
    assert "proto 77" not in tables
    assert list((lab["state"] / "vms").iterdir()) == []
    assert d.records.all() == [] and d.links.all() == [] and d.observed() == []
