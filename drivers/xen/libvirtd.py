"""A private libvirtd + virtlogd for QEMU guests, started by hand (no systemd on these hosts).

libvirtd in system mode reads its configuration from /etc/libvirt and keeps state under
/run/libvirt, /var/lib/libvirt, /var/log/libvirt and /var/cache/libvirt. To run one without
touching the host's, the daemons start in a mount namespace of their own in which those five
folders are bind mounts of folders under `root`; they share the host's network namespace, so
the taps they make are on the host. Clients reach the daemon through the socket under `root`:
`qemu:///system?socket=<root>/run/libvirt-sock` (`PrivateLibvirtd.uri`).

The qemu.conf written here holds what a host without systemd or cgroup v2 needs: no cgroup
controllers, no security driver, QEMU as root. Tests, the benches and the default site start
one of these; a production host runs its distribution's libvirtd and names its URI.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from drivers.base import DriverError
from drivers.ovs import _wait_gone as wait_gone

HOST_DIRS = ("/etc/libvirt", "/run/libvirt", "/var/lib/libvirt", "/var/log/libvirt",
             "/var/cache/libvirt")
PRIVATE_NAMES = {"/etc/libvirt": "etc", "/run/libvirt": "run", "/var/lib/libvirt": "lib",
                 "/var/log/libvirt": "log", "/var/cache/libvirt": "cache"}
QEMU_CONF = """\
# written by geni-am (drivers/xen/libvirtd.py): a libvirtd started by hand
cgroup_controllers = [ ]
security_driver = "none"
user = "root"
group = "root"
remember_owner = 0
"""
LIBVIRTD_CONF = """\
# written by geni-am: local socket only, no TCP, root-only socket
listen_tls = 0
listen_tcp = 0
unix_sock_rw_perms = "0700"
unix_sock_ro_perms = "0700"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""
REQUIRED = ("libvirtd", "virtlogd", "qemu-system-x86_64", "unshare")


@dataclass
class PrivateLibvirtd:
    root: Path
    pids: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    @property
    def socket(self) -> Path:
        return self.root / "run" / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu:///system?socket={self.socket}"

    def _private(self, host_dir: str) -> Path:
        return self.root / PRIVATE_NAMES[host_dir]

    def start(self, timeout: float = 30.0) -> "PrivateLibvirtd":
        missing = [t for t in REQUIRED if shutil.which(t) is None]
        if missing:
            raise DriverError(f"cannot start libvirtd: {', '.join(missing)} not installed "
                              "(apt: libvirt-daemon-system libvirt-daemon-driver-qemu "
                              "qemu-system-x86)")
        for d in HOST_DIRS:
            os.makedirs(d, exist_ok=True)              # mount points (empty on the host)
            self._private(d).mkdir(parents=True, exist_ok=True)
        for sub in ("lib/qemu", "log/qemu", "cache/qemu", "etc/qemu"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "etc/qemu.conf").write_text(QEMU_CONF)
        (self.root / "etc/libvirtd.conf").write_text(LIBVIRTD_CONF)
        (self.root / "etc/virtlogd.conf").write_text("log_outputs = \"3:stderr\"\n")
        binds = " && ".join(f"mount --bind {self._private(d)} {d}" for d in HOST_DIRS)
        pid_l, pid_v = self.root / "libvirtd.pid", self.root / "virtlogd.pid"
        for p in (pid_l, pid_v):
            p.unlink(missing_ok=True)
        script = (f"{binds} && virtlogd -d -p {pid_v} "
                  f"&& libvirtd -d -p {pid_l} -f /etc/libvirt/libvirtd.conf")
        proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               script], capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise DriverError(f"libvirtd did not start: {proc.stderr.strip()[-500:]}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.answers() and pid_l.exists() and pid_v.exists():
                self.pids = {"libvirtd": int(pid_l.read_text()), "virtlogd": int(pid_v.read_text())}
                return self
            time.sleep(0.1)
        self.stop()
        raise DriverError(f"libvirtd did not answer on {self.socket} within {timeout:g} s "
                          f"(log: {self.root / 'log/libvirtd.log'})")

    def answers(self) -> bool:
        import libvirt
        if not self.socket.exists():
            return False
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError:
            return False
        conn.close()
        return True

    def qemu_pids(self) -> list[int]:
        """QEMU processes this daemon started (their pid files are in its private run dir)."""
        out = []
        for f in (self.root / "run" / "qemu").glob("*.pid"):
            try:
                out.append(int(f.read_text().strip()))
            except (OSError, ValueError):
                continue
        return out

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the daemons; guests they left running are killed (by their pid files)."""
        guests = self.qemu_pids()
        for name in ("libvirtd", "virtlogd"):
            pid = self.pids.get(name) or _read_pid(self.root / f"{name}.pid")
            if pid:
                _kill(pid, timeout)
        for pid in guests:
            _kill(pid, timeout)
        self.pids = {}

    def __enter__(self) -> "PrivateLibvirtd":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _kill(pid: int, timeout: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    wait_gone(pid, timeout)


__all__ = ["PrivateLibvirtd"]
