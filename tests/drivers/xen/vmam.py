"""The whole AM over a real VM host, for tests and benches: the runtime `geni-am serve` builds
(store, site from an inventory, the embedded Celery worker and its periodic timer) with the
Xen driver talking to a private libvirtd and booting the image store's VM image.

    with vm_am(tmp, daemon, store, dom0=..., prefix=...) as rt:
        rt.service.allocate(...); rt.service.provision(...)
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from am.config import Settings
from drivers.images.store import ImageStore
from drivers.xen.libvirtd import PrivateLibvirtd

HOST = "vmhost"


def host_urn(authority: str) -> str:
    return f"urn:publicid:IDN+{authority}+node+{HOST}"


def write_inventory(path: Path, daemon: PrivateLibvirtd, store: ImageStore, *, state: Path,
                    prefix: str, dom0: str | None = None, extra: str = "", **xen: Any) -> Path:
    """An inventory with one VM host (`HOST`) on `daemon`; `xen`: more [drivers.xen] keys;
    `extra`: more TOML (other drivers and components)."""
    values: dict[str, Any] = {"uri": daemon.uri, "image_store": str(store.root),
                              "domain_type": "qemu", "state_dir": str(state / "xen"),
                              "ifname_prefix": prefix, "memory_mb": 8192, "vcpus": 32,
                              "default_memory_mb": 192, **xen}
    if dom0:
        values["dom0_netns"] = dom0
    lines = ["[drivers.xen]"]
    for key, value in values.items():
        lines.append(f"{key} = {value}" if isinstance(value, (int, float)) and
                     not isinstance(value, bool) else f'{key} = "{value}"')
    lines += ["", "[[components]]", f'name = "{HOST}"', 'driver = "xen"', "", extra]
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def vm_am(settings: Settings) -> Iterator[Any]:
    """`am.app.build_runtime` with serve's job queue (embedded worker, periodic reconciler);
    everything the drivers still hold is released when it closes."""
    from am.app import build_runtime
    from am.jobs.runtime import serve_job_queue

    rt = build_runtime(settings, job_queue=serve_job_queue)
    try:
        yield rt
    finally:
        for driver in rt.site.drivers.values():
            for obs in driver.observed():
                try:
                    driver.release(obs.handle)
                except Exception:   # noqa: BLE001 - best effort after a failure
                    pass
        rt.close()


__all__ = ["HOST", "host_urn", "vm_am", "write_inventory"]
