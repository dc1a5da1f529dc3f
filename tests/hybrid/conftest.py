"""The whole AM (Flask test client, gcf credentials, jobs run inline) over a Xen host on
libvirt's test driver with a network namespace standing in for Dom0, and a simulated NetFPGA
card, configured by an inventory TOML written here."""
from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import dataclass
from typing import Any

import pytest

from am.app import build_runtime
from am.jobs.runner import PollLater, run_job
from tests.api.conftest import RSPEC_V, SLICE, ApiClient, code_of
from tests.api.conftest import base_settings, fx, trust_dir  # noqa: F401 - fixtures
from tests.conftest import require_tool
from tests.support import wait_until

GA = "http://geni-am.org/resources/rspec/ext/geniam/1"
AUTH = "geni-am:test"
XEN1 = f"urn:publicid:IDN+{AUTH}+node+xen1"
CARD1 = f"urn:publicid:IDN+{AUTH}+node+nf1"


class InlineQueue:
    """The job queue of the tests: each committed job runs at once, in this process. A start
    under way on the substrate (a real VM booting: runner.PollLater) is looked at again after
    the poll delay on a timer thread, as the worker's countdown message would."""

    def __init__(self) -> None:
        self.store = self.site = None

    def submit(self, job_id: int) -> None:
        try:
            run_job(self.store, self.site, job_id, worker_id="hybrid-test")
        except PollLater as poll:
            timer = threading.Timer(poll.delay_s, self.submit, args=(job_id,))
            timer.daemon = True
            timer.start()


@dataclass
class AM:
    client: ApiClient
    rt: Any
    cred: list
    dom0: str

    def call(self, method: str, *args: Any) -> Any:
        return self.client.call(method, *args)

    def ok(self, method: str, *args: Any) -> Any:
        result = self.client.call(method, *args)
        assert code_of(result) == 0, result
        return result["value"]

    def allocate(self, request: str, slice_urn: str = SLICE) -> Any:
        return self.client.call("Allocate", slice_urn, self.cred, request, {})

    def provision(self, urns: list[str]) -> Any:
        return self.ok("Provision", urns, self.cred, {"geni_rspec_version": RSPEC_V})

    def states(self, urns: list[str]) -> dict[str, str]:
        """Sliver URN -> operational state, from Status."""
        value = self.ok("Status", urns, self.cred, {})
        return {s["geni_sliver_urn"]: s["geni_operational_status"] for s in value["geni_slivers"]}

    def wait_for(self, urns: list[str], state: str, timeout: float = 10.0) -> dict[str, str]:
        """The slivers' states once every one is `state` (the test fails after `timeout`)."""
        def reached() -> dict[str, str]:
            states = self.states(urns)
            return states if set(states.values()) == {state} else {}
        return wait_until(reached, f"{urns} to be {state}", timeout,
                          detail=lambda: self.states(urns))

    def poa(self, urns: list[str], action: str, options: dict | None = None) -> Any:
        return self.client.call("PerformOperationalAction", urns, self.cred, action,
                                options or {})

    @property
    def xen(self):
        return self.rt.site.drivers["xen"]

    @property
    def netfpga(self):
        return self.rt.site.drivers["netfpga"]


def release_and_close(rt) -> None:
    """Release everything the runtime's drivers still hold (best effort after a failed test),
    then close the runtime."""
    for driver in rt.site.drivers.values():
        for obs in driver.observed():
            try:
                driver.release(obs.handle)
            except Exception:   # noqa: BLE001 - best effort after a failed test
                pass
    rt.close()


@pytest.fixture
def dom0_netns():
    ip = require_tool("ip")
    name = f"ghdom0-{os.getpid()}-{os.urandom(3).hex()}"
    subprocess.run([ip, "netns", "add", name], check=True)
    yield name
    subprocess.run([ip, "netns", "del", name], check=False)


def inventory(tmp_path, dom0: str, *, guest_router_limit: int = 10, vcpus: int = 64,
              memory_mb: int = 65536, slots: int = 4, route_table_size: int = 32) -> str:
    return f'''
[drivers.xen]
uri = "test:///default"
state_dir = "{tmp_path}/xen"
dom0_netns = "{dom0}"
guest_router_limit = {guest_router_limit}
vcpus = {vcpus}
memory_mb = {memory_mb}

[drivers.netfpga]
card_process = false    # register model only: these tests check route registers
state_dir = "{tmp_path}/netfpga"
slots = {slots}
route_table_size = {route_table_size}

[[components]]
name = "xen1"
driver = "xen"

[[components]]
name = "nf1"
driver = "netfpga"
'''


@pytest.fixture
def make_am(base_settings, tmp_path, gcf_fixtures, fx, dom0_netns):
    made = []

    def make(*, settings: dict | None = None, **inv) -> AM:
        """An AM over a fresh inventory (`inv`: inventory() keywords); `settings`: Settings
        fields to change (e.g. start_on_provision=False)."""
        path = tmp_path / f"inventory{len(made)}.toml"
        path.write_text(inventory(tmp_path / f"site{len(made)}", dom0_netns, **inv))
        queue = InlineQueue()
        settings = base_settings.replace(state_dir=str(tmp_path / f"am{len(made)}"),
                                         inventory=str(path), **(settings or {}))
        rt = build_runtime(settings, job_queue=lambda s: (queue, []))
        made.append(rt)
        queue.store, queue.site = rt.store, rt.site
        client = ApiClient(rt.app.test_client(), (gcf_fixtures / "alice-cert.pem").read_text())
        return AM(client, rt, [fx.cred("slice-cred-alice")], dom0_netns)

    yield make
    for rt in made:
        release_and_close(rt)


@pytest.fixture
def am(make_am) -> AM:
    return make_am()


def node(cid: str, component: str = XEN1, *, sliver_type: str = "xen-vm",
         ifaces: tuple[tuple[str, str], ...] = (), ext: str = "", routes=(),
         ) -> str:
    """One request node; `ifaces` = (interface name, IPv4 address) pairs; `ext` = attributes
    of the ga:node element; `routes` = (destination, gateway) pairs."""
    ifs = "".join(f'<interface client_id="{cid}:{n}"><ip address="{ip}" netmask="255.255.255.0" '
                  f'type="ipv4"/></interface>' for n, ip in ifaces)
    rts = "".join(f'<ga:route destination="{d}" gateway="{g}"/>' for d, g in routes)
    ga = f'<ga:node {ext}>{rts}</ga:node>' if (ext or rts) else ""
    bound = f' component_id="{component}"' if component else ""
    return (f'<node client_id="{cid}"{bound} exclusive="false">'
            f'<sliver_type name="{sliver_type}"/>{ifs}{ga}</node>')


def request(*nodes: str) -> str:
    return (f'<rspec xmlns="http://www.geni.net/resources/rspec/3" xmlns:ga="{GA}" '
            f'type="request">{"".join(nodes)}</rspec>')


def manifest_nodes(value: dict) -> dict[str, Any]:
    """client_id -> the manifest's <node> element, from an Allocate/Provision/Describe value."""
    from lxml import etree

    root = etree.fromstring(value["geni_rspec"].encode())
    return {n.get("client_id"): n for n in root.iter("{http://www.geni.net/resources/rspec/3}node")}


def sliver_urns(value: dict) -> dict[str, str]:
    """client_id -> sliver URN, from the manifest of an Allocate/Provision/Describe value."""
    return {cid: n.get("sliver_id") for cid, n in manifest_nodes(value).items()}


def dom0_routes(netns: str) -> set[tuple[str, str | None, str]]:
    """(prefix, gateway, table) of every route the AM put in the Dom0 stand-in."""
    import json

    out = subprocess.run(["ip", "-n", netns, "-j", "route", "show", "table", "all"],
                         capture_output=True, text=True, check=True).stdout
    return {(r["dst"], r.get("gateway"), str(r.get("table", "main")))
            for r in json.loads(out or "[]") if r.get("protocol") in ("77", 77)}
