"""Real VMs through the AM API v3 (Flask test client, gcf credentials), with the AM's own job
system (embedded Celery worker, readiness polls): a private libvirtd with QEMU guests, and a
vserver host on the same machine.

One slice for the whole module (VMs take seconds to boot under emulation):
h1 - r1 (dom0 forwarding) - r2 (guest forwarding) - h2, all VMs, and container c1 linked to
h2 (a join link: the container's end on the VM's bridge), and h1 and c1 linked through an
OpenFlow switch (a private OVS, userspace datapath, vswitchd in a namespace of its own).
Provision -> ready, SSH with the key, h1 pings h2 through both routers, h2 and c1 ping each
other, h1 and c1 ping each other through the switch, geni_update_users adds a key
that logs in, geni_restart keeps the configuration, a VM killed behind the AM's back is failed
by the reconciler with the reason, Delete leaves nothing.
"""
from __future__ import annotations

import os
import random
import signal
import string
import subprocess
from pathlib import Path

import libvirt
import pytest

from am.jobs.reconcile import reconcile
from drivers import hostnet
from drivers.ovs import OVSInstance
from tests.api.conftest import ALICE, RSPEC_V, SLICE, ApiClient, code_of
from tests.drivers.vserver.helpers import guest_test_image
from tests.drivers.vserver.sshclient import keypair, refused, ssh
from tests.drivers.xen import realvms
from tests.drivers.xen.vmam import host_urn, vm_am, write_inventory
from tests.hybrid.conftest import AM, manifest_nodes, node, request
from tests.support import wait_until

pytestmark = [pytest.mark.root, pytest.mark.slow]

AUTH = "geni-am:test"
VMHOST = host_urn(AUTH)
VS1 = f"urn:publicid:IDN+{AUTH}+node+vs1"
SW1 = f"urn:publicid:IDN+{AUTH}+node+sw1"
TAG = "".join(random.choices(string.ascii_lowercase, k=2))
PREFIX = f"gv{TAG}"
RSPEC = "{http://www.geni.net/resources/rspec/3}"


def _link(cid: str, a: str, b: str, switch: str = "") -> str:
    hint = f'<ga:link switch="{switch}"/>' if switch else ""
    return (f'<link client_id="{cid}"><interface_ref client_id="{a}"/>'
            f'<interface_ref client_id="{b}"/>{hint}</link>')


REQUEST = request(
    node("h1", VMHOST, ifaces=(("if0", "10.93.1.2"), ("if1", "10.93.5.1")),
         routes=(("10.93.0.0/16", "10.93.1.1"),)),
    node("r1", VMHOST, ifaces=(("if0", "10.93.1.1"), ("if1", "10.93.2.1")),
         routes=(("10.93.3.0/24", "10.93.2.2"),), ext='router="true" forwarding="dom0"'),
    node("r2", VMHOST, ifaces=(("if0", "10.93.2.2"), ("if1", "10.93.3.1")),
         routes=(("10.93.1.0/24", "10.93.2.1"),), ext='router="true" forwarding="guest"'),
    node("h2", VMHOST, ifaces=(("if0", "10.93.3.2"), ("if1", "10.93.4.1")),
         routes=(("10.93.1.0/24", "10.93.3.1"), ("10.93.2.0/24", "10.93.3.1"))),
    node("c1", VS1, sliver_type="vserver-container",
         ifaces=(("if0", "10.93.4.2"), ("if1", "10.93.5.2")), ext='cpu="0.2" memory_mb="64"'),
    _link("l1", "h1:if0", "r1:if0"), _link("l2", "r1:if1", "r2:if0"),
    _link("l3", "r2:if1", "h2:if0"), _link("l4", "h2:if1", "c1:if0"),
    _link("l5", "h1:if1", "c1:if1", switch="sw1"))
SWITCH_BRIDGE = f"{PREFIX}br"


@pytest.fixture(scope="module")
def lab(base_settings, gcf_fixtures, fx, tmp_path_factory):
    store = realvms.image_store()
    images, image = guest_test_image()
    daemon = realvms.start_libvirtd()
    dom0 = realvms.netns(f"{PREFIX}dom0-{os.getpid()}")
    tmp = tmp_path_factory.mktemp("vmam")
    # the switch: vswitchd in a namespace of its own (as in the default site), one bridge
    swns = realvms.netns(f"{PREFIX}sw-{os.getpid()}")
    ovs = OVSInstance(tmp / "ovs", netns=swns).start()
    ovs.add_bridge(SWITCH_BRIDGE, dpid="00:00:00:00:00:00:0c:01")
    extra = (f'[drivers.vserver]\nname_prefix = "c{TAG}"\nstate_dir = "{tmp / "vs"}"\n'
             f'images_dir = "{images}"\ndefault_image = "{image}"\n'
             'build_default_image = false\ncpu = 2\nmemory_mb = 2048\n\n'
             f'[drivers.openflow]\novs_db = "{ovs.db}"\nname_prefix = "o{TAG}"\n'
             f'ovs_netns = "{swns}"\nstate_dir = "{tmp / "fib"}"\n\n'
             '[[components]]\nname = "vs1"\ndriver = "vserver"\n\n'
             f'[[components]]\nname = "sw1"\ndriver = "openflow"\n'
             f'[components.extra]\nbridge = "{SWITCH_BRIDGE}"\n')
    inv = write_inventory(tmp / "inventory.toml", daemon, store, state=tmp, prefix=PREFIX,
                          dom0=dom0, extra=extra, boot_timeout_s=300)
    settings = base_settings.replace(state_dir=str(tmp / "am"), inventory=str(inv))
    alice = keypair(tmp, "alice")
    before = realvms.host_links()
    try:
        with vm_am(settings) as rt:
            client = ApiClient(rt.app.test_client(), (gcf_fixtures / "alice-cert.pem").read_text())
            am = AM(client, rt, [fx.cred("slice-cred-alice")], dom0)
            alloc = am.allocate(REQUEST)
            assert code_of(alloc) == 0, alloc
            urns = {cid: n.get("sliver_id") for cid, n in manifest_nodes(alloc["value"]).items()}
            prov = am.ok("Provision", [SLICE], am.cred, {
                "geni_rspec_version": RSPEC_V,
                "geni_users": [{"urn": ALICE, "keys": [alice.public]}]})
            every = [s["geni_sliver_urn"] for s in prov["geni_slivers"]]
            yield {"am": am, "rt": rt, "urns": urns, "every": every, "alice": alice,
                   "tmp": tmp, "daemon": daemon, "dom0": dom0, "before": before, "ovs": ovs,
                   "swns": swns}
    finally:
        realvms.stop_libvirtd(daemon)
        ovs.stop()
        subprocess.run(["ip", "netns", "del", dom0], check=False)
        subprocess.run(["ip", "netns", "del", swns], check=False)


def status(lab) -> dict[str, dict]:
    value = lab["am"].ok("Status", [SLICE], lab["am"].cred, {})
    return {s["geni_sliver_urn"]: s for s in value["geni_slivers"]}


def wait_settled(lab, urns, timeout: float = 400) -> dict[str, dict]:
    def settled():
        st = status(lab)
        return st if all(st[u]["geni_operational_status"] in ("geni_ready", "geni_failed")
                         for u in urns) else None
    return wait_until(settled, "the slivers to settle", timeout, 0.2)


def login_of(lab, name: str) -> tuple[str, int]:
    described = lab["am"].ok("Describe", [SLICE], lab["am"].cred,
                             {"geni_rspec_version": RSPEC_V})
    node = manifest_nodes(described)[name]
    login = node.find(f"{RSPEC}services/{RSPEC}login")
    return login.get("username"), int(login.get("port"))


def vm_ssh(lab, name: str, command: str, key=None, username: str | None = None):
    user, port = login_of(lab, name)
    return ssh(key or lab["alice"], username or user, port, command, timeout=60)


def test_provision_brings_every_sliver_to_ready_and_vms_take_the_key(lab):
    st = wait_settled(lab, lab["every"])
    assert {u: s["geni_operational_status"] for u, s in st.items()} == \
        {u: "geni_ready" for u in lab["every"]}, {u: s.get("geni_error") for u, s in st.items()}
    for name in ("h1", "r1", "r2", "h2"):
        out = vm_ssh(lab, name, "hostname")
        assert out.returncode == 0 and out.stdout.strip() == name, out.stderr
    assert refused(vm_ssh(lab, "h1", "true", key=keypair(lab["tmp"], "stranger")))


def test_h1_pings_h2_through_both_routers(lab):
    out = vm_ssh(lab, "h1", "ping -c 3 -W 5 10.93.3.2")
    assert out.returncode == 0 and "ttl=62" in out.stdout, out.stdout + out.stderr


def ping_vm_and_c1(lab, vm: str, c1_address: str, vm_address: str) -> None:
    """`vm` and container c1 ping each other, one hop apart (ttl 64)."""
    out = vm_ssh(lab, vm, f"ping -c 3 -W 5 {c1_address}")
    assert out.returncode == 0 and "ttl=64" in out.stdout, out.stdout + out.stderr
    c1 = lab["rt"].site.drivers["vserver"].naming.node(lab["urns"]["c1"])
    out = subprocess.run(["ip", "netns", "exec", c1, "ping", "-c", "2", "-W", "5", vm_address],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_vm_and_a_container_linked_ping_each_other(lab):
    ping_vm_and_c1(lab, "h2", "10.93.4.2", "10.93.4.1")


def _link_flows(lab) -> list:
    of = lab["rt"].site.drivers["openflow"]
    return [f for f in lab["ovs"].client().dump_flows(SWITCH_BRIDGE)
            if of.naming.link_tag_of_cookie(f.cookie)]


def test_a_vm_and_a_container_on_the_switch_ping_through_it(lab):
    # the link's ends are ports of the switch: h1's (its link bridge's wire) and c1's
    ports = lab["ovs"].client().ports(SWITCH_BRIDGE)
    assert len([p for p in ports if p.startswith(f"o{TAG}l")]) == 2, ports
    before = sum(f.n_packets for f in _link_flows(lab))
    ping_vm_and_c1(lab, "h1", "10.93.5.2", "10.93.5.1")
    # the packets crossed the switch, by the link's own flows (one per port)
    flows = _link_flows(lab)
    assert len(flows) == 2 and sum(f.n_packets for f in flows) >= before + 10
    # in the guest the link's NIC has the name the request's interface order gives it (eth2:
    # h1's second interface; eth0 is the management NIC), with the manifest's MAC
    described = lab["am"].ok("Describe", [SLICE], lab["am"].cred, {"geni_rspec_version": RSPEC_V})
    mac = next(i.get("mac_address") for i in manifest_nodes(described)["h1"].iter(
        f"{RSPEC}interface") if i.get("client_id") == "h1:if1")
    out = vm_ssh(lab, "h1", "cat /sys/class/net/eth2/address")
    assert out.stdout.strip() == mac.lower(), out.stderr


def test_update_users_adds_a_key_that_logs_in(lab):
    am, h2 = lab["am"], lab["urns"]["h2"]
    bob = keypair(lab["tmp"], "bob")
    bob_urn = "urn:publicid:IDN+geni:gpo:gcf+user+bob"
    assert refused(vm_ssh(lab, "h2", "true", key=bob, username="bob"))
    users = [{"urn": ALICE, "keys": [lab["alice"].public]}, {"urn": bob_urn, "keys": [bob.public]}]
    assert code_of(am.poa([h2], "geni_update_users", {"geni_users": users})) == 0
    assert am.wait_for([h2], "geni_ready", timeout=120) == {h2: "geni_ready"}
    out = vm_ssh(lab, "h2", "id -un", key=bob, username="bob")
    assert out.returncode == 0 and out.stdout.strip() == "bob", out.stderr


def test_restart_keeps_the_configuration(lab):
    am, h2 = lab["am"], lab["urns"]["h2"]
    handle = lab["rt"].site.drivers["xen"].records.all()
    pid_before = {r.handle: realvms.qemu_pid(lab["daemon"], r.handle) for r in handle
                  if r.sliver_urn == h2}
    assert code_of(am.poa([h2], "geni_restart")) == 0
    assert wait_settled(lab, [h2])[h2]["geni_operational_status"] == "geni_ready"
    (dom, pid), = pid_before.items()
    assert realvms.qemu_pid(lab["daemon"], dom) != pid             # a new boot
    out = vm_ssh(lab, "h2", "hostname; /sbin/ip -4 -o addr")
    assert out.stdout.split()[0] == "h2" and "10.93.3.2/24" in out.stdout
    assert "10.93.4.1/24" in out.stdout
    assert vm_ssh(lab, "h1", "ping -c 2 -W 5 10.93.3.2").returncode == 0
    assert vm_ssh(lab, "h2", "ping -c 2 -W 5 10.93.4.2").returncode == 0


def test_a_vm_killed_behind_the_ams_back_is_failed_by_the_reconciler(lab):
    rt, h1 = lab["rt"], lab["urns"]["h1"]
    rec = next(r for r in rt.site.drivers["xen"].records.all() if r.sliver_urn == h1)
    os.kill(realvms.qemu_pid(lab["daemon"], rec.handle), signal.SIGKILL)
    conn = libvirt.open(lab["daemon"].uri)
    try:
        wait_until(lambda: rec.handle not in {d.name() for d in conn.listAllDomains(
            libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)}, "libvirt to see the VM gone", 30)
    finally:
        conn.close()
    report = reconcile(rt.store, rt.site, rt.queue)
    assert h1 in report.failed_slivers
    st = status(lab)[h1]
    assert st["geni_operational_status"] == "geni_failed"
    assert "killed outside the AM" in st["geni_error"]


def test_zz_delete_leaves_nothing(lab):
    am, rt = lab["am"], lab["rt"]
    assert code_of(am.call("Delete", [SLICE], am.cred, {})) == 0
    xen, vs = rt.site.drivers["xen"], rt.site.drivers["vserver"]
    wait_until(lambda: not xen.records.all() and not xen.observed() and not vs.observed(),
               "the slice's VMs, links and container to go", 120)
    conn = libvirt.open(lab["daemon"].uri)
    try:
        assert conn.listAllDomains() == []
    finally:
        conn.close()
    left = {n for n in realvms.host_links() - lab["before"]
            if n.startswith((PREFIX, f"c{TAG}"))}
    assert left == set()
    assert not [n for n in hostnet.netns_list() if n.startswith(f"c{TAG}")]
    assert list((Path(xen.state_dir) / "vms").iterdir()) == []
    # nothing of the switch link: no port, veth or flow
    of = rt.site.drivers["openflow"]
    wait_until(lambda: not of.observed(), "the switch link to go", 60)
    assert [p for p in lab["ovs"].client().ports(SWITCH_BRIDGE) if p.startswith(f"o{TAG}")] == []
    assert _link_flows(lab) == []
    assert not [li.name for ns in (None, lab["swns"]) for li in hostnet.links(ns)
                if li.name.startswith(f"o{TAG}")]
    dom0 = subprocess.run(["ip", "-n", lab["dom0"], "-o", "link"], capture_output=True,
                          text=True, check=True).stdout
    assert "vr" not in dom0
