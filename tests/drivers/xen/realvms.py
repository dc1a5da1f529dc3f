"""Shared plumbing for tests and benches with real VMs: a private libvirtd and a VM image.

The image is built once into a store under the download cache (`~/.cache/geni-am/vm-images`
or `$GENI_AM_CACHE_DIR/vm-images`) and rebuilt only when the guest scripts change.
"""
from __future__ import annotations

import gzip
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from drivers.images import debs
from drivers.images.store import ImageStore
from drivers.xen.images import cpio_bytes, ensure_image
from drivers.xen.libvirtd import PrivateLibvirtd

AUTH = "geni-am:vmtest"


def image_store() -> ImageStore:
    store = ImageStore(debs.cache_dir().parent / "vm-images")
    good = ensure_image(store)
    if not store.exists("broken-init"):
        # the same kernel with an initramfs whose /init cannot run: the kernel panics
        staging = store.staging()
        shutil.copyfile(good.data / good.meta["kernel"], staging / "data" / "vmlinuz")
        (staging / "data" / "initrd.img").write_bytes(gzip.compress(cpio_bytes(
            [("init", stat.S_IFREG | 0o755, b"#!/no/such/interpreter\n")]), mtime=0))
        store.publish(staging, "broken-init", kind="vm", description="test: /init cannot run",
                      meta={"kernel": "vmlinuz", "initrd": "initrd.img", "boot": "initramfs"})
    return store


def start_libvirtd() -> PrivateLibvirtd:
    root = Path(tempfile.mkdtemp(prefix="geniam-libvirt-"))
    return PrivateLibvirtd(root).start(timeout=60)


def stop_libvirtd(daemon: PrivateLibvirtd) -> None:
    daemon.stop()
    subprocess.run(["umount", "-q", str(daemon.root)], check=False)
    shutil.rmtree(daemon.root, ignore_errors=True)


def qemu_pid(daemon: PrivateLibvirtd, domain: str) -> int:
    return int((daemon.root / "run" / "qemu" / f"{domain}.pid").read_text().strip())


def netns(name: str) -> str:
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    return name


def host_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                         check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


__all__ = ["AUTH", "host_links", "image_store", "netns", "qemu_pid", "start_libvirtd",
           "stop_libvirtd"]
