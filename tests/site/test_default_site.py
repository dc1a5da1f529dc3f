"""`geni-am serve` with no inventory serves the real default site of this host (am/site):
a container sliver lives through the API on it; stopping serve (or `geni-am site down` after
serve was killed) leaves no namespace, interface, cgroup or process behind. `--fake N` serves
N fake nodes instead, and a host that cannot run the real site is told what it lacks."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from am.site import site_tag
from am.site.switch import PEER_AM, PEER_PORT
from drivers import hostnet
from drivers.ovs import OVSInstance
from rspec.stitching import manifest_tags, request_path
from tests.api.conftest import code_of
from tests.api.tlsclient import client_context, proxy
from tests.services import free_port
from tests.support import read_banner, slice_urn, wait_until

pytestmark = [pytest.mark.root, pytest.mark.slow]

RSPEC_V = {"type": "GENI", "version": "3"}
REQUEST = ('<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request">'
           '<node client_id="c1" component_id="urn:publicid:IDN+geni-am:localhost+node+vs1" '
           'exclusive="false"><sliver_type name="vserver-container"/></node></rspec>')
AUTH = "geni-am:localhost"
EDGE = f"urn:publicid:IDN+{AUTH}+interface+vs1:edge1"
STITCHED = f"""<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request">
  <node client_id="c1" component_id="urn:publicid:IDN+{AUTH}+node+vs1" exclusive="false">
    <sliver_type name="vserver-container"/>
    <interface client_id="c1:if0"><ip address="10.78.0.1" netmask="255.255.255.0"/></interface>
  </node>
  <node client_id="p1" component_manager_id="{PEER_AM}"><interface client_id="p1:if0"/></node>
  <link client_id="lnk">
    <component_manager name="urn:publicid:IDN+{AUTH}+authority+am"/>
    <component_manager name="{PEER_AM}"/>
    <interface_ref client_id="c1:if0"/><interface_ref client_id="p1:if0"/>
  </link>
  {request_path("lnk", [("here", EDGE, "2000-2009", "any"),
                        ("there", PEER_PORT, "2000-2009", "any")])}
</rspec>"""
PREFIX_LETTERS = "svon"         # the site's own names, the vserver, openflow and netfpga drivers'


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GENI_AM_")}


class Serve:
    """A `geni-am serve` process and its banner."""

    def __init__(self, state: Path, *extra: str):
        self.port = free_port()
        self.state = state
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "am", "serve", "--state-dir", str(state), "--port",
             str(self.port), "--threads", "4", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), text=True)
        self.banner = read_banner(self.proc, 90)
        assert "--- end ---" in self.banner, self.proc.stderr.read()

    def am(self):
        auth = self.state / "authority"
        ctx = client_context(str(auth / "trust-roots" / "ca-cert.pem"),
                             str(auth / "alice-cert.pem"), str(auth / "alice-key.pem"))
        return proxy(f"https://127.0.0.1:{self.port}/", ctx)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        rc = self.proc.wait(60)
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc


@pytest.fixture
def state():
    """The AM's state directory (short: the guests' control sockets live deep inside it);
    whatever a failed test left of its site is taken down."""
    top = Path(tempfile.mkdtemp(prefix="gs-", dir="/tmp"))
    path = top / "state"
    yield path
    from am.site import DefaultSite
    DefaultSite(path, "geni-am:localhost").down()
    shutil.rmtree(top, ignore_errors=True)


def leftovers(state: Path) -> list[str]:
    """What of the site named with its prefixes is still on the host."""
    prefixes = tuple(letter + site_tag(state) for letter in PREFIX_LETTERS)
    found = [f"netns {n}" for n in hostnet.netns_list() if n.startswith(prefixes)]
    found += [f"interface {li.name}" for li in hostnet.links(None) if li.name.startswith(prefixes)]
    found += [f"cgroup {d}" for d in Path("/sys/fs/cgroup").glob(f"*/geni-am-{site_tag(state)}")]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if f"{state}/site/".encode() in cmd:
                found.append(f"process {entry}: {cmd[:80]!r}")
    return found


def slice_cred(state: Path, name: str) -> list[dict]:
    from credentials.authority import DevAuthority

    path = DevAuthority(state / "authority").slice(name, "alice")
    return [{"geni_type": "geni_sfa", "geni_version": "3", "geni_value": path.read_text()}]


def wait_ready(am, urn: str, cred, timeout: float = 60.0,
               index: int = 0) -> dict:
    """The sliver's Status once it is ready or failed."""
    def settled() -> dict | None:
        st = am.Status([urn], cred, {})
        assert code_of(st) == 0, st
        sliver = st["value"]["geni_slivers"][index]
        return sliver if sliver["geni_operational_status"] in ("geni_ready", "geni_failed") \
            else None
    return wait_until(settled, f"{urn} to be ready or failed", timeout, 0.2)


def container(am, state: Path, name: str, request: str = REQUEST) -> tuple[str, list[dict]]:
    """Allocate and provision one container on vs1; the slice URN and its credential, ready."""
    cred = slice_cred(state, name)
    urn = slice_urn(name, "geni-am")
    alloc = am.Allocate(urn, cred, request, {})
    assert code_of(alloc) == 0, alloc
    prov = am.Provision([urn], cred, {"geni_rspec_version": RSPEC_V})
    assert code_of(prov) == 0, prov
    for sliver in (wait_ready(am, urn, cred, index=i) for i in range(len(prov["value"]
                                                                         ["geni_slivers"]))):
        assert sliver["geni_operational_status"] == "geni_ready", \
            sliver.get("geni_error", sliver)
    return urn, cred


def rx_packets(netns: str) -> int:
    """Frames eth0 of a namespace received (tagged ones too: counted before the stack)."""
    return int(subprocess.run(["ip", "netns", "exec", netns, "cat",
                               "/sys/class/net/eth0/statistics/rx_packets"], capture_output=True,
                              text=True, timeout=10, check=True).stdout)


def sliver_netns(state: Path) -> set[str]:
    return {n for n in hostnet.netns_list() if n.startswith("v" + site_tag(state))}


def test_real_site_serves_a_container_and_leaves_nothing(state):
    serve = Serve(state)
    try:
        banner = serve.banner
        assert re.search(r"ovs1\s+openflow\s+real", banner), banner
        assert re.search(r"vs1\s+vserver\s+real", banner), banner
        assert re.search(r"nf1\s+netfpga\s+emulated", banner), banner
        assert re.search(r"nf1-ovs1\s+cable\s+emulated\s+emulated NetFPGA card nf1 port nf3",
                         banner), banner
        am = serve.am()
        ad = am.ListResources([{"geni_type": "geni_sfa", "geni_version": "3", "geni_value":
                                (state / "authority" / "alice-cred.xml").read_text()}],
                              {"geni_rspec_version": RSPEC_V})
        assert code_of(ad) == 0
        assert "+node+vs1" in ad["value"] and "+node+ovs1" in ad["value"]
        assert "+node+nf1" in ad["value"] and "netfpga-card-emulated" in ad["value"]
        # the card's port nf3 is cabled into the switch (its port3), and advertised so
        assert "+link+nf1-ovs1" in ad["value"], ad["value"]
        assert re.search(r'<link [^>]*component_id="[^"]*\+link\+nf1-ovs1"[^>]*>'
                         r'(\s*<component_manager [^>]*/>)*\s*<interface_ref component_id="[^"]*\+interface\+nf1:nf3"/>\s*'
                         r'<interface_ref component_id="[^"]*\+interface\+ovs1:port3"/>',
                         ad["value"]), ad["value"]
        swns = f"s{site_tag(state)}-sw"
        cable = hostnet.find_link(swns, "port3")
        assert cable is not None and cable.up, hostnet.links(swns)
        switch = OVSInstance(state / "site" / "ovs", netns=swns).client()
        assert switch.ofports("br-gam").get("port3") == 3
        # a container's life: allocate, provision, ready (a real namespace), delete (gone)
        urn, cred = container(am, state, "life")
        assert len(sliver_netns(state)) == 1
        assert code_of(am.Delete([urn], cred, {})) == 0
        wait_until(lambda: not sliver_netns(state), "the sliver's namespace to go", 30, 0.1,
                   detail=lambda: sliver_netns(state))
        # the site's edge port, to the example peer: advertised, and a stitched link from a
        # container leaves it on the chosen tag, into the peer's namespace
        assert "<stitching" in ad["value"] and f'<port id="{EDGE}">' in ad["value"]
        assert f"<remoteLinkId>{PEER_PORT}</remoteLinkId>" in ad["value"]
        urn, cred = container(am, state, "edge", STITCHED)
        tag = manifest_tags(am.Describe([urn], cred, {"geni_rspec_version": RSPEC_V})
                            ["value"]["geni_rspec"])["lnk"]["here"]
        assert tag == 2000
        peer = f"s{site_tag(state)}-peer"
        (node,) = sliver_netns(state)
        before = rx_packets(peer)
        subprocess.run(["ip", "netns", "exec", node, "ping", "-c", "3", "-i", "0.2", "-W", "1",
                        "10.78.0.2"], capture_output=True, timeout=30)   # ARP: no answer
        assert rx_packets(peer) > before
        assert code_of(am.Delete([urn], cred, {})) == 0
        # one left running when serve stops: serve takes it down with the site
        container(am, state, "kept")
        assert len(sliver_netns(state)) == 1
    finally:
        rc = serve.stop()
    assert rc == 0
    assert leftovers(state) == []
    assert not (state / "site" / "inventory.toml").exists()


def test_site_down_cleans_up_after_a_killed_serve(state):
    serve = Serve(state)
    try:
        container(serve.am(), state, "crash")
    finally:
        serve.stop(signal.SIGKILL)
    assert leftovers(state), "a killed serve should have left its site running"
    down = subprocess.run([sys.executable, "-m", "am", "site", "down", "--state-dir", str(state)],
                          capture_output=True, text=True, env=_env(), timeout=120)
    assert down.returncode == 0, down.stderr
    assert "released sliver vserver:" in down.stdout
    assert leftovers(state) == []
    again = subprocess.run([sys.executable, "-m", "am", "site", "down", "--state-dir",
                            str(state)], capture_output=True, text=True, env=_env(), timeout=60)
    assert again.returncode == 0 and "nothing of the default site" in again.stdout


def test_fake_flag_serves_fake_nodes(state):
    serve = Serve(state, "--fake", "50")
    try:
        assert "50 fake nodes" in serve.banner
        ad = serve.am().ListResources(
            [{"geni_type": "geni_sfa", "geni_version": "3", "geni_value":
              (state / "authority" / "alice-cred.xml").read_text()}],
            {"geni_rspec_version": RSPEC_V})
        assert code_of(ad) == 0
        assert ad["value"].count("<node ") == 50
    finally:
        assert serve.stop() == 0
    assert leftovers(state) == [] and not (state / "site").exists()


def test_a_host_that_cannot_run_the_site_is_told_what_is_missing():
    """As an unprivileged user the containers cannot run: serve names what is missing and
    suggests --fake, and starts nothing."""
    top = Path(tempfile.mkdtemp(prefix="geni-am-site-test-"))   # pytest's tmp is root's only
    os.chmod(top, 0o755)
    state = top / "state"
    state.mkdir(mode=0o700)
    os.chown(state, 65534, 65534)
    try:
        proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               sys.executable, "-m", "am", "serve", "--state-dir", str(state),
                               "--port", str(free_port())],
                              capture_output=True, text=True, env={**_env(), "HOME": str(state)},
                              timeout=120, cwd=str(Path(__file__).resolve().parents[2]))
        assert proc.returncode == 2, proc.stderr
        assert "cannot run the default site" in proc.stderr and "root" in proc.stderr
        assert "--fake" in proc.stderr and "Traceback" not in proc.stderr
        assert leftovers(state) == []
    finally:
        shutil.rmtree(top)
