"""A NetFPGA slot and real VMs through the whole AM (root: a private libvirtd with a QEMU
guest, the card process, vserver containers). One VM per test.

    v1 (VM, 10.74.1.2) - s1 (netfpga-vdp slot) - h3 (container, 10.74.2.2)

The VM's interface is a tap on its link's bridge; the link v1:if0 - s1:if0 is a wire link
realised by the Xen driver: the card port's interface joins that bridge, as a cable into the
VM's switch. The container pings the VM across the slot with the TTL decremented once, and
Delete gives the card its port back.

    h1 (container, 10.76.1.2) - r1 (hybrid router: control plane a VM, forwarding on a
    slot) - h2 (container, 10.76.2.2)

The AM plugs the control-plane VM into the slot's CPU port (its NIC cpu0, with the CPU port's
MAC and the router's addresses, bridged to the port): the VM's kernel answers for the router and
sends the ICMP errors for what the slot punts; Delete gives the card its CPU port back.
"""
from __future__ import annotations

import os
import random
import string
import subprocess

import pytest

from drivers import hostnet
from drivers.netfpga.pipeline import cpu_macs
from drivers.xen.domain import handle_for
from tests.api.conftest import RSPEC_V, SLICE, ApiClient, code_of
from tests.drivers.vserver.helpers import guest_test_image
from tests.drivers.xen import realvms
from tests.drivers.xen.vmam import host_urn, vm_am, write_inventory
from tests.hybrid.conftest import AM, GA, manifest_nodes
from tests.hybrid.test_netfpga_wires import (
    AUTH,
    NF1,
    VS1,
    netfpga_spec,
    node_xml,
    ping,
    probe,
)
from tests.support import wait_until

pytestmark = [pytest.mark.root, pytest.mark.slow]

VMHOST = host_urn(AUTH)
TAG = "".join(random.choices(string.ascii_lowercase, k=2))
PREFIX = f"gn{TAG}"
CARD_PREFIX = f"y{TAG}c"


def _request() -> str:
    vm = node_xml("v1", VMHOST, "xen-vm", {"if0": "10.74.1.2"},
                  (("10.74.2.0/24", "10.74.1.1", ""),))
    slot = node_xml("s1", NF1, "netfpga-vdp", {"if0": "10.74.1.1", "if1": "10.74.2.1"},
                    (("10.74.1.0/24", "", "s1:if0"), ("10.74.2.0/24", "", "s1:if1")),
                    ' router="true"')
    host = node_xml("h3", VS1, "vserver-container", {"if0": "10.74.2.2"},
                    (("10.74.1.0/24", "10.74.2.1", ""),))
    links = ('<link client_id="lv"><interface_ref client_id="v1:if0"/>'
             '<interface_ref client_id="s1:if0"/></link>'
             '<link client_id="lh"><interface_ref client_id="s1:if1"/>'
             '<interface_ref client_id="h3:if0"/></link>')
    return (f'<rspec xmlns="http://www.geni.net/resources/rspec/3" xmlns:ga="{GA}" '
            f'type="request">{vm}{slot}{host}{links}</rspec>')


def _extra(tmp, images, image) -> str:
    """The container host and the card, beside the VM host."""
    return (f'[drivers.vserver]\nname_prefix = "c{TAG}"\nstate_dir = "{tmp / "vs"}"\n'
            f'images_dir = "{images}"\ndefault_image = "{image}"\n'
            'build_default_image = false\ncpu = 2\nmemory_mb = 2048\n\n'
            f'[drivers.netfpga]\nstate_dir = "{tmp / "netfpga"}"\n\n'
            '[[components]]\nname = "vs1"\ndriver = "vserver"\n\n'
            '[[components]]\nname = "nf1"\ndriver = "netfpga"\n'
            f'extra = {{ iface_prefix = "{CARD_PREFIX}", card_file = "{tmp}/card/nf1.card", '
            f'card_rundir = "{tmp}/card/run" }}\n')


@pytest.fixture(scope="module")
def lab(base_settings, gcf_fixtures, fx, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nfvm")
    images, image = guest_test_image()
    extra = _extra(tmp, images, image)
    store = realvms.image_store()
    daemon = realvms.start_libvirtd()
    dom0 = realvms.netns(f"{PREFIX}dom0-{os.getpid()}")
    inv = write_inventory(tmp / "inventory.toml", daemon, store, state=tmp, prefix=PREFIX,
                          dom0=dom0, extra=extra, boot_timeout_s=300)
    settings = base_settings.replace(state_dir=str(tmp / "am"), inventory=str(inv))
    card = None
    try:
        with vm_am(settings) as rt:
            netfpga = rt.site.drivers["netfpga"]
            card = netfpga.emulated_card(netfpga.inventory()[0])
            card.start()
            client = ApiClient(rt.app.test_client(), (gcf_fixtures / "alice-cert.pem").read_text())
            yield AM(client, rt, [fx.cred("slice-cred-alice")], dom0)
    finally:
        if card is not None:
            card.stop()
            card.cleanup()
        realvms.stop_libvirtd(daemon)
        subprocess.run(["ip", "netns", "del", dom0], check=False)


def test_a_container_pings_a_vm_across_the_slot(lab: AM):
    am = lab
    urns, st = _up(am, _request())
    wire = f"{CARD_PREFIX}p0"
    assert any(f"nf1 port nf0 ({wire}) plugged in" in s.get("geni_resource_status", "")
               for s in st.values()), st
    link = hostnet.find_link(None, wire)
    assert link is not None and link.master, "the card port is not on the VM's bridge"

    h3 = am.rt.site.drivers["vserver"].naming.node(urns["h3"])
    ttl = wait_until(lambda: ping(h3, "10.74.1.2", wait=2), "the VM to answer across the slot",
                     120, 0.5)
    assert ttl == 63                                   # the VM's 64, one hop through the slot

    assert code_of(am.call("Delete", [SLICE], am.cred, {})) == 0
    wait_until(lambda: (li := hostnet.find_link(None, wire)) is not None and not li.master,
               "the card port to leave the VM's bridge", 60)



def _up(am: AM, request: str) -> tuple[dict[str, str], dict]:
    """Allocate and Provision `request`; every sliver ready. (client_id -> sliver URN, the
    slivers' Status by URN)."""
    alloc = am.allocate(request)
    assert code_of(alloc) == 0, alloc
    urns = {cid: n.get("sliver_id") for cid, n in manifest_nodes(alloc["value"]).items()}
    prov = am.ok("Provision", [SLICE], am.cred, {"geni_rspec_version": RSPEC_V})
    return urns, _settle(am, [s["geni_sliver_urn"] for s in prov["geni_slivers"]])


def _settle(am: AM, every: list[str], timeout: float = 400) -> dict:
    def settled():
        st = {s["geni_sliver_urn"]: s for s in am.ok("Status", [SLICE], am.cred, {})[
            "geni_slivers"]}
        return st if all(st[u]["geni_operational_status"] in ("geni_ready", "geni_failed")
                         for u in every) else None
    st = wait_until(settled, "the slivers to settle", timeout, 0.2)
    assert {u: s["geni_operational_status"] for u, s in st.items()} == \
        {u: "geni_ready" for u in every}, {u: s.get("geni_error") for u, s in st.items()}
    return st


def _router_request() -> str:
    router = node_xml("r1", VMHOST, "xen-vm", {"if0": "10.76.1.1", "if1": "10.76.2.1"},
                      (("10.76.1.0/24", "", "r1:if0"), ("10.76.2.0/24", "", "r1:if1")),
                      ' router="true" forwarding="hardware"')
    hosts = "".join(node_xml(f"h{n}", VS1, "vserver-container", {"if0": f"10.76.{n}.2"},
                             ((f"10.76.{3 - n}.0/24", f"10.76.{n}.1", ""),)) for n in (1, 2))
    links = "".join(f'<link client_id="l{n}"><interface_ref client_id="{a}"/>'
                    f'<interface_ref client_id="{b}"/></link>'
                    for n, (a, b) in ((1, ("h1:if0", "r1:if0")), (2, ("r1:if1", "h2:if0"))))
    return (f'<rspec xmlns="http://www.geni.net/resources/rspec/3" xmlns:ga="{GA}" '
            f'type="request">{router}{hosts}{links}</rspec>')


def test_a_vm_control_plane_answers_for_a_router_forwarding_in_the_slot(lab: AM):
    am = lab
    urns, st = _up(am, _router_request())
    netfpga = am.rt.site.drivers["netfpga"]
    [fspec] = netfpga_spec(am, urns["r1"])
    cpu = netfpga.control_port(fspec)
    note = st[urns["r1"]]["geni_resource_status"]
    assert f"plugged into its CPU port {cpu}" in note, note
    port = hostnet.find_link(None, cpu)
    assert port is not None and port.master, "the CPU port is not on the VM's bridge"
    # cpu0 has the MAC the slot sends punted frames to (the port's own, which the port gives up)
    comp = netfpga.inventory()[0]
    cpu_mac = cpu_macs(netfpga.card(comp)[1].port_mac(0), netfpga.slot_of(fspec))[1]
    rec = am.xen.records.get(handle_for(urns["r1"]))
    assert rec.control_port["mac"] == cpu_mac and cpu_mac in rec.xml and port.mac != cpu_mac

    h1 = am.rt.site.drivers["vserver"].naming.node(urns["h1"])
    assert wait_until(lambda: ping(h1, "10.76.2.2", wait=2), "h1 to reach h2 across the slot",
                      60, 0.2) == 63
    # the router's own addresses: the slot punts them to the CPU port, the VM answers
    assert wait_until(lambda: ping(h1, "10.76.1.1", wait=2), "the VM to answer for r1",
                      120, 0.5) == 64
    assert ping(h1, "10.76.2.1", wait=3) == 64
    # TTL expiry: the slot punts it, the VM's kernel sends time-exceeded as the router
    assert "From 10.76.1.1 icmp_seq=1 Time to live exceeded" in \
        probe(h1, "10.76.2.2", "-t", "1")

    assert code_of(am.call("Delete", [SLICE], am.cred, {})) == 0
    # given back as it was: out of the VM's bridge, its own MAC
    wait_until(lambda: (li := hostnet.find_link(None, cpu)) is not None and not li.master
               and li.mac == cpu_mac, "the CPU port to leave the VM's bridge", 60,
               detail=lambda: (hostnet.find_link(None, cpu), am.call("Status", [SLICE],
                                                                     am.cred, {})))
