"""Per-sliver cgroup v1 limits: CPU bandwidth (CFS quota), memory and the number of tasks.

This host mounts cgroup v1 (docs/host-notes.md). A sliver gets `<root>/<controller>/<parent>/<name>`
for each of cpu, memory and pids; every process the driver starts in the sliver is written into
all three `tasks` files before it execs, and its children inherit them. A CFS quota is a hard
ceiling (the sliver cannot take more than `cpu` cores even on an idle host), unlike
`cpu.shares`, which only weighs siblings against each other: the ceiling is what keeps a
misbehaving neighbour from eating a well-behaved one's CPU. `pids.max` bounds the tasks
(processes and threads) of the sliver: past it fork/clone fail with EAGAIN inside the sliver,
so a fork bomb exhausts its own allowance, not the host's pid space.
"""
from __future__ import annotations

import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from drivers.base import DriverError

CONTROLLERS = ("cpu", "memory", "pids")
MIN_QUOTA_US = 1000
MIN_PIDS = 8                      # a shell, its command and a few helpers
PID_MAX_LIMIT = 4 * 1024 * 1024   # the kernel's ceiling for pids.max (PID_MAX_LIMIT)


@dataclass(frozen=True)
class CgroupLayout:
    root: Path          # where the v1 hierarchies are mounted, /sys/fs/cgroup
    parent: str         # this AM's directory under each controller, e.g. "geni-am"
    period_us: int = 100_000
    controllers: tuple[str, ...] = CONTROLLERS   # + "blkio" when disk I/O is throttled

    def dir(self, controller: str, name: str) -> Path:
        return self.root / controller / self.parent / name

    def parent_dir(self, controller: str) -> Path:
        return self.root / controller / self.parent

    def check(self) -> None:
        """Raise DriverError unless the controllers are mounted and writable; all are looked
        for before anything is made, so a host lacking one is left untouched."""
        for ctrl in self.controllers:
            base = self.root / ctrl
            if not (base / "tasks").exists():
                raise DriverError(f"cgroup v1 controller {ctrl!r} is not mounted at {base} "
                                  f"(mount it: mount -t cgroup -o {ctrl} {ctrl} {base})")
        for ctrl in self.controllers:
            try:
                self.parent_dir(ctrl).mkdir(exist_ok=True)
            except OSError as exc:
                raise DriverError(f"cannot create {self.parent_dir(ctrl)}: {exc.strerror}") from None

    def names(self) -> set[str]:
        """Sliver cgroups under this AM's parent, in any controller."""
        found: set[str] = set()
        for ctrl in self.controllers:
            try:
                found |= {p.name for p in self.parent_dir(ctrl).iterdir() if p.is_dir()}
            except FileNotFoundError:
                pass
        return found

    # ---- one sliver ------------------------------------------------------------------------
    def create(self, name: str, *, cpu: float | None, memory_mb: int, pids_max: int,
               shares: int = 1024) -> None:
        """Create (or update) the sliver's groups with its limits; idempotent. `cpu` None is a
        fair share: no ceiling, weight `shares` against the other guests (PlanetLab's
        VServer default); a number of cores is a CFS quota (a reservation admission counted).
        Lowering `pids_max` below what runs kills nothing: only new forks fail until it is
        under."""
        for ctrl in self.controllers:
            self.dir(ctrl, name).mkdir(parents=True, exist_ok=True)
        cpu_dir = self.dir("cpu", name)
        _write(cpu_dir / "cpu.shares", str(shares))
        _write(cpu_dir / "cpu.cfs_period_us", str(self.period_us))
        quota = -1 if cpu is None else max(MIN_QUOTA_US, int(round(cpu * self.period_us)))
        _write(cpu_dir / "cpu.cfs_quota_us", str(quota))
        mem_dir = self.dir("memory", name)
        limit = memory_mb * 1024 * 1024
        _write(mem_dir / "memory.limit_in_bytes", str(limit))
        memsw = mem_dir / "memory.memsw.limit_in_bytes"
        if memsw.exists():   # no escape into swap either (needs limit_in_bytes set first)
            try:
                _write(memsw, str(limit))
            except DriverError:
                pass   # swap accounting disabled: the RAM limit still holds
        _write(self.dir("pids", name) / "pids.max", str(pids_max))

    def throttle_disk(self, name: str, device: str, *, read_bps: int | None,
                      write_bps: int | None) -> None:
        """blkio throttling of the sliver's reads and writes on `device` ("MAJ:MIN" of the
        disk under its layer); 0 lifts a limit. cgroup v1 throttles I/O the sliver's tasks
        submit themselves (direct I/O, reads, fsync'd writes), not the kernel's writeback."""
        d = self.dir("blkio", name)
        for key, bps in (("read", read_bps), ("write", write_bps)):
            _write(d / f"blkio.throttle.{key}_bps_device", f"{device} {bps or 0}")

    def limits(self, name: str) -> dict[str, int]:
        cpu_dir, mem_dir = self.dir("cpu", name), self.dir("memory", name)
        return {"cfs_quota_us": int((cpu_dir / "cpu.cfs_quota_us").read_text()),
                "shares": int((cpu_dir / "cpu.shares").read_text()),
                "cfs_period_us": int((cpu_dir / "cpu.cfs_period_us").read_text()),
                "memory_limit_bytes": int((mem_dir / "memory.limit_in_bytes").read_text()),
                "pids_max": int((self.dir("pids", name) / "pids.max").read_text())}

    def pids_current(self, name: str) -> int:
        """Tasks (processes and threads) the sliver holds now, as `pids.max` counts them."""
        return int((self.dir("pids", name) / "pids.current").read_text())

    def exists(self, name: str) -> bool:
        return all(self.dir(c, name).is_dir() for c in self.controllers)

    def tasks_files(self, name: str) -> list[Path]:
        return [self.dir(c, name) / "tasks" for c in self.controllers]

    def pids(self, name: str) -> set[int]:
        pids: set[int] = set()
        for ctrl in self.controllers:
            try:
                text = (self.dir(ctrl, name) / "cgroup.procs").read_text()
            except FileNotFoundError:
                continue
            pids |= {int(p) for p in text.split()}
        return pids

    def kill_all(self, name: str, *, timeout_s: float = 2.0) -> None:
        """SIGTERM every process in the sliver, SIGKILL what is left after `timeout_s`."""
        kill_pids(lambda: self.pids(name), timeout_s=timeout_s)

    def remove(self, name: str, *, timeout_s: float = 2.0) -> bool:
        """Kill the sliver's processes and remove its groups; False when there were none."""
        present = [self.dir(c, name) for c in self.controllers if self.dir(c, name).is_dir()]
        if not present:
            return False
        self.kill_all(name, timeout_s=timeout_s)
        deadline = time.monotonic() + timeout_s
        for d in present:
            while True:
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise DriverError(f"cannot remove cgroup {d}: {exc.strerror}",
                                          transient=True) from None
                    time.sleep(0.01)
        return True


def kill_pids(list_pids, *, timeout_s: float) -> None:
    """Terminate the processes `list_pids()` returns until it returns none."""
    pids = list_pids()
    if not pids:
        return
    _signal(pids, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids = list_pids()
        if not pids:
            return
        time.sleep(0.02)
    for _ in range(50):
        pids = list_pids()
        if not pids:
            return
        _signal(pids, signal.SIGKILL)
        time.sleep(0.02)
    raise DriverError(f"processes {sorted(pids)} survived SIGKILL", transient=True)


def _signal(pids, sig: int) -> None:
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise DriverError(f"cannot write {value} to {path}: {exc.strerror}") from None


__all__ = ["CONTROLLERS", "MIN_PIDS", "PID_MAX_LIMIT", "CgroupLayout", "kill_pids"]
