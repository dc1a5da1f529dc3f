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

import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
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


class Guests:
    def __init__(self, state: StateDir, cgroups: CgroupLayout, *, id_base: int, id_slots: int,
                 tmpfs_mb: int, kill_timeout_s: float):
        self.state = state
        self.cgroups = cgroups
        self.id_base = id_base
        self.id_slots = id_slots
        self.tmpfs_mb = tmpfs_mb
        self.kill_timeout_s = kill_timeout_s

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
            taken = {r["guest"]["slot"] for h, r in self.state.all().items()
                     if h != handle and (r.get("guest") or {}).get("slot") is not None}
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
        return slot

    def host_id(self, rec: Record, guest_id: int = 0) -> int:
        return self.id_base + rec["guest"]["slot"] * GUEST_IDS + guest_id

    # ---- life -----------------------------------------------------------------------------------
    def alive(self, handle: str, rec: Record) -> bool:
        """Whether the recorded init runs: in the sliver's cgroup and this sliver's init."""
        pid = (rec.get("guest") or {}).get("pid")
        if not pid or pid not in self.cgroups.pids(handle):
            return False
        try:
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
        argv = [sys.executable, "-I", str(INIT), "start", handle]
        try:
            proc = subprocess.run(argv, input=json.dumps(cfg), capture_output=True, text=True,
                                  timeout=START_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise DriverError(f"the guest of {handle} did not start within "
                              f"{START_TIMEOUT_S} s", transient=True) from None
        out = proc.stdout.strip()
        if proc.returncode != 0 or not out.isdigit():
            raise DriverError(f"the guest of {handle} did not start: "
                              f"{proc.stderr.strip() or f'exit status {proc.returncode}'}")
        rec["guest"]["pid"] = int(out)
        rec["guest"]["image"] = str(image_dir)
        return int(out)

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
        raw = data.encode() if isinstance(data, str) else data
        self.request(handle, {"op": "put", "path": path, "mode": mode, "uid": uid, "gid": gid,
                              "data": base64.b64encode(raw).decode()})

    def mkdir(self, handle: str, path: str, *, mode: int = 0o755, uid: int = 0,
              gid: int = 0) -> None:
        self.request(handle, {"op": "mkdir", "path": path, "mode": mode, "uid": uid, "gid": gid})

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
