"""Link shaping on an Open vSwitch switch (userspace datapath): a link through the switch
metered at 10 Mb/s each way (OpenFlow meters, `OVSClient.set_meter`) reads 9-11 Mb/s with
iperf3; the same switch unmetered carries far more, so the meter is what limits it."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

from drivers.ovs import OVSInstance, missing_tools
from tests.conftest import require_tool
from tests.drivers.openflow.conftest import iperf_mbps

pytestmark = pytest.mark.root
P = f"lm{os.getpid() % 100000}"


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def switch():
    """A private vswitchd in a namespace of its own, one netdev bridge, two host namespaces
    wired to ports 1 and 2."""
    assert not missing_tools(), missing_tools()
    iperf = require_tool("iperf3")
    names = [f"{P}sw", f"{P}h1", f"{P}h2"]
    rundir = tempfile.mkdtemp(prefix="geniam-meter-")
    for n in names:
        sh("ip", "netns", "add", n)
    inst = OVSInstance(rundir, netns=names[0])
    try:
        inst.start()
        inst.add_bridge("br0")
        client = inst.client()
        for i in (1, 2):
            host, port = names[i], f"{P}p{i}"
            sh("ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", host)
            sh("ip", "link", "set", port, "netns", names[0])
            sh("ip", "-n", host, "addr", "add", f"10.98.0.{i}/24", "dev", "eth0")
            for ns, dev in ((host, "eth0"), (names[0], port)):
                sh("ip", "-n", ns, "link", "set", dev, "up")
                # TCP through the userspace datapath needs checksums computed in software
                sh("ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off")
            client.vsctl("add-port", "br0", port, "--", "set", "interface", port,
                         f"ofport_request={i}")
        yield client, names, iperf
    finally:
        try:
            inst.stop()
        finally:
            for n in names:
                sh("ip", "netns", "del", n, check=False)
            shutil.rmtree(rundir, ignore_errors=True)


def _mbps(names, iperf: str) -> float:
    return iperf_mbps(iperf, names[2], names[1], "10.98.0.2")


def test_a_metered_switch_link_reads_its_capacity(switch):
    client, names, iperf = switch
    client.add_flows("br0", ["in_port=1,actions=output:2", "in_port=2,actions=output:1"])
    unmetered = _mbps(names, iperf)
    for meter, (src, dst) in ((1, (1, 2)), (2, (2, 1))):
        client.set_meter("br0", meter, 10_000)
        client.add_flows("br0", [f"in_port={src},actions=meter:{meter},output:{dst}"])
    client.set_meter("br0", 1, 10_000)               # a second call modifies, not fails
    metered = _mbps(names, iperf)
    assert 9.0 <= metered <= 11.0, (metered, unmetered)
    assert unmetered > 2 * metered, (metered, unmetered)
