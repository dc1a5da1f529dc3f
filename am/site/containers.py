"""A container node for the default site: this host, through the vserver driver (a guest per
sliver: namespaces, cgroups, its own files, an SSH login). Everything the driver makes is named
with the site's prefix, its files live under `<site>/vserver`, and its cgroups under
`<controller>/geni-am-<tag>`, which this helper removes when the site goes down."""
from __future__ import annotations

import os
from pathlib import Path

from am.site.base import ComponentInfo, Fragment, SiteContext, SiteHelper
from drivers import hostnet
from drivers.base import DriverError
from drivers.vserver.cgroups import CONTROLLERS, CgroupLayout

NODE_NAME = "vs1"
CGROUP_ROOT = Path("/sys/fs/cgroup")


class ContainerNode(SiteHelper):
    name = "container node"
    letters = "v"

    def __init__(self, cgroup_root: Path = CGROUP_ROOT):
        self.cgroup_root = cgroup_root

    def layout(self, ctx: SiteContext) -> CgroupLayout:
        return CgroupLayout(self.cgroup_root, f"geni-am-{ctx.tag}")

    def missing(self, ctx: SiteContext) -> list[str]:
        out = []
        if os.geteuid() != 0:
            out.append("root (containers need network namespaces and cgroups)")
        out += [f"{t} (iproute2/procps/util-linux)" for t in hostnet.missing_tools()]
        for ctrl in CONTROLLERS:
            if not (self.cgroup_root / ctrl / "tasks").exists():
                out.append(f"cgroup v1 controller {ctrl!r} mounted at {self.cgroup_root / ctrl}")
        if not os.path.exists("/proc/self/ns/net"):
            out.append("network namespaces (CONFIG_NET_NS)")
        return out

    def start(self, ctx: SiteContext) -> Fragment:
        layout = self.layout(ctx)
        for ctrl in CONTROLLERS:
            ctx.record.note("cgroup_dirs", str(layout.parent_dir(ctrl)))
        return Fragment(
            drivers={"vserver": {"name_prefix": ctx.prefix("v"),
                                 "state_dir": str(ctx.dir("vserver")),
                                 "cgroup_root": str(self.cgroup_root),
                                 "cgroup_parent": layout.parent}},
            components=[{"name": NODE_NAME, "driver": "vserver", "isolation": "container",
                         "sliver_types": ["vserver-container"],
                         "hardware_types": ["pc", "vserver-host"],
                         "forwarding_modes": ["guest"]}],
            info=[ComponentInfo(NODE_NAME, "vserver", "real",
                                "containers on this host: a network namespace and cgroups "
                                f"(cpu, memory, pids under {layout.parent}) per sliver, "
                                "SSH login when sshd is installed")])

    def stop(self, ctx: SiteContext) -> None:
        remove_cgroup_dirs(ctx)


def remove_cgroup_dirs(ctx: SiteContext) -> None:
    """Kill what still runs in the recorded cgroup directories and remove them (children
    first). Used by the container node and by `site down` after a crash."""
    for recorded in list(ctx.record.cgroup_dirs):
        parent = Path(recorded)
        layout = CgroupLayout(parent.parent.parent, parent.name)
        if parent.is_dir():
            for child in sorted(p.name for p in parent.iterdir() if p.is_dir()):
                try:
                    layout.remove(child)
                except DriverError:
                    pass
            try:
                parent.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                continue                    # still busy: keep it recorded for the next try
        ctx.record.forget("cgroup_dirs", recorded)


__all__ = ["ContainerNode", "remove_cgroup_dirs"]
