"""The driver's side of a container guest: start its init, talk to it, end it.

A guest (`guestinit.py`) is the sliver's own mount, PID, UTS, IPC and user namespaces in its
network namespace and cgroups, rooted in an overlay of a read-only image and the sliver's own
layer. Host-side files of a sliver, all under `<state_dir>/<prefix>/roots/<handle>/` (0700):

    layer/upper, layer/work   the sliver's overlay layer (what CreateImage snapshots)
    mnt/lower, mnt/merged     mount points, used only inside the guest's mount namespace
    ctl.sock                  the init's request socket (host root only)
    init.log                  the init's own messages

Guest ids: guest uid/gid g is host id `guest_id_base + slot * GUEST_IDS + g`; a slot is
chosen per sliver under the driver's global lock, unique among its slivers, and kept for the
sliver's life, so no two guests (nor a guest and the host) share a host uid.
"""
from __future__ import annotations

import array
import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from drivers.base import DriverError
from drivers.hostnet import NETNS_DIR
from drivers.vserver import guestinit
from drivers.vserver.cgroups import CgroupLayout, kill_pids
from drivers.vserver.state import StateDir

INIT = Path(guestinit.__file__)
GUEST_IDS = 65536               # ids per guest: 0 (root) .. 65535 (nobody is 65534)
START_TIMEOUT_S = 30
ID_LOCK = "_ids"

Record = dict[str, Any]


def put_item(path: str, data: bytes | str, *, mode: int = 0o644, uid: int = 0,
             gid: int = 0) -> dict[str, Any]:
    raw = data.encode() if isinstance(data, str) else data
    return {"op": "put", "path": path, "mode": mode, "uid": uid, "gid": gid,
            "data": base64.b64encode(raw).decode()}


def mkdir_item(path: str, *, mode: int = 0o755, uid: int = 0, gid: int = 0) -> dict[str, Any]:
    return {"op": "mkdir", "path": path, "mode": mode, "uid": uid, "gid": gid}


class Zygote:
    """The driver's fork server for guest inits (`guestinit.zygote`): started on first use,
    one per driver process, ended by `close` or when this process exits (it reads end of
    file on its control socket). Safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._ctl: socket.socket | None = None

    def _ensure(self) -> socket.socket:
        if self._proc is not None and self._proc.poll() is None and self._ctl is not None:
            return self._ctl
        self._stop_locked()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", str(INIT), "zygote", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)
        except OSError as exc:
            ours.close()
            raise DriverError(f"cannot start the guest fork server: {exc}") from None
        finally:
            theirs.close()
        self._ctl = ours
        return ours

    def start(self, cfg: dict[str, Any], timeout: float) -> str:
        """Start one guest (`guestinit.start` in a forked child); what it printed."""
        mine, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with mine:
            try:
                with self._lock:
                    ctl = self._ensure()
                    ctl.sendmsg([b"s"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                          array.array("i", [child.fileno()]).tobytes())])
            except OSError as exc:
                raise DriverError(f"the guest fork server does not answer: {exc}",
                                  transient=True) from None
            finally:
                child.close()
            mine.settimeout(timeout)
            mine.sendall(json.dumps(cfg).encode())
            mine.shutdown(socket.SHUT_WR)
            out = b""
            try:
                while chunk := mine.recv(65536):
                    out += chunk
            except TimeoutError:
                raise DriverError(f"the guest of {cfg['handle']} did not start within "
                                  f"{timeout:g} s", transient=True) from None
        return out.decode(errors="replace")

    def _stop_locked(self) -> None:
        if self._ctl is not None:
            self._ctl.close()
            self._ctl = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def close(self) -> None:
        with self._lock:
            self._stop_locked()


def proc_start_time(pid: int, *, running: bool = False) -> int | None:
    """The start time of process `pid` (clock ticks after boot), None if there is none: with
    the pid it names one process for the host's uptime. `running`: None also for a process
    that has exited and not been reaped yet (a zombie)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = stat_line.rsplit(b")", 1)[1].split()
    if running and fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


class Guests:
    def __init__(self, state: StateDir, cgroups: CgroupLayout, *, id_base: int, id_slots: int,
                 tmpfs_mb: int, kill_timeout_s: float):
        self.state = state
        self.cgroups = cgroups
        self.id_base = id_base
        self.id_slots = id_slots
        self.tmpfs_mb = tmpfs_mb
        self.kill_timeout_s = kill_timeout_s
        self.zygote = Zygote()

    def close(self) -> None:
        self.zygote.close()

    # ---- host paths -------------------------------------------------------------------------
    def dir(self, handle: str) -> Path:
        return self.state.root_dir(handle)

    def upper(self, handle: str) -> Path:
        return self.dir(handle) / "layer" / "upper"

    def ctl(self, handle: str) -> str:
        return str(self.dir(handle) / "ctl.sock")

    # ---- ids ----------------------------------------------------------------------------------
    def assign_slot(self, handle: str, rec: Record) -> int:
        """This sliver's id slot (kept once chosen); written to the record under the lock."""
        guest = rec.setdefault("guest", {})
        if guest.get("slot") is not None:
            return guest["slot"]
        with self.state.lock(ID_LOCK):
            held = self.state.claims("slots", lambda: {
                r["guest"]["slot"]: h for h, r in self.state.all().items()
                if (r.get("guest") or {}).get("slot") is not None})
            taken = {slot for slot, h in held.items() if h != handle}
            first = int(hashlib.sha256(handle.encode()).hexdigest(), 16) % self.id_slots
            for i in range(self.id_slots):
                slot = (first + i) % self.id_slots
                if slot not in taken:
                    break
            else:
                raise DriverError(f"no free guest id range left ({self.id_slots} slots; "
                                  "raise guest_id_slots)")
            guest["slot"] = slot
            self.state.write(handle, rec)
            self.state.set_claim("slots", held, handle, slot)
        return slot

    def host_id(self, rec: Record, guest_id: int = 0) -> int:
        return self.id_base + rec["guest"]["slot"] * GUEST_IDS + guest_id

    # ---- life -----------------------------------------------------------------------------------
    def alive(self, handle: str, rec: Record) -> bool:
        """Whether the recorded init runs: the very process started (its start time; a reused
        pid has another), not exited. One read of /proc (Status asks this of every node): the
        pid and its start time name one process, so the cgroup check that a record without
        a start time needs adds nothing."""
        guest = rec.get("guest") or {}
        pid = guest.get("pid")
        if not pid:
            return False
        if guest.get("started") is not None:
            return proc_start_time(pid, running=True) == guest["started"]
        if pid not in self.cgroups.pids(handle):
            return False
        try:                              # a record from before start times were kept
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return str(INIT).encode() in argv and handle.encode() in argv

    def start(self, handle: str, rec: Record, image_dir: Path, *, hostname: str) -> int:
        """Start the guest's init (its layer is kept across starts); record and return its pid."""
        self.assign_slot(handle, rec)
        d = self.dir(handle)
        for sub in ("layer/upper", "layer/work", "mnt/lower", "mnt/merged"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
        work = d / "layer" / "work"
        for entry in work.iterdir():       # overlay's scratch space: nothing to keep
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()
        cfg = {"handle": handle, "hostname": hostname[:63] or "guest",
               "netns": f"{NETNS_DIR}/{rec['netns']}",
               "tasks": [str(self.cgroups.dir(c, handle) / "tasks")
                         for c in self.cgroups.controllers if c != "memory"],
               "memory_tasks": str(self.cgroups.dir("memory", handle) / "tasks"),
               "lower": str(image_dir), "layer": str(d / "layer"), "mnt": str(d / "mnt"),
               "ctl": self.ctl(handle), "log": str(d / "init.log"),
               "id_base": self.host_id(rec), "id_count": GUEST_IDS,
               "tmpfs_mb": self.tmpfs_mb}
        out = self.zygote.start(cfg, START_TIMEOUT_S).strip()
        if not out.isdigit():
            raise DriverError(f"the guest of {handle} did not start: "
                              f"{out or 'no answer from its init'}")
        pid = int(out)
        rec["guest"]["pid"] = pid
        rec["guest"]["started"] = proc_start_time(pid)
        rec["guest"]["image"] = str(image_dir)
        return pid

    def stop(self, handle: str, rec: Record | None) -> None:
        """End every process of the guest: SIGKILL its init (the kernel then kills the whole
        PID namespace), then anything left in its cgroups; verified empty."""
        pid = ((rec or {}).get("guest") or {}).get("pid")
        if rec is not None and pid and self.alive(handle, rec):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        kill_pids(lambda: self.cgroups.pids(handle), timeout_s=self.kill_timeout_s)
        deadline = time.monotonic() + max(self.kill_timeout_s, 1.0) + 5
        while self.cgroups.pids(handle):
            if time.monotonic() > deadline:
                raise DriverError(f"processes of guest {handle} survived: "
                                  f"{sorted(self.cgroups.pids(handle))}", transient=True)
            time.sleep(0.01)
        if rec is not None and rec.get("guest"):
            rec["guest"]["pid"] = None
            rec["guest"].pop("started", None)

    # ---- requests --------------------------------------------------------------------------------
    def request(self, handle: str, msg: dict[str, Any], fds: Sequence[int] = (), *,
                timeout: float | None = 30) -> dict[str, Any]:
        try:
            answer = guestinit.request(self.ctl(handle), msg, fds, timeout=timeout)
        except (OSError, ValueError) as exc:
            raise DriverError(f"guest {handle} does not answer: {exc}", transient=True) from None
        if not answer.get("ok"):
            raise DriverError(f"guest {handle}: {msg.get('op')}: {answer.get('error')}")
        return answer

    def put(self, handle: str, path: str, data: bytes | str, *, mode: int = 0o644,
            uid: int = 0, gid: int = 0) -> None:
        self.request(handle, put_item(path, data, mode=mode, uid=uid, gid=gid))

    def mkdir(self, handle: str, path: str, *, mode: int = 0o755, uid: int = 0,
              gid: int = 0) -> None:
        self.request(handle, mkdir_item(path, mode=mode, uid=uid, gid=gid))

    def files(self, handle: str, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Several `put_item`/`mkdir_item` writes in order, in one request; the answer says
        whether the guest holds an SSH listening socket ("listening")."""
        return self.request(handle, {"op": "files", "items": list(items)})

    def spawn(self, handle: str, name: str, argv: Sequence[str], *, log: str) -> int:
        return self.request(handle, {"op": "spawn", "name": name, "argv": list(argv),
                                     "log": log})["pid"]

    def unpack(self, handle: str, fd: int, dest: str, name: str, *, timeout: float) -> None:
        answer = self.request(handle, {"op": "unpack", "dest": dest, "name": name}, (fd,),
                              timeout=timeout)
        if answer.get("status"):
            raise DriverError(f"the guest could not unpack {name} into {dest}")

    def status(self, handle: str) -> dict[str, Any]:
        return self.request(handle, {"op": "status"}, timeout=10)

    def listen(self, handle: str, fd: int, session: Sequence[str]) -> None:
        self.request(handle, {"op": "listen", "session": list(session)}, (fd,))

    def run_argv(self, handle: str, argv: Sequence[str], *, uid: int = 0) -> list[str]:
        """argv that runs `argv` in the guest with the caller's stdin/stdout/stderr."""
        return [sys.executable, "-I", str(INIT), "run", self.ctl(handle),
                *(["--uid", str(uid)] if uid else []), "--", *argv]


__all__ = ["GUEST_IDS", "INIT", "Guests"]
