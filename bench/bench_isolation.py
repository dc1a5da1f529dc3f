"""The isolation table of the background article (docs/background.md), for containers.

For each case a well-behaved guest measures its work rate alone, then again while a neighbour
guest on the same node misbehaves; the slowdown is (1 - beside / alone) * 100 %. The cases are
the article's: CPU hog, memory hog, fork bomb, disk I/O hog, network flood (the well-behaved
pair's TCP transfer beside another pair's UDP flood). Both guests ask for no CPU (a fair
share each), 128 MiB, 256 tasks; disk I/O is throttled by the blkio controller on the disk
under the guests' layers (`disk_write_mbps`, `disk_read_mbps`).

Run as root: .venv/bin/python bench/bench_isolation.py [--seconds 3] [--runs 3]
Prints one row per case in the article's layout, the median of the runs. VMs are not measured
here: the VM driver has no guests that run workloads on this host yet.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drivers.vserver import VServerDriver                                 # noqa: E402
from tests.drivers.vserver.conftest import release_all                    # noqa: E402
from tests.drivers.vserver.helpers import (AUTH, WORKLOADS, guest_script,  # noqa: E402
                                           guest_test_image, link, node)

WORK = WORKLOADS
ARTICLE = {   # Deshane et al. 2006, container (Solaris Containers): well-behaved, misbehaving
    "CPU": ("0", "0"), "memory": ("DNR", "DNR"), "fork": ("90.03", "87.80"),
    "disk intensive": ("1.48", "1.23"), "network (receiver)": ("1.24", "1.67"),
}


def rate(drv, spec, *args: str, timeout: float = 120) -> float:
    out = subprocess.run(guest_script(drv, spec, WORK, *args), capture_output=True, text=True,
                         timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{args[0]} failed: {out.stderr.strip()[-300:]}")
    return float(out.stdout.split()[-1])


def beside(drv, good, bad, good_args, bad_args, *, warmup: float = 0.5) -> tuple[float, str]:
    """The well-behaved rate while the misbehaving workload runs; the latter's last words."""
    hog = subprocess.Popen(guest_script(drv, bad, WORK, *bad_args), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    time.sleep(warmup)                      # the misbehaving load is up (a bench, not a test)
    try:
        value = rate(drv, good, *good_args)
    finally:
        out, err = hog.communicate(timeout=120)
    return value, (out.strip().splitlines() or err.strip().splitlines() or ["?"])[-1]


def tcp(drv, pair, port: int, s: float) -> float:
    a, b = pair
    rx = subprocess.Popen(guest_script(drv, b, WORK, "recv", str(port), "0.3"),
                          stdout=subprocess.PIPE, text=True)
    assert rx.stdout.readline().strip() == "listening"
    subprocess.run(guest_script(drv, a, WORK, "send", "10.88.0.2", str(port), str(s)),
                   check=True, timeout=60)
    return float(rx.communicate(timeout=60)[0].split()[-1]) / 1000     # Mbit/s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--disk-mbps", type=float, default=20.0)
    args = ap.parse_args()
    s = args.seconds
    images, image = guest_test_image()
    work = Path(tempfile.mkdtemp(prefix="bench-iso-"))
    drv = VServerDriver({"name_prefix": "bi", "state_dir": str(work / "state"), "cpu": 2,
                         "memory_mb": 4096, "images_dir": str(images), "default_image": image,
                         "build_default_image": False, "default_pids_max": 256,
                         "disk_write_mbps": args.disk_mbps, "disk_read_mbps": args.disk_mbps},
                        [{"name": "vs1", "driver": "vserver"}], authority=AUTH)
    rows: dict[str, list[tuple[float, str]]] = {k: [] for k in ARTICLE}
    try:
        good = node("good", [("eth1", "10.88.0.1", "gl")], memory_mb=128)
        peer = node("peer", [("eth1", "10.88.0.2", "gl")], memory_mb=128)
        bad = node("bad", [("eth1", "10.89.0.1", "bl")], memory_mb=128)
        sink = node("sink", [("eth1", "10.89.0.2", "bl")], memory_mb=128)
        for spec in (good, peer, bad, sink, link("gl", [good, peer]), link("bl", [bad, sink])):
            drv.provision(spec)
        hb = drv.node_handle(bad.sliver_urn)
        for _ in range(args.runs):
            cases = {
                "CPU": (("spin", str(s)), ("hog", "4", str(s + 1))),
                "memory": (("spin", str(s)), ("eat", "512", str(s + 1))),
                "fork": (("spawn", str(s)), ("bomb", str(s + 1))),
                "disk intensive": (("fsync", str(s), "/srv"), ("ddirect", str(s + 1), "/")),
            }
            for case, (good_args, bad_args) in cases.items():
                alone = rate(drv, good, *good_args)
                with_bad, said = beside(drv, good, bad, good_args, bad_args)
                rows[case].append(((1 - with_bad / alone) * 100, said))
            alone = tcp(drv, (good, peer), 5001, s)
            flood = subprocess.Popen(guest_script(drv, bad, WORK, "udp_flood", "10.89.0.2", "9",
                                                  str(s + 1.5)),
                                     stdout=subprocess.PIPE, text=True)
            time.sleep(0.5)
            with_bad = tcp(drv, (good, peer), 5002, s)
            sent = flood.communicate(timeout=60)[0].strip()
            rows["network (receiver)"].append(((1 - with_bad / alone) * 100,
                                               f"{sent} datagrams sent"))
        peak = (drv.cgroups.dir("pids", hb) / "pids.peak")
        peak_text = peak.read_text().strip() if peak.exists() else "?"
    finally:
        release_all(drv)
        drv.close()
    print(f"\nisolation of a well-behaved container beside a misbehaving one ({args.runs} runs "
          f"of {s:g} s, median; fair CPU shares, 128 MiB, 256 tasks, disk {args.disk_mbps:g} "
          f"MB/s each; fork bomb peaked at {peak_text} tasks)")
    print("| test | article container: well-behaved | article: misbehaving | this driver: "
          "well-behaved slowdown % | misbehaving guest |")
    print("|---|---|---|---|---|")
    for case, values in rows.items():
        slow = statistics.median(v for v, _ in values)
        print(f"| {case} | {ARTICLE[case][0]} | {ARTICLE[case][1]} | {slow:.1f} | "
              f"{values[-1][1]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
