"""Host networking through iproute2: namespaces, veth pairs, bridges, addresses, routes, tc.

Shared by the drivers that build a data plane on this host (vserver containers; the Xen driver
may use a namespace to stand in for Dom0). Every call is one `ip`/`tc` process: about 1-3 ms
here, cheap enough for tens of slivers, and it needs no helper process per namespace (pyroute2's
`NetNS` forks one). Failures raise `HostNetError` (a `DriverError`) carrying the command and
what iproute2 said; the "already there"/"already gone" answers of idempotent steps are not
errors (see `exists_ok` / `missing_ok`).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

from drivers.base import DriverError

IFNAMSIZ = 15          # the kernel's limit on interface names (16 with the NUL)
NETNS_DIR = "/run/netns"
REQUIRED_TOOLS = ("ip", "tc", "sysctl", "nsenter")

_EXISTS = ("File exists", "already exists")
_MISSING = ("Cannot find device", "does not exist", "No such file or directory",
            "Cannot open network namespace", "Invalid argument",
            "Cannot delete qdisc with handle of zero")


class HostNetError(DriverError):
    """An iproute2 command failed; `stderr` is what the tool said."""

    def __init__(self, message: str, *, stderr: str = "", transient: bool = False):
        super().__init__(message, transient=transient)
        self.stderr = stderr


@dataclass(frozen=True)
class LinkInfo:
    """One interface as `ip -j link` reports it."""

    name: str
    alias: str | None
    up: bool                 # administratively up (the UP flag)
    mac: str | None
    master: str | None
    kind: str | None         # "veth", "bridge", ... (from -d), None if not asked


def missing_tools(tools: Sequence[str] = REQUIRED_TOOLS) -> list[str]:
    """The tools of `tools` not on PATH."""
    return [t for t in tools if shutil.which(t) is None]


def run(argv: Sequence[str], *, exists_ok: bool = False, missing_ok: bool = False,
        input: str | None = None, timeout: float = 30.0) -> str:
    """Run one command; return stdout. Tolerated failures return ""."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, input=input,
                              timeout=timeout, check=False)
    except FileNotFoundError:
        raise HostNetError(f"{argv[0]} is not installed on this host") from None
    except subprocess.TimeoutExpired:
        raise HostNetError(f"`{' '.join(argv)}` timed out after {timeout:g} s",
                           transient=True) from None
    if proc.returncode == 0:
        return proc.stdout
    err = proc.stderr.strip()
    if exists_ok and any(s in err for s in _EXISTS):
        return ""
    if missing_ok and any(s in err for s in _MISSING):
        return ""
    raise HostNetError(f"`{' '.join(argv)}` failed: {err or f'exit {proc.returncode}'}",
                       stderr=err)


def _ip(netns: str | None) -> list[str]:
    return ["ip", "-n", netns] if netns else ["ip"]


# ---- namespaces -------------------------------------------------------------------------------

def netns_list() -> set[str]:
    """Names of the named network namespaces (those under /run/netns)."""
    try:
        return set(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return set()


def netns_exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def netns_add(name: str) -> bool:
    """Create the namespace (loopback up); False when it already existed."""
    if netns_exists(name):
        return False
    run(["ip", "netns", "add", name], exists_ok=True)
    run(["ip", "-n", name, "link", "set", "lo", "up"])
    return True


def netns_delete(name: str) -> bool:
    """Remove the namespace; its interfaces go with it (veth peers too). False if absent."""
    if not netns_exists(name):
        return False
    run(["ip", "netns", "del", name], missing_ok=True)
    return True


def netns_pids(name: str) -> list[int]:
    """Processes whose network namespace is `name`."""
    if not netns_exists(name):
        return []
    out = run(["ip", "netns", "pids", name], missing_ok=True)
    return [int(p) for p in out.split() if p.isdigit()]


def netns_exec_argv(name: str, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", name, *argv]


def sysctl_set(netns: str | None, key: str, value: str) -> None:
    argv = ["sysctl", "-qw", f"{key}={value}"]
    run(netns_exec_argv(netns, argv) if netns else argv)


def sysctl_get(netns: str | None, key: str) -> str:
    argv = ["sysctl", "-n", key]
    return run(netns_exec_argv(netns, argv) if netns else argv).strip()


# ---- links ------------------------------------------------------------------------------------

def links(netns: str | None = None, *, details: bool = False) -> list[LinkInfo]:
    """Every interface in the namespace (root when None).

    A namespace that another process is creating right now exists as a file before it is
    mounted (setns then fails with EINVAL); that window is short, so the read is retried.
    """
    argv = _ip(netns) + ["-j"] + (["-d"] if details else []) + ["link", "show"]
    for attempt in range(50):
        try:
            out = run(argv)
            break
        except HostNetError as exc:
            if not netns or "Invalid argument" not in exc.stderr or attempt == 49:
                raise
            time.sleep(0.01)
    result = []
    for item in json.loads(out or "[]"):
        kind = (item.get("linkinfo") or {}).get("info_kind") if details else None
        result.append(LinkInfo(name=item["ifname"], alias=item.get("ifalias"),
                               up="UP" in item.get("flags", ()), mac=item.get("address"),
                               master=item.get("master"), kind=kind))
    return result


def find_link(netns: str | None, name_or_alias: str) -> LinkInfo | None:
    """The interface named `name_or_alias` or carrying it as its alias."""
    for link in links(netns):
        if link.name == name_or_alias or link.alias == name_or_alias:
            return link
    return None


def veth_add(name: str, peer: str) -> None:
    run(["ip", "link", "add", name, "type", "veth", "peer", "name", peer])


def bridge_add(name: str) -> bool:
    """Create a bridge in the root namespace and bring it up; False when it existed."""
    existed = find_link(None, name) is not None
    if not existed:
        run(["ip", "link", "add", name, "type", "bridge"], exists_ok=True)
    run(["ip", "link", "set", name, "up"])
    return not existed


def link_set(netns: str | None, dev: str, *, name: str | None = None, alias: str | None = None,
             mac: str | None = None, master: str | None = None, up: bool | None = None) -> None:
    """Change an interface; a rename or MAC change happens with the link down, as required."""
    argv = _ip(netns) + ["link", "set", "dev", dev]
    if name is not None and name != dev:
        run(_ip(netns) + ["link", "set", "dev", dev, "down"])
        argv += ["name", name]
    if mac is not None:
        argv += ["address", mac]
    if alias is not None:
        argv += ["alias", alias]
    if master is not None:
        argv += ["master", master]
    if up is not None:
        argv += ["up" if up else "down"]
    run(argv)


def link_move(dev: str, netns: str) -> None:
    """Move an interface from the root namespace into `netns` (its qdiscs are reset)."""
    run(["ip", "link", "set", "dev", dev, "netns", netns])


def link_delete(netns: str | None, dev: str) -> bool:
    """Delete an interface (a veth takes its peer along); False when it was not there."""
    if netns and not netns_exists(netns):
        return False
    if find_link(netns, dev) is None:
        return False
    run(_ip(netns) + ["link", "del", "dev", dev], missing_ok=True)
    return True


def addr_replace(netns: str | None, dev: str, cidr: str) -> None:
    run(_ip(netns) + ["addr", "replace", cidr, "dev", dev])


def addr_list(netns: str | None, dev: str) -> list[str]:
    out = run(_ip(netns) + ["-j", "addr", "show", "dev", dev], missing_ok=True)
    addrs = []
    for item in json.loads(out or "[]"):
        for a in item.get("addr_info", ()):
            if a.get("family") == "inet":
                addrs.append(f"{a['local']}/{a['prefixlen']}")
    return addrs


def route_replace(netns: str | None, destination: str, *, gateway: str | None = None,
                  dev: str | None = None) -> None:
    argv = _ip(netns) + ["route", "replace", destination]
    if gateway:
        argv += ["via", gateway]
    if dev:
        argv += ["dev", dev]
    run(argv)


def routes(netns: str | None) -> list[dict]:
    return json.loads(run(_ip(netns) + ["-j", "route", "show"]) or "[]")


# ---- traffic control --------------------------------------------------------------------------

#: What tc shapes on a veth or tap with this kernel: capacity (tbf). It has no netem qdisc and
#: no police action (checked with `tc qdisc add ... netem` on this host), so link latency and
#: packet loss cannot be emulated; the drivers built on this module refuse them.
TC_LINK_PROPERTIES = ("capacity",)
NO_NETEM = ("this kernel has no netem qdisc and no tc police action, so link latency and "
            "packet loss cannot be emulated here; only capacity (tc tbf) is enforced")


def tbf_replace(netns: str | None, dev: str, kbps: int, *, latency_ms: int = 50) -> None:
    """Shape `dev`'s egress to `kbps` kbit/s with a token bucket.

    The bucket holds at least 10 ms of traffic (the timer granularity) and never less than
    a few full-size frames, so TCP neither starves nor bursts far past the rate.
    """
    rate_bytes = kbps * 1000 // 8
    burst = max(rate_bytes // 100, 16 * 1024)
    tc = ["tc"] + (["-n", netns] if netns else [])
    run(tc + ["qdisc", "replace", "dev", dev, "root", "tbf", "rate", f"{kbps}kbit",
              "burst", str(burst), "latency", f"{latency_ms}ms"])


def root_qdisc_delete(netns: str | None, dev: str) -> None:
    """Back to the default root qdisc (unshaped); no error if none was set."""
    tc = ["tc"] + (["-n", netns] if netns else [])
    run(tc + ["qdisc", "del", "dev", dev, "root"], missing_ok=True)


def qdisc_kind(netns: str | None, dev: str) -> str | None:
    tc = ["tc"] + (["-n", netns] if netns else [])
    out = run(tc + ["-j", "qdisc", "show", "dev", dev, "root"], missing_ok=True)
    items = json.loads(out or "[]")
    return items[0].get("kind") if items else None


__all__ = [
    "HostNetError", "IFNAMSIZ", "NO_NETEM", "TC_LINK_PROPERTIES", "LinkInfo", "addr_list", "addr_replace", "bridge_add",
    "find_link", "link_delete", "link_move", "link_set", "links", "missing_tools", "netns_add",
    "netns_delete", "netns_exec_argv", "netns_exists", "netns_list", "netns_pids", "qdisc_kind",
    "root_qdisc_delete", "route_replace", "routes", "run", "sysctl_get", "sysctl_set", "tbf_replace", "veth_add",
]
