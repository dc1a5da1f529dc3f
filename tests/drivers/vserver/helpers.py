"""Spec builders and host snapshots for the vserver driver tests."""
from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from drivers.base import (
    InterfaceSpec,
    LinkEnd,
    LinkSpec,
    ResourceKind,
    SliverSpec,
)
from rspec.model import Route

AUTH = "geni-am:vstest"
COMPONENT = f"urn:publicid:IDN+{AUTH}+node+vs1"
SLICE = f"urn:publicid:IDN+{AUTH}+slice+chain"
#: the workloads run inside guests by the tests and by bench/bench_isolation.py
WORKLOADS = Path(__file__).with_name("workloads.py")


@functools.cache
def guest_test_image() -> tuple[Path, str]:
    """(store, name) of the tests' container image: the default recipe plus python3 (the
    workloads run in guests), built once into a store kept in the package cache (named by
    the recipe's source, so a changed recipe builds anew; a lock serialises parallel runs)."""
    from drivers.images import debs, recipes
    from drivers.images.store import ImageStore
    from drivers.vserver import images
    source = Path(images.__file__).read_bytes()
    name = f"test-busybox-py-{hashlib.sha256(source).hexdigest()[:10]}"
    store_dir = debs.cache_dir().parent / "test-images"
    store = ImageStore(store_dir)
    with open(store_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not store.exists(name):
            recipes.build(store, images.DEFAULT_IMAGE, name, {"python": "1"})
    return store_dir, name


def sliver_urn(name: str) -> str:
    return f"urn:publicid:IDN+{AUTH}+sliver+{name}"


def node(name: str, ifaces: list[tuple[str, str, str]], *, router: bool = False,
         routes: tuple[Route, ...] = (), cpu: float | None = None, memory_mb: int | None = None,
         **kw) -> SliverSpec:
    """ifaces: (interface name, ip, link client_id)."""
    return SliverSpec(
        sliver_urn=sliver_urn(name), slice_urn=SLICE, client_id=name, kind=ResourceKind.NODE,
        component_id=COMPONENT, sliver_type="vserver-container", router=router, routes=routes,
        cpu=cpu, memory_mb=memory_mb,
        interfaces=tuple(InterfaceSpec(client_id=f"{name}:{ifn}", name=ifn,
                                       ips=((ip, "255.255.255.0"),), link_client_id=link)
                         for ifn, ip, link in ifaces), **kw)


def link(name: str, ends: list[SliverSpec], *, kbps: int | None = None,
         latency_ms: float | None = None, loss: float | None = None) -> SliverSpec:
    link_ends = []
    for n in ends:
        iface = next(i for i in n.interfaces if i.link_client_id == name)
        link_ends.append(LinkEnd(sliver_urn=n.sliver_urn, node_client_id=n.client_id,
                                 interface_client_id=iface.client_id, component_id=COMPONENT))
    return SliverSpec(
        sliver_urn=sliver_urn(name), slice_urn=SLICE, client_id=name, kind=ResourceKind.LINK,
        component_id=COMPONENT,
        link=LinkSpec(ends=tuple(link_ends), capacity_kbps=kbps, latency_ms=latency_ms,
                      packet_loss=loss, mode="veth" if len(ends) == 2 else "bridge"))


@dataclass
class Chain:
    h1: SliverSpec
    r1: SliverSpec
    h2: SliverSpec
    l1: SliverSpec
    l2: SliverSpec

    @property
    def all(self) -> list[SliverSpec]:
        return [self.h1, self.r1, self.h2, self.l1, self.l2]


def chain(*, router: bool = True, kbps: int | None = None, tag: str = "") -> Chain:
    """h1 (10.201.1.2) - r1 - h2 (10.201.2.2), r1 forwarding when `router`."""
    h1 = node(f"h1{tag}", [("eth1", "10.201.1.2", f"l1{tag}")],
              routes=(Route("10.201.2.0/24", "10.201.1.1"),))
    r1 = node(f"r1{tag}", [("eth1", "10.201.1.1", f"l1{tag}"), ("eth2", "10.201.2.1", f"l2{tag}")],
              router=router)
    h2 = node(f"h2{tag}", [("eth1", "10.201.2.2", f"l2{tag}")],
              routes=(Route("10.201.1.0/24", "10.201.1.1" if False else "10.201.2.1"),))
    return Chain(h1, r1, h2, link(f"l1{tag}", [h1, r1], kbps=kbps), link(f"l2{tag}", [r1, h2], kbps=kbps))


@dataclass(frozen=True)
class HostSnapshot:
    netns: frozenset[str]
    links: frozenset[str]
    cgroups: frozenset[str]


def snapshot(cgroup_parent: str = "geni-am") -> HostSnapshot:
    ns = frozenset(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else frozenset()
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                         check=True).stdout
    links = frozenset(line.split(":")[1].strip().split("@")[0] for line in out.splitlines())
    cgs = set()
    for ctrl in ("cpu", "memory"):
        base = Path("/sys/fs/cgroup") / ctrl / cgroup_parent
        if base.is_dir():
            cgs |= {f"{ctrl}/{p.name}" for p in base.iterdir() if p.is_dir()}
    return HostSnapshot(ns, links, frozenset(cgs))


def ours(snap: HostSnapshot, prefix: str) -> HostSnapshot:
    """Only what carries this test's prefix (other engineers' tests run on this host too)."""
    return HostSnapshot(frozenset(n for n in snap.netns if n.startswith(prefix)),
                        frozenset(n for n in snap.links if n.startswith(prefix)),
                        frozenset(c for c in snap.cgroups if c.split("/", 1)[1].startswith(prefix)))


def guest_script(driver, spec: SliverSpec, script: str | Path, *args: str) -> list[str]:
    """argv running a host test script with the guest's python3: the script is copied into
    the guest first (/opt/tests/<name>), since no host path is visible inside."""
    script = Path(script)
    handle = driver.node_handle(spec.sliver_urn)
    target = f"/opt/tests/{script.name}"
    driver.guests.put(handle, target, script.read_bytes())
    return driver.sliver_argv(spec.sliver_urn, ["python3", target, *args])


def guest_run(driver, spec: SliverSpec, *argv: str, uid: int = 0,
              timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run argv inside the sliver's guest (as its root, or guest `uid`)."""
    return subprocess.run(driver.sliver_argv(spec.sliver_urn, list(argv), uid=uid),
                          capture_output=True, text=True, timeout=timeout)


def guest_read(driver, spec: SliverSpec, path: str) -> str | None:
    """A file's text as the guest sees it, or None when it cannot be read there."""
    out = guest_run(driver, spec, "cat", path)
    return out.stdout if out.returncode == 0 else None


def ping(driver, spec: SliverSpec, address: str, *, count: int = 1, timeout: int = 2) -> bool:
    argv = driver.sliver_argv(spec.sliver_urn, ["ping", "-c", str(count), "-W", str(timeout),
                                                "-i", "0.2", address])
    return subprocess.run(argv, capture_output=True, timeout=timeout * count + 5).returncode == 0
