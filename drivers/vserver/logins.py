"""SSH login into node slivers with the keys of `geni_users` (docs/vserver.md).

Per node sliver with users: accounts in the guest's own /etc/passwd and /etc/group
(`accounts`), sshd's files in the guest (`sshd`), and one TCP port from
`ssh_port_min..ssh_port_max` on the host. The driver binds the port and hands the listening
socket to the guest's init, which starts one `sshd -i` inside the guest per connection (at
most 16 at a time). So the host runs no sshd and no gate of its own: stopping or deleting
the guest closes the port with everything else. What a sliver holds lives in its record under
"ssh": {"port", "address", "uids", "logins", "keys"}. Ports are unique across this driver's
slivers: chosen under one global lock, against every record.
"""
from __future__ import annotations

import errno
import hashlib
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from drivers.base import DriverError, Login, UserKeys
from drivers.vserver import sshd
from drivers.vserver.accounts import assign_uids, check_logins, check_names, passwd_and_group
from drivers.vserver.config import VServerSettings, ssh_enabled
from drivers.vserver.guest import Guests, mkdir_item, put_item
from drivers.vserver.state import StateDir

GLOBAL_LOCK = "_ssh"          # ports (no sliver handle starts with "_")

Record = dict[str, Any]


class SshLogins:
    def __init__(self, settings: VServerSettings, state: StateDir, guests: Guests):
        self.settings = settings
        self.state = state
        self.guests = guests
        self.enabled = ssh_enabled(settings)
        self.hostname = settings.ssh_hostname or settings.ssh_address

    # ---- checks (before anything changes) ---------------------------------------------------
    def check(self, users: Sequence[UserKeys]) -> None:
        """DriverError naming the login when a user cannot have an account in a sliver."""
        if self.enabled and users:
            check_logins(users)
        else:
            check_names(users)

    def available(self, image_dir: Path) -> bool:
        """Whether guests of this image can have logins (the image has sshd)."""
        if not self.enabled:
            return False
        if (image_dir / self.settings.sshd_path.lstrip("/")).exists():
            return True
        if self.settings.ssh is True:
            raise DriverError(f"ssh = true but the image at {image_dir} has no "
                              f"{self.settings.sshd_path}")
        return False

    # ---- converging ---------------------------------------------------------------------------
    def converge(self, handle: str, rec: Record, users: Sequence[UserKeys], *, run: bool,
                 may_move: bool, image_dir: Path) -> None:
        """Record the accounts, keys and port for `users`; when `run`, write them into the
        running guest and make sure it listens (the caller holds the sliver's lock and
        writes `rec` afterwards). `may_move`: a recorded port taken by another program may
        be swapped for a free one (provision reports the new one)."""
        if not users or not self.available(image_dir):
            self.drop(handle, rec, run=run)
            return
        check_logins(users)
        logins = [u.login for u in users]
        old = rec.get("ssh") or {}
        uids = assign_uids(logins, keep=old.get("uids", {}))
        rec["ssh"] = {**old, "uids": uids, "logins": logins,
                      "keys": {u.login: [k.strip() for k in u.keys] for u in users}}
        if old.get("address") not in (None, self.settings.ssh_address):
            rec["ssh"]["port"] = None             # the configured address changed
        if run:
            self.apply(handle, rec, may_move=may_move)
        elif not rec["ssh"].get("port"):
            with self._listener(handle, rec, may_move=may_move):
                pass                              # reserve a port for geni_start

    def apply(self, handle: str, rec: Record, *, may_move: bool = False) -> None:
        """Write the accounts and sshd files into the running guest and hand it the port."""
        ssh = rec.get("ssh") or {}
        if not (self.enabled and ssh.get("logins")):
            return
        g = self.guests
        passwd, group = passwd_and_group(ssh["uids"])
        items = [put_item("/etc/passwd", passwd), put_item("/etc/group", group),
                 mkdir_item(sshd.KEYS_DIR, mode=0o755)]
        for login, uid in ssh["uids"].items():
            keys = ssh["keys"].get(login, []) if login in ssh["logins"] else []
            items.append(put_item(f"{sshd.KEYS_DIR}/{login}", "".join(k + "\n" for k in keys)))
            if login in ssh["logins"]:
                items.append(mkdir_item(f"/home/{login}", mode=0o700, uid=uid, gid=uid))
        private, public = sshd.ensure_host_key(g.dir(handle) / "ssh_host_ed25519_key")
        items += [put_item(sshd.HOST_KEY, private, mode=0o600),
                  put_item(sshd.HOST_KEY + ".pub", public),
                  put_item(sshd.CONFIG, sshd.config_text(ssh["logins"]))]
        if not g.files(handle, items).get("listening"):   # one round trip to the guest
            with self._listener(handle, rec, may_move=may_move) as listener:
                g.listen(handle, listener.fileno(), sshd.session_argv(self.settings.sshd_path))

    def drop(self, handle: str, rec: Record, *, run: bool) -> None:
        """No login any more (users gone or SSH off): the guest stops listening and the port
        is freed; the uids stay with the sliver (files its users left keep their owner)."""
        old = rec.get("ssh")
        if old:
            if run and old.get("port"):
                self.guests.request(handle, {"op": "unlisten"})
            rec["ssh"] = {**old, "logins": [], "keys": {}, "port": None}

    # ---- the port -------------------------------------------------------------------------------
    def _listener(self, handle: str, rec: Record, *, may_move: bool) -> socket.socket:
        """A listening socket on the sliver's port (chosen now if it has none), recorded."""
        with self.state.lock(GLOBAL_LOCK):
            held = self.state.claims("ports", lambda: {
                r["ssh"]["port"]: h for h, r in self.state.all().items()
                if (r.get("ssh") or {}).get("port")})
            used = {p for p, h in held.items() if h != handle}
            sock = self._listen(handle, rec["ssh"].get("port"), used, may_move=may_move)
            rec["ssh"].update(port=sock.getsockname()[1], address=self.settings.ssh_address)
            self.state.write(handle, rec)
            self.state.set_claim("ports", held, handle, rec["ssh"]["port"])
        return sock

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


__all__ = ["SshLogins"]
