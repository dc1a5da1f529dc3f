"""10 VMs to SSH-reachable: through the AM vs the same image with plain `virsh create`.

One run, same image, same domain XML and boot config (a driver's provision writes both):
  baseline  `virsh create` of 10 domain XMLs one after the other, then wait until every VM's
            SSH port answers with an SSH banner;
  AM        the whole AM as `geni-am serve` runs it (store, embedded Celery worker with
            `worker_concurrency` threads, the Xen driver on the same libvirtd): Allocate and
            Provision of a 10-VM slice (start_on_provision), then the same SSH wait; also when
            Status first says all 10 are geni_ready.
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from am.config import Settings  # noqa: E402
from am.service.contract import Options, Principal  # noqa: E402
from drivers.base import ResourceKind, SliverSpec, UserKeys  # noqa: E402
from drivers.images import debs  # noqa: E402
from drivers.images.store import ImageStore  # noqa: E402
from drivers.xen import XenDriver  # noqa: E402
from drivers.xen.images import ensure_image  # noqa: E402
from drivers.xen.libvirtd import PrivateLibvirtd  # noqa: E402
from tests.drivers.xen.vmam import host_urn, vm_am, write_inventory  # noqa: E402

AUTH = "geni-am:bootbench"
KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBxlfd0Jjnk5e1yFjpVv2tuy0eQoKJmYY2cU6wHk2H1l "
       "bench@host")
USER = UserKeys(urn=f"urn:publicid:IDN+{AUTH}+user+alice", keys=(KEY,))
ALICE = Principal(urn=USER.urn)


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


def baseline(tmp: Path, daemon: PrivateLibvirtd, store: ImageStore, n: int,
             memory_mb: int) -> float:
    """The driver writes each VM's XML and initrd (provision), then plain virsh boots them."""
    driver = XenDriver({"uri": daemon.uri, "image_store": str(store.root), "domain_type": "qemu",
                        "state_dir": str(tmp / "base"), "ifname_prefix": "gbv",
                        "memory_mb": 65536, "vcpus": 64, "ssh_ports": [23000, 23999]},
                       [{"name": "vmhost"}], authority=AUTH)
    specs = [SliverSpec(sliver_urn=f"urn:publicid:IDN+{AUTH}+sliver+base{i}",
                        slice_urn=f"urn:publicid:IDN+{AUTH}+slice+base", client_id=f"vm{i}",
                        kind=ResourceKind.NODE, component_id=host_urn(AUTH), sliver_type="xen-vm",
                        memory_mb=memory_mb, users=(USER,)) for i in range(n)]
    virsh = shutil.which("virsh") or "virsh"
    try:
        results = [driver.provision(s) for s in specs]
        xmls = []
        for r in results:
            path = tmp / f"{r.handle}.xml"
            path.write_text(driver.records.get(r.handle).xml)
            xmls.append(path)
        t0 = time.monotonic()
        for x in xmls:
            subprocess.run([virsh, "-q", "-c", daemon.uri, "create", str(x)], check=True,
                           capture_output=True)
        wait_all([r.logins[0].port for r in results], 900)
        took = time.monotonic() - t0
        for r in results:
            subprocess.run([virsh, "-q", "-c", daemon.uri, "destroy", r.handle],
                           capture_output=True)
        return took
    finally:
        for s in specs:
            driver.delete(s)
        driver.close()


def through_the_am(tmp: Path, daemon: PrivateLibvirtd, store: ImageStore, n: int,
                   memory_mb: int, workers: int) -> tuple[float, float]:
    """Provision -> all SSH-reachable, and Provision -> Status all geni_ready, in seconds."""
    inv = write_inventory(tmp / "inventory.toml", daemon, store, state=tmp / "site",
                          prefix="gba", memory_mb=65536, vcpus=64, boot_timeout_s=900)
    from credentials.authority import DevAuthority

    ca = DevAuthority.init(tmp / "authority", authority=AUTH)   # the runtime wants trust roots
    (tmp / "trust").mkdir()
    shutil.copy(ca.files["ca_cert"], tmp / "trust" / "ca-cert.pem")
    settings = Settings(authority=AUTH, state_dir=str(tmp / "am"), inventory=str(inv),
                        worker_concurrency=workers, trust_roots=str(tmp / "trust"))
    slice_urn = f"urn:publicid:IDN+{AUTH}+slice+boot"
    nodes = "".join(f'<node client_id="vm{i}" component_id="{host_urn(AUTH)}" exclusive="false">'
                    f'<sliver_type name="xen-vm"/><ga:node memory_mb="{memory_mb}"/></node>'
                    for i in range(n))
    request = ('<rspec xmlns="http://www.geni.net/resources/rspec/3" '
               'xmlns:ga="http://geni-am.org/resources/rspec/ext/geniam/1" '
               f'type="request">{nodes}</rspec>')
    with vm_am(settings) as rt:
        am = rt.service
        am.allocate(ALICE, slice_urn, request, Options())
        t0 = time.monotonic()
        am.provision(ALICE, [slice_urn], Options(users=(USER,)))
        ports: list[int] = []
        ready_at = None
        deadline = time.monotonic() + 900
        while ready_at is None and time.monotonic() < deadline:
            slivers = am.status(ALICE, [slice_urn], Options()).slivers
            ops = {s.operational_status for s in slivers}
            if "geni_failed" in ops:
                raise SystemExit(f"a VM failed: {[s.error for s in slivers if s.error]}")
            if ops == {"geni_ready"}:
                ready_at = time.monotonic() - t0
                ports = [int(s.logins[0].split()[2]) for s in slivers]
            else:
                time.sleep(0.1)
        if ready_at is None:
            raise SystemExit("the VMs did not become geni_ready")
        wait_all(ports, 900)
        reachable = time.monotonic() - t0
        am.delete(ALICE, [slice_urn], Options())
        return reachable, ready_at


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vms", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2, help="the AM's worker_concurrency")
    ap.add_argument("--memory-mb", type=int, default=160)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    tmp = Path(tempfile.mkdtemp(prefix="gbb-"))
    store = ImageStore(debs.cache_dir().parent / "vm-images")
    ensure_image(store)
    daemon = PrivateLibvirtd(tmp / "libvirt").start(timeout=60)
    try:
        base = baseline(tmp, daemon, store, args.vms, args.memory_mb)
        print(f"baseline: {args.vms} x virsh create -> all SSH-reachable: {base:.1f} s",
              flush=True)
        am, ready = through_the_am(tmp, daemon, store, args.vms, args.memory_mb, args.workers)
        print(f"AM:       Provision of {args.vms} VMs ({args.workers} worker threads) -> all "
              f"geni_ready {ready:.1f} s, all SSH-reachable {am:.1f} s")
        print(f"ratio AM / virsh create: {am / base:.2f} (target <= 1.3)")
    finally:
        daemon.stop()
        subprocess.run(["umount", "-q", str(tmp / "libvirt")], check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
