"""Dom0 as a forwarding plane: each dom0-mode router gets its own routing table in Dom0.

Routing stays in the guest; Dom0 forwards (background.md, "Domain 0 forwarding"). Virtual
networks may use overlapping prefixes, so one shared table cannot hold them all: each router
gets a table of its own, and a policy rule `iif <guest vif> lookup <table>` sends the packets
arriving from that router's network to it, as a VRF would. Entries carry a `proto` marker and
live only in that table, so they can be found and removed exactly.

Changes go through `ip -batch` (one netlink process per sync, not one per route), which puts
10,000 routes in well under a second. In production the plane works in the root namespace
(Dom0 itself); in tests a network namespace stands in for Dom0.
"""
from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from collections.abc import Iterable, Sequence

from drivers.base import DriverError
from drivers.routesync import FibEntry

ROUTE_PROTO = 77          # rtnetlink protocol number marking routes the AM installed
RULE_PRIORITY = 1000      # before the main table (32766)


class IpCommand:
    """`ip` in one namespace (None: the current one, i.e. Dom0 in production)."""

    def __init__(self, netns: str | None):
        self.netns = netns
        exe = shutil.which("ip")
        if exe is None:
            raise DriverError("iproute2 ('ip') is not installed; Dom0 forwarding needs it")
        self.exe = exe

    def _base(self) -> list[str]:
        return [self.exe] + (["-n", self.netns] if self.netns else [])

    def run(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(self._base() + list(args), capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise DriverError(f"ip {' '.join(args)} failed in {self.where}: "
                              f"{proc.stderr.strip()}")
        return proc.stdout

    def batch(self, lines: Sequence[str], *, force: bool = False) -> None:
        if not lines:
            return
        args = self._base() + (["-force"] if force else []) + ["-batch", "-"]
        proc = subprocess.run(args, input="\n".join(lines) + "\n", capture_output=True, text=True)
        if proc.returncode != 0 and not force:
            raise DriverError(f"ip -batch failed in {self.where}: {proc.stderr.strip()[:500]}")

    def json(self, *args: str) -> list[dict]:
        out = self.run("-j", *args)
        return json.loads(out) if out.strip() else []

    def json_or_empty(self, *args: str) -> list[dict]:
        """Like `json`, but a table the kernel has not created yet reads as empty."""
        proc = subprocess.run(self._base() + ["-j", *args], capture_output=True, text=True)
        if proc.returncode != 0:
            if "does not exist" in proc.stderr:
                return []
            raise DriverError(f"ip {' '.join(args)} failed in {self.where}: {proc.stderr.strip()}")
        return json.loads(proc.stdout) if proc.stdout.strip() else []

    @property
    def where(self) -> str:
        return f"namespace {self.netns}" if self.netns else "Dom0"

    def check_namespace(self) -> None:
        """Fail early with a clear message when the stand-in namespace does not exist."""
        if self.netns is None:
            return
        names = subprocess.run([self.exe, "netns", "list"], capture_output=True, text=True).stdout
        if self.netns not in {line.split()[0] for line in names.splitlines() if line.strip()}:
            raise DriverError(f"Dom0 namespace {self.netns!r} does not exist", transient=True)


class Dom0Plane:
    """The forwarding table Dom0 keeps for one dom0-mode virtual router."""

    def __init__(self, ip: IpCommand, table: int, vifs: Iterable[str]):
        self.ip = ip
        self.table = table
        self.vifs = tuple(vifs)

    # ---- ForwardingPlane ------------------------------------------------------------------------
    def install(self, entries: list[FibEntry]) -> None:
        self.ip.batch([self._route_line("replace", e) for e in entries])

    def remove(self, entries: list[FibEntry]) -> None:
        self.ip.batch([f"route del {e.prefix} table {self.table}" for e in entries], force=True)

    def read(self) -> set[FibEntry]:
        out = set()
        for r in self.ip.json_or_empty("route", "show", "table", str(self.table)):
            dst = r.get("dst", "")
            prefix = "0.0.0.0/0" if dst == "default" else str(ipaddress.IPv4Network(dst))
            out.add(FibEntry(prefix=prefix, gateway=r.get("gateway"), device=r.get("dev")))
        return out

    def clear(self) -> None:
        self.ip.run("route", "flush", "table", str(self.table), check=False)
        self.unbind()

    # ---- policy rules ---------------------------------------------------------------------------
    def bind(self) -> None:
        """Send traffic arriving from the router's vifs to its table (idempotent)."""
        have = {(r.get("iif"), str(r.get("table"))) for r in self.ip.json("rule", "show")}
        self.ip.batch([f"rule add iif {v} lookup {self.table} pref {RULE_PRIORITY}"
                       for v in self.vifs if (v, str(self.table)) not in have])

    def unbind(self) -> None:
        rules = [r for r in self.ip.json("rule", "show") if str(r.get("table")) == str(self.table)]
        self.ip.batch([f"rule del pref {r['priority']} iif {r['iif']} lookup {self.table}"
                       for r in rules if "iif" in r], force=True)

    def _route_line(self, verb: str, e: FibEntry) -> str:
        line = f"route {verb} {e.prefix} table {self.table} proto {ROUTE_PROTO}"
        if e.gateway:
            # The next hop is on the guest's network, which Dom0 reaches over the vif/bridge
            # without an address of its own there: hence onlink.
            line += f" via {e.gateway} dev {e.device} onlink"
        else:
            line += f" dev {e.device}"
        return line


def ensure_stand_in_vifs(ip: IpCommand, vifs: Iterable[str]) -> None:
    """Create the guest vifs a real hypervisor would create when the domain starts.

    Used only with libvirt's test driver, whose domains have no devices: each vif is a veth
    whose peer (`<vif>p`) also stays in the Dom0 namespace, both up, so routes can point at it.
    """
    ip.run("link", "set", "lo", "up")
    existing = {link.get("ifname") for link in ip.json("link", "show")}
    lines = []
    for v in vifs:
        if v not in existing:
            lines += [f"link add {v} type veth peer name {v}p", f"link set {v} up",
                      f"link set {v}p up"]
    ip.batch(lines)


def remove_stand_in_vifs(ip: IpCommand, vifs: Iterable[str]) -> None:
    ip.batch([f"link del {v}" for v in vifs], force=True)


__all__ = ["Dom0Plane", "IpCommand", "ROUTE_PROTO", "ensure_stand_in_vifs",
           "remove_stand_in_vifs"]
