"""The `[drivers.vserver]` table of the inventory: keys, defaults and validation."""
from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.inventory import InventoryError
from drivers.vserver.fetch import parse_networks
from drivers.vserver.cgroups import MIN_PIDS, PID_MAX_LIMIT
from drivers.vserver.naming import PREFIX_RE

TABLE = "drivers.vserver"
GUEST_IDS = 65536               # host ids per guest (its uids/gids 0..65535)
MAX_ID = 2**31 - 1              # ids above do not fit ping_group_range (nor some tools)


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
    default_cpu: float | None = None               # cores reserved for a sliver that asks for
                                                   # none; None: a fair share (cpu.shares)
    cpu_shares: int = 1024                         # every guest's weight against the others
    default_memory_mb: int = 256
    default_pids_max: int = 1024                   # tasks (processes + threads) per sliver
    disk_read_mbps: float | None = None            # blkio throttle per sliver on its layer's
    disk_write_mbps: float | None = None           # disk (MB/s; None: none)
    cfs_period_us: int = 100_000
    tc_latency_ms: int = 50                        # tbf queue: how long a packet may wait
    kill_timeout_s: float = 1.0                    # SIGTERM -> SIGKILL grace on stop/delete
    ssh: bool | str = "auto"                       # SSH login: true, false, "auto" (if sshd)
    sshd_path: str = "/usr/sbin/sshd"              # inside the guest's image
    ssh_address: str = "127.0.0.1"                 # where each sliver's SSH port listens
    ssh_hostname: str | None = None                # login hostname in manifests (ssh_address)
    ssh_port_min: int = 32200                      # a port per node sliver with users, from here
    ssh_port_max: int = 32999
    images_dir: str | None = None                  # image store (default <state_dir>/../images)
    default_image: str = "container-busybox"       # a sliver's root filesystem unless it names one
    build_default_image: bool = True               # build it from its recipe when missing
    guest_id_base: int = 1_000_000_000             # guest g's ids: base + slot*65536 .. +65535
    guest_id_slots: int = 16384                    # guests with distinct id ranges
    guest_tmpfs_mb: int = 64                       # each of a guest's /tmp and /run
    install_dir: str | None = None                 # file:// installs only from here (None: none)
    install_max_mb: int = 256                      # largest install download
    install_timeout_s: float = 60                  # longest install download
    # http(s) installs never reach loopback, link-local, private or the host's own
    # addresses (SSRF), except inside these networks ("127.0.0.0/8", "10.1.0.0/16", ...)
    install_allow_networks: tuple[str, ...] = ()

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

    def number(key: str, lo: float, *, integer: bool = False, optional: bool = False,
               hi: float | None = None) -> None:
        v = s[key]
        if optional and v is None:
            return
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < lo \
                or (hi is not None and v > hi) or (integer and not isinstance(v, int)):
            bound = f">= {lo}" if hi is None else f"in {lo}..{hi}"
            raise InventoryError(f"must be {'an integer' if integer else 'a number'} {bound}, "
                                 f"not {v!r}", table=TABLE, key=key)

    number("cpu", 0.01, optional=True)
    number("memory_mb", 1, optional=True)
    number("default_cpu", 0.01, optional=True)
    number("cpu_shares", 2, integer=True, hi=262144)
    number("default_memory_mb", 4, integer=True)
    number("default_pids_max", MIN_PIDS, integer=True, hi=PID_MAX_LIMIT)
    number("cfs_period_us", 1000, integer=True)
    number("disk_read_mbps", 0.01, optional=True)
    number("disk_write_mbps", 0.01, optional=True)
    number("tc_latency_ms", 1, integer=True)
    number("kill_timeout_s", 0)
    number("ssh_port_min", 1, integer=True, hi=65535)
    number("ssh_port_max", 1, integer=True, hi=65535)
    if s["ssh_port_max"] < s["ssh_port_min"]:
        raise InventoryError(f"must be >= ssh_port_min ({s['ssh_port_min']}), not "
                             f"{s['ssh_port_max']}", table=TABLE, key="ssh_port_max")
    number("guest_id_slots", 1, integer=True, hi=65535)
    number("guest_id_base", GUEST_IDS, integer=True,
           hi=MAX_ID + 1 - GUEST_IDS * s["guest_id_slots"])
    number("guest_tmpfs_mb", 1, integer=True)
    number("install_max_mb", 1, integer=True)
    number("install_timeout_s", 1)
    if not isinstance(s["build_default_image"], bool):
        raise InventoryError("must be true or false", table=TABLE, key="build_default_image")
    if not isinstance(s["default_image"], str) or not re.fullmatch(
            r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", s["default_image"]):
        raise InventoryError(f"must be an image name, not {s['default_image']!r}",
                             table=TABLE, key="default_image")
    for key in ("images_dir", "install_dir"):
        if s[key] is not None:
            if not isinstance(s[key], str) or not s[key].startswith(("/", "~")):
                raise InventoryError("must be an absolute path", table=TABLE, key=key)
            s[key] = str(Path(s[key]).expanduser())
    if not (isinstance(s["ssh"], bool) or s["ssh"] == "auto"):
        raise InventoryError(f'must be true, false or "auto", not {s["ssh"]!r}',
                             table=TABLE, key="ssh")
    if not isinstance(s["sshd_path"], str) or not s["sshd_path"].startswith("/"):
        raise InventoryError(f"must be an absolute path, not {s['sshd_path']!r}",
                             table=TABLE, key="sshd_path")
    try:
        if not isinstance(s["ssh_address"], str):
            raise ValueError
        address = ipaddress.ip_address(s["ssh_address"])
    except ValueError:
        raise InventoryError(f"must be an IPv4 or IPv6 address, not {s['ssh_address']!r}",
                             table=TABLE, key="ssh_address") from None
    s["ssh_address"] = str(address)
    host = s["ssh_hostname"]
    if host is not None and (not isinstance(host, str) or not host or host.split() != [host]):
        raise InventoryError(f"must be a host name or address, not {host!r}",
                             table=TABLE, key="ssh_hostname")
    if host is None and address.is_unspecified:
        raise InventoryError(f"must be set when ssh_address is {address} (listening on every "
                             "address): it is the host name users connect to",
                             table=TABLE, key="ssh_hostname")
    nets = s["install_allow_networks"]
    if isinstance(nets, str) or not isinstance(nets, (list, tuple)) \
            or not all(isinstance(n, str) for n in nets):
        raise InventoryError("must be a list of IP networks, e.g. [\"127.0.0.0/8\"]",
                             table=TABLE, key="install_allow_networks")
    try:
        s["install_allow_networks"] = tuple(str(n) for n in parse_networks(nets))
    except ValueError as exc:
        raise InventoryError(str(exc), table=TABLE, key="install_allow_networks") from None
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


def images_dir(settings: VServerSettings) -> Path:
    return Path(settings.images_dir) if settings.images_dir else \
        Path(settings.state_dir).parent / "images"


def ssh_enabled(settings: VServerSettings) -> bool:
    """Whether node slivers get SSH login (sshd runs inside each guest, from its image):
    `ssh = "auto"` and `true` both mean on; a guest whose image lacks `sshd_path` gets no
    login (auto) or fails its provision saying so (true)."""
    return settings.ssh is not False


__all__ = ["GUEST_IDS", "TABLE", "VServerSettings", "images_dir", "parse_settings",
           "ssh_enabled"]
