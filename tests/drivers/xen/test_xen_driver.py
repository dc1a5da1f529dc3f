"""Xen VM slivers on libvirt's test driver: life cycle, MACs, admission, Dom0 forwarding."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from drivers.base import Action, DriverError, ForwardingMode, OperationalState, Usage
from drivers.xen import SYNC_ROUTES, XenDriver
from drivers.xen.domain import read_xml
from drivers.inventory import InventoryError
from rspec.model import Route
from tests.drivers.xen.conftest import AUTH, host_urn, iface, vm


def routes_in(netns: str, table: int) -> set[tuple[str, str | None, str]]:
    proc = subprocess.run(["ip", "-j", "-n", netns, "route", "show", "table", str(table)],
                          capture_output=True, text=True)
    if proc.returncode and "does not exist" in proc.stderr:
        return set()                                # the kernel drops an emptied table
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    return {(r["dst"], r.get("gateway"), r["dev"]) for r in json.loads(out or "[]")}


def rules_for(netns: str, table: int) -> list[dict]:
    out = subprocess.run(["ip", "-j", "-n", netns, "rule"], capture_output=True, text=True,
                         check=True).stdout
    return [r for r in json.loads(out) if str(r.get("table")) == str(table)]


def test_life_cycle_follows_libvirt(make_xen):
    d = make_xen()
    s = vm(1, cpu=2, memory_mb=1024, disk_image="debian-12",
           interfaces=(iface("vm1:if0", mac="02:aa:bb:cc:dd:01"), iface("vm1:if1", "eth2")))
    r = d.provision(s)
    assert r.state is OperationalState.NOTREADY
    assert d.provision(s) == r                                  # idempotent
    facts = read_xml(d.domain_xml(s))
    assert facts.vcpus == 2 and facts.memory_kib == 1024 * 1024
    assert facts.disks == ("/var/lib/geni-am/xen-images/debian-12.img",)
    assert facts.sliver_urn == s.sliver_urn and facts.host == "xen1"
    # the AM's MAC is kept, the missing one generated, and both appear in the domain and result
    assert r.macs["vm1:if0"] == "02:aa:bb:cc:dd:01"
    assert set(facts.macs) == set(r.macs.values()) and len(facts.macs) == 2
    assert facts.bridges == ("xenbr0", "xenbr0")
    assert d.perform(s, Action.START.value) is OperationalState.READY
    assert d.status(s) is OperationalState.READY
    assert d.perform(s, Action.STOP.value) is OperationalState.NOTREADY
    assert d.status(s) is OperationalState.NOTREADY
    assert d.perform(s, Action.RESTART.value) is OperationalState.READY
    assert [o.sliver_urn for o in d.observed()] == [s.sliver_urn]
    d.delete(s)
    d.delete(s)                                                 # idempotent
    assert d.status(s) is OperationalState.FAILED
    assert d.domain_xml(s) is None and d.observed() == []
    with pytest.raises(DriverError, match="not provisioned"):
        d.perform(s, Action.START.value)


def test_status_agrees_across_processes(make_xen, tmp_path):
    """The test driver is per process; the records make another process see the same VM."""
    d = make_xen()
    s = vm(2)
    d.provision(s)
    d.perform(s, Action.START.value)
    code = f"""
import json
from drivers.xen import XenDriver
from drivers.base import SliverSpec, ResourceKind, Action
d = XenDriver({{"state_dir": {str(tmp_path / 'xen')!r}}}, [{{"name": "xen1"}}], authority={AUTH!r})
s = SliverSpec(sliver_urn={s.sliver_urn!r}, slice_urn="x", client_id="vm2", kind=ResourceKind.NODE,
               component_id={s.component_id!r})
before = d.status(s).value
after = d.perform(s, Action.STOP.value).value
print(json.dumps([before, after, [o.sliver_urn for o in d.observed()]]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after, seen = json.loads(out.stdout)
    assert (before, after, seen) == ("geni_ready", "geni_notready", [s.sliver_urn])
    assert d.status(s) is OperationalState.NOTREADY             # the stop made elsewhere shows here


def test_capacity_refusal_names_host_and_shortfall(make_xen):
    d = make_xen(vcpus=8, memory_mb=4096)
    comp = host_urn("xen1")
    used = Usage(comp, used={"cpu_milli": 6000, "memory_mb": 1024})
    a = d.admit(vm(3, cpu=4), used)
    assert not a.ok and a.reason_code == "INSUFFICIENT_NODES"
    assert a.reason == f"component {comp} has 2 of 8 vCPUs free; 4 requested"
    a = d.admit(vm(3, memory_mb=4000), used)
    assert not a.ok and "3072 of 4096 MiB of memory free" in a.reason
    a = d.admit(vm(3, cpu=16), Usage(comp))
    assert not a.ok and a.reason_code == "TOOBIG" and "8 vCPUs in all" in a.reason
    ok = d.admit(vm(3, cpu=1.5, memory_mb=256), used)
    assert ok.ok and ok.demand == {"cpu_milli": 2000, "memory_mb": 256}


def test_bad_requests_refused_precisely(make_xen):
    d = make_xen()
    u = Usage(host_urn("xen1"))
    a = d.admit(vm(4, disk_image="windows-xp"), u)
    assert a.reason_code == "BADARGS" and "windows-xp" in a.reason and "debian-12" in a.reason
    a = d.admit(vm(4, sliver_type="netfpga-vdp"), u)
    assert a.reason_code == "UNSUPPORTED"
    a = d.admit(vm(4, router=True, forwarding=ForwardingMode.HARDWARE), u)
    assert a.reason_code == "UNSUPPORTED" and "hardware forwarding" in a.reason
    a = d.admit(vm(4, router=True, forwarding=ForwardingMode.DOM0, interfaces=(iface("a"),),
                   routes=(Route("10.0.0.1/24"),)), u)
    assert a.reason_code == "BADARGS" and "10.0.0.1/24" in a.reason
    a = d.admit(vm(4, router=True, forwarding=ForwardingMode.DOM0), u)
    assert a.reason_code == "BADARGS" and "interface" in a.reason
    assert d.admit(vm(4, sliver_type="emulab-xen"), u).ok


def test_eleventh_guest_router_refused_dom0_router_admitted(make_xen):
    d = make_xen(vcpus=64, memory_mb=65536)
    comp = host_urn("xen1")
    guests = tuple(vm(10 + i, router=True, forwarding=ForwardingMode.GUEST) for i in range(10))
    full = Usage(comp, used={"cpu_milli": 10000, "memory_mb": 5120, "guest_routers": 10},
                 slivers=guests)
    a = d.admit(vm(30, router=True, forwarding=ForwardingMode.GUEST), full)
    assert not a.ok and a.reason_code == "INSUFFICIENT_NODES"
    assert "10 guest-forwarding virtual routers" in a.reason and "limit is 10" in a.reason
    b = d.admit(vm(31, router=True, forwarding=ForwardingMode.DOM0,
                   interfaces=(iface("r:if0", ip="10.1.0.1"),)), full)
    assert b.ok and "guest_routers" not in b.demand
    nine = Usage(comp, used={"guest_routers": 9.0}, slivers=guests[:9])
    c = d.admit(vm(32, router=True, forwarding=ForwardingMode.GUEST), nine)
    assert c.ok and c.demand["guest_routers"] == 1.0
    # the limit is configurable and advertised as capacity
    d3 = make_xen(guest_router_limit=3, hosts=[{"name": "xen2"}])
    assert d3.inventory()[0].capacity["guest_routers"] == 3.0
    three = Usage(host_urn("xen2"), slivers=guests[:3])
    assert not d3.admit(vm(33, "xen2", router=True), three).ok


def test_dom0_router_routes_follow_the_control_plane(make_xen, dom0_netns):
    d = make_xen()
    s = vm(40, router=True, forwarding=ForwardingMode.DOM0,
           interfaces=(iface("r:if0", ip="10.1.0.1"), iface("r:if1", "eth2", ip="10.2.0.1")),
           routes=(Route("10.9.0.0/16", "10.1.0.254"), Route("0.0.0.0/0", "10.2.0.254", "r:if1"),
                   Route("10.3.0.0/24", None, "r:if1")))
    d.provision(s)
    plane = d.dom0_plane(s)
    assert plane is not None
    assert routes_in(dom0_netns, plane.table) == set()          # nothing before start
    d.perform(s, Action.START.value)
    v0, v1 = plane.vifs
    assert routes_in(dom0_netns, plane.table) == {
        ("10.9.0.0/16", "10.1.0.254", v0), ("default", "10.2.0.254", v1),
        ("10.3.0.0/24", None, v1)}
    assert {r["iif"] for r in rules_for(dom0_netns, plane.table)} == {v0, v1}
    # a route change pushed by the control plane
    result = d.set_routes(s, [Route("10.9.0.0/16", "10.1.0.253"), Route("172.16.0.0/12", "10.1.0.254")])
    assert (result.added, result.removed) == (2, 3)
    assert routes_in(dom0_netns, plane.table) == {
        ("10.9.0.0/16", "10.1.0.253", v0), ("172.16.0.0/12", "10.1.0.254", v0)}
    # drift in Dom0 is repaired by the sync action
    subprocess.run(["ip", "-n", dom0_netns, "route", "del", "172.16.0.0/12", "table",
                    str(plane.table)], check=True)
    d.perform(s, SYNC_ROUTES)
    assert ("172.16.0.0/12", "10.1.0.254", v0) in routes_in(dom0_netns, plane.table)
    d.perform(s, Action.STOP.value)
    assert routes_in(dom0_netns, plane.table) == set()
    d.perform(s, Action.START.value)
    assert len(routes_in(dom0_netns, plane.table)) == 2
    d.delete(s)
    assert routes_in(dom0_netns, plane.table) == set()
    assert rules_for(dom0_netns, plane.table) == []


def test_guest_router_installs_nothing_in_dom0(make_xen, dom0_netns):
    d = make_xen()
    s = vm(41, router=True, forwarding=ForwardingMode.GUEST, interfaces=(iface("g:if0"),),
           routes=(Route("10.9.0.0/16", "10.1.0.254"),))
    d.provision(s)
    d.perform(s, Action.START.value)
    assert d.dom0_plane(s) is None
    assert d.set_routes(s, [Route("10.8.0.0/16", "10.1.0.254")]) is None
    assert d.control_routes(s) == (Route("10.8.0.0/16", "10.1.0.254"),)


def test_set_routes_rejects_bad_routes(make_xen):
    d = make_xen()
    s = vm(42, router=True, forwarding=ForwardingMode.DOM0, interfaces=(iface("r:if0"),))
    d.provision(s)
    with pytest.raises(DriverError, match="not an IPv4 prefix"):
        d.set_routes(s, [Route("nonsense")])
    with pytest.raises(DriverError, match="'r:if9'"):
        d.set_routes(s, [Route("10.0.0.0/8", "10.1.0.1", "r:if9")])


def test_inventory_and_config_errors(make_xen):
    d = make_xen()
    comp = d.inventory()[0]
    assert comp.isolation.value == "hypervisor"
    assert comp.forwarding_modes == (ForwardingMode.DOM0, ForwardingMode.GUEST)
    assert [t.name for t in comp.sliver_types] == ["xen-vm"]
    assert comp.sliver_types[0].disk_images[0].name == "debian-12"
    with pytest.raises(InventoryError, match="guest_router_limit"):
        XenDriver({"guest_router_limit": "ten"}, [], authority=AUTH)
    with pytest.raises(InventoryError, match="bogus"):
        XenDriver({"bogus": 1}, [], authority=AUTH)
    with pytest.raises(InventoryError, match="guest or dom0"):
        XenDriver({"forwarding_modes": ["openflow"]}, [], authority=AUTH)


def test_unreachable_libvirt_is_a_driver_error(make_xen):
    d = make_xen(uri="test:///nonexistent/host.xml")
    with pytest.raises(DriverError, match="cannot connect to libvirt"):
        d.provision(vm(50))


def test_guest_config_names_each_interface_by_its_mac():
    from drivers.xen.guest import GuestIface, config_lines
    a, b = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
    lines = config_lines("h1", [GuestIface(a, "10.0.2.15/24", "eth0"),
                                GuestIface(b, None, "eth1"), GuestIface(a, None)], [], False)
    assert lines[1:4] == [f"iface {a} 10.0.2.15/24 eth0", f"iface {b} - eth1", f"iface {a} - -"]
    with pytest.raises(DriverError, match="two interfaces of the VM would be named eth1"):
        config_lines("h1", [GuestIface(a, None, "eth1"), GuestIface(b, None, "eth1")], [], False)
    for bad in ("h1:if0", "eth 1", "a" * 16, "1eth"):
        with pytest.raises(DriverError, match="not a valid Linux interface name"):
            config_lines("h1", [GuestIface(a, None, bad)], [], False)


def test_a_vm_boots_the_image_content_it_was_provisioned_with(tmp_path):
    """The image name is rebuilt (new guest scripts: a new digest) while a sliver lives: its
    next boot still appends its config to the initramfs it was provisioned with."""
    from drivers.images.store import ImageStore
    from drivers.xen.records import DomainRecord
    from tests.drivers.xen.conftest import AUTH as auth

    store = ImageStore(tmp_path / "images")

    def publish(initrd: bytes):
        staging = store.staging()
        (staging / "data" / "vmlinuz").write_bytes(b"kernel")
        (staging / "data" / "initrd.img").write_bytes(initrd)
        return store.publish(staging, "vm-initramfs", kind="vm",
                             meta={"kernel": "vmlinuz", "initrd": "initrd.img"})

    old = publish(b"old initramfs")
    d = XenDriver({"uri": f"qemu:///system?socket={tmp_path}/none", "image_store": str(store.root),
                   "state_dir": str(tmp_path / "st")}, [{"name": "xen1"}], authority=auth)
    try:
        spec = vm(1, interfaces=(iface("vm1:if0", "eth1", "10.0.0.1"),))
        rec = DomainRecord(handle="geniam-0123456789ab", sliver_urn=spec.sliver_urn, host="xen1",
                           xml="", image="vm-initramfs", image_digest=old.digest, hostname="vm1",
                           macs={"vm1:if0": "02:00:00:00:00:01"})
        comp = d.inventory()[0]
        new = publish(b"new initramfs")
        assert new.digest != old.digest
        d._write_boot(comp, spec, rec)
        initrd = (d.state_dir / "vms" / rec.handle / "initrd").read_bytes()
        assert initrd.startswith(b"old initramfs")
        store.sweep()                                # the old content is gone: a clear refusal
        with pytest.raises(DriverError, match="changed since this sliver was provisioned"):
            d._write_boot(comp, spec, rec)
    finally:
        d.close()
