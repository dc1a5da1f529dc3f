"""What the driver enforces, measured: link capacity (tc tbf), CPU share, memory and the number
of tasks (cgroups)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from drivers.base import DriverError
from drivers.inventory import InventoryError
from drivers.vserver import VServerDriver
from drivers.vserver.cgroups import CgroupLayout
from drivers.vserver.config import parse_settings
from tests.drivers.vserver.conftest import driven, make_driver
from tests.drivers.vserver.helpers import AUTH, WORKLOADS, guest_script, link, node
from tests.support import wait_until

pytestmark = pytest.mark.root

FORKBOMB = Path(__file__).with_name("forkbomb.py")


def _pair(driver, kbps=None, cpu=None, memory_mb=None, tag=""):
    a = node(f"a{tag}", [("eth1", "10.77.0.1", f"ab{tag}")], cpu=cpu, memory_mb=memory_mb)
    b = node(f"b{tag}", [("eth1", "10.77.0.2", f"ab{tag}")], cpu=cpu, memory_mb=memory_mb)
    ab = link(f"ab{tag}", [a, b], kbps=kbps)
    for spec in (a, b, ab):
        driver.provision(spec)
    return a, b, ab


def _transfer_kbps(driver, a, b, seconds=2.5) -> float:
    rx = subprocess.Popen(guest_script(driver, b, WORKLOADS, "recv", "5001", "0.5"),
                          stdout=subprocess.PIPE, text=True)
    assert rx.stdout.readline().strip() == "listening"
    tx = subprocess.run(guest_script(driver, a, WORKLOADS, "send", "10.77.0.2",
                                                          "5001", str(seconds)), timeout=30)
    assert tx.returncode == 0
    out, _ = rx.communicate(timeout=30)
    return float(out.strip())


def test_link_capacity_holds_within_15_percent(driver):
    a, b, _ = _pair(driver, kbps=8000)
    measured = _transfer_kbps(driver, a, b)
    print(f"\nlink shaped to 8000 kbit/s: measured {measured:.0f} kbit/s "
          f"({(measured / 8000 - 1) * 100:+.1f} %)")
    assert abs(measured - 8000) <= 0.15 * 8000


def test_unshaped_link_is_not_limited(driver):
    a, b, _ = _pair(driver)
    assert _transfer_kbps(driver, a, b, seconds=1.0) > 100_000


def _spin(driver, spec, seconds=2.0) -> int:
    out = subprocess.run(guest_script(driver, spec, WORKLOADS, "spin", str(seconds)),
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return int(out)


def test_cpu_hog_takes_no_more_than_its_share(driver):
    """A hog (3 busy processes) and a well-behaved worker, each a 0.5-core container."""
    good = node("good", [], cpu=0.5)
    bad = node("bad", [], cpu=0.5)
    for spec in (good, bad):
        driver.provision(spec)
    alone = _spin(driver, good)
    procs = driver.cgroups.dir("cpu", driver.node_handle(bad.sliver_urn)) / "cgroup.procs"
    before = len(procs.read_text().split())
    hog = subprocess.Popen(guest_script(driver, bad, WORKLOADS, "hog", "3", "3"),
                           stdout=subprocess.PIPE, text=True)
    wait_until(lambda: len(procs.read_text().split()) >= before + 3, "the hog's processes",
               timeout=15)
    beside = _spin(driver, good)
    hog_cpu = float(hog.communicate(timeout=30)[0])
    loss = (1 - beside / alone) * 100
    throttled = (driver.cgroups.dir("cpu", driver.node_handle(bad.sliver_urn)) / "cpu.stat"
                 ).read_text()
    print(f"\nwell-behaved 0.5-core container: {alone} loops alone, {beside} beside the hog "
          f"({loss:.1f} % loss); hog (3 procs, 0.5 core) got {hog_cpu:.2f} CPU-s in 3 s; "
          f"{throttled.split()[0:4]}")
    assert hog_cpu <= 0.5 * 3 * 1.15, "the hog escaped its CPU quota"
    assert loss < 15, f"well-behaved container lost {loss:.1f} % beside the hog"


def test_memory_limit_kills_an_allocation_over_it(driver):
    small = node("small", [], memory_mb=64)
    driver.provision(small)
    ok = subprocess.run(guest_script(driver, small, WORKLOADS, "eat", "16"),
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and "survived" in ok.stdout
    over = subprocess.run(guest_script(driver, small, WORKLOADS, "eat", "200"),
                          capture_output=True, text=True, timeout=30)
    assert over.returncode in (-9, 137) and "survived" not in over.stdout
    limits = driver.cgroups.limits(driver.node_handle(small.sliver_urn))
    assert limits["memory_limit_bytes"] == 64 * 1024 * 1024
    # no cores asked: a fair share (weight, no ceiling), not a reservation
    assert limits["cfs_quota_us"] == -1 and limits["shares"] == 1024


@pytest.mark.parametrize("cpu, quota", [(0.25, 25_000), (1.5, 150_000)])
def test_cpu_quota_follows_request(driver, cpu, quota):
    spec = node(f"q{int(cpu * 100)}", [], cpu=cpu)
    driver.provision(spec)
    assert driver.cgroups.limits(driver.node_handle(spec.sliver_urn))["cfs_quota_us"] == quota


# ---- the number of tasks (pids cgroup) ---------------------------------------------------------

@pytest.fixture
def small_driver(tmp_path):
    """A driver whose slivers may hold 64 tasks each."""
    with driven(tmp_path, default_pids_max=64) as drv:
        yield drv


def _events_max(drv, handle: str) -> int:
    """How often a fork in the sliver failed at pids.max (the kernel's own count)."""
    events = (drv.cgroups.dir("pids", handle) / "pids.events").read_text().split()
    return int(events[events.index("max") + 1])


def _spawn(drv, spec, n: int) -> float:
    out = subprocess.run(guest_script(drv, spec, FORKBOMB, "spawn", str(n)),
                         capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert int(out[0]) == n
    return float(out[1])


def test_fork_bomb_is_held_at_its_pids_max_and_the_neighbour_still_forks(small_driver):
    drv = small_driver
    bomb, neighbour = node("bomb", [], memory_mb=512), node("calm", [])
    for spec in (bomb, neighbour):
        drv.provision(spec)
    hb, hn = (drv.node_handle(s.sliver_urn) for s in (bomb, neighbour))
    assert drv.cgroups.limits(hb)["pids_max"] == drv.cgroups.limits(hn)["pids_max"] == 64
    assert drv.state.read(hb)["pids_max"] == 64
    alone = _spawn(drv, neighbour, 30)
    proc = subprocess.Popen(guest_script(drv, bomb, FORKBOMB, "bomb", "6"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        samples = []

        def at_limit() -> bool:
            samples.append(drv.cgroups.pids_current(hb))
            return _events_max(drv, hb) > 0
        wait_until(at_limit, "the bomb to reach pids.max", 30, 0.01,
                   give_up=lambda: proc.poll() is not None
                   and f"the bomb ended early: {proc.stderr.read()}")
        counted = len(drv.cgroups.pids(hb))
        beside = _spawn(drv, neighbour, 30)               # the neighbour forks meanwhile
        samples.append(drv.cgroups.pids_current(hb))
        assert subprocess.run(["true"], timeout=10).returncode == 0   # so does the host
        assert proc.poll() is None, "the bomb ended before the neighbour had run"
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    eagain, other = (int(x) for x in out.split())
    peak_file = drv.cgroups.dir("pids", hb) / "pids.peak"
    peak = int(peak_file.read_text()) if peak_file.exists() else max(samples)
    print(f"\nfork bomb (pids_max 64): peak {peak} tasks, {counted} processes listed, "
          f"{eagain} forks failed with EAGAIN, {_events_max(drv, hb)} refused by the kernel; "
          f"neighbour started 30 processes in {beside * 1000:.1f} ms beside it, "
          f"{alone * 1000:.1f} ms alone")
    assert max(samples) <= 64 and peak <= 64 and counted <= 64
    assert eagain > 0 and other == 0, "the bomb's forks must fail with EAGAIN, and only those"
    assert _events_max(drv, hn) == 0, "the neighbour's forks must never hit a limit"
    drv.delete(bomb)
    drv.delete(neighbour)
    for handle in (hb, hn):
        assert not drv.cgroups.dir("pids", handle).exists()
        assert not drv.cgroups.exists(handle)
    assert not {n for n in drv.cgroups.names() if drv.naming.is_node(n)}


def test_pids_max_is_recorded_and_reprovision_converges_it(small_driver):
    spec = node("conv", [])
    res = small_driver.provision(spec)
    handle = small_driver.node_handle(spec.sliver_urn)
    assert "64 tasks" in res.resource_status
    s = small_driver.settings
    wider = VServerDriver({"name_prefix": s.name_prefix, "state_dir": s.state_dir, "cpu": 2,
                           "memory_mb": 4096, "default_pids_max": 200,
                           "images_dir": s.images_dir, "default_image": s.default_image},
                          [{"name": "vs1", "driver": "vserver", "_table": "components[0]"}],
                          authority=AUTH)
    try:
        wider.provision(spec)
        assert wider.cgroups.limits(handle)["pids_max"] == 200
        assert wider.state.read(handle)["pids_max"] == 200
        rec = wider.state.read(handle)                   # a record from before the limit
        del rec["pids_max"]
        wider.state.write(handle, rec)
        (wider.cgroups.dir("pids", handle) / "pids.max").write_text("max")
        wider.perform(spec, "geni_restart")
        assert wider.cgroups.limits(handle)["pids_max"] == 200
        assert wider.state.read(handle)["pids_max"] == 200
    finally:
        wider.close()


def test_every_way_into_a_sliver_joins_its_pids_cgroup(small_driver):
    spec = node("join", [])
    small_driver.provision(spec)
    handle = small_driver.node_handle(spec.sliver_urn)
    tasks = small_driver.cgroups.tasks_files(handle)
    assert small_driver.cgroups.dir("pids", handle) / "tasks" in tasks
    out = subprocess.run(small_driver.sliver_argv(spec.sliver_urn, ["cat", "/proc/self/cgroup"]),
                         capture_output=True, text=True, timeout=30, check=True).stdout
    lines = {line.split(":")[1]: line.split(":")[2] for line in out.splitlines()}
    for ctrl in ("cpu", "memory", "pids"):
        assert lines[ctrl] == f"/{small_driver.settings.cgroup_parent}/{handle}", out
    shell = small_driver.operator_shell(spec.sliver_urn)   # through the guest's init
    assert f"{handle}/ctl.sock" in shell and shell.endswith("-- sh -l")


@pytest.mark.parametrize("value", [7, 0, -1, 64.0, "64", True, 5_000_000])
def test_default_pids_max_is_validated(value):
    with pytest.raises(InventoryError, match="default_pids_max") as exc:
        parse_settings({"default_pids_max": value})
    assert "must be an integer in 8..4194304" in str(exc.value)


def test_default_pids_max_default_and_bounds():
    assert parse_settings({}).default_pids_max == 1024
    assert parse_settings({"default_pids_max": 8}).default_pids_max == 8


def test_a_host_without_the_pids_controller_is_refused_at_construction(tmp_path):
    fake = tmp_path / "cgroup"
    for ctrl in ("cpu", "memory"):
        (fake / ctrl).mkdir(parents=True)
        (fake / ctrl / "tasks").touch()
    with pytest.raises(DriverError, match=r"controller 'pids' is not mounted at .*/pids"):
        CgroupLayout(fake, "geni-am").check()
    with pytest.raises(DriverError, match="'pids' is not mounted"):
        make_driver(tmp_path, cgroup_root=str(fake))
    assert not (fake / "pids").exists()
    assert not (fake / "cpu" / "geni-am").exists() and not (fake / "memory" / "geni-am").exists()
