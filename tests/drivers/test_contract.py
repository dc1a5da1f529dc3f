"""The driver contract, checked the same way over every driver (as nova's _VirtDriverTestCase
does over its virt drivers): pure admission, idempotent provision and delete, a read-only
`observed`, release of orphans, and status read back by a new driver object (a restarted
worker) from what the substrate and the driver's records hold.

Each case builds its driver twice from one configuration (`make`), so the second object knows
only what the first left on the substrate. Drivers that need root (namespaces, cgroups, OVS,
libvirt's test driver with a Dom0 namespace) are marked `root`.
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from drivers.base import (
    LINK_PROPERTIES,
    Capabilities,
    OperationalState,
    ResourceKind,
    SliverSpec,
    SubstrateDriver,
    Usage,
)
from tests.conftest import require_tool
from tests.drivers.openflow.conftest import ovs, topology  # noqa: F401 - fixtures of the OVS case


@dataclass
class Case:
    make: Callable[[], SubstrateDriver]      # the same configuration every call
    spec: SliverSpec                         # a sliver the driver admits on an empty component


def _fake(tmp_path, request) -> Case:
    from tests.drivers.test_fake import make, spec

    return Case(lambda: make(tmp_path, nodes=1), spec(1))


def _netfpga(tmp_path, request) -> Case:
    from tests.drivers.netfpga.test_netfpga import make, vdp

    return Case(lambda: make(tmp_path), vdp(1))


def _xen(tmp_path, request) -> Case:
    from drivers.xen import XenDriver
    from tests.drivers.xen.conftest import AUTH, vm

    netns = f"c14x{os.getpid() % 100000}"
    subprocess.run([require_tool("ip"), "netns", "add", netns], check=True)
    _cleanups.append(lambda: subprocess.run(["ip", "netns", "del", netns], check=False))
    config = {"state_dir": str(tmp_path / "xen"), "dom0_netns": netns}
    return Case(lambda: XenDriver(dict(config), [{"name": "xen1"}], authority=AUTH), vm(1))


def _vserver(tmp_path, request) -> Case:
    from tests.drivers.vserver.conftest import make_driver
    from tests.drivers.vserver.helpers import node

    first = make_driver(tmp_path)
    prefix = first.settings.name_prefix
    made = iter([first])
    return Case(lambda: next(made, None) or make_driver(tmp_path, name_prefix=prefix),
                node("contract", []))


def _openflow(tmp_path, request) -> Case:
    from tests.drivers.openflow.specs import sliver, spec
    from tests.drivers.openflow.test_driver import CTL, make

    topology = request.getfixturevalue("topology")     # a real OVS switch (module-scoped)
    return Case(lambda: make(topology), spec("contract", sliver(CTL, (1, 2))))


CASES = {
    "fake": (_fake, ()),
    "netfpga": (_netfpga, ()),
    "xen": (_xen, (pytest.mark.root,)),
    "vserver": (_vserver, (pytest.mark.root, pytest.mark.slow)),
    "openflow": (_openflow, (pytest.mark.root,)),
}
_cleanups: list[Callable[[], object]] = []


@pytest.fixture(params=[pytest.param(name, marks=marks) for name, (_, marks) in CASES.items()])
def case(request, tmp_path) -> Iterator[Case]:
    built = CASES[request.param][0](tmp_path, request)
    drivers: list[SubstrateDriver] = []
    make = built.make

    def tracked() -> SubstrateDriver:
        d = make()
        drivers.append(d)
        return d

    built.make = tracked
    try:
        yield built
    finally:
        for d in drivers:
            for item in d.observed():
                try:
                    d.release(item.handle)
                except Exception:   # noqa: BLE001 - best effort after a failed test
                    pass
            d.close()
        while _cleanups:
            _cleanups.pop()()


def _observed(d: SubstrateDriver) -> set[tuple[str, str | None]]:
    return {(o.handle, o.sliver_urn) for o in d.observed()}


def test_capabilities_are_declared_not_probed(case):
    d = case.make()
    assert isinstance(d.capabilities, Capabilities) and d.capabilities.actions
    # what a driver declares, it has
    if d.capabilities.routes:
        assert callable(getattr(d, "check_routes")) and callable(getattr(d, "set_routes"))
    if d.capabilities.images:
        assert callable(getattr(d, "create_image"))
    # a hybrid router's CPU port: the plane that has one, the control plane plugged into it
    assert callable(getattr(d, "control_port", None)) == d.capabilities.cpu_ports
    assert callable(getattr(d, "plug_control_port", None)) == d.capabilities.control_ports
    assert callable(getattr(d, "switch_wires", None)) == d.capabilities.links_through_switch
    # the link properties it shapes are RSpec ones, and only a driver that carries links (of
    # its own slivers, or through its switches) has any
    assert set(d.capabilities.link_properties) <= set(LINK_PROPERTIES)
    assert d.capabilities.links or d.capabilities.links_through_switch or \
        not d.capabilities.link_properties


def test_admission_is_pure_and_repeatable(case):
    d = case.make()
    before = _observed(d)
    usage = Usage(case.spec.component_id)
    first, second = d.admit(case.spec, usage), d.admit(case.spec, usage)
    assert first.ok, first.reason
    assert first == second
    assert _observed(d) == before                      # nothing made on the substrate
    unknown = d.admit(SliverSpec(sliver_urn=case.spec.sliver_urn, slice_urn=case.spec.slice_urn,
                                 client_id="x", kind=ResourceKind.NODE,
                                 component_id="urn:publicid:IDN+nowhere+node+none"), usage)
    assert not unknown.ok and unknown.reason_code == "BADARGS"


def test_provision_and_delete_are_idempotent(case):
    d = case.make()
    first = d.provision(case.spec)
    again = d.provision(case.spec)
    assert first.state == again.state
    owned = [o for o in d.observed() if o.sliver_urn == case.spec.sliver_urn]
    assert owned, "the provisioned sliver is observed"
    assert d.status(case.spec) in (OperationalState.NOTREADY, OperationalState.READY,
                                   OperationalState.CONFIGURING)
    d.delete(case.spec)
    d.delete(case.spec)                                # no error when already gone
    assert not [o for o in d.observed() if o.sliver_urn == case.spec.sliver_urn]


def test_observed_is_read_only(case):
    d = case.make()
    d.provision(case.spec)
    state = d.status(case.spec)
    seen = _observed(d)
    assert _observed(d) == seen and _observed(d) == seen
    assert d.status(case.spec) == state


def test_orphans_are_released(case):
    d = case.make()
    d.provision(case.spec)
    (orphan,) = [o for o in d.observed() if o.sliver_urn == case.spec.sliver_urn]
    d.release(orphan.handle)                           # what the reconciler does
    assert orphan.handle not in {o.handle for o in d.observed()}


def test_status_survives_a_restart_of_the_driver_object(case):
    d = case.make()
    d.provision(case.spec)
    state = d.status(case.spec)
    d.close()
    restarted = case.make()
    assert restarted.status(case.spec) == state
    assert case.spec.sliver_urn in {o.sliver_urn for o in restarted.observed()}
