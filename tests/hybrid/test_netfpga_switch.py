"""A NetFPGA slot cabled to an OpenFlow switch, through the whole AM (root: namespaces, a
private OVS for the switch, the card process with its own OVS, a vserver container).

The site: a switch (bridge with h1, a host namespace, on port 1) and an emulated card whose
port nf0 is cabled into the switch as its port 2 (an inventory `[[links]]` entry, as an
operator declares a cable). The request:

    h1 (10.72.1.2, switch port 1) - r1 (hybrid router: control plane in a container, its
    forwarding on the switch) - cable - s1 (netfpga-vdp slot) - wire - h3 (container)

Link r1:if1 - s1:if0 is placed as the cable (a link sliver on the datapath that claims it),
link s1:if1 - h3:if0 as a wire into the container. h1 reaches h3 with the TTL decremented once
by the switch's flows and once by the slot, and the slot counts what it forwarded.
"""
from __future__ import annotations

import random
import re
import string
from collections.abc import Iterator

import pytest

from am.app import build_runtime
from am.jobs.reconcile import reconcile
from drivers import hostnet
from drivers.netfpga import NetFPGADriver
from tests.api.conftest import SLICE, ApiClient, code_of
from tests.conftest import require_tool
from tests.support import wait_until
from tests.drivers.openflow.conftest import ovs  # noqa: F401 - the private OVS fixture
from tests.hybrid.conftest import AM, GA, InlineQueue, release_and_close
from tests.hybrid import test_netfpga_wires as wires
from tests.hybrid.ofsite import sh
from tests.hybrid.test_netfpga_wires import (
    AUTH,
    NF1,
    VS1,
    node_xml,
    container_ns,
    up,
    wait_ping,
)

pytestmark = pytest.mark.root

TAG = "".join(random.choices(string.ascii_lowercase, k=3))
BRIDGE, HOST_NS, HOST_VETH = f"x{TAG}br", f"x{TAG}h1", f"x{TAG}v1"
CARD_PREFIX = wires.CARD_PREFIX
CABLE = f"{CARD_PREFIX}p0"                 # the card port nf0's interface, cabled to the switch
HOST_MAC, SLOT_MAC = "02:00:00:72:01:02", "02:4e:46:72:00:02"


def inventory(root, ovs_db: str) -> str:
    """The wired-card site of test_netfpga_wires plus the switch, the card cabled into it."""
    return wires.inventory(root) + f'''
[drivers.openflow]
ovs_db = "{ovs_db}"
name_prefix = "o{TAG}"
state_dir = "{root}/fib"

[[components]]
name = "sw1"
driver = "openflow"
extra = {{ bridge = "{BRIDGE}", neighbours = {{ "10.72.1.2" = "{HOST_MAC}", "10.72.0.2" = "{SLOT_MAC}" }} }}

[[links]]
name = "nf1-sw1"
ends = ["nf1:nf0", "sw1:{CABLE}"]
'''


def _card(root) -> tuple[NetFPGADriver, object]:
    """The card, as the site starts it before the AM: its file (port nf0's MAC set to the one
    the switch's neighbour table names) and its process."""
    driver = NetFPGADriver({"state_dir": f"{root}/netfpga"}, [
        {"name": "nf1", "driver": "netfpga",
         "extra": {"iface_prefix": CARD_PREFIX, "card_file": f"{root}/card/nf1.card",
                   "card_rundir": f"{root}/card/run"}}], authority=AUTH)
    comp = driver.inventory()[0]
    card = driver.emulated_card(comp)
    driver.card(comp)[1].set_port_mac(0, SLOT_MAC)
    return driver, card


@pytest.fixture(scope="module")
def am(ovs, base_settings, tmp_path_factory, gcf_fixtures, fx) -> Iterator[AM]:  # noqa: F811
    for tool in ("ovs-vswitchd", "ip", "ping", "ethtool"):
        require_tool(tool)
    root = tmp_path_factory.mktemp("nfswitch")
    client_ovs = ovs.client()
    driver, card = _card(root)
    rt = None
    try:
        card.start()
        ovs.add_bridge(BRIDGE, dpid="00:00:00:00:00:00:0c:01")
        sh("ip", "netns", "add", HOST_NS)
        sh("ip", "link", "add", HOST_VETH, "type", "veth", "peer", "name", "eth0", "netns",
           HOST_NS)
        for argv in (("link", "set", "eth0", "address", HOST_MAC), ("link", "set", "lo", "up"),
                     ("addr", "add", "10.72.1.2/24", "dev", "eth0"), ("link", "set", "eth0", "up"),
                     ("route", "add", "default", "via", "10.72.1.1")):
            sh("ip", "-n", HOST_NS, *argv)
        sh("ip", "link", "set", HOST_VETH, "up")
        for num, port in ((1, HOST_VETH), (2, CABLE)):          # the operator's cabling
            client_ovs.vsctl("add-port", BRIDGE, port, "--", "set", "interface", port,
                             f"ofport_request={num}")
        path = root / "inventory.toml"
        path.write_text(inventory(root, ovs.db))
        queue = InlineQueue()
        settings = base_settings.replace(state_dir=str(root / "am"), inventory=str(path))
        rt = build_runtime(settings, job_queue=lambda s: (queue, []))
        queue.store, queue.site = rt.store, rt.site
        client = ApiClient(rt.app.test_client(), (gcf_fixtures / "alice-cert.pem").read_text())
        yield AM(client, rt, [fx.cred("slice-cred-alice")], "")
    finally:
        if rt is not None:
            release_and_close(rt)
        client_ovs.vsctl("--if-exists", "del-br", BRIDGE)
        sh("ip", "netns", "del", HOST_NS, check=False)
        sh("ip", "link", "del", HOST_VETH, check=False)
        card.stop()
        card.cleanup()
        driver.close()


def request(*, slot_vlan: int | None = None, cable_to: str = "s1:if0") -> str:
    router = node_xml("r1", VS1, "vserver-container", {"if0": "10.72.1.1", "if1": "10.72.0.1"},
                      (("10.72.1.0/24", "10.72.1.2", ""), ("10.73.0.0/24", "10.72.0.2", "")),
                      ' router="true" forwarding="openflow"')
    slot = node_xml("s1", NF1, "netfpga-vdp", {"if0": "10.72.0.2", "if1": "10.73.0.1"},
                    (("10.72.0.0/24", "", "s1:if0"), ("10.73.0.0/24", "", "s1:if1"),
                     ("10.72.1.0/24", "10.72.0.1", "")), ' router="true"')
    host = node_xml("h3", VS1, "vserver-container", {"if0": "10.73.0.2"},
                    (("10.72.0.0/16", "10.73.0.1", ""),))
    tag = f' vlan_tag="{slot_vlan}"' if slot_vlan else ""
    links = (f'<link client_id="cable"><ga:link{tag}/><interface_ref client_id="r1:if1"/>'
             f'<interface_ref client_id="{cable_to}"/></link>'
             f'<link client_id="l3"><ga:link{tag}/><interface_ref client_id="s1:if1"/>'
             '<interface_ref client_id="h3:if0"/></link>')
    return (f'<rspec xmlns="http://www.geni.net/resources/rspec/3" xmlns:ga="{GA}" '
            f'type="request">{router}{slot}{host}{links}</rspec>')


def test_a_slot_cabled_to_a_switch_forwards_for_a_host_on_the_switch(am: AM):
    urns = up(am, request())
    cable = am.ok("Status", [SLICE], am.cred, {})["geni_slivers"]
    text = {s["geni_sliver_urn"]: s.get("geni_resource_status", "") for s in cable}
    assert any(t.startswith(f"cable nf1:nf0 - sw1:{CABLE} (OpenFlow port 2)") and
               t.endswith("; card end: emulated NetFPGA card nf1 port nf0") for t in text.values()),\
        text
    h3 = container_ns(am, urns["h3"])
    # h3's 64, less one for the switch's flows and one for the slot (both ways)
    assert wait_ping(HOST_NS, "10.73.0.2") == 62
    assert wait_ping(h3, "10.72.1.2") == 62
    def counted() -> str:                                     # the card counts every 0.5 s
        status = am.ok("Status", [urns["s1"]], am.cred, {})["geni_slivers"][0][
            "geni_resource_status"]
        return status if re.search(r"packets: \d+ in, [1-9]\d* forwarded", status) else ""
    wait_until(counted, "the slot's forwarded packets in its status", 5, 0.1)

    # the reconciler finds the cable on the switch; pulled out, the link is failed with why
    cable_urn = next(u for u, t in text.items() if t.startswith("cable nf1:nf0"))
    assert cable_urn not in reconcile(am.rt.store, am.rt.site, am.rt.queue).failed_slivers
    am.rt.site.drivers["openflow"].ovs.vsctl("del-port", BRIDGE, CABLE)
    assert cable_urn in reconcile(am.rt.store, am.rt.site, am.rt.queue).failed_slivers
    failed = am.ok("Status", [cable_urn], am.cred, {})["geni_slivers"][0]
    assert failed["geni_operational_status"] == "geni_failed", failed
    assert f"site cable into {BRIDGE} port {CABLE}: the port is gone" in failed["geni_error"]

    assert code_of(am.call("Delete", [SLICE], am.cred, {})) == 0
    assert not [o for o in am.rt.site.drivers["openflow"].observed()
                if "cable" in o.handle], "the cable link is still recorded on the switch"
    assert hostnet.find_link(None, CABLE) is not None          # still cabled, the card's


def test_what_a_cable_cannot_carry_is_refused_naming_the_link(am: AM):
    # a tagged slot interface: the cable carries the card port untagged
    refused = am.allocate(request(slot_vlan=100))
    assert code_of(refused) == 13, refused                     # UNSUPPORTED
    assert "link cable:" in refused["output"] and "untagged" in refused["output"], refused
    # a card port with no cable to the switch (s1's second interface is on nf1)
    refused = am.allocate(request(cable_to="s1:if1").replace(
        '<interface_ref client_id="s1:if1"/><interface_ref client_id="h3:if0"/>',
        '<interface_ref client_id="s1:if0"/><interface_ref client_id="h3:if0"/>'))
    assert code_of(refused) == 13, refused
    assert "(cable): link it: nf1 port nf1 is not cabled to datapath sw1" in refused["output"], \
        refused
    # and the cabled port is not a wire a container can take
    assert f"(l3): link it: nf1 port nf0 is cabled to sw1 port {CABLE}" in refused["output"], \
        refused
    # a switch port named as a link end: no node to link; the refusal says how to reach it
    sw1 = NF1.replace("+nf1", "+sw1")
    port = sw1.replace("+node+", "+interface+") + f":{CABLE}"
    slot = node_xml("s1", NF1, "netfpga-vdp", {"if0": "10.72.0.2"}, ())
    refused = am.allocate(
        f'<rspec xmlns="http://www.geni.net/resources/rspec/3" xmlns:ga="{GA}" type="request">'
        f'{slot}<node client_id="sw" component_id="{sw1}"><interface client_id="sw:p2" '
        f'component_id="{port}"/></node><link client_id="lsw"><interface_ref client_id="s1:if0"/>'
        '<interface_ref client_id="sw:p2"/></link></rspec>')
    assert code_of(refused) == 13, refused                     # UNSUPPORTED
    assert f"link lsw: interface sw:p2 is port {CABLE} of switch sw1" in refused["output"], refused
    assert f"nf1 port nf0 is cabled to sw1 port {CABLE} already" in refused["output"], refused


def test_a_link_through_the_switch_reaches_a_slot_over_its_cable(am: AM):
    """h3 - (a link through sw1: h3's attachment and the cable's port) - s1 - wire - h4: the
    card port's cable is the slot's place on the switch, as a container's veth is its."""
    slot = node_xml("s1", NF1, "netfpga-vdp", {"if0": "10.72.5.1", "if1": "10.72.6.1"},
                    (("10.72.5.0/24", "", "s1:if0"), ("10.72.6.0/24", "", "s1:if1")),
                    ' router="true"')
    hosts = "".join(node_xml(f"h{n}", VS1, "vserver-container", {"if0": f"10.72.{n + 2}.2"},
                             ((f"10.72.{9 - n}.0/24", f"10.72.{n + 2}.1", ""),)) for n in (3, 4))
    links = ('<link client_id="lsw"><ga:link switch="sw1"/><interface_ref client_id="s1:if0"/>'
             '<interface_ref client_id="h3:if0"/></link>'
             '<link client_id="l4"><interface_ref client_id="s1:if1"/>'
             '<interface_ref client_id="h4:if0"/></link>')
    ovs = am.rt.site.drivers["openflow"].ovs      # the cable, plugged back in if pulled out
    ovs.vsctl("--may-exist", "add-port", BRIDGE, CABLE, "--", "set", "interface", CABLE,
              "ofport_request=2")
    urns = up(am, f'<rspec xmlns="http://www.geni.net/resources/rspec/3" xmlns:ga="{GA}" '
                  f'type="request">{slot}{hosts}{links}</rspec>')
    text = {s["geni_sliver_urn"]: s.get("geni_resource_status", "")
            for s in am.ok("Status", [SLICE], am.cred, {})["geni_slivers"]}
    assert any(t.startswith("link through") and f"({CABLE}: a site cable's); {CABLE} is the "
               "cable from emulated NetFPGA card nf1 port nf0" in t for t in text.values()), text
    h3 = container_ns(am, urns["h3"])
    assert wait_ping(h3, "10.72.6.2") == 63                    # the slot's one hop
    assert code_of(am.call("Delete", [SLICE], am.cred, {})) == 0
    naming = am.rt.site.drivers["openflow"].naming
    ports = ovs.ports(BRIDGE)
    assert CABLE in ports and not [p for p in ports if naming.tag_of_link_port(p)], ports
    # a card port with no cable to the switch cannot be on a link through it
    refused = am.allocate(f'<rspec xmlns="http://www.geni.net/resources/rspec/3" '
                          f'xmlns:ga="{GA}" type="request">{slot}{hosts}'
                          f'{links.replace("s1:if0", "s1:if9").replace("s1:if1", "s1:if0")}'
                          '</rspec>'.replace("s1:if9", "s1:if1"))
    assert code_of(refused) == 13, refused                     # UNSUPPORTED
    assert "(lsw): link it: nf1 port nf1 (interface s1:if1) is not cabled to switch sw1" in \
        refused["output"], refused
