"""What the driver enforces, measured: link capacity (tc tbf), CPU share and memory (cgroups)."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.drivers.vserver.helpers import link, node

WORKLOADS = str(Path(__file__).with_name("workloads.py"))
PY = sys.executable


def _pair(driver, kbps=None, cpu=None, memory_mb=None, tag=""):
    a = node(f"a{tag}", [("eth1", "10.77.0.1", f"ab{tag}")], cpu=cpu, memory_mb=memory_mb)
    b = node(f"b{tag}", [("eth1", "10.77.0.2", f"ab{tag}")], cpu=cpu, memory_mb=memory_mb)
    ab = link(f"ab{tag}", [a, b], kbps=kbps)
    for spec in (a, b, ab):
        driver.provision(spec)
    return a, b, ab


def _transfer_kbps(driver, a, b, seconds=2.5) -> float:
    rx = subprocess.Popen(driver.sliver_argv(b.sliver_urn, [PY, WORKLOADS, "recv", "5001", "0.5"]),
                          stdout=subprocess.PIPE, text=True)
    assert rx.stdout.readline().strip() == "listening"
    tx = subprocess.run(driver.sliver_argv(a.sliver_urn, [PY, WORKLOADS, "send", "10.77.0.2",
                                                          "5001", str(seconds)]), timeout=30)
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
    out = subprocess.run(driver.sliver_argv(spec.sliver_urn, [PY, WORKLOADS, "spin", str(seconds)]),
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return int(out)


def test_cpu_hog_takes_no_more_than_its_share(driver):
    """A hog (3 busy processes) and a well-behaved worker, each a 0.5-core container."""
    good = node("good", [], cpu=0.5)
    bad = node("bad", [], cpu=0.5)
    for spec in (good, bad):
        driver.provision(spec)
    alone = _spin(driver, good)
    hog = subprocess.Popen(driver.sliver_argv(bad.sliver_urn, [PY, WORKLOADS, "hog", "3", "3"]),
                           stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
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
    ok = subprocess.run(driver.sliver_argv(small.sliver_urn, [PY, WORKLOADS, "eat", "16"]),
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and "survived" in ok.stdout
    over = subprocess.run(driver.sliver_argv(small.sliver_urn, [PY, WORKLOADS, "eat", "200"]),
                          capture_output=True, text=True, timeout=30)
    assert over.returncode in (-9, 137) and "survived" not in over.stdout
    limits = driver.cgroups.limits(driver.node_handle(small.sliver_urn))
    assert limits["memory_limit_bytes"] == 64 * 1024 * 1024
    assert limits["cfs_quota_us"] == 50_000 and limits["cfs_period_us"] == 100_000


@pytest.mark.parametrize("cpu, quota", [(0.25, 25_000), (1.5, 150_000)])
def test_cpu_quota_follows_request(driver, cpu, quota):
    spec = node(f"q{int(cpu * 100)}", [], cpu=cpu)
    driver.provision(spec)
    assert driver.cgroups.limits(driver.node_handle(spec.sliver_urn))["cfs_quota_us"] == quota
