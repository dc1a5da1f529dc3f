"""The vserver driver on this host: real namespaces, veths, bridges, tc and cgroups (as root).

Each test gets its own name prefix and state directory, so parallel runs and other engineers'
namespaces never collide with it; teardown deletes whatever a failed test left behind.
"""
from __future__ import annotations

import random
import string
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from drivers.vserver import VServerDriver
from tests.drivers.vserver.helpers import AUTH, guest_test_image


def make_driver(tmp_path, **config) -> VServerDriver:
    prefix = "t" + "".join(random.choices(string.ascii_lowercase + string.digits, k=3))
    images, name = guest_test_image()
    cfg = {"name_prefix": prefix, "state_dir": str(tmp_path / "state"), "cpu": 2,
           "memory_mb": 4096, "images_dir": str(images), "default_image": name,
           "build_default_image": False, **config}
    return VServerDriver(cfg, [{"name": "vs1", "driver": "vserver", "_table": "components[0]"}],
                         authority=AUTH)


def release_all(drv: VServerDriver) -> None:
    """Remove whatever the driver finds on the host (best effort after a failed test)."""
    for item in drv.observed():
        try:
            drv.release(item.handle)
        except Exception:   # noqa: BLE001 - best effort cleanup after a failed test
            pass


@contextmanager
def driven(folder, **config) -> Iterator[VServerDriver]:
    """`make_driver`, and everything it made released and the driver closed afterwards."""
    drv = make_driver(folder, **config)
    try:
        yield drv
    finally:
        release_all(drv)
        drv.close()


@pytest.fixture
def driver(tmp_path):
    with driven(tmp_path) as drv:
        yield drv
