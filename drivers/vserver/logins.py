"""SSH login into node slivers with the keys of `geni_users` (docs/vserver.md).

Per node sliver with users: accounts in the sliver's own passwd/group (`accounts`), sshd files
(`sshd`), one TCP port from `ssh_port_min..ssh_port_max` and one gate process (`sshgate.py`)
that holds the port and starts `sshd -i` inside the sliver per connection. What a sliver holds
lives in its record under "ssh": {"port", "address", "uids", "logins", "gate_pid"}. Uids and
ports are unique across this driver's slivers: they are chosen under one global lock, against
every record, and written to the sliver's record before that lock is let go.
"""
from __future__ import annotations

import errno
import hashlib
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from drivers.base import DriverError, Login, UserKeys
from drivers.vserver import services, sshd
from drivers.vserver.accounts import (
    HostAccounts,
    assign_uids,
    check_logins,
    check_names,
    write_accounts,
)
from drivers.vserver.cgroups import CgroupLayout, kill_pids
from drivers.vserver.config import VServerSettings, ssh_enabled
from drivers.vserver.state import StateDir

GATE = Path(__file__).with_name("sshgate.py")
GLOBAL_LOCK = "_ssh"          # uids and ports (no sliver handle starts with "_")
MAX_SESSIONS = 16             # concurrent SSH sessions per sliver; more are closed unanswered
GATE_START_TIMEOUT_S = 30

Record = dict[str, Any]


class SshLogins:
    def __init__(self, settings: VServerSettings, state: StateDir, cgroups: CgroupLayout):
        self.settings = settings
        self.state = state
        self.cgroups = cgroups
        self.enabled = ssh_enabled(settings)
        self.hostname = settings.ssh_hostname or settings.ssh_address

    # ---- checks (before anything changes) ---------------------------------------------------
    def check(self, users: Sequence[UserKeys]) -> None:
        """DriverError naming the login when a user cannot have an account here (with SSH
        off, only names that cannot be a keys directory either)."""
        if self.enabled and users:
            check_logins(users, HostAccounts.read())
        else:
            check_names(users)

    # ---- converging ---------------------------------------------------------------------------
    def converge(self, handle: str, rec: Record, users: Sequence[UserKeys], *, run: bool,
                 may_move: bool) -> None:
        """Accounts, sshd files and port for `users`, and a running gate when `run` (the caller
        holds the sliver's lock and writes `rec` afterwards). `may_move`: a recorded port taken
        by another program may be swapped for a free one (provision reports the new one)."""
        if not self.enabled or not users:
            self.drop(handle, rec)
            return
        host = HostAccounts.read()
        check_logins(users, host)
        logins = [u.login for u in users]
        old = rec.get("ssh") or {}
        with self.state.lock(GLOBAL_LOCK):
            others = {u for h, r in self.state.all().items() if h != handle
                      for u in (r.get("ssh") or {}).get("uids", {}).values()}
            uids = assign_uids(handle, logins, keep=old.get("uids", {}), taken=host.ids | others,
                               base=self.settings.login_uid_base)
            rec["ssh"] = {**old, "uids": uids, "logins": logins}
            self.state.write(handle, rec)
        root = self.state.root_dir(handle)
        for d in (self.state.roots, root):    # logins traverse them to reach their homes
            d.chmod(d.stat().st_mode | 0o111)
        files = sshd.SshFiles.of(root)
        files.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_accounts(files.dir, root, uids, logins, host)
        sshd.prepare(files, root, logins)
        self._gate(handle, rec, run=run, may_move=may_move)

    def start(self, handle: str, rec: Record) -> None:
        """geni_start / geni_restart: the gate again, on the recorded port, with the files as
        provision or geni_update_users left them."""
        if self.enabled and (rec.get("ssh") or {}).get("logins"):
            self._gate(handle, rec, run=True, may_move=False)

    def drop(self, handle: str, rec: Record) -> None:
        """No login any more (users gone or SSH turned off): stop the gate and free the port;
        the uids stay with the sliver (files its users left keep their owner)."""
        old = rec.get("ssh")
        if old:
            self._stop_gate(handle, old)
            rec["ssh"] = {**old, "logins": [], "port": None, "gate_pid": None}

    def _gate(self, handle: str, rec: Record, *, run: bool, may_move: bool) -> None:
        ssh = rec["ssh"]
        if ssh.get("address") != self.settings.ssh_address:
            self._stop_gate(handle, ssh)          # the configured address changed
            ssh["port"] = None if ssh.get("address") else ssh.get("port")
        elif self._gate_alive(handle, ssh):
            return
        if not run and ssh.get("port"):
            return                                # stopped: keep the port for geni_start
        with self.state.lock(GLOBAL_LOCK):
            used = {r["ssh"]["port"] for h, r in self.state.all().items()
                    if h != handle and (r.get("ssh") or {}).get("port")}
            listener = self._listen(handle, ssh.get("port"), used, may_move=may_move)
            ssh.update(port=listener.getsockname()[1], address=self.settings.ssh_address,
                       gate_pid=None)
            self.state.write(handle, rec)
        with listener:
            if run:
                ssh["gate_pid"] = self._start_gate(handle, rec, listener)

    # ---- the port -------------------------------------------------------------------------------
    def _listen(self, handle: str, port: int | None, used: set[int], *,
                may_move: bool) -> socket.socket:
        s = self.settings
        span = s.ssh_port_max - s.ssh_port_min + 1
        first = int(hashlib.sha256(handle.encode()).hexdigest(), 16) % span
        order = [port] if port else []
        if port is None or may_move:
            order += [p for i in range(span) if (p := s.ssh_port_min + (first + i) % span) != port]
        family = socket.AF_INET6 if ":" in s.ssh_address else socket.AF_INET
        for p in order:
            if p in used:
                continue
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((s.ssh_address, p))
                sock.listen(64)
                return sock
            except OSError as exc:
                sock.close()
                if exc.errno != errno.EADDRINUSE:
                    raise DriverError(f"cannot listen for SSH on {s.ssh_address} port {p}: "
                                      f"{exc.strerror} (check ssh_address)") from None
                if p == port and not may_move:
                    raise DriverError(f"SSH port {p} of this sliver is taken by another "
                                      "program on the host; free it or provision again for "
                                      "another port") from None
        raise DriverError(f"no free SSH port in {s.ssh_port_min}-{s.ssh_port_max}: "
                          f"{len(used)} held by other slivers, the rest in use on the host "
                          "(widen ssh_port_min..ssh_port_max)")

    # ---- the gate --------------------------------------------------------------------------------
    def _start_gate(self, handle: str, rec: Record, listener: socket.socket) -> int:
        root = self.state.root_dir(handle)
        files = sshd.SshFiles.of(root)
        tasks = self.cgroups.tasks_files(handle)
        session = services.sliver_argv(rec["netns"], tasks, root,
                                       sshd.session_argv(files, self.settings.sshd_path))
        fd = listener.fileno()
        argv = [sys.executable, "-I", str(GATE), "--fd", str(fd), "--sliver", handle,
                *(a for t in tasks for a in ("--tasks", str(t))), "--log", str(files.log),
                "--max-sessions", str(MAX_SESSIONS), "--", *session]
        try:
            proc = subprocess.run(argv, pass_fds=(fd,), capture_output=True, text=True,
                                  timeout=GATE_START_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise DriverError(f"the SSH gate of {handle} did not start within "
                              f"{GATE_START_TIMEOUT_S} s", transient=True) from None
        out = proc.stdout.strip()
        if proc.returncode != 0 or not out.isdigit():
            raise DriverError(f"the SSH gate of {handle} did not start: "
                              f"{proc.stderr.strip() or f'exit status {proc.returncode}'}")
        return int(out)

    def _gate_alive(self, handle: str, ssh: Record) -> bool:
        """Whether the recorded gate runs: in the sliver's cgroup, and this sliver's gate."""
        pid = ssh.get("gate_pid")
        if not pid or pid not in self.cgroups.pids(handle):
            return False
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return str(GATE).encode() in argv and handle.encode() in argv

    def _stop_gate(self, handle: str, ssh: Record) -> None:
        if self._gate_alive(handle, ssh):
            kill_pids(lambda: {ssh["gate_pid"]} if self._gate_alive(handle, ssh) else set(),
                      timeout_s=self.settings.kill_timeout_s)

    # ---- what the AM is told ---------------------------------------------------------------
    def logins(self, rec: Record) -> tuple[Login, ...]:
        ssh = rec.get("ssh") or {}
        if not (self.enabled and ssh.get("port")):
            return ()
        return tuple(Login(hostname=self.hostname, port=ssh["port"], username=login)
                     for login in ssh.get("logins", ()))

    def note(self, rec: Record) -> str:
        logins = self.logins(rec)
        if not logins:
            return "operator shell: see docs/vserver.md"
        first = logins[0]
        return (f"login: ssh -p {first.port} {first.username}@{first.hostname} "
                f"(accounts: {', '.join(l.username for l in logins)})")


__all__ = ["GATE", "MAX_SESSIONS", "SshLogins"]
