"""Container images: advertised as disk images, chosen by <disk_image>, and a sliver's root
filesystem snapshotted into a new content-addressed image (CreateImage/ListImages/DeleteImage)."""
from __future__ import annotations

from dataclasses import replace

import pytest

from drivers.base import DriverError, Usage
from drivers.images.store import ImageStore
from tests.drivers.vserver.conftest import driven
from tests.drivers.vserver.helpers import COMPONENT, guest_read, guest_run, node

PROJECT = "urn:publicid:IDN+geni-am:vstest+authority+proj"


@pytest.fixture
def drv(tmp_path):
    """A driver with a private image store holding a copy of the tests' image."""
    from drivers.images.recipes import copy_into
    from tests.drivers.vserver.helpers import test_image
    shared, name = test_image()
    store = ImageStore(tmp_path / "images")
    copy_into(store, ImageStore(shared).get(name), "base")
    with driven(tmp_path, images_dir=str(tmp_path / "images"), default_image="base") as d:
        yield d


def test_a_snapshot_carries_the_files_and_owners_into_a_new_sliver(drv):
    a = node("imga", [])
    drv.provision(a)
    script = ("echo marker-42 > /marker; mkdir -p /srv/data; echo x > /srv/data/f; "
              "chown 1234:1234 /srv/data/f; rm /etc/hostname; echo k > /etc/ssh/authorized_keys_x")
    assert guest_run(drv, a, "sh", "-c", script).returncode == 0
    image = drv.create_image(a, "snap1", owner=PROJECT, creator="urn:x+user+alice")
    assert image.owner == PROJECT and image.kind == "rootfs"
    assert drv.images.verify("snap1")
    assert "snap1" in {i.name for i in drv.list_images()}
    assert "snap1" in {d.name for d in drv.inventory()[0].sliver_types[0].disk_images}
    with pytest.raises(DriverError, match="already exists"):
        drv.create_image(a, "snap1", owner=PROJECT)

    b = replace(node("imgb", []), disk_image="snap1")
    assert drv.admit(b, Usage(component_id=COMPONENT)).ok
    drv.provision(b)
    assert guest_read(drv, b, "/marker") == "marker-42\n"
    assert guest_run(drv, b, "stat", "-c", "%u", "/srv/data/f").stdout.strip() == "1234"
    assert guest_read(drv, b, "/etc/hostname") is None          # the deletion came along
    assert drv.state.read(drv.node_handle(b.sliver_urn))["image"]["digest"] == image.digest

    # in use: refused while b runs on it; gone once b is
    with pytest.raises(DriverError, match="in use by sliver.*imgb"):
        drv.delete_image("snap1")
    drv.delete(b)
    drv.delete_image("snap1")
    assert "snap1" not in {i.name for i in drv.list_images()}
    refused = drv.admit(b, Usage(component_id=COMPONENT))
    assert refused.reason_code == "UNSUPPORTED" and "snap1" in refused.reason


def test_a_failed_snapshot_is_never_listed(drv, monkeypatch):
    a = node("imgc", [])
    drv.provision(a)
    before = {i.name for i in drv.list_images()}

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("drivers.vserver.snapshot._apply", boom)
    with pytest.raises(OSError):
        drv.create_image(a, "torn", owner=PROJECT)
    assert {i.name for i in drv.list_images()} == before
    assert not [p for p in drv.images.root.iterdir() if p.name.startswith(".tmp-")]
