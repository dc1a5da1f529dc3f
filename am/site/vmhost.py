"""A VM host for the default site: a private libvirtd (drivers/xen/libvirtd.py) under
`<site>/libvirt`, the VM image built from Debian packages into `<state_dir>/images` (once; it
is reused while the recipe is unchanged), and a namespace standing in for Dom0, where the
dom0-mode routers forward. The driver is the Xen driver talking to that libvirtd.

Guests run under QEMU's software emulation (`domain_type = "qemu"`): nested KVM does not work
on these machines. On a host where it does (or on Xen), point the driver at that libvirtd and
set `domain_type = "auto"`.
"""
from __future__ import annotations

import shutil

from am.site.base import ComponentInfo, Fragment, SiteContext, SiteHelper
from drivers import hostnet
from drivers.xen.libvirtd import REQUIRED, PrivateLibvirtd

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drivers.images.store import Image, ImageStore

HOST_NAME = "vmhost1"
#: guest-forwarding routers on this machine: the knee bench/bench_forwarding.py measured for
#: QEMU guests here (docs/xen.md, "guest_router_limit: how the figure is obtained")
GUEST_ROUTER_LIMIT = 1
TOOLS = {"libvirtd": "libvirt-daemon-system", "virtlogd": "libvirt-daemon-system",
         "qemu-system-x86_64": "qemu-system-x86", "unshare": "util-linux",
         "apt-get": "apt", "dpkg-deb": "dpkg", "modinfo": "kmod", "virsh": "libvirt-clients"}


def site_image(store: ImageStore) -> Image:
    """The VM image in the site's store: built once per machine into the download cache's
    store (`~/.cache/geni-am/vm-images`), then published into this site's store by hard links
    (a copy when they are on different file systems), so a new state directory does not
    rebuild it."""
    import os

    from drivers.images import debs
    from drivers.images.store import ImageStore
    from drivers.xen.images import ensure_image, guest_scripts_digest

    try:
        have = store.get("vm-initramfs")
        if have.meta.get("guest_scripts") == guest_scripts_digest():
            return have
    except Exception:   # noqa: BLE001 - absent or unreadable: publish it anew
        pass
    cached = ensure_image(ImageStore(debs.cache_dir().parent / "vm-images"))
    staging = store.staging()
    for f in cached.data.iterdir():
        try:
            os.link(f, staging / "data" / f.name)
        except OSError:
            shutil.copy2(f, staging / "data" / f.name)
    return store.publish(staging, "vm-initramfs", kind=cached.kind,
                         description=cached.description, meta=dict(cached.meta))


class VMHost(SiteHelper):
    name = "vm host"

    def _daemon(self, ctx: SiteContext) -> PrivateLibvirtd:
        return PrivateLibvirtd(ctx.root / "libvirt")

    def missing(self, ctx: SiteContext) -> list[str]:
        needed = dict.fromkeys(REQUIRED) | dict.fromkeys(TOOLS)
        out = [f"{t} (apt-get install {TOOLS.get(t, t)})" for t in needed if shutil.which(t) is None]
        out += [f"{t} (iproute2/procps)" for t in hostnet.missing_tools()]
        return out

    def start(self, ctx: SiteContext) -> Fragment:
        from drivers.images.store import ImageStore

        store = ImageStore(ctx.root.parent / "images")
        image = site_image(store)
        prefix = ctx.prefix("x")
        dom0 = f"{prefix}-dom0"
        ctx.record.note("netns", dom0)
        hostnet.netns_add(dom0)
        daemon = self._daemon(ctx)
        ctx.dir("libvirt")
        if not daemon.answers():
            daemon.start(timeout=120)
        driver = {"uri": daemon.uri, "image_store": str(store.root), "domain_type": "qemu",
                  "state_dir": str(ctx.dir("xen")), "dom0_netns": dom0, "ifname_prefix": prefix,
                  "vcpus": 8, "memory_mb": 8192, "default_memory_mb": 256,
                  "default_image": image.name,
                  "guest_router_limit": GUEST_ROUTER_LIMIT}
        return Fragment(
            drivers={"xen": driver},
            components=[{"name": HOST_NAME, "driver": "xen"}],
            info=[ComponentInfo(HOST_NAME, "xen", "real",
                                f"VM host: QEMU guests (software emulation) through a private "
                                f"libvirtd ({daemon.socket}); image {image.name} "
                                f"({image.meta.get('kernel_version', '?')}, {image.short}); "
                                f"SSH logins forwarded from 127.0.0.1; dom0-mode routers "
                                f"forward in namespace {dom0}")])

    def stop(self, ctx: SiteContext) -> None:
        self._daemon(ctx).stop()
        for ns in [n for n in ctx.record.netns if n.endswith("-dom0")]:
            hostnet.netns_delete(ns)
            ctx.record.forget("netns", ns)

    def markers(self, ctx: SiteContext) -> list[str]:
        return [str(ctx.root / "libvirt"), str(ctx.root / "xen")]


__all__ = ["VMHost"]
