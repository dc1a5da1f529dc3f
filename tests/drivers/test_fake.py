"""The fake substrate: idempotency, cross-process state, fault injection, admission, orphans."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from drivers.base import (
    Action,
    DriverError,
    ForwardingMode,
    InterfaceSpec,
    LinkSpec,
    OperationalState,
    ResourceKind,
    SliverSpec,
    Usage,
    UserKeys,
)
from drivers.fake import CRASH_EXIT_CODE, FakeDriver, handle_for
from drivers.inventory import InventoryError

AUTH = "geni-am:test"


def urn(name: str) -> str:
    return f"urn:publicid:IDN+{AUTH}+node+{name}"


def make(tmp_path, **config) -> FakeDriver:
    config.setdefault("nodes", 2)
    config.setdefault("state_dir", str(tmp_path / "substrate"))
    return FakeDriver(config, [], authority=AUTH)


def spec(n: int = 1, comp: str = "fake1", **kw) -> SliverSpec:
    kw.setdefault("sliver_type", "xen-vm")
    return SliverSpec(sliver_urn=f"urn:publicid:IDN+{AUTH}+sliver+{n}", slice_urn="urn:s",
                      client_id=f"n{n}", kind=ResourceKind.NODE, component_id=urn(comp), **kw)


def test_provision_is_idempotent_and_counted_once(tmp_path):
    d = make(tmp_path)
    s = spec(interfaces=(InterfaceSpec("n1:if0", "eth1", mac="02:00:00:00:00:01"),),
             users=(UserKeys("urn:publicid:IDN+x+user+alice", ("ssh-rsa AAA",)),))
    r1 = d.provision(s)
    r2 = d.provision(s)
    assert r1 == r2
    assert r1.state is OperationalState.NOTREADY and r1.handle == handle_for(s.sliver_urn)
    assert r1.macs == {"n1:if0": "02:00:00:00:00:01"}
    assert r1.logins[0].username == "alice"
    c = d.counters(s.sliver_urn)
    assert (c.created, c.provision_calls) == (1, 2)


def test_delete_is_idempotent_and_status_follows(tmp_path):
    d = make(tmp_path)
    s = spec()
    d.provision(s)
    assert d.status(s) is OperationalState.NOTREADY
    d.delete(s)
    d.delete(s)
    assert d.status(s) is OperationalState.FAILED
    assert d.counters(s.sliver_urn).deletes == 1
    assert d.observed() == []


def test_state_is_shared_by_drivers_on_one_state_dir(tmp_path):
    worker, server = make(tmp_path), make(tmp_path)
    s = spec()
    worker.provision(s)
    assert server.status(s) is OperationalState.NOTREADY
    assert server.perform(s, Action.START.value) is OperationalState.READY
    assert worker.status(s) is OperationalState.READY
    assert worker.perform(s, Action.UPDATE_USERS.value) is OperationalState.READY
    assert worker.perform(s, Action.STOP.value) is OperationalState.NOTREADY
    server.provision(s)
    assert worker.counters(s.sliver_urn).created == 1


def test_perform_errors(tmp_path):
    d = make(tmp_path)
    with pytest.raises(DriverError, match="does not exist"):
        d.perform(spec(), Action.START.value)
    d.provision(spec())
    with pytest.raises(DriverError, match="not supported"):
        d.perform(spec(), "geni_explode")


def test_failure_rate_is_reproducible_with_a_seed(tmp_path):
    def outcomes(sub):
        d = make(tmp_path / sub, failure_rate=0.5, seed=42)
        out = []
        for i in range(40):
            try:
                d.provision(spec(i))
                out.append(True)
            except DriverError as exc:
                assert not exc.transient
                out.append(False)
        return out
    first, second = outcomes("a"), outcomes("b")
    assert first == second
    assert 5 < first.count(False) < 35


def test_injected_failures_leave_nothing_and_transient_is_flagged(tmp_path):
    d = make(tmp_path, transient_failure_rate=1.0)
    with pytest.raises(DriverError) as err:
        d.provision(spec())
    assert err.value.transient
    assert d.observed() == [] and d.counters(spec().sliver_urn).provision_calls == 0
    hard = make(tmp_path, failure_rate=1.0)
    with pytest.raises(DriverError) as err:
        hard.perform(spec(), Action.START.value)
    assert not err.value.transient


def test_latency_is_applied(tmp_path):
    d = make(tmp_path, latency_s=0.05)
    t0 = time.monotonic()
    d.provision(spec())
    assert time.monotonic() - t0 >= 0.05


def test_observed_lists_orphans_and_release_removes_them(tmp_path):
    d = make(tmp_path)
    d.provision(spec())
    orphan = d.make_orphan(urn("fake2"))
    seen = {o.handle: o for o in d.observed()}
    assert seen[orphan].sliver_urn is None
    assert seen[handle_for(spec().sliver_urn)].sliver_urn == spec().sliver_urn
    d.release(orphan)
    assert [o.handle for o in d.observed()] == [handle_for(spec().sliver_urn)]


CRASH_SCRIPT = """
import json, sys
from drivers.base import ResourceKind, SliverSpec
from drivers.fake import FakeDriver
d = FakeDriver({"nodes": 1, "state_dir": sys.argv[1], **json.loads(sys.argv[2])}, [], authority="geni-am:test")
d.provision(SliverSpec("urn:publicid:IDN+geni-am:test+sliver+1", "urn:s", "n1", ResourceKind.NODE,
                       "urn:publicid:IDN+geni-am:test+node+fake1", sliver_type="xen-vm"))
print("survived")
"""


def _run_crash(tmp_path, config: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(tmp_path / "substrate"), config],
                          capture_output=True, text=True, timeout=60)


def test_crash_switch_kills_the_process_mid_provision(tmp_path):
    proc = _run_crash(tmp_path, '{"crash_on": "provision"}')
    assert proc.returncode == CRASH_EXIT_CODE and "survived" not in proc.stdout
    d = make(tmp_path)
    s = spec()
    # crash_point "after": the substrate changed but the caller never heard; a retry converges
    assert d.status(s) is OperationalState.NOTREADY
    d.provision(s)
    assert d.counters(s.sliver_urn).created == 1


def test_crash_can_be_armed_at_run_time_before_the_change(tmp_path):
    d = make(tmp_path)
    d.arm_crash("provision", "before")
    proc = _run_crash(tmp_path, "{}")
    assert proc.returncode == CRASH_EXIT_CODE
    assert d.observed() == []
    d.disarm_crash()
    assert _run_crash(tmp_path, "{}").returncode == 0
    assert len(d.observed()) == 1


# ---- admission -------------------------------------------------------------------------------------

def test_admission_names_component_and_shortfall(tmp_path):
    d = make(tmp_path, cpu=4)
    used = Usage(urn("fake1"), {"cpu_milli": 3500})
    adm = d.admit(spec(cpu=1), used)
    assert not adm.ok and adm.reason_code == "INSUFFICIENT_NODES"
    assert adm.reason == f"component {urn('fake1')} has 0.5 of 4 cpu free; 1 requested"
    ok = d.admit(spec(cpu=0.5, memory_mb=256), used)
    assert ok.ok and ok.demand == {"cpu_milli": 500, "memory_mb": 256}
    assert d.admit(spec(cpu=5), Usage(urn("fake1"))).reason_code == "TOOBIG"


def test_admission_isolation_and_guest_router_limit(tmp_path):
    d = make(tmp_path, isolation=["container", "hypervisor"], guest_router_limit=2)
    assert d.admit(spec(comp="fake1"), Usage(urn("fake1"))).reason_code == "UNSUPPORTED"
    full = Usage(urn("fake2"), {"guest_routers": 2})
    guest = d.admit(spec(comp="fake2", router=True, forwarding=ForwardingMode.GUEST), full)
    assert not guest.ok and "limit is 2" in guest.reason
    dom0 = d.admit(spec(comp="fake2", router=True, forwarding=ForwardingMode.DOM0), full)
    assert dom0.ok and "guest_routers" not in dom0.demand


def test_admission_exclusive(tmp_path):
    d = make(tmp_path)
    busy = Usage(urn("fake1"), {"cpu_milli": 1000}, (spec(9),))
    assert d.admit(spec(exclusive=True), busy).reason_code == "INSUFFICIENT_NODES"
    held = Usage(urn("fake1"), exclusive_holder="urn:other-slice")
    assert not d.admit(spec(), held).ok


def test_vlan_claims_on_the_fake_switch(tmp_path):
    d = make(tmp_path)
    sw = urn("fake-switch")
    link = SliverSpec("urn:l1", "urn:s", "l1", ResourceKind.LINK, sw,
                      link=LinkSpec(ends=(), vlan_tag=200, mode="vlan"))
    adm = d.admit(link, Usage(sw))
    assert adm.ok and adm.claims == ("vlan:200",)
    again = d.admit(link, Usage(sw, slivers=(link,)))
    assert again.reason_code == "VLAN_UNAVAILABLE"


def test_bad_config_names_table_and_key(tmp_path):
    with pytest.raises(InventoryError) as err:
        make(tmp_path, failure_rate=2)
    assert err.value.table == "drivers.fake" and err.value.key == "failure_rate"
    with pytest.raises(InventoryError, match="crash_on"):
        make(tmp_path, crash_on="reboot")
    with pytest.raises(InventoryError, match="'colour'"):
        make(tmp_path, colour="blue")


def test_twenty_tenths_of_a_core_fit_two_cores_exactly(tmp_path):
    """Capacity is accounted in whole milli-cores: in floating point, 19 x 0.1 + 0.1 > 2.0
    refused the 20th container of 0.1 core on a 2-core node."""
    d = make(tmp_path, cpu=2)
    used = 0.0                                       # as the store's column sums reservations
    for n in range(20):
        adm = d.admit(spec(n, cpu=0.1, memory_mb=4), Usage(urn("fake1"), {"cpu_milli": used}))
        assert adm.ok, (n, adm.reason)
        used += adm.demand["cpu_milli"]
    full = d.admit(spec(21, cpu=0.1, memory_mb=4), Usage(urn("fake1"), {"cpu_milli": used}))
    assert not full.ok and full.reason_code == "INSUFFICIENT_NODES"
    assert "has 0 of 2 cpu free; 0.1 requested" in full.reason


def test_availability_comes_from_every_resource_of_the_component(tmp_path):
    d = make(tmp_path, cpu=2)
    comp = next(c for c in d.inventory() if c.name == "fake1")
    assert d.available(comp, None)
    assert d.available(comp, Usage(comp.component_id, {"cpu_milli": 1900}))
    assert not d.available(comp, Usage(comp.component_id, {"cpu_milli": 2000}))
    assert not d.available(comp, Usage(comp.component_id, {"guest_routers": 10}))   # routers full
    assert not d.available(comp, Usage(comp.component_id, {}, exclusive_holder="urn:s"))


def test_refusal_codes_are_an_enum():
    from drivers.base import Admission, Refusal
    assert Admission.refuse("x", Refusal.TOOBIG).reason_code == "TOOBIG"
    with pytest.raises(ValueError):
        Admission.refuse("x", "TOO_BIG")             # a misspelt code fails where it is written
    from am.errors import GeniCode
    assert {r.value for r in Refusal} <= {c.name for c in GeniCode}   # each is a GENI code
