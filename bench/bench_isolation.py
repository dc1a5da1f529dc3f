"""The isolation table of the background article (docs/background.md), for containers and VMs.

For each case a well-behaved guest measures its work rate alone, then again while a neighbour
guest on the same node misbehaves; the slowdown is (1 - beside / alone) * 100 %. The cases are
the article's: CPU hog, memory hog, fork bomb, disk I/O hog, network flood (the well-behaved
pair's TCP transfer beside another pair's UDP flood). Both guests ask for no CPU (a fair
share each), 128 MiB, 256 tasks; disk I/O is throttled by the blkio controller on the disk
under the guests' layers (`disk_write_mbps`, `disk_read_mbps`).

VMs (`--vm`, or `--vm-only`): two guests of the VM driver (QEMU through a private libvirtd,
1 vCPU, 256 MiB each), the CPU, memory and fork cases as busybox shell loops run over SSH.
Here QEMU runs under TCG (software emulation, no KVM): each vCPU is a host thread that
translates the guest's code, so a VM's work rates are a fraction of a container's and its
neighbour competes for host CPU as a busy thread does. The disk case is not run on VMs (the
VM image has no disk: its root is an initramfs in RAM), nor the network case (it needs links
between four VMs; not done yet).

Run as root: .venv/bin/python bench/bench_isolation.py [--seconds 3] [--runs 3] [--vm]
Prints one row per case in the article's layout, the median of the runs.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drivers.vserver import VServerDriver                                 # noqa: E402
from tests.drivers.vserver.conftest import release_all                    # noqa: E402
from tests.drivers.vserver.helpers import (AUTH, WORKLOADS, guest_script,  # noqa: E402
                                           guest_test_image, link, node)

WORK = WORKLOADS
HYPERVISOR = {"CPU": "0", "memory": "0.03", "fork": "0.04", "disk intensive": "1.37",
              "network (receiver)": "0.03"}   # the article's hypervisor (Xen) column
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


# ---- VMs: the same cases in QEMU guests of the VM driver (busybox shell workloads over SSH) --

# busybox ash, builtins only in the timing loops (no fork per iteration): `tick` reads the
# uptime in centiseconds
_TICK = 'tick() { read u r < /proc/uptime; T=${u%.*}${u#*.}; T=${T#0}; }; '
VM_WORK = {
    "spin": _TICK + ('tick; end=$((T + {s} * 100)); i=0; while tick; [ $T -lt $end ]; do j=0; '
                     'while [ $j -lt 100 ]; do j=$((j + 1)); done; i=$((i + 1)); done; echo $i'),
    "spawn": _TICK + ('tick; end=$((T + {s} * 100)); i=0; while tick; [ $T -lt $end ]; do '
                      '/bin/true; i=$((i + 1)); done; echo $i'),
    "hog": _TICK + ('for k in 1 2 3 4; do (tick; end=$((T + {s} * 100)); while tick; '
                    '[ $T -lt $end ]; do :; done) & done; wait; echo 4 busy loops'),
    # one 300 MiB buffer (dd's block) in a 256 MiB VM: the VM's OOM killer ends it
    "eat": _TICK + ('tick; end=$((T + {s} * 100)); k=0; while tick; [ $T -lt $end ]; do '
                    'dd if=/dev/zero of=/dev/null bs=300M count=1 2>/dev/null || k=$((k + 1)); '
                    'done; echo $k allocations killed'),
    "bomb": _TICK + ('tick; end=$((T + {s} * 100)); for k in 1 2 3 4; do (while tick; '
                     '[ $T -lt $end ]; do (:) & done; wait) & done; wait; echo forked until the end'),
}


def vm_column(seconds: float, runs: int) -> dict[str, list[tuple[float, str]]]:
    """CPU, memory and fork cases between two VMs of the VM driver (QEMU under TCG here:
    each vCPU is a host thread emulating the guest's instructions)."""
    import os
    import shlex
    from drivers.base import Action, ResourceKind, SliverSpec, Usage, UserKeys
    from drivers.xen import XenDriver
    from tests.drivers.vserver.sshclient import keypair, ssh
    from tests.drivers.xen import realvms

    store = realvms.image_store()
    daemon = realvms.start_libvirtd()
    dom0 = realvms.netns(f"bivdom0-{os.getpid()}")
    state = Path(tempfile.mkdtemp(prefix="bench-iso-vm-"))
    host = f"urn:publicid:IDN+{realvms.AUTH}+node+vmhost"
    key = keypair(state, "alice")
    users = (UserKeys(f"urn:publicid:IDN+{realvms.AUTH}+user+alice", (key.public,)),)
    driver = XenDriver({"uri": daemon.uri, "image_store": str(store.root), "domain_type": "qemu",
                        "state_dir": str(state), "dom0_netns": dom0, "ifname_prefix": "biv",
                        "memory_mb": 4096, "default_memory_mb": 256},
                       [{"name": "vmhost"}], authority=realvms.AUTH)
    specs = {name: SliverSpec(
        sliver_urn=f"urn:publicid:IDN+{realvms.AUTH}+sliver+iso{name}-{os.getpid()}",
        slice_urn=f"urn:publicid:IDN+{realvms.AUTH}+slice+iso{os.getpid()}", client_id=name,
        kind=ResourceKind.NODE, component_id=host, sliver_type="xen-vm", users=users)
        for name in ("good", "bad")}
    rows: dict[str, list[tuple[float, str]]] = {"CPU": [], "memory": [], "fork": []}
    try:
        ports = {}
        for name, spec in specs.items():
            assert driver.admit(spec, Usage(component_id=host)).ok
            ports[name] = driver.provision(spec).logins[0].port
            driver.perform(spec, Action.START.value)

        def run(name: str, work: str, s: float) -> str:
            out = ssh(key, "alice", ports[name], "sh -c " + shlex.quote(
                VM_WORK[work].replace("{s}", str(int(round(s))))), timeout=120 + s)
            if out.returncode != 0 or not out.stdout.strip():
                raise RuntimeError(f"VM {name}: {work} failed: {out.stderr.strip()[-300:]}")
            return out.stdout.strip().splitlines()[-1]

        cases = {"CPU": ("spin", "hog"), "memory": ("spin", "eat"), "fork": ("spawn", "bomb")}
        for _ in range(runs):
            for case, (good_work, bad_work) in cases.items():
                alone = float(run("good", good_work, seconds))
                with ThreadPoolExecutor(1) as pool:
                    hog = pool.submit(run, "bad", bad_work, seconds + 1)
                    time.sleep(0.5)
                    with_bad = float(run("good", good_work, seconds))
                    said = hog.result()
                rows[case].append(((1 - with_bad / alone) * 100, said))
    finally:
        for spec in specs.values():
            try:
                driver.delete(spec)
            except Exception:  # noqa: BLE001 - best effort, then the daemon goes
                pass
        driver.close()
        realvms.stop_libvirtd(daemon)
        subprocess.run(["ip", "netns", "del", dom0], check=False)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--disk-mbps", type=float, default=20.0)
    ap.add_argument("--vm", action="store_true",
                    help="also the VM column (two QEMU guests of the VM driver: CPU, memory, "
                         "fork)")
    ap.add_argument("--vm-only", action="store_true", help="the VM column alone")
    args = ap.parse_args()
    s = args.seconds
    vm = vm_column(s, args.runs) if (args.vm or args.vm_only) else None
    if args.vm_only:
        print(f"\nVMs (QEMU/TCG, 1 vCPU, 256 MiB each; {args.runs} runs of {s:g} s, median)")
        print("| test | article, hypervisor: well-behaved | VM driver: well-behaved slowdown % "
              "| misbehaving VM |")
        print("|---|---|---|---|")
        for case, values in vm.items():
            slow = statistics.median(v for v, _ in values)
            print(f"| {case} | {HYPERVISOR[case]} | {slow:.1f} | {values[-1][1]} |")
        return 0
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
          "well-behaved slowdown % | misbehaving guest | article hypervisor: well-behaved | "
          "VM driver (QEMU/TCG): well-behaved slowdown % | misbehaving VM |")
    print("|---|---|---|---|---|---|---|---|")
    for case, values in rows.items():
        slow = statistics.median(v for v, _ in values)
        vms = (vm or {}).get(case)
        vm_text = (f"{statistics.median(v for v, _ in vms):.1f} | {vms[-1][1]}" if vms
                   else "not measured | -")
        print(f"| {case} | {ARTICLE[case][0]} | {ARTICLE[case][1]} | {slow:.1f} | "
              f"{values[-1][1]} | {HYPERVISOR[case]} | {vm_text} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
