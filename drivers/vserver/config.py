"""The `[drivers.vserver]` table of the inventory: keys, defaults and validation."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.inventory import InventoryError
from drivers.vserver.naming import PREFIX_RE

TABLE = "drivers.vserver"


def _host_memory_mb() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return float(int(line.split()[1]) // 1024)
    except OSError:
        pass
    return 1024.0


@dataclass(frozen=True)
class VServerSettings:
    name_prefix: str = "gam"                       # prefix of every name made on the host (1-4 chars)
    state_dir: str = "/var/lib/geni-am/vserver"    # records, locks and sliver roots
    cgroup_root: str = "/sys/fs/cgroup"            # where the v1 hierarchies are mounted
    cgroup_parent: str = "geni-am"                 # our directory under each controller
    cpu: float | None = None                       # cores offered per node (default: all)
    memory_mb: float | None = None                 # MiB offered per node (default: half of RAM)
    default_cpu: float = 0.5                       # share of a sliver that asks for none
    default_memory_mb: int = 256
    cfs_period_us: int = 100_000
    tc_latency_ms: int = 50                        # tbf queue: how long a packet may wait
    kill_timeout_s: float = 1.0                    # SIGTERM -> SIGKILL grace on stop/delete

    @property
    def node_capacity(self) -> dict[str, float]:
        return {"cpu": float(self.cpu if self.cpu is not None else (os.cpu_count() or 1)),
                "memory_mb": float(self.memory_mb if self.memory_mb is not None
                                   else _host_memory_mb() // 2)}


def parse_settings(config: Mapping[str, Any]) -> VServerSettings:
    """Validated settings; an error names table [drivers.vserver] and the key."""
    fields = VServerSettings.__dataclass_fields__
    unknown = set(config) - set(fields)
    if unknown:
        raise InventoryError(f"unknown key (allowed: {', '.join(sorted(fields))})",
                             table=TABLE, key=sorted(unknown)[0])
    s = {**{k: f.default for k, f in fields.items()}, **config}

    def number(key: str, lo: float, *, integer: bool = False, optional: bool = False) -> None:
        v = s[key]
        if optional and v is None:
            return
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < lo \
                or (integer and not isinstance(v, int)):
            raise InventoryError(f"must be {'an integer' if integer else 'a number'} >= {lo}, "
                                 f"not {v!r}", table=TABLE, key=key)

    number("cpu", 0.01, optional=True)
    number("memory_mb", 1, optional=True)
    number("default_cpu", 0.01)
    number("default_memory_mb", 4, integer=True)
    number("cfs_period_us", 1000, integer=True)
    number("tc_latency_ms", 1, integer=True)
    number("kill_timeout_s", 0)
    if not isinstance(s["name_prefix"], str) or not PREFIX_RE.match(s["name_prefix"]):
        raise InventoryError("must be 1-4 lower-case letters or digits starting with a letter "
                             "(host interface names are limited to 15 characters)",
                             table=TABLE, key="name_prefix")
    for key in ("state_dir", "cgroup_root"):
        if not isinstance(s[key], str) or not s[key]:
            raise InventoryError("must be a path", table=TABLE, key=key)
        s[key] = str(Path(s[key]).expanduser())
    if not isinstance(s["cgroup_parent"], str) or not s["cgroup_parent"] \
            or "/" in s["cgroup_parent"] or s["cgroup_parent"].startswith("."):
        raise InventoryError("must be one directory name", table=TABLE, key="cgroup_parent")
    return VServerSettings(**s)


__all__ = ["TABLE", "VServerSettings", "parse_settings"]
