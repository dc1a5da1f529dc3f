"""Through the AM API v3 (Flask test client, gcf fixture credentials, jobs run inline):
Allocate + Provision h1 - r1 - h2 on a vserver node, Status until ready, h1 pings h2 through r1,
Delete, and nothing the driver made is left on the host."""
from __future__ import annotations

import random
import string
from pathlib import Path

import pytest

from am.app import build_runtime
from am.jobs.runner import run_job
from drivers.vserver import VServerDriver
from tests.api.conftest import RSPEC_V, SLICE, ApiClient, code_of
from tests.api.conftest import base_settings, fx, trust_dir  # noqa: F401 - fixtures
from tests.drivers.vserver.helpers import ours, snapshot, guest_test_image
from tests.support import wait_until

pytestmark = pytest.mark.root

GA = "http://geni-am.org/resources/rspec/ext/geniam/1"


def _node(cid: str, ifaces: list[tuple[str, str]], routes: list[tuple[str, str]],
          router: bool = False) -> str:
    ifs = "".join(f'<interface client_id="{cid}:{n}"><ip address="{ip}" netmask="255.255.255.0" '
                  f'type="ipv4"/></interface>' for n, ip in ifaces)
    rts = "".join(f'<ga:route destination="{d}" gateway="{g}"/>' for d, g in routes)
    return (f'<node client_id="{cid}" component_id="urn:publicid:IDN+geni-am:test+node+vs1" '
            f'exclusive="false"><sliver_type name="vserver-container"/>{ifs}'
            f'<ga:node router="{str(router).lower()}" cpu="0.2" memory_mb="64">{rts}</ga:node></node>')


def _link(cid: str, a: str, b: str) -> str:
    return (f'<link client_id="{cid}"><interface_ref client_id="{a}"/>'
            f'<interface_ref client_id="{b}"/></link>')


REQUEST = (
    f'<rspec xmlns="http://www.geni.net/resources/rspec/3" xmlns:ga="{GA}" type="request">'
    + _node("h1", [("if0", "10.201.1.2")], [("10.201.2.0/24", "10.201.1.1")])
    + _node("r1", [("if0", "10.201.1.1"), ("if1", "10.201.2.1")], [], router=True)
    + _node("h2", [("if0", "10.201.2.2")], [("10.201.1.0/24", "10.201.2.1")])
    + _link("l1", "h1:if0", "r1:if0") + _link("l2", "r1:if1", "h2:if0")
    + "</rspec>")


class InlineQueue:
    def __init__(self):
        self.store = self.site = None

    def submit(self, job_id: int) -> None:
        run_job(self.store, self.site, job_id, worker_id="vserver-test")


def start_am(base_settings, tmp_path, gcf_fixtures, *, vserver_state: Path | None = None,
             vserver_keys: str = "", images: tuple[Path, str] | None = None):
    """An AM runtime over one vserver node (jobs run inline), alice's client, the prefix.
    `images`: (store, default image name), the tests' shared store by default."""
    prefix = "a" + "".join(random.choices(string.ascii_lowercase + string.digits, k=3))
    images, image = images or guest_test_image()
    inv = tmp_path / "inventory.toml"
    inv.write_text(f'[drivers.vserver]\nname_prefix = "{prefix}"\n'
                   f'state_dir = "{vserver_state or tmp_path / "vs"}"\n'
                   f'images_dir = "{images}"\ndefault_image = "{image}"\n'
                   f'build_default_image = false\n'
                   f'cpu = 2\nmemory_mb = 2048\n{vserver_keys}\n'
                   '[[components]]\nname = "vs1"\ndriver = "vserver"\n')
    queue = InlineQueue()
    settings = base_settings.replace(state_dir=str(tmp_path / "am"), inventory=str(inv))
    rt = build_runtime(settings, job_queue=lambda s: (queue, []))
    queue.store, queue.site = rt.store, rt.site
    client = ApiClient(rt.app.test_client(), (gcf_fixtures / "alice-cert.pem").read_text())
    return client, rt, prefix


@pytest.fixture
def am(base_settings, tmp_path, gcf_fixtures):
    client, rt, prefix = start_am(base_settings, tmp_path, gcf_fixtures)
    yield client, rt, prefix
    rt.close()


def test_chain_through_the_am_api(am, fx):
    client, rt, prefix = am
    before = ours(snapshot(), prefix)
    cred = [fx.cred("slice-cred-alice")]
    alloc = client.call("Allocate", SLICE, cred, REQUEST, {})
    assert code_of(alloc) == 0, alloc
    prov = client.call("Provision", [SLICE], cred, {"geni_rspec_version": RSPEC_V})
    assert code_of(prov) == 0, prov
    def ready():
        status = client.call("Status", [SLICE], cred, {})
        assert code_of(status) == 0, status
        states = {s["geni_sliver_urn"]: s["geni_operational_status"]
                  for s in status["value"]["geni_slivers"]}
        return (status, states) if set(states.values()) == {"geni_ready"} else None
    status, states = wait_until(ready, "every sliver ready", 20, 0.1)
    assert len(states) == 5, states
    # once every link is in, nothing says it waits for one (Status is live, Describe stored)
    texts = [s.get("geni_resource_status", "") for s in status["value"]["geni_slivers"]]
    assert all(t for t in texts) and not any("waiting" in t for t in texts), texts
    described = client.call("Describe", [SLICE], cred, {"geni_rspec_version": RSPEC_V})
    assert code_of(described) == 0, described
    assert "container" in described["value"]["geni_rspec"]
    assert "waiting" not in described["value"]["geni_rspec"]
    driver: VServerDriver = rt.site.drivers["vserver"]
    h1 = next(o for o in driver.observed() if "h1" in o.detail)
    import subprocess
    ping = subprocess.run(driver.sliver_argv(h1.sliver_urn, ["ping", "-c1", "-W2", "10.201.2.2"]),
                          capture_output=True, text=True)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert "ttl=63" in ping.stdout                     # one router hop: r1 forwarded it
    assert len(ours(snapshot(), prefix).netns) == 3
    # a link taken away: its node's live status says which interface waits for one
    by_cid = {s["geniam_client_id"]: s["geni_sliver_urn"] for s in status["value"]["geni_slivers"]}
    assert code_of(client.call("Delete", [by_cid["l2"]], cred, {})) == 0
    h2 = client.call("Status", [by_cid["h2"]], cred, {})
    assert code_of(h2) == 0, h2
    assert "waiting for link(s) on" in h2["value"]["geni_slivers"][0]["geni_resource_status"]
    deleted = client.call("Delete", [SLICE], cred, {})
    assert code_of(deleted) == 0, deleted
    wait_until(lambda: ours(snapshot(), prefix) == before, "the host to hold nothing of ours",
               5, detail=lambda: ours(snapshot(), prefix))
    assert driver.observed() == []
