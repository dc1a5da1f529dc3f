"""The default site: what `geni-am serve` runs on this machine when given no inventory.

`default_helpers` lists the parts in start order; a substrate adds its part by appending its
helper class (a `SiteHelper` with a no-argument constructor) to that list, e.g. from its own
module: `default_helpers.append(VMHost)`. `DefaultSite.up()` checks every part, starts them,
writes the merged inventory to `<state_dir>/site/inventory.toml` (the file every process of
this AM then loads, workers included) and returns it; `down()` releases every sliver the
drivers still hold, stops the parts in reverse order, kills any process left with a part's
command-line marker and removes every namespace, interface and cgroup in the record.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import tomli_w

from am.site.base import ComponentInfo, Fragment, SiteContext, SiteError, SiteHelper
from am.site.containers import ContainerNode, remove_cgroup_dirs
from am.site.netfpga import CardSwitchCable, EmulatedNetFPGA
from am.site.switch import OVSSwitch
from am.site.vmhost import VMHost
from drivers import hostnet

if TYPE_CHECKING:
    from am.config import Settings

log = logging.getLogger("am.site")

#: The parts of the default site, in start order (stopped in reverse). Append to extend it.
default_helpers: list[Callable[[], SiteHelper]] = [ContainerNode, OVSSwitch, EmulatedNetFPGA,
                                                   CardSwitchCable, VMHost]

SITE_NAME = "this-host"
INVENTORY = "inventory.toml"
PIDFILE = "serve.pid"


def serve_pid(ctx: SiteContext) -> int | None:
    """The pid of the live process that brought the site up, if any."""
    try:
        pid = int((ctx.root / PIDFILE).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


@dataclass
class RunningSite:
    inventory: Path
    components: list[ComponentInfo]


@dataclass
class DownReport:
    """What `down()` found and removed (for `geni-am site down`)."""

    released: list[str] = field(default_factory=list)
    killed: list[int] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def running_inventory(settings: Settings) -> Settings:
    """`settings` with the inventory of the default site that a serve on the same state
    directory runs, when they name no site of their own (a `geni-am worker` beside it)."""
    if settings.inventory or settings.fake_nodes:
        return settings
    path = settings.state_path / "site" / INVENTORY
    return settings.replace(inventory=str(path)) if path.is_file() else settings


class DefaultSite:
    def __init__(self, state_dir: Path, authority: str,
                 helpers: Sequence[SiteHelper] | None = None):
        self.ctx = SiteContext.for_state_dir(Path(state_dir), authority)
        self.helpers = list(helpers) if helpers is not None else [h() for h in default_helpers]

    @property
    def inventory_path(self) -> Path:
        return self.ctx.root / INVENTORY

    def missing(self) -> list[str]:
        out: list[str] = []
        for helper in self.helpers:
            out += [m for m in helper.missing(self.ctx) if m not in out]
        return out

    def up(self) -> RunningSite:
        """Start every part (after cleaning up what a crashed run left) or raise SiteError."""
        missing = self.missing()
        if missing:
            raise SiteError("this host cannot run the default site: missing "
                            + "; ".join(missing))
        if self.inventory_path.exists() or self.ctx.record.path.exists():
            report = self.down()
            if report.released or report.killed or report.removed:
                log.warning("cleaned up after a previous run of the site: %d sliver(s), "
                            "%d process(es), %d host object(s)", len(report.released),
                            len(report.killed), len(report.removed))
        merged = Fragment()
        try:
            for helper in self.helpers:
                merged.merge(helper.start(self.ctx))
            doc = {"site": {"name": SITE_NAME}, "drivers": merged.drivers,
                   "components": merged.components}
            if merged.links:
                doc["links"] = merged.links
            if merged.edges:
                doc["edges"] = merged.edges
            self.ctx.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            text = ("# Written by geni-am serve for the default site (docs/quickstart.md); "
                    "removed when it stops.\n" + tomli_w.dumps(doc))
            tmp = self.inventory_path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.replace(tmp, self.inventory_path)
            (self.ctx.root / PIDFILE).write_text(f"{os.getpid()}\n")
        except Exception as exc:
            self.down()
            if isinstance(exc, SiteError):
                raise
            raise SiteError(f"starting the default site failed: {exc}") from exc
        return RunningSite(self.inventory_path, merged.info)

    def down(self) -> DownReport:
        """Take everything down; safe to call any number of times, also after a crash."""
        report = DownReport()
        self._release_slivers(report)
        for helper in reversed(self.helpers):
            try:
                helper.stop(self.ctx)
            except Exception as exc:   # noqa: BLE001 - stop the rest regardless
                report.problems.append(f"{helper.name}: {exc}")
        markers = [m for h in self.helpers for m in h.markers(self.ctx)]
        report.killed = kill_marked(markers + [str(self.ctx.root) + os.sep])
        self._sweep(report)
        try:
            remove_cgroup_dirs(self.ctx)
        except OSError as exc:
            report.problems.append(f"cgroups: {exc}")
        for leftover in self.ctx.record.cgroup_dirs:
            report.problems.append(f"cgroup {leftover} is still busy")
        self.inventory_path.unlink(missing_ok=True)
        (self.ctx.root / PIDFILE).unlink(missing_ok=True)
        left = self.leftovers()
        report.problems += [f"still on the host: {what}" for what in left]
        if not left:                       # keep the record (prefixes) while anything remains
            self.ctx.record.prefixes.clear()
            self.ctx.record.path.unlink(missing_ok=True)
        return report

    def _release_slivers(self, report: DownReport) -> None:
        """Every sliver each driver of the site still finds, released; driver by driver, so a
        dead switch does not keep the containers' slivers alive."""
        if not self.inventory_path.exists():
            return
        from drivers.inventory import load_inventory
        from drivers.registry import available_drivers

        registry = available_drivers()
        try:
            inv = load_inventory(str(self.inventory_path), known_drivers=set(registry))
        except Exception as exc:   # noqa: BLE001 - the sweep still runs
            report.problems.append(f"cannot read {self.inventory_path}: {exc}")
            return
        for kind in inv.driver_kinds():
            try:
                driver = registry[kind](dict(inv.drivers.get(kind, {})),
                                        list(inv.components.get(kind, ())),
                                        authority=self.ctx.authority)
            except Exception as exc:   # noqa: BLE001
                report.problems.append(f"{kind}: cannot load the driver to release its "
                                       f"slivers: {exc}")
                continue
            try:
                for item in driver.observed():
                    try:
                        driver.release(item.handle)
                        report.released.append(f"{kind}:{item.handle}")
                    except Exception as exc:   # noqa: BLE001
                        report.problems.append(f"{kind}: cannot release {item.handle}: {exc}")
            except Exception as exc:   # noqa: BLE001
                report.problems.append(f"{kind}: cannot list slivers: {exc}")
            finally:
                driver.close()

    def _prefixes(self) -> tuple[str, ...]:
        declared = {letter + self.ctx.tag for h in self.helpers for letter in h.letters}
        return tuple(sorted(declared | set(self.ctx.record.prefixes)))

    def leftovers(self) -> list[str]:
        """What of the site is still on the host: namespaces and interfaces with its prefixes,
        recorded cgroup directories, processes with its markers."""
        prefixes = self._prefixes()
        found = [f"netns {n}" for n in hostnet.netns_list() if n.startswith(prefixes)]
        found += [f"interface {li.name}" for li in hostnet.links(None)
                  if li.name.startswith(prefixes)]
        found += [f"cgroup {d}" for d in self.ctx.record.cgroup_dirs if Path(d).exists()]
        return found

    def _sweep(self, report: DownReport) -> None:
        """Namespaces and interfaces in the record or named with one of the site's prefixes."""
        prefixes = self._prefixes()
        for ns in sorted(set(self.ctx.record.netns)
                         | {n for n in hostnet.netns_list() if prefixes and n.startswith(prefixes)}):
            try:
                if hostnet.netns_delete(ns):
                    report.removed.append(f"netns {ns}")
                self.ctx.record.forget("netns", ns)
            except Exception as exc:   # noqa: BLE001
                report.problems.append(f"netns {ns}: {exc}")
        names = set(self.ctx.record.ifnames)
        if prefixes:
            names |= {li.name for li in hostnet.links(None) if li.name.startswith(prefixes)}
        for name in sorted(names):
            try:
                if hostnet.link_delete(None, name):
                    report.removed.append(f"interface {name}")
                self.ctx.record.forget("ifnames", name)
            except Exception as exc:   # noqa: BLE001
                report.problems.append(f"interface {name}: {exc}")


def kill_marked(markers: Sequence[str], *, timeout_s: float = 3.0) -> list[int]:
    """SIGTERM, then SIGKILL, every process (not this one) whose command line contains one of
    `markers`; returns their pids."""
    def marked() -> list[int]:
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if any(m.encode() in cmdline for m in markers if m):
                out.append(int(entry))
        return out

    found = marked()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in marked():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout_s
        while marked() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not marked():
            break
    return found


__all__ = ["DefaultSite", "DownReport", "RunningSite", "default_helpers", "kill_marked",
           "running_inventory", "serve_pid"]
