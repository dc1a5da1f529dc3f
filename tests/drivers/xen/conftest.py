"""A Xen driver over libvirt's test driver, with a network namespace standing in for Dom0."""
from __future__ import annotations

import os
import subprocess

import pytest

from drivers.base import DriverError, InterfaceSpec, ResourceKind, SliverSpec
from drivers.xen import XenDriver
from tests.conftest import require_tool

AUTH = "geni-am:xentest"


def host_urn(name: str) -> str:
    return f"urn:publicid:IDN+{AUTH}+node+{name}"


@pytest.fixture
def dom0_netns():
    ip = require_tool("ip")
    name = f"gxdom0-{os.getpid()}-{os.urandom(3).hex()}"
    subprocess.run([ip, "netns", "add", name], check=True)
    yield name
    subprocess.run([ip, "netns", "del", name], check=False)


@pytest.fixture
def make_xen(tmp_path, dom0_netns):
    made = []

    def make(**config) -> XenDriver:
        config.setdefault("state_dir", str(tmp_path / "xen"))
        config.setdefault("dom0_netns", dom0_netns)
        hosts = config.pop("hosts", [{"name": "xen1"}])
        d = XenDriver(config, hosts, authority=AUTH)
        made.append(d)
        return d

    yield make
    for d in made:
        try:
            for obs in d.observed():
                d.release(obs.handle)
        except DriverError:
            pass                      # a driver built to fail (unreachable libvirt)
        d.close()


def vm(n: int, host: str = "xen1", **kw) -> SliverSpec:
    kw.setdefault("sliver_type", "xen-vm")
    return SliverSpec(sliver_urn=f"urn:publicid:IDN+{AUTH}+sliver+vm{n}-{os.getpid()}",
                      slice_urn=f"urn:publicid:IDN+{AUTH}+slice+s", client_id=f"vm{n}",
                      kind=ResourceKind.NODE, component_id=host_urn(host), **kw)


def iface(client_id: str, name: str = "eth1", ip: str | None = None, mac: str | None = None):
    return InterfaceSpec(client_id=client_id, name=name,
                         ips=((ip, "255.255.255.0"),) if ip else (), mac=mac)
