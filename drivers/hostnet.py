"""Host networking: namespaces, veth pairs, bridges, addresses, routes, tc.

Shared by the drivers that build a data plane on this host (vserver containers; the Xen driver
may use a namespace to stand in for Dom0). A process (`ip`/`tc`) costs about 1-3 ms idle and
20-100 ms on a loaded host, so work that grows with a topology avoids them:
  * in process, over netlink (pyroute2) or a syscall, from a short-lived thread that has
    entered the namespace (`setns`/`unshare` move only the calling thread; pyroute2's `NetNS`
    would fork a helper per namespace): creating and deleting namespaces (`netns_add`,
    `netns_delete`), a veth pair made with its ends already in their namespaces
    (`veth_pair`), a namespace's links, addresses and routes (`show`), sysctls;
  * many iproute2 commands in one `ip -batch` process for one namespace (`batch`), which keeps
    iproute2's own error messages for the commands a convergence applies.
A chain of N routers needs O(N) processes, not O(N^2). Failures raise `HostNetError` (a
`DriverError`) carrying the command (or the `ip` command a netlink step stands for) and what
the kernel or iproute2 said; the "already there"/"already gone" answers of idempotent steps are
not errors (see `exists_ok` / `missing_ok`).
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pyroute2 import IPRoute, NetlinkError
from pyroute2 import netns as pr_netns

from drivers.base import DriverError

IFNAMSIZ = 15          # the kernel's limit on interface names (16 with the NUL)
NETNS_DIR = "/run/netns"
IFF_UP = 0x1
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
    """Create the namespace (loopback up); False when it already existed. No process: a
    short-lived thread unshares a new network namespace (unshare, like setns, moves only the
    calling thread), pyroute2 binds it to /run/netns/NAME as `ip netns add` does, and the
    thread, already inside, raises loopback."""
    if netns_exists(name):
        return False
    if not name or "/" in name or name in (".", ".."):
        raise HostNetError(f"bad network namespace name {name!r}")

    def make() -> bool:
        if _libc.unshare(CLONE_NEWNET) != 0:
            raise HostNetError(f"cannot create network namespace {name}: "
                               f"{os.strerror(ctypes.get_errno())}")
        try:
            pr_netns.attach(os.path.join(NETNS_DIR, name),
                            f"{os.getpid()}/task/{threading.get_native_id()}")
        except FileExistsError:
            return False                 # another caller made it meanwhile
        except OSError as exc:
            raise HostNetError(f"cannot create network namespace {name}: "
                               f"{exc.strerror or exc}") from None
        _loopback_up()
        return True

    return bool(_in_thread(f"netns-add-{name}", make))


def _in_thread(name: str, fn: Callable[[], object]) -> object:
    """`fn()` in a short-lived thread of its own (for per-thread namespace changes); its
    result, or its exception raised here."""
    result: dict[str, object] = {}

    def body() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            result["error"] = exc

    t = threading.Thread(target=body, name=name, daemon=True)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]            # type: ignore[misc]
    return result.get("value")


def _loopback_up() -> None:
    """Raise `lo` of the calling thread's namespace (SIOCGIFFLAGS/SIOCSIFFLAGS, no process)."""
    import fcntl
    import socket
    import struct
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        req = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(sock, 0x8913, req))[1]
        if not flags & 1:
            fcntl.ioctl(sock, 0x8914, struct.pack("16sh", b"lo", flags | 1))


def netns_delete(name: str) -> bool:
    """Remove the namespace; its interfaces go with it (veth peers too). False if absent.
    In process, as `ip netns del` does it: detach the bind mount, remove the file."""
    if not netns_exists(name):
        return False
    if not name or "/" in name or name in (".", ".."):
        raise HostNetError(f"bad network namespace name {name!r}")
    try:
        pr_netns.remove(os.path.join(NETNS_DIR, name))
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise HostNetError(f"cannot delete network namespace {name}: "
                           f"{exc.strerror or exc}") from None
    return True


def netns_pids(name: str) -> list[int]:
    """Processes whose network namespace is `name`."""
    if not netns_exists(name):
        return []
    out = run(["ip", "netns", "pids", name], missing_ok=True)
    return [int(p) for p in out.split() if p.isdigit()]


def netns_exec_argv(name: str, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", name, *argv]


CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def in_netns(netns: str, fn: Callable[[], object]) -> object:
    """`fn()` run in a short-lived thread that has entered the named network namespace
    (setns(2) moves only the calling thread), so no process is started. /proc/sys/net opened
    there is that namespace's. HostNetError if the namespace cannot be entered."""

    def body() -> object:
        try:
            fd = os.open(os.path.join(NETNS_DIR, netns), os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise HostNetError(f"cannot open network namespace {netns}: "
                               f"{exc.strerror}") from None
        try:
            # a namespace another process is creating exists as a file before it is
            # mounted (setns fails with EINVAL): that window is short, so retry
            for attempt in range(50):
                if _libc.setns(fd, CLONE_NEWNET) == 0:
                    break
                err = ctypes.get_errno()
                if err != errno.EINVAL or attempt == 49:
                    raise HostNetError(f"cannot enter network namespace {netns}: "
                                       f"{os.strerror(err)}")
                os.close(fd)
                time.sleep(0.01)
                fd = os.open(os.path.join(NETNS_DIR, netns), os.O_RDONLY | os.O_CLOEXEC)
        finally:
            os.close(fd)
        return fn()

    return _in_thread(f"netns-{netns}", body)


def _sysctl_path(key: str) -> str:
    if not key or "/" in key or ".." in key.split("."):
        raise HostNetError(f"bad sysctl name {key!r}")
    return "/proc/sys/" + key.replace(".", "/")


def sysctl_set(netns: str | None, key: str, value: str) -> None:
    """Write a sysctl (of `netns`, or of this process's namespace when None)."""
    path = _sysctl_path(key)

    def write() -> None:
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as exc:
            raise HostNetError(f"sysctl {key}={value} failed"
                               f"{f' in {netns}' if netns else ''}: {exc.strerror}") from None

    in_netns(netns, write) if netns else write()


def sysctl_get(netns: str | None, key: str) -> str:
    path = _sysctl_path(key)

    def read() -> str:
        try:
            with open(path) as f:
                return " ".join(f.read().split())
        except OSError as exc:
            raise HostNetError(f"sysctl {key} cannot be read"
                               f"{f' in {netns}' if netns else ''}: {exc.strerror}") from None

    return str(in_netns(netns, read) if netns else read())


# ---- links ------------------------------------------------------------------------------------

def _run_retrying(argv: list[str], netns: str | None, *, input: str | None = None) -> str:
    """A read of a namespace; one that another process is creating right now exists as a file
    before it is mounted (setns then fails with EINVAL): that window is short, so retry."""
    for attempt in range(50):
        try:
            return run(argv, input=input)
        except HostNetError as exc:
            if not netns or "Invalid argument" not in exc.stderr or attempt == 49:
                raise
            time.sleep(0.01)
    raise AssertionError("unreachable")


def _link_infos(items: list[dict], details: bool) -> list[LinkInfo]:
    result = []
    for item in items:
        kind = (item.get("linkinfo") or {}).get("info_kind") if details else None
        result.append(LinkInfo(name=item["ifname"], alias=item.get("ifalias"),
                               up="UP" in item.get("flags", ()), mac=item.get("address"),
                               master=item.get("master"), kind=kind))
    return result


def links(netns: str | None = None, *, details: bool = False) -> list[LinkInfo]:
    """Every interface in the namespace (root when None)."""
    argv = _ip(netns) + ["-j"] + (["-d"] if details else []) + ["link", "show"]
    return _link_infos(json.loads(_run_retrying(argv, netns) or "[]"), details)


@dataclass(frozen=True)
class NetnsView:
    """A namespace's interfaces, IPv4 addresses and IPv4 routes, read in one go."""

    links: list[LinkInfo]
    addresses: dict[str, list[str]]      # interface -> ["10.0.0.1/24", ...]
    routes: list[dict]                   # as `ip -j route show` reports them
    # route_key(dst) -> [(gateway, dev)], built on first use: a router of a chain of N holds
    # N routes and is asked about each, so a scan per question would be O(N^2) parses
    _by_key: dict[str, list[tuple[str | None, str | None]]] = \
        field(default_factory=dict, init=False, repr=False, compare=False)

    def has_route(self, destination: str, gateway: str | None = None,
                  dev: str | None = None) -> bool:
        if not self._by_key and self.routes:
            for r in self.routes:
                self._by_key.setdefault(route_key(r.get("dst", "")), []).append(
                    (r.get("gateway"), r.get("dev")))
        return any((gateway is None or g == gateway) and (dev is None or d == dev)
                   for g, d in self._by_key.get(route_key(destination), ()))


def route_key(destination: str) -> str:
    """A route destination in one spelling ("default" = 0.0.0.0/0, a host without /32)."""
    if destination in ("default", ""):
        return "0.0.0.0/0"
    try:
        return str(ipaddress.ip_network(destination, strict=False))
    except ValueError:
        return destination


def show(netns: str | None) -> NetnsView:
    """Links, IPv4 addresses and main-table IPv4 routes of a namespace, read over netlink
    (pyroute2) from a thread that has entered it: no process. Spelled as `ip -j` spells them
    (routes: "dst" is "default" or a prefix, a host without /32; "gateway"; "dev")."""
    return in_netns(netns, _view_here) if netns else _view_here()      # type: ignore[return-value]


def _view_here() -> NetnsView:
    with IPRoute() as ipr:
        raw_links = ipr.get_links()
        raw_addrs = ipr.get_addr(family=socket.AF_INET)
        raw_routes = ipr.get_routes(family=socket.AF_INET, table=254)
    names = {m["index"]: m.get_attr("IFLA_IFNAME") for m in raw_links}
    links_ = [LinkInfo(name=m.get_attr("IFLA_IFNAME"), alias=m.get_attr("IFLA_IFALIAS") or None,
                       up=bool(m["flags"] & IFF_UP), mac=m.get_attr("IFLA_ADDRESS"),
                       master=names.get(m.get_attr("IFLA_MASTER")), kind=None)
              for m in raw_links]
    addrs: dict[str, list[str]] = {li.name: [] for li in links_}
    for m in raw_addrs:
        name = names.get(m["index"])
        local = m.get_attr("IFA_LOCAL") or m.get_attr("IFA_ADDRESS")
        if name is not None and local:
            addrs.setdefault(name, []).append(f"{local}/{m['prefixlen']}")
    routes: list[dict] = []
    for m in raw_routes:
        if m.get_attr("RTA_TABLE", m["table"]) != 254:
            continue
        dst = m.get_attr("RTA_DST")
        route: dict = {"dst": "default" if dst is None else
                       (dst if m["dst_len"] == 32 else f"{dst}/{m['dst_len']}")}
        if m.get_attr("RTA_GATEWAY"):
            route["gateway"] = m.get_attr("RTA_GATEWAY")
        if m.get_attr("RTA_OIF") in names:
            route["dev"] = names[m.get_attr("RTA_OIF")]
        routes.append(route)
    return NetnsView(links_, addrs, routes)


def batch(netns: str | None, commands: Sequence[Sequence[str]]) -> dict[int, str]:
    """Run iproute2 `ip` commands (without the leading "ip") in one `ip -force -batch`
    process in `netns`; ip carries on past a failing command. Returns {index: what ip said}
    for the commands that failed (empty when all succeeded)."""
    if not commands:
        return {}
    lines = []
    for cmd in commands:
        if not cmd or any(not a or any(c.isspace() or c in "\"'#\\" for c in a) for a in cmd):
            raise HostNetError(f"bad iproute2 batch command {list(cmd)!r}")
        lines.append(" ".join(cmd))
    argv = _ip(netns) + ["-force", "-batch", "-"]
    for attempt in range(50):
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60,
                                  input="\n".join(lines) + "\n")
        except FileNotFoundError:
            raise HostNetError("ip is not installed on this host") from None
        except subprocess.TimeoutExpired:
            raise HostNetError(f"`ip -batch` of {len(lines)} commands timed out",
                               transient=True) from None
        # the namespace not mounted yet (being created): ip could not enter it, ran nothing
        if not (netns and proc.returncode != 0 and "Command failed" not in proc.stderr
                and "Invalid argument" in proc.stderr) or attempt == 49:
            break
        time.sleep(0.01)
    failed: dict[int, str] = {}
    said: list[str] = []
    for line in proc.stderr.splitlines():
        if line.startswith("Command failed -:"):
            try:
                index = int(line.rsplit(":", 1)[1]) - 1
            except ValueError:
                index = -1
            failed[index] = " ".join(said).strip() or "failed"
            said = []
        elif line.strip():
            said.append(line.strip())
    if proc.returncode != 0 and not failed:
        raise HostNetError(f"`{' '.join(argv)}` failed: "
                           f"{proc.stderr.strip() or f'exit {proc.returncode}'}",
                           stderr=proc.stderr.strip())
    return failed


def batch_command(netns: str | None, commands: Sequence[Sequence[str]], index: int) -> str:
    """The command line `batch` ran as command `index` (for error messages)."""
    return " ".join(_ip(netns) + list(commands[index])) if 0 <= index < len(commands) \
        else " ".join(_ip(netns) + ["-batch"])


def find_link(netns: str | None, name_or_alias: str) -> LinkInfo | None:
    """The interface named `name_or_alias` or carrying it as its alias."""
    for link in links(netns):
        if link.name == name_or_alias or link.alias == name_or_alias:
            return link
    return None


def link_names(netns: str | None) -> set[str]:
    """Names (not aliases) of the namespace's interfaces, read by if_nameindex(3) from a
    thread in the namespace: no process, cheap enough for every sliver of a Status call."""
    import socket

    def names() -> set[str]:
        return {name for _, name in socket.if_nameindex()}

    return set(in_netns(netns, names) if netns else names())   # type: ignore[arg-type]


def proc_link_names(pid: int) -> set[str] | None:
    """Names of the interfaces of process `pid`'s network namespace, from /proc/PID/net/dev
    (one read, no thread); None when the process is gone."""
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            text = f.read()
    except OSError:
        return None
    return {line.split(":", 1)[0].strip() for line in text.splitlines()[2:] if ":" in line}


def bridge_ports(bridge: str) -> list[str]:
    """The interfaces on a root-namespace bridge (none when it is gone): a bridge several
    drivers' slivers share (a VM's tap and a container's end) goes once nobody is on it."""
    return [li.name for li in links(None) if li.master == bridge]


def root_has_link(name: str) -> bool:
    """Whether this process's namespace has an interface called `name` (by name only, not
    alias): one ioctl (if_nametoindex) in this namespace, no process."""
    import socket
    try:
        socket.if_nametoindex(name)
        return True
    except OSError:
        return False


def veth_add(name: str, peer: str) -> None:
    run(["ip", "link", "add", name, "type", "veth", "peer", "name", peer])


def veth_pair(a: str, a_netns: str, b: str, b_netns: str) -> None:
    """A veth pair `a`-`b` made with each end already in its namespace (which must exist) and
    aliased by its own name, over netlink (pyroute2): no process. Made in place, not made in
    the root namespace and moved: moving an interface between namespaces costs the kernel
    ~10-40 ms, creating it there ~1 ms. HostNetError names the step that failed as the `ip`
    command it stands for; its stderr is the kernel's answer ("File exists" when an end's
    name is taken). A failure leaves no half-made pair."""
    step = ["link", "add", a, "netns", a_netns, "type", "veth", "peer", "name", b,
            "netns", b_netns]
    made = False
    try:
        # a namespace another thread is creating exists as a file before it is mounted (the
        # kernel answers EINVAL for it): that window is short, so retry, as in_netns does
        for attempt in range(50):
            fds = []
            try:
                for ns in (a_netns, b_netns):
                    fds.append(os.open(os.path.join(NETNS_DIR, ns), os.O_RDONLY | os.O_CLOEXEC))
                with IPRoute() as ipr:
                    ipr.link("add", ifname=a, kind="veth", net_ns_fd=fds[0],
                             peer={"ifname": b, "net_ns_fd": fds[1]})
                made = True
                break
            except NetlinkError as exc:
                if exc.code != errno.EINVAL or attempt == 49:
                    raise
            finally:
                for fd in fds:
                    os.close(fd)
            time.sleep(0.01)
        for end, ns in ((a, a_netns), (b, b_netns)):   # the kernel takes no alias on create
            step = ["-n", ns, "link", "set", "dev", end, "alias", end]
            in_netns(ns, lambda end=end: _set_alias(end))
    except (NetlinkError, OSError) as exc:
        code = exc.code if isinstance(exc, NetlinkError) else exc.errno
        said = os.strerror(code) if code else str(exc)
        if made:
            with contextlib.suppress(NetlinkError, OSError, HostNetError):
                in_netns(a_netns, lambda: _delete_here(a))     # its peer goes with it
        raise HostNetError(f"`{' '.join(['ip', *step])}` failed: {said}", stderr=said) from None


def _set_alias(name: str) -> None:
    """Alias the interface `name` by its own name. The node's convergence may have found the
    end (by name) and renamed it already: that rename sets the same alias, so an interface
    that carries it is done."""
    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=name)
        if index:
            try:
                ipr.link("set", index=index[0], ifalias=name)
                return
            except NetlinkError as exc:
                if exc.code != errno.ENODEV:
                    raise
        if not any(m.get_attr("IFLA_IFALIAS") == name for m in ipr.get_links()):
            raise NetlinkError(errno.ENODEV, f'Cannot find device "{name}"')


def _delete_here(name: str) -> None:
    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=name)
        if index:
            ipr.link("del", index=index[0])


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
    "HostNetError", "IFNAMSIZ", "NO_NETEM", "TC_LINK_PROPERTIES", "LinkInfo", "NetnsView",
    "addr_list", "addr_replace", "batch", "batch_command", "bridge_add", "find_link", "in_netns",
    "link_names", "proc_link_names", "root_has_link", "route_key", "show", "link_delete", "link_move", "link_set", "links",
    "missing_tools", "netns_add",
    "netns_delete", "netns_exec_argv", "netns_exists", "netns_list", "netns_pids", "qdisc_kind",
    "root_qdisc_delete", "route_replace", "routes", "run", "sysctl_get", "sysctl_set", "tbf_replace", "veth_add",
]
