"""Admission (pure), installs and executes inside a sliver, construction errors."""
from __future__ import annotations

import io
import tarfile
from dataclasses import replace

import pytest

from drivers import hostnet
from drivers.base import DriverError, ForwardingMode, OperationalState, UserKeys, Usage
from drivers.inventory import InventoryError
from drivers.vserver import VServerDriver
from rspec.model import Execute, Install
from tests.drivers.vserver.conftest import driven, make_driver
from tests.drivers.vserver.helpers import AUTH, COMPONENT, chain, guest_read, link, node
from tests.support import wait_until


def usage(cpu: float = 0, **used) -> Usage:
    """Usage with `cpu` in cores (the store holds milli-cores)."""
    return Usage(component_id=COMPONENT, used={"cpu_milli": round(cpu * 1000), **used})


def test_latency_and_loss_are_refused_with_the_reason(driver):
    a, b = node("a", [("eth1", "10.1.0.1", "l")]), node("b", [("eth1", "10.1.0.2", "l")])
    adm = driver.admit(link("l", [a, b], latency_ms=10), usage())
    assert not adm.ok and adm.reason_code == "UNSUPPORTED" and "netem" in adm.reason
    adm = driver.admit(link("l", [a, b], loss=0.01), usage())
    assert not adm.ok and adm.reason_code == "UNSUPPORTED" and "police" in adm.reason
    assert driver.admit(link("l", [a, b], kbps=1000), usage()).ok


def test_node_admission(driver):
    spec = node("n", [], cpu=1.0, memory_mb=512)
    adm = driver.admit(spec, usage())
    assert adm.ok and adm.demand == {"cpu_milli": 1000, "memory_mb": 512}
    assert driver.admit(spec, usage(cpu=1.5)).reason_code == "INSUFFICIENT_NODES"
    assert driver.admit(replace(spec, cpu=3.0), usage()).reason_code == "TOOBIG"
    assert driver.admit(replace(spec, sliver_type="xen-vm"), usage()).reason_code == "UNSUPPORTED"
    hyper = driver.admit(replace(spec, params={"isolation": "hypervisor"}), usage())
    assert hyper.reason_code == "UNSUPPORTED" and "shared kernel" in hyper.reason
    dom0 = driver.admit(replace(spec, router=True, forwarding=ForwardingMode.DOM0), usage())
    assert dom0.reason_code == "UNSUPPORTED"
    assert driver.admit(replace(spec, router=True, forwarding=ForwardingMode.GUEST), usage()).ok
    assert driver.admit(replace(spec, disk_image="windows-xp"), usage()).reason_code == "UNSUPPORTED"
    assert driver.admit(replace(spec, exclusive=True), usage()).reason_code == "UNSUPPORTED"
    url = "http://127.0.0.1:6379/x.tgz"        # the host's Redis: never fetched (SSRF)
    refused = driver.admit(replace(spec, installs=(Install(url, "/local"),)), usage())
    assert refused.reason_code == "BADARGS" and repr(url) in refused.reason \
        and "loopback" in refused.reason
    assert driver.admit(replace(spec, installs=(Install("http://93.184.215.14/x.tgz", "/l"),)),
                        usage()).ok
    bad_name = node("n", [("averyveryverylongname", "10.0.0.1", "l")])
    assert driver.admit(bad_name, usage()).reason_code == "BADARGS"
    other = replace(spec, component_id=f"urn:publicid:IDN+{AUTH}+node+nope")
    assert driver.admit(other, usage()).reason_code == "BADARGS"


@pytest.mark.root
def test_install_and_execute_run_inside_the_sliver(tmp_path):
    allowed = tmp_path / "installs"
    allowed.mkdir()
    tarball = allowed / "app.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        data = b"echo from-install\n"
        info = tarfile.TarInfo("app/run.sh")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    spec = node("svc", [], installs=(Install(f"file://{tarball}", "/local"),),
                executes=(Execute("sh", "sh /local/app/run.sh > /out.txt; "
                                        "cat /proc/self/cgroup >> /out.txt; "
                                        "readlink /proc/self/ns/net >> /out.txt"),),
                users=(UserKeys("urn:publicid:IDN+x+user+alice", ("ssh-ed25519 AAAA alice",)),))
    with driven(tmp_path, install_dir=str(allowed)) as driver:
        driver.provision(spec)
        handle = driver.node_handle(spec.sliver_urn)
        text = wait_until(lambda: (t := guest_read(driver, spec, "/out.txt") or "")
                          and "net:" in t and t, "the execute's output", 10)
        assert "from-install" in text
        assert f"cpu:/geni-am/{handle}" in text and f"memory:/geni-am/{handle}" in text
        assert text.strip().splitlines()[-1] != \
            hostnet.run(["readlink", "/proc/self/ns/net"]).strip()
        assert guest_read(driver, spec, "/etc/ssh/authorized_keys/alice") == \
            "ssh-ed25519 AAAA alice\n"
        assert "ctl.sock -- sh -l" in driver.operator_shell(spec.sliver_urn)


@pytest.mark.root
def test_missing_install_fails_precisely(tmp_path):
    allowed = tmp_path / "installs"
    allowed.mkdir()
    spec = node("nofile", [], installs=(Install(f"file://{allowed}/x.tgz", "/local"),))
    with driven(tmp_path, install_dir=str(allowed)) as driver:
        with pytest.raises(DriverError, match="No such file"):
            driver.provision(spec)


def test_construction_refuses_non_root_and_bad_config(tmp_path, monkeypatch):
    with pytest.raises(InventoryError, match="name_prefix"):
        make_driver(tmp_path, name_prefix="far-too-long")
    with pytest.raises(InventoryError, match="unknown key"):
        make_driver(tmp_path, colour="blue")
    with pytest.raises(InventoryError, match="isolation"):
        from drivers.base import IsolationClass
        VServerDriver({"state_dir": str(tmp_path)}, [{"name": "x", "driver": "vserver",
                                                      "isolation": IsolationClass.HYPERVISOR}],
                      authority=AUTH)
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(DriverError, match="must run as root"):
        make_driver(tmp_path)
    monkeypatch.undo()
    monkeypatch.setattr("shutil.which", lambda tool: None if tool == "tc" else f"/usr/bin/{tool}")
    with pytest.raises(DriverError, match="needs tc"):
        make_driver(tmp_path)


def test_inventory_component(driver):
    (comp,) = driver.inventory()
    assert comp.isolation.value == "container" and comp.sliver_types[0].name == "vserver-container"
    assert comp.capacity == {"cpu_milli": 2000, "memory_mb": 4096}
    assert comp.sliver_types[0].disk_images[0].os == "Linux"
    assert driver.capabilities.links


@pytest.mark.root
def test_update_users_rewrites_keys(driver):
    c = chain()
    driver.provision(c.h1)
    new = replace(c.h1, users=(UserKeys("urn:publicid:IDN+x+user+bob", ("ssh-rsa BBBB bob",)),))
    assert driver.perform(new, "geni_update_users") is OperationalState.READY
    assert guest_read(driver, c.h1, "/etc/ssh/authorized_keys/bob") == "ssh-rsa BBBB bob\n"
    with pytest.raises(DriverError, match="not supported"):
        driver.perform(c.h1, "geni_reboot")
