"""A link through the OpenFlow switch with a capacity is shaped on the switch itself (an
OpenFlow drop meter per port of the link, drivers/openflow/links.py): with the link's two
wires taken by hosts 1 and 2, iperf3 across a 10 Mb/s link reads 9-11 Mb/s; an Update
re-shapes it (the meters' rate changes; without a capacity they go); Delete removes the
meters with the flows and ports."""
from __future__ import annotations

import dataclasses

import pytest

from drivers.base import LinkEnd, LinkSpec, OperationalState, ResourceKind, SliverSpec, Usage
from tests.conftest import require_tool
from tests.drivers.openflow import specs
from tests.drivers.openflow.conftest import PHYS, in_ns, iperf_mbps, ns, sh

pytestmark = pytest.mark.root
ADDR = {1: "10.64.1.1", 2: "10.64.1.2"}
SLICE = specs.slice_urn("meters")


def link_spec(driver, kbps: int | None) -> SliverSpec:
    ends = tuple(LinkEnd(sliver_urn=f"urn:publicid:IDN+{specs.AUTHORITY}+sliver+n{i}",
                         node_client_id=f"n{i}", interface_client_id=f"n{i}:if0",
                         component_id=f"urn:publicid:IDN+{specs.AUTHORITY}+node+host{i}")
                 for i in (1, 2))
    return SliverSpec(sliver_urn=f"urn:publicid:IDN+{specs.AUTHORITY}+sliver+ml1",
                      slice_urn=SLICE, client_id="ml1", kind=ResourceKind.LINK,
                      component_id=specs.SW,
                      link=LinkSpec(ends=ends, capacity_kbps=kbps, mode="switch"),
                      params={"attachments": driver.switch_wires(SLICE, "ml1", 2),
                              "switch": "sw1"})


def test_a_link_through_the_switch_is_metered_reshaped_and_unmetered(topology):
    iperf = require_tool("iperf3")
    driver = topology.driver()
    comp = driver.inventory()[0]
    spec = link_spec(driver, 10_000)
    assert driver.admit(spec, Usage(comp.component_id)).ok
    assert "capacity" in driver.link_shaping(comp)
    latency = dataclasses.replace(spec, link=dataclasses.replace(spec.link, latency_ms=5))
    refused = driver.admit(latency, Usage(comp.component_id))
    assert not refused.ok and refused.reason_code == "UNSUPPORTED" and "latency" in refused.reason
    try:
        result = driver.provision(spec)
        assert result.state is OperationalState.READY, result
        assert "metered at 10000 kbit/s per port" in result.resource_status
        tag = driver.naming.link_tag(SLICE, "ml1")
        assert driver.switch_links.rates(PHYS, tag) == [10_000, 10_000]
        for i, wire in zip((1, 2), spec.params["attachments"]):   # the hosts take the wires
            sh("ip", "link", "set", wire, "netns", ns(i))
            in_ns(i, "ip", "addr", "add", f"{ADDR[i]}/24", "dev", wire)
            in_ns(i, "ip", "link", "set", wire, "up")
            in_ns(i, "ethtool", "-K", wire, "tx", "off")
        assert in_ns(1, "ping", "-c", "2", "-i", "0.2", "-W", "2", "-q", ADDR[2],
                     check=False).returncode == 0
        shaped = iperf_mbps(iperf, ns(2), ns(1), ADDR[2])
        print(f"link through the switch metered at 10 Mb/s: iperf3 reads {shaped:.2f} Mb/s")
        assert 9.0 <= shaped <= 11.0, shaped

        wider = link_spec(driver, 20_000)        # Update: the same meters at the new rate
        driver.update(spec, wider)
        assert driver.switch_links.rates(PHYS, tag) == [20_000, 20_000]
        unshaped = link_spec(driver, None)       # ... and without a capacity, no meters
        driver.update(wider, unshaped)
        assert driver.switch_links.rates(PHYS, tag) == [] and \
            tag not in driver.switch_links.meters(PHYS)
        assert driver.status(unshaped) is OperationalState.READY
        driver.update(unshaped, spec)            # shaped again, for Delete to remove
        assert driver.switch_links.rates(PHYS, tag) == [10_000, 10_000]
        moved = dataclasses.replace(spec, params={**spec.params, "attachments": ["x", "y"]})
        with pytest.raises(Exception, match="attachments would change"):
            driver.check_update(spec, moved)
    finally:
        driver.delete(spec)
    assert driver.status(spec) is OperationalState.FAILED
    assert driver.switch_links.meters(PHYS) == {}
    assert "meter=" not in topology.ovs.client().ofctl("dump-meters", PHYS)
