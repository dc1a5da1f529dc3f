"""What the driver keeps and says to one running guest: its boot files, console and agent.

Per sliver, under `<state_dir>/vms/<handle>/`:
  initrd        the image's initramfs followed by this sliver's config archive (the guest's
                hostname, interfaces by MAC, routes, forwarding flag and geni_users keys)
  console.log   the guest's serial console (readiness, and the reason a boot failed)
  agent.sock    the host end of the guest agent's virtio-serial port (geni_update_users)

Readiness: the guest prints `GENI-READY <hostname>` on its console once dropbear listens; a
sliver is geni_ready only after that line. Every value written into the config archive is
checked here first (addresses, MACs, names, single-line keys), so nothing a request says can
add a line the guest would read as another instruction.
"""
from __future__ import annotations

import base64
import ipaddress
import re
import shutil
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from drivers.base import DriverError, UserKeys
from drivers.xen.images import READY_MARKER, config_archive, users_payload

HOSTNAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
PANIC = "Kernel panic - not syncing"
MGMT_ADDRESS = "10.0.2.15/24"     # the guest's end of the user-mode management network
MGMT_NAME = "eth0"                # the management NIC's name in the guest; link NICs are eth1...
IFNAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,14}$")


@dataclass(frozen=True)
class GuestIface:
    mac: str
    cidr: str | None                # "10.0.1.2/24", None: link up with no address
    name: str | None = None         # the guest renames the NIC with this MAC so; None: as is


@dataclass(frozen=True)
class GuestRoute:
    destination: str
    gateway: str | None
    mac: str | None                 # the interface it leaves by, None: the kernel decides


def hostname_for(client_id: str) -> str:
    """A host name from the node's client_id (what the experimenter calls it)."""
    name = re.sub(r"[^A-Za-z0-9-]", "-", client_id).strip("-")[:63] or "node"
    return name if HOSTNAME_RE.match(name) else "node"


def config_lines(hostname: str, ifaces: Iterable[GuestIface], routes: Iterable[GuestRoute],
                 forward: bool) -> list[str]:
    """The guest's /geni/config, every value checked (DriverError on anything malformed)."""
    if not HOSTNAME_RE.match(hostname):
        raise DriverError(f"host name {hostname!r} is not a valid host name")
    lines = [f"hostname {hostname}"]
    names: set[str] = set()
    for i in ifaces:
        _mac(i.mac)
        cidr = "-" if i.cidr is None else str(ipaddress.IPv4Interface(i.cidr))
        if i.name is not None:
            if not IFNAME_RE.match(i.name):
                raise DriverError(f"interface name {i.name!r} is not a valid Linux interface "
                                  "name (a letter, then up to 14 letters, digits, _ . -)")
            if i.name in names:
                raise DriverError(f"two interfaces of the VM would be named {i.name}")
            names.add(i.name)
        lines.append(f"iface {i.mac} {cidr} {i.name or '-'}")
    for r in routes:
        dest = str(ipaddress.IPv4Network(r.destination))
        gw = "-" if not r.gateway else str(ipaddress.IPv4Address(r.gateway))
        mac = "-" if not r.mac else _mac(r.mac)
        lines.append(f"route {dest} {gw} {mac}")
    lines.append(f"forward {1 if forward else 0}")
    return lines


def _mac(mac: str) -> str:
    if not MAC_RE.match(mac):
        raise DriverError(f"MAC address {mac!r} is malformed")
    return mac


def user_keys(users: Iterable[UserKeys]) -> dict[str, list[str]]:
    """login -> keys, refusing what the guest cannot take (root, multi-line keys)."""
    out: dict[str, list[str]] = {}
    for u in users:
        problem = u.login_problem()
        if problem:
            raise DriverError(problem)
        if u.login == "root":
            raise DriverError(f"user {u.urn}: no root logins on VM slivers")
        keys = []
        for k in u.keys:
            k = k.strip()
            if not k:
                continue
            if any(c in k for c in "\r\n\0"):
                raise DriverError(f"user {u.urn}: an SSH key must be one line")
            keys.append(k)
        out.setdefault(u.login, []).extend(keys)
    return out


class GuestFiles:
    """The per-sliver folder of one VM."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def initrd(self) -> Path:
        return self.root / "initrd"

    @property
    def console(self) -> Path:
        return self.root / "console.log"

    @property
    def agent(self) -> Path:
        return self.root / "agent.sock"

    def write_initrd(self, base_initrd: Path, lines: list[str],
                     users: Mapping[str, list[str]]) -> None:
        """The image's initramfs with this sliver's config archive appended (atomically)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.initrd.with_suffix(".tmp")
        with open(tmp, "wb") as out, open(base_initrd, "rb") as base:
            shutil.copyfileobj(base, out)
            out.write(config_archive(lines, users))
        tmp.replace(self.initrd)

    def console_text(self) -> str:
        try:
            return self.console.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def last_lines(self, n: int = 8) -> str:
        text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1bc", "", self.console_text())
        lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
        return " | ".join(lines[-n:]) or "(the console is empty)"

    def ready(self, hostname: str) -> bool:
        return f"{READY_MARKER} {hostname}" in self.console_text()

    def panicked(self) -> bool:
        return PANIC in self.console_text()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def agent_request(sock_path: Path, line: str, expect: str, timeout: float = 20.0) -> str:
    """Send one request line to the guest agent and return its answer line (starting with
    `expect` or "ERR"). Lines the guest sent before are skipped."""
    deadline = time.monotonic() + timeout
    last_err: OSError | None = None
    while time.monotonic() < deadline:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(max(0.1, deadline - time.monotonic()))
                s.connect(str(sock_path))
                s.sendall(line.encode() + b"\n")
                buf = b""
                while time.monotonic() < deadline:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    buf += chunk
                    for ln in buf.decode(errors="replace").splitlines():
                        if ln.startswith(expect) or ln.startswith("ERR"):
                            return ln.strip()
        except OSError as exc:           # socket not there yet / guest agent not reading yet
            last_err = exc
            time.sleep(0.2)
    raise DriverError(f"the guest agent did not answer {line.split()[0]} within {timeout:g} s"
                      + (f" ({last_err})" if last_err else ""), transient=True)


def push_users(sock_path: Path, users: Mapping[str, list[str]], timeout: float = 20.0) -> None:
    payload = base64.b64encode(users_payload(users).encode()).decode()
    answer = agent_request(sock_path, f"USERS {payload}", "OK USERS", timeout)
    if not answer.startswith("OK"):
        raise DriverError(f"the guest refused the new keys: {answer}")


__all__ = ["GuestFiles", "GuestIface", "GuestRoute", "MGMT_ADDRESS", "MGMT_NAME", "agent_request",
           "config_lines", "hostname_for", "push_users", "user_keys"]
