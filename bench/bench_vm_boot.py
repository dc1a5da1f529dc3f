"""10 VMs to SSH-reachable: through the Xen driver vs the same domains with plain `virsh create`.

One run, same image, same per-VM domain XML and config (the driver's provision writes both):
  baseline  `virsh create` of the 10 domain XMLs one after the other, then wait until every
            VM's SSH port answers with an SSH banner;
  AM        the driver's geni_start of the 10 slivers on `--workers` threads (as the AM's job
            workers would run them: boot, wait for the guest's GENI-READY, wire links, Dom0
            tables), then the same SSH wait.
Prints both times and the ratio AM / baseline (target <= 1.3). Run as root:
    .venv/bin/python bench/bench_vm_boot.py [--vms 10] [--workers 2]
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drivers.base import (Action, OperationalState, ResourceKind, SliverSpec,  # noqa: E402
                          UserKeys)
from drivers.images import debs  # noqa: E402
from drivers.images.store import ImageStore  # noqa: E402
from drivers.xen import XenDriver  # noqa: E402
from drivers.xen.images import ensure_image  # noqa: E402
from drivers.xen.libvirtd import PrivateLibvirtd  # noqa: E402

AUTH = "geni-am:bootbench"


def ssh_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(3)
            return s.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def wait_all(ports: list[int], timeout: float) -> None:
    left = set(ports)
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        left = {p for p in left if not ssh_answers(p)}
        if left:
            time.sleep(0.2)
    if left:
        raise SystemExit(f"{len(left)} VM(s) never answered SSH")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vms", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-mb", type=int, default=160)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    tmp = Path(tempfile.mkdtemp(prefix="gbb-"))
    store = ImageStore(debs.cache_dir().parent / "vm-images")
    ensure_image(store)
    daemon = PrivateLibvirtd(tmp / "libvirt").start(timeout=60)
    driver = XenDriver({"uri": daemon.uri, "image_store": str(store.root), "domain_type": "qemu",
                        "state_dir": str(tmp / "xen"), "ifname_prefix": "gbb",
                        "memory_mb": 65536, "vcpus": 64, "boot_timeout_s": 900},
                       [{"name": "vmhost"}], authority=AUTH)
    user = UserKeys(urn=f"urn:publicid:IDN+{AUTH}+user+alice",
                    keys=("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBxlfd0Jjnk5e1yFjpVv2tuy0eQoKJmY"
                          "Y2cU6wHk2H1l bench@host",))
    specs = [SliverSpec(sliver_urn=f"urn:publicid:IDN+{AUTH}+sliver+vm{i}",
                        slice_urn=f"urn:publicid:IDN+{AUTH}+slice+boot", client_id=f"vm{i}",
                        kind=ResourceKind.NODE, component_id=f"urn:publicid:IDN+{AUTH}+node+vmhost",
                        sliver_type="xen-vm", memory_mb=args.memory_mb, users=(user,))
             for i in range(args.vms)]
    try:
        results = [driver.provision(s) for s in specs]
        ports = [r.logins[0].port for r in results]
        virsh = shutil.which("virsh") or "virsh"
        # baseline: the same XML, plain virsh create, one after the other
        xmls = []
        for r in results:
            rec = driver.records.get(r.handle)
            path = tmp / f"{r.handle}.xml"
            path.write_text(rec.xml)
            xmls.append(path)
        t0 = time.monotonic()
        for x in xmls:
            subprocess.run([virsh, "-q", "-c", daemon.uri, "create", str(x)], check=True,
                           capture_output=True)
        wait_all(ports, 900)
        baseline = time.monotonic() - t0
        for r in results:
            subprocess.run([virsh, "-q", "-c", daemon.uri, "destroy", r.handle],
                           capture_output=True)
        print(f"baseline: {args.vms} x virsh create -> all SSH-reachable: {baseline:.1f} s",
              flush=True)
        # through the driver, as the AM's workers run geni_start
        t0 = time.monotonic()
        with ThreadPoolExecutor(args.workers) as pool:
            states = list(pool.map(lambda s: driver.perform(s, Action.START.value), specs))
        assert all(st is OperationalState.READY for st in states), states
        wait_all(ports, 900)
        am = time.monotonic() - t0
        print(f"driver:   {args.vms} x geni_start ({args.workers} workers) -> all "
              f"SSH-reachable: {am:.1f} s")
        print(f"ratio driver / virsh create: {am / baseline:.2f} (target <= 1.3)")
    finally:
        for s in specs:
            driver.delete(s)
        driver.close()
        daemon.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
