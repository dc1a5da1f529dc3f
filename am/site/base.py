"""The pieces of the default site: a context shared by every helper, what each helper adds to
the site's inventory, and the record of everything made on the host.

A *site helper* brings one part of the default site up on this machine (an Open vSwitch switch,
a container node, a VM host, an emulated card...) and takes it down again. Each is a small class
with four duties: say what this host lacks for it (`missing`), start it and hand back its
inventory fragment (`start`), stop it (`stop`, also after a crash, from the record alone), and
name the command-line marker of every process it starts (`markers`), so `geni-am site down`
can find a survivor of a crashed serve. Everything a helper makes outside the state directory
(a namespace, an interface, a cgroup directory) is written to the record *before* it is made.
"""
from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

RECORD_KINDS = ("prefixes", "netns", "ifnames", "cgroup_dirs")


class SiteError(RuntimeError):
    """The default site cannot run on this host (the message says what is missing)."""


def site_tag(state_dir: Path) -> str:
    """Three characters unique to one state directory: every name a site makes on the host
    carries them, so two AMs (or test runs) on one host never share a name."""
    digest = int(hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest(), 16)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    out = ""
    for _ in range(3):
        digest, i = divmod(digest, len(alphabet))
        out += alphabet[i]
    return out


@dataclass
class SiteRecord:
    """What the site made outside its directory, persisted at every change (JSON)."""

    path: Path
    prefixes: list[str] = field(default_factory=list)   # every host name made starts with one
    netns: list[str] = field(default_factory=list)
    ifnames: list[str] = field(default_factory=list)
    cgroup_dirs: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> "SiteRecord":
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        return cls(path, **{k: [str(x) for x in data.get(k, ())] for k in RECORD_KINDS})

    def note(self, kind: str, value: str) -> None:
        items: list[str] = getattr(self, kind)
        if value not in items:
            items.append(value)
            self.save()

    def forget(self, kind: str, value: str) -> None:
        items: list[str] = getattr(self, kind)
        if value in items:
            items.remove(value)
            self.save()

    def save(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({k: getattr(self, k) for k in RECORD_KINDS}, fh, indent=1)
        os.replace(tmp, self.path)

    @property
    def empty(self) -> bool:
        """Nothing made on the host is left (the prefixes alone do not count)."""
        return not (self.netns or self.ifnames or self.cgroup_dirs)


@dataclass
class SiteContext:
    """Where a site lives and how it names things; handed to every helper."""

    root: Path                       # <state_dir>/site: everything of the site's lives here
    tag: str                         # site_tag(state_dir)
    authority: str                   # the AM's URN authority
    record: SiteRecord

    @classmethod
    def for_state_dir(cls, state_dir: Path, authority: str) -> "SiteContext":
        root = state_dir / "site"
        return cls(root=root, tag=site_tag(state_dir), authority=authority,
                   record=SiteRecord.load(root / "record.json"))

    def prefix(self, letter: str) -> str:
        """A name prefix for this site (a letter + the tag: 4 characters), recorded so that
        `site down` sweeps every namespace and interface named with it."""
        prefix = letter + self.tag
        self.record.note("prefixes", prefix)
        return prefix

    def dir(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path


@dataclass(frozen=True)
class ComponentInfo:
    """One line of the banner: a component, its driver, real or emulated, and what it is."""

    name: str
    driver: str
    kind: str                        # "real", "emulated", "simulated"
    detail: str


@dataclass
class Fragment:
    """What a helper adds to the site's inventory (the tables of docs/inventory.md)."""

    drivers: dict[str, dict[str, Any]] = field(default_factory=dict)
    components: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    edges: list[dict[str, Any]] = field(default_factory=list)    # [[edges]]: stitching
    info: list[ComponentInfo] = field(default_factory=list)
    #: ports a helper adds to a component another helper started (component name -> port
    #: tables), e.g. a cable plugged into the switch: merged into that component's `ports`
    ports: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def merge(self, other: "Fragment") -> None:
        for kind, table in other.drivers.items():
            if kind in self.drivers:
                raise SiteError(f"two site helpers configure driver {kind!r}")
            self.drivers[kind] = table
        self.components += other.components
        self.links += other.links
        self.edges += other.edges
        self.info += other.info
        for name, ports in other.ports.items():
            comp = next((c for c in self.components if c.get("name") == name), None)
            if comp is None:
                raise SiteError(f"a site helper adds ports to {name!r}, which no part started "
                                "before it")
            comp["ports"] = [*comp.get("ports", ()), *ports]


class SiteHelper(ABC):
    """One part of the default site (see the module docstring)."""

    name: ClassVar[str]
    #: The letters of the prefixes (`ctx.prefix(letter)`) this part names things with, so a
    #: `site down` without a record (its directory gone) still sweeps them.
    letters: ClassVar[str] = ""

    @abstractmethod
    def missing(self, ctx: SiteContext) -> list[str]:
        """What this host lacks for this part, one phrase each (empty: it can run)."""

    @abstractmethod
    def start(self, ctx: SiteContext) -> Fragment:
        """Bring the part up (idempotent) and return its inventory fragment."""

    @abstractmethod
    def stop(self, ctx: SiteContext) -> None:
        """Take the part down from its files and the record alone (idempotent; also after a
        crash, when nothing of the serve process that started it remains)."""

    def markers(self, ctx: SiteContext) -> list[str]:
        """Substrings of the command line of every process this part starts."""
        return []


__all__ = ["ComponentInfo", "Fragment", "SiteContext", "SiteError", "SiteHelper", "SiteRecord",
           "site_tag"]
