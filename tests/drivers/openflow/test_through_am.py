"""The OpenFlow driver behind the AM service: Allocate with an openflow:sliver RSpec, a second
slice's overlapping flowspace refused at Allocate, Provision through the job runner (the slice's
os-ken controller gets its switch, h1 reaches h2), Delete leaves nothing in OVS."""
from __future__ import annotations

from functools import partial
import pytest
from lxml import etree

from am.config import Settings
from am.errors import GeniCode, GeniError
from am.jobs.runner import run_job
from am.service.aggregate import Aggregate
from am.service.contract import Options, Principal
from am.store import open_store
from drivers.registry import Site
from tests.drivers.openflow.conftest import AUTHORITY, HOSTS, PHYS, PHYS_DPID, in_ns
from tests import support

pytestmark = pytest.mark.root

AM = f"urn:publicid:IDN+{AUTHORITY}+authority+am"
SW = f"urn:publicid:IDN+{AUTHORITY}+node+sw1"
ALICE = Principal(urn=f"urn:publicid:IDN+{AUTHORITY}:sa+user+alice")
OF = "http://www.geni.net/resources/rspec/ext/openflow/3"


slice_urn = partial(support.slice_urn, authority=f"{AUTHORITY}:sa")


def of_request(controller: str, ports: tuple[int, ...], packet: str = "") -> str:
    port_xml = "".join(f'<openflow:port num="{p}"/>' for p in ports)
    return f"""<rspec type="request" xmlns="http://www.geni.net/resources/rspec/3"
  xmlns:openflow="{OF}">
  <openflow:sliver description="of test" email="alice@example.net">
    <openflow:controller url="{controller}" type="primary"/>
    <openflow:group name="g1">
      <openflow:datapath component_id="{SW}" component_manager_id="{AM}" dpid="{PHYS_DPID}">
        {port_xml}
      </openflow:datapath>
    </openflow:group>
    <openflow:match><openflow:use-group name="g1"/><openflow:packet>{packet}</openflow:packet>
    </openflow:match>
  </openflow:sliver>
</rspec>"""


class Queue:
    def __init__(self) -> None:
        self.jobs: list[int] = []

    def submit(self, job_id: int) -> None:
        self.jobs.append(job_id)


@pytest.fixture
def am(topology, tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'am.sqlite'}", migrate=True)
    site = Site({"openflow": topology.driver()}, authority=AUTHORITY)
    queue = Queue()
    aggregate = Aggregate(Settings(authority=AUTHORITY, state_dir=str(tmp_path)), store, site,
                          queue)

    def drain() -> None:
        while queue.jobs:
            run_job(store, site, queue.jobs.pop(0), worker_id="test")

    yield aggregate, drain, site.drivers["openflow"]
    site.close()
    store.close()


def test_allocate_refuses_overlap_provision_delete(am, controllers, topology):
    aggregate, drain, driver = am
    ctl = controllers("am-slice-a")
    a, b = slice_urn("ofa"), slice_urn("ofb")

    alloc = aggregate.allocate(ALICE, a, of_request(ctl.url, (1, 2)), Options())
    [sliver_a] = alloc.slivers
    assert etree.fromstring(alloc.manifest.encode()).find(f".//{{{OF}}}sliver") is not None

    # Slice b wants port 2 for IPv4 from anywhere: that is slice a's traffic.
    with pytest.raises(GeniError) as err:
        aggregate.allocate(ALICE, b, of_request("tcp:127.0.0.1:9", (2, 3),
                                                '<openflow:dl_type value="0x800"/>'), Options())
    assert err.value.code is GeniCode.UNAVAILABLE
    assert f"overlaps slice {a}" in err.value.message and "match in_port=1,2" in err.value.message

    # A disjoint flowspace is fine alongside.
    [sliver_b] = aggregate.allocate(ALICE, b, of_request("tcp:127.0.0.1:9", (3, 4)),
                                    Options()).slivers
    assert driver.observed() == []         # Allocate touches no switch

    try:
        aggregate.provision(ALICE, [a], Options())
        drain()
        [info] = aggregate.status(ALICE, [a], Options()).slivers
        assert info.operational_status == "geni_ready", info
        assert ctl.wait_for("ports")[0]["ports"] == [1, 2]
        assert in_ns(1, "ping", "-c", "3", "-i", "0.2", "-W", "1", "-q", HOSTS[2],
                     check=False).returncode == 0
        assert [o.sliver_urn for o in driver.observed()] == [sliver_a.sliver_urn]
    finally:
        aggregate.delete(ALICE, [a], Options())
        aggregate.delete(ALICE, [b], Options())
        drain()
    assert driver.observed() == []
    assert [br for br in topology.ovs.client().bridges() if br != PHYS] == []
    assert sliver_b.sliver_urn
