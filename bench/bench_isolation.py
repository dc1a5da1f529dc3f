"""The isolation table of the background article (docs/background.md), for containers and VMs.

For each case a well-behaved guest measures its work rate alone, then again while a neighbour
guest on the same node misbehaves; the slowdown is (1 - beside / alone) * 100 %. The cases are
the article's: CPU hog, memory hog, fork bomb, disk I/O hog, network flood (the well-behaved
pair's TCP transfer beside another pair's UDP flood). Both guests ask for no CPU (a fair
share each), 128 MiB, 256 tasks; disk I/O is throttled by the blkio controller on the disk
under the guests' layers (`disk_write_mbps`, `disk_read_mbps`).

VMs (`--vm`, or `--vm-only`): four guests of the VM driver (QEMU through a private libvirtd,
1 vCPU, 256 MiB each), every case as busybox shell loops run over SSH. Here QEMU runs under TCG (software emulation,
no KVM): each vCPU is a host thread that translates the guest's code, so a VM's work rates are
a fraction of a container's and its neighbour competes for host CPU as a busy thread does.
The VM image boots from an initramfs (no disk), so for the disk case the bench gives the two
VMs a scratch disk each (a 64 MiB raw file on the host's disk, virtio, host cache off,
throttled to the same MB/s as the containers by QEMU's own I/O limits, libvirt `<iotune>`)
and boots them from a copy of the image with the virtio_blk module added (from the same
kernel package). The network case: the well-behaved VM fetches a file over HTTP from its
peer over and over (busybox wget and httpd: the image has no UDP sender, and its `nc` sends
too little to measure) beside the misbehaving VM doing the same with its own peer, each pair
on its own link of the VM driver; the rate is the bytes received in the time given.

Prints the table and writes docs/figures/isolation.png (the figures beside it, .json).

Run as root: .venv/bin/python bench/bench_isolation.py [--seconds 3] [--runs 3] [--vm]
Prints one row per case in the article's layout, the median of the runs.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

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
    # 4 KiB direct writes, each synced, to the VM's own scratch disk (well-behaved: ops done)
    "fsync": _TICK + ('tick; end=$((T + {s} * 100)); i=0; while tick; [ $T -lt $end ]; do '
                      'dd if=/dev/zero of=/dev/vda bs=4k count=1 seek=$((i % 4096)) '
                      'oflag=direct conv=notrunc,fsync 2>/dev/null || exit 1; i=$((i + 1)); '
                      'done; echo $i'),
    # 16 MiB direct writes over and over (its disk is throttled like the container's)
    "ddirect": _TICK + ('tick; end=$((T + {s} * 100)); n=0; while tick; [ $T -lt $end ]; do '
                        'dd if=/dev/zero of=/dev/vda bs=1M count=16 seek=$((n % 3 * 16)) '
                        'oflag=direct conv=notrunc 2>/dev/null || exit 1; n=$((n + 1)); done; '
                        'echo $((n * 16)) MiB written'),
    # receivers print the bytes they got once the sender closes; senders stop after {s} s
    # network: busybox httpd serves a file from RAM (as much of 96 MiB as fits); a VM fetches
    # it over and over for {s} s (the well-behaved one from its peer, the misbehaving one,
    # longer, from its own)
    "serve": ("dd if=/dev/zero of=$HOME/big bs=1M count=96 2>/dev/null; "
              "busybox httpd -p {port} -h $HOME"
              " && echo serving"),
    # (whole files, so the bytes over the time the loop really took: bytes per second)
    "fetch": _TICK + ('tick; t0=$T; end=$((T + {s} * 100)); n=$( (while tick; [ $T -lt $end ]; '
                      'do wget -q -O - http://{peer}:{port}/big || exit 1; done) | wc -c); '
                      'tick; echo $((n * 100 / (T - t0 + 1)))'),
}
VM_DISK_MB = 64


def vm_disk_store(work: Path):
    """A private image store with the VM image plus the virtio_blk module (and whatever it
    needs from the same kernel package) and a boot that lets the logins write their scratch
    disk (/dev/vd*): the image has no disk driver, its root being in RAM. The additions are a
    second cpio archive appended to the initramfs, as the driver appends each sliver's
    configuration; later entries replace earlier ones (geni.order, boot.sh)."""
    import gzip
    import stat
    from drivers.images import debs
    from drivers.images.store import ImageStore
    from drivers.xen import images as vmimages
    from tests.drivers.xen import realvms

    base = realvms.image_store().get("vm-initramfs")
    pkg, version = base.meta["kernel_package"], base.meta["kernel_version"]
    ktree = work / "kernel"
    debs.extract(debs.download([pkg]), ktree)
    order = vmimages.module_order(ktree / "lib/modules" / version,
                                  (*vmimages.WANTED_MODULES, "virtio_blk"))
    boot = (vmimages.GUEST_DIR / "boot.sh").read_text()
    marker = "ip link set lo up\n"
    assert marker in boot, "boot.sh changed: update vm_disk_store"
    boot = boot.replace(marker, marker + 'for d in /dev/vd?; do [ -b "$d" ] && chmod 666 "$d"; '
                                         "done\n", 1)
    entries = [(f"lib/modules/{name}.ko", stat.S_IFREG | 0o644, path.read_bytes())
               for name, path in order]
    entries += [("lib/modules/geni.order", stat.S_IFREG | 0o644,
                 ("\n".join(n for n, _ in order) + "\n").encode()),
                ("geni/boot.sh", stat.S_IFREG | 0o755, boot.encode())]
    store = ImageStore(work / "images")
    staging = store.staging()
    shutil.copyfile(base.data / base.meta["kernel"], staging / "data" / "vmlinuz")
    (staging / "data" / "initrd.img").write_bytes(
        (base.data / base.meta["initrd"]).read_bytes()
        + gzip.compress(vmimages.cpio_bytes(entries), mtime=0))
    store.publish(staging, "vm-initramfs", kind="vm", description="bench: + virtio_blk",
                  meta={**base.meta, "kernel": "vmlinuz", "initrd": "initrd.img"})
    shutil.rmtree(ktree, ignore_errors=True)
    return store


def add_scratch_disk(driver, spec, path: Path, mbps: float) -> None:
    """Give a provisioned, not yet started VM a raw scratch disk (virtio, no host cache) whose
    reads and writes QEMU throttles to `mbps` MB/s each (libvirt <iotune>)."""
    from lxml import etree
    from drivers.xen.domain import handle_for
    with open(path, "wb") as f:
        f.truncate(VM_DISK_MB * 2**20)
    rec = driver.records.get(handle_for(spec.sliver_urn))
    dom = etree.fromstring(rec.xml)
    disk = etree.SubElement(dom.find("devices"), "disk", type="file", device="disk")
    etree.SubElement(disk, "driver", name="qemu", type="raw", cache="none")
    etree.SubElement(disk, "source", file=str(path))
    etree.SubElement(disk, "target", dev="vda", bus="virtio")
    tune = etree.SubElement(disk, "iotune")
    for key in ("read_bytes_sec", "write_bytes_sec"):
        etree.SubElement(tune, key).text = str(int(mbps * 1e6))
    rec.xml = etree.tostring(dom, encoding="unicode")
    driver.records.put(rec)


def vm_column(seconds: float, runs: int, disk_mbps: float) -> dict[str, list[tuple[float, str]]]:
    """Every case between VMs of the VM driver (QEMU under TCG here: each vCPU is a host
    thread emulating the guest's instructions): CPU, memory, fork and disk between the
    well-behaved VM and the misbehaving one, network between two pairs."""
    import shlex
    from drivers.base import (InterfaceSpec, LinkEnd, LinkSpec, OperationalState, ResourceKind,
                              SliverSpec, Usage, UserKeys)
    from drivers.xen import XenDriver
    from tests.drivers.vserver.sshclient import SSH_OPTS, keypair, ssh
    from tests.drivers.xen import realvms

    state = Path(tempfile.mkdtemp(prefix="bench-iso-vm-"))
    store = vm_disk_store(state)
    daemon = realvms.start_libvirtd()
    dom0 = realvms.netns(f"bivdom0-{os.getpid()}")
    host = f"urn:publicid:IDN+{realvms.AUTH}+node+vmhost"
    slice_urn = f"urn:publicid:IDN+{realvms.AUTH}+slice+iso{os.getpid()}"
    key = keypair(state, "alice")
    users = (UserKeys(f"urn:publicid:IDN+{realvms.AUTH}+user+alice", (key.public,)),)
    driver = XenDriver({"uri": daemon.uri, "image_store": str(store.root), "domain_type": "qemu",
                        "state_dir": str(state), "dom0_netns": dom0, "ifname_prefix": "biv",
                        "memory_mb": 4096, "default_memory_mb": 256},
                       [{"name": "vmhost"}], authority=realvms.AUTH)
    wiring = {"good": ("10.88.0.1", "gl"), "peer": ("10.88.0.2", "gl"),
              "bad": ("10.89.0.1", "bl"), "sink": ("10.89.0.2", "bl")}
    specs = {name: SliverSpec(
        sliver_urn=f"urn:publicid:IDN+{realvms.AUTH}+sliver+iso{name}-{os.getpid()}",
        slice_urn=slice_urn, client_id=name, kind=ResourceKind.NODE, component_id=host,
        sliver_type="xen-vm", users=users, memory_mb=256 if name in ("good", "bad") else 128,
        interfaces=(InterfaceSpec(client_id=f"{name}:if0", name="eth1",
                                  ips=((ip, "255.255.255.0"),), link_client_id=lk),))
        for name, (ip, lk) in wiring.items()}
    links = [SliverSpec(
        sliver_urn=f"urn:publicid:IDN+{realvms.AUTH}+sliver+iso{lk}-{os.getpid()}",
        slice_urn=slice_urn, client_id=lk, kind=ResourceKind.LINK, component_id=host,
        link=LinkSpec(ends=tuple(LinkEnd(sliver_urn="", node_client_id=n,
                                         interface_client_id=f"{n}:if0", component_id=host)
                                 for n in pair)))
        for lk, pair in (("gl", ("good", "peer")), ("bl", ("bad", "sink")))]
    rows: dict[str, list[tuple[float, str]]] = {k: [] for k in ARTICLE}
    try:
        ports = {}
        for name, spec in specs.items():
            assert driver.admit(spec, Usage(component_id=host)).ok
            ports[name] = driver.provision(spec).logins[0].port
            if name in ("good", "bad"):
                add_scratch_disk(driver, spec, state / f"{name}.img", disk_mbps)
        for lk in links:
            driver.provision(lk)
        with ThreadPoolExecutor(4) as pool:
            booted = list(pool.map(driver.wait_ready, specs.values()))
        assert all(b is OperationalState.READY for b in booted), booted

        def run(name: str, work: str, s: float, **kw: object) -> str:
            script = VM_WORK[work].replace("{s}", str(int(round(s))))
            for k, v in kw.items():
                script = script.replace("{" + k + "}", str(v))
            out = ssh(key, "alice", ports[name], "sh -c " + shlex.quote(script),
                      timeout=120 + s)
            if out.returncode != 0 or not out.stdout.strip():
                raise RuntimeError(f"VM {name}: {work} failed: {out.stderr.strip()[-300:]}")
            return out.stdout.strip().splitlines()[-1]

        def start(name: str, work: str, s: float, **kw: object) -> subprocess.Popen:
            """The workload started over SSH, once its shell runs (a login into an emulated
            VM takes seconds: a fixed head start would not do)."""
            script = "echo started; " + VM_WORK[work].replace("{s}", str(int(round(s))))
            for k, v in kw.items():
                script = script.replace("{" + k + "}", str(v))
            proc = subprocess.Popen(["ssh", "-i", str(key.private), "-p", str(ports[name]),
                                     *SSH_OPTS, "alice@127.0.0.1", "sh -c " + shlex.quote(script)],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            if not proc.stdout.readline().strip():
                raise RuntimeError(f"VM {name}: {work} did not start: {proc.communicate()[1]}")
            time.sleep(0.3)                  # its nc is up (a bench, not a test)
            return proc

        def finish(proc: subprocess.Popen, timeout: float) -> str:
            out, err = proc.communicate(timeout=timeout)
            if proc.returncode != 0 or not out.strip():
                raise RuntimeError(f"VM workload failed: {err.strip()[-300:]}")
            return out.strip().splitlines()[-1]

        def transfer(s: float) -> float:
            """Bytes per second the well-behaved VM received from its peer (for about s s)."""
            return float(run("good", "fetch", s, peer="10.88.0.2", port=8080))

        for name in ("peer", "sink"):
            run(name, "serve", 0, port=8080)
        cases = {"CPU": ("spin", "hog"), "memory": ("spin", "eat"), "fork": ("spawn", "bomb"),
                 "disk intensive": ("fsync", "ddirect")}
        for r in range(runs):
            for case, (good_work, bad_work) in cases.items():
                alone = float(run("good", good_work, seconds))
                # the hog runs for the good one's login (seconds here) and measurement
                hog = start("bad", bad_work, seconds + 8)
                with_bad = float(run("good", good_work, seconds))
                said = finish(hog, seconds + 120)
                rows[case].append(((1 - with_bad / alone) * 100, said))
                print(f"VM {case}: {alone:g} alone, {with_bad:g} beside ({said})",
                      file=sys.stderr, flush=True)
            alone = transfer(seconds)
            flood_s = seconds + 10           # outlasts the login and the transfer beside it
            flood = start("bad", "fetch", flood_s, peer="10.89.0.2", port=8080)
            with_bad = transfer(seconds)
            flooded = float(finish(flood, flood_s + 60))
            print(f"VM network: {alone:g} B/s alone, {with_bad:g} beside ({flooded:g} B/s "
                  "flooded)", file=sys.stderr, flush=True)
            rows["network (receiver)"].append((
                (1 - with_bad / alone) * 100,
                f"flood: {flooded * 8 / 1e6:.0f} Mbit/s fetched for {flood_s:g} s"))
    finally:
        for spec in (*specs.values(), *links):
            try:
                driver.delete(spec)
            except Exception:  # noqa: BLE001 - best effort, then the daemon goes
                pass
        driver.close()
        realvms.stop_libvirtd(daemon)
        subprocess.run(["ip", "netns", "del", dom0], check=False)
        shutil.rmtree(state, ignore_errors=True)
    return rows


def record(out: Path, column: str, rows: dict[str, list[tuple[float, str]]],
           **facts: object) -> dict:
    """Merge one column's medians into `out` (JSON; the other column's figures stay, so the
    container and VM columns can come from separate runs) and return the whole record."""
    import json
    data = json.loads(out.read_text()) if out.exists() else {}
    data[column] = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "load": os.getloadavg()[0], **facts,
                    "slowdown_pct": {c: round(statistics.median(v for v, _ in values), 1)
                                     for c, values in rows.items()},
                    "misbehaving": {c: values[-1][1] for c, values in rows.items()}}
    out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return data


def plot(data: dict, out: Path) -> None:
    """Grouped bars per case: the article's container and hypervisor figures beside ours."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cases = list(ARTICLE)
    series = [("article: container", [ARTICLE[c][0] for c in cases], "#9ecae1"),
              ("this driver: container", [data.get("container", {}).get("slowdown_pct", {})
                                          .get(c) for c in cases], "#3182bd"),
              ("article: hypervisor", [HYPERVISOR[c] for c in cases], "#fdae6b"),
              ("VM driver (emulated, QEMU/TCG)", [data.get("vm", {}).get("slowdown_pct", {})
                                                  .get(c) for c in cases], "#e6550d")]
    fig, ax = plt.subplots(figsize=(9, 4.2))
    width = 0.2
    for k, (label, values, color) in enumerate(series):
        for i, v in enumerate(values):
            x = i + (k - 1.5) * width
            if v is None or v == "DNR":
                ax.text(x, 1, "DNR" if v == "DNR" else "n/m", ha="center", va="bottom",
                        fontsize=7, rotation=90)
                continue
            ax.bar(x, float(v), width, color=color, label=label if i == 0 or not k else None)
    handles, labels = ax.get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    ax.legend(seen.values(), seen.keys(), fontsize=8)
    ax.set_xticks(range(len(cases)), cases)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_ylabel("well-behaved guest's slowdown (%)")
    loads = ", ".join(f"{k} load {v['load']:.0f}" for k, v in sorted(data.items()))
    ax.set_title(f"Isolation beside a misbehaving guest (shared 2-core VM, loaded: {loads})",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--disk-mbps", type=float, default=20.0)
    ap.add_argument("--vm", action="store_true",
                    help="also the VM column (QEMU guests of the VM driver)")
    ap.add_argument("--vm-only", action="store_true", help="the VM column alone")
    ap.add_argument("--out", default=str(ROOT / "docs/figures/isolation.png"),
                    help="the plot; its figures go beside it as .json, merged with a column "
                         "measured earlier")
    args = ap.parse_args()
    out = Path(args.out)
    s = args.seconds
    vm = vm_column(s, args.runs, args.disk_mbps) if (args.vm or args.vm_only) else None
    if args.vm_only:
        print(f"\nVMs (QEMU/TCG, 1 vCPU, 256 MiB each, disks {args.disk_mbps:g} MB/s each; "
              f"{args.runs} runs of {s:g} s, median)")
        print("| test | article, hypervisor: well-behaved | VM driver: well-behaved slowdown % "
              "| misbehaving VM |")
        print("|---|---|---|---|")
        for case, values in vm.items():
            slow = statistics.median(v for v, _ in values)
            print(f"| {case} | {HYPERVISOR[case]} | {slow:.1f} | {values[-1][1]} |")
        plot(record(out.with_suffix(".json"), "vm", vm, runs=args.runs, seconds=s,
                    disk_mbps=args.disk_mbps), out)
        print(f"plot: {out}")
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
        shutil.rmtree(work, ignore_errors=True)
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
    if vm:
        record(out.with_suffix(".json"), "vm", vm, runs=args.runs, seconds=s,
               disk_mbps=args.disk_mbps)
    plot(record(out.with_suffix(".json"), "container", rows, runs=args.runs, seconds=s,
                disk_mbps=args.disk_mbps, fork_bomb_peak=peak_text), out)
    print(f"plot: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
