"""Real OVS (userspace datapath) + network namespaces + os-ken controllers for the driver tests.

A private ovsdb-server/ovs-vswitchd runs for the whole session under a temporary directory; each
test module gets a physical bridge with four hosts (namespaces `gofh1`..`gofh4`, wired to ports
1..4 through veths `gofv1`..`gofv4`). Everything is torn down at the end, also on failure.
Names start with `gof` so they never meet the vserver driver's namespaces and veths.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivers.inventory import parse_inventory
from drivers.openflow import OpenFlowDriver
from drivers.ovs import OVSInstance, missing_tools
from tests.support import exited, wait_until

ROOT = Path(__file__).resolve().parents[3]
AUTHORITY = "geni-am:oftest"
PHYS = "gofbr0"
PHYS_DPID = "00:00:00:00:00:00:0a:01"
HOSTS = {1: "10.61.1.1", 2: "10.61.1.2", 3: "10.61.2.3", 4: "10.61.2.4"}
PREFIX_LEN = 16


def sh(*argv: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc


def ns(i: int) -> str:
    return f"gofh{i}"


def in_ns(i: int, *argv: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", ns(i), *argv, check=check, timeout=timeout)


@pytest.fixture(scope="session")
def ovs() -> Iterator[OVSInstance]:
    missing = missing_tools() + [t for t in ("ip", "ethtool", "ping") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"tools missing for the OpenFlow tests: {', '.join(missing)} "
                    "(apt-get install openvswitch-switch ethtool iputils-ping)")
    if os.geteuid() != 0:
        pytest.fail("the OpenFlow driver tests need root (namespaces, veths, OVS)")
    rundir = tempfile.mkdtemp(prefix="gof-ovs-")
    inst = OVSInstance(rundir)
    try:
        inst.start()
        yield inst
    finally:
        inst.stop()
        shutil.rmtree(rundir, ignore_errors=True)


@dataclass
class Topology:
    ovs: OVSInstance
    macs: dict[int, str]

    def inventory_toml(self, name_prefix: str = "gof") -> str:
        return f"""
[drivers.openflow]
ovs_db = "{self.ovs.db}"
name_prefix = "{name_prefix}"

[[components]]
name = "sw1"
driver = "openflow"
isolation = "flowspace"
sliver_types = ["openflow-flowspace"]
dpid = "{PHYS_DPID}"
[components.extra]
bridge = "{PHYS}"
"""

    def driver(self) -> OpenFlowDriver:
        inv = parse_inventory(self.inventory_toml())
        return OpenFlowDriver(inv.drivers["openflow"], list(inv.components["openflow"]),
                              authority=AUTHORITY)


def _cleanup_hosts() -> None:
    for i in HOSTS:
        sh("ip", "netns", "del", ns(i), check=False)
        sh("ip", "link", "del", f"gofv{i}", check=False)


@pytest.fixture(scope="module")
def topology(ovs: OVSInstance) -> Iterator[Topology]:
    _cleanup_hosts()
    client = ovs.client()
    try:
        ovs.add_bridge(PHYS, dpid=PHYS_DPID)
        macs = {}
        for i, addr in HOSTS.items():
            sh("ip", "netns", "add", ns(i))
            sh("ip", "link", "add", f"gofv{i}", "type", "veth", "peer", "name", "eth0",
               "netns", ns(i))
            in_ns(i, "ip", "link", "set", "lo", "up")
            in_ns(i, "ip", "addr", "add", f"{addr}/{PREFIX_LEN}", "dev", "eth0")
            in_ns(i, "ip", "link", "set", "eth0", "up")
            # TCP through the netdev datapath hangs unless TX checksum offload is off.
            in_ns(i, "ethtool", "-K", "eth0", "tx", "off")
            sh("ip", "link", "set", f"gofv{i}", "up")
            client.vsctl("add-port", PHYS, f"gofv{i}", "--", "set", "interface", f"gofv{i}",
                         f"ofport_request={i}")
            macs[i] = in_ns(i, "cat", "/sys/class/net/eth0/address").stdout.strip()
        yield Topology(ovs, macs)
    finally:
        _cleanup_hosts()
        client.vsctl("--if-exists", "del-br", PHYS)
        for br in client.bridges():      # slice bridges a failed test left behind
            if br.startswith("gof"):
                client.vsctl("--if-exists", "del-br", br)
        for row in client.find("Port", ["name"]):
            if row["name"].startswith("gof"):
                client.vsctl("--if-exists", "del-port", row["name"])


def iperf_mbps(iperf: str, server_ns: str, client_ns: str, address: str) -> float:
    """iperf3 TCP for 4 s from namespace `client_ns` to a one-shot server in `server_ns` at
    `address`: the Mb/s received."""
    import json

    from tests.support import wait_until
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, iperf, "-s", "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: ":5201" in sh("ip", "netns", "exec", server_ns, "ss", "-ltn").stdout,
                   "iperf3 listening")
        out = sh("ip", "netns", "exec", client_ns, iperf, "-c", address, "-t", "4", "-J",
                 check=False, timeout=40)
        result = json.loads(out.stdout or "{}")
        assert "error" not in result and out.returncode == 0, result.get("error", out.stderr)
        return result["end"]["sum_received"]["bits_per_second"] / 1e6
    finally:
        server.kill()
        server.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Controller:
    """One os-ken slice controller in a subprocess, recording to a JSON-lines file."""

    def __init__(self, tmp: Path, name: str):
        self.port = free_port()
        self.record = tmp / f"{name}.jsonl"
        self.log = open(tmp / f"{name}.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.drivers.openflow.osken_app", str(self.port),
             str(self.record)], cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        def listening() -> bool:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        wait_until(listening, f"controller {name} to listen on {self.port}", 20,
                   ignoring=(OSError,),
                   give_up=exited(self.proc, lambda: (tmp / f"{name}.log").read_text()[-2000:]))

    @property
    def url(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    def events(self, kind: str | None = None) -> list[dict]:
        import json
        if not self.record.exists():
            return []
        out = [json.loads(line) for line in self.record.read_text().splitlines() if line]
        return [e for e in out if kind is None or e["event"] == kind]

    def wait_for(self, kind: str, timeout: float = 10.0) -> list[dict]:
        return wait_until(lambda: self.events(kind),
                          f"a {kind!r} event at the controller on {self.port}", timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.fixture
def controllers(tmp_path: Path) -> Iterator[Callable[[str], Controller]]:
    made: list[Controller] = []

    def start(name: str) -> Controller:
        c = Controller(tmp_path, name)
        made.append(c)
        return c

    try:
        yield start
    finally:
        for c in made:
            c.stop()
