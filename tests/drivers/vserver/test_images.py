"""Container images: advertised as disk images, chosen by <disk_image>, and a sliver's root
filesystem snapshotted into a new content-addressed image (CreateImage/ListImages/DeleteImage)."""
from __future__ import annotations

from dataclasses import replace

import pytest

from drivers.base import DriverError, Usage
from drivers.images.store import ImageStore
from tests.api.conftest import base_settings, fx, trust_dir  # noqa: F401 - fixtures
from tests.drivers.vserver.conftest import driven
from tests.drivers.vserver.helpers import COMPONENT, guest_read, guest_run, node

pytestmark = pytest.mark.root

PROJECT = "urn:publicid:IDN+geni-am:vstest+authority+proj"


def private_store(folder) -> ImageStore:
    """A store of this test's own (snapshots never land in the shared one) holding a copy of
    the tests' image as "base" (hard links: instant)."""
    from drivers.images.recipes import copy_into
    from tests.drivers.vserver.helpers import guest_test_image
    shared, name = guest_test_image()
    store = ImageStore(folder)
    copy_into(store, ImageStore(shared).get(name), "base")
    return store


@pytest.fixture
def drv(tmp_path):
    private_store(tmp_path / "images")
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


def test_create_list_delete_image_through_the_am_api(base_settings, tmp_path, gcf_fixtures, fx):
    import subprocess

    from tests.api.conftest import ALICE, RSPEC_V, SLICE, code_of
    from tests.drivers.vserver.test_through_am import GA, start_am

    def request(cid: str, image: str = "") -> str:
        disk = f'<disk_image name="{image}"/>' if image else ""
        return (f'<rspec xmlns="http://www.geni.net/resources/rspec/3" xmlns:ga="{GA}" '
                f'type="request"><node client_id="{cid}" component_id="urn:publicid:IDN+'
                f'geni-am:test+node+vs1" exclusive="false"><sliver_type name="vserver-container">'
                f'{disk}</sliver_type><ga:node memory_mb="64"/></node></rspec>')

    store = private_store(tmp_path / "images")
    client, rt, _prefix = start_am(base_settings, tmp_path, gcf_fixtures,
                                   images=(store.root, "base"))
    driver = rt.site.drivers["vserver"]
    try:
        cred = [fx.cred("slice-cred-alice")]
        alloc = client.call("Allocate", SLICE, cred, request("a"), {})
        assert code_of(alloc) == 0, alloc
        (first,) = [s["geni_sliver_urn"] for s in alloc["value"]["geni_slivers"]]
        assert code_of(client.call("Provision", [first], cred,
                                   {"geni_rspec_version": RSPEC_V})) == 0
        wrote = subprocess.run(driver.sliver_argv(first, ["sh", "-c", "echo api-7 > /marker"]),
                               capture_output=True, text=True, timeout=30)
        assert wrote.returncode == 0, wrote.stderr
        bad = client.call("CreateImage", SLICE, "no/slash", first, cred, {})
        assert code_of(bad) == 1, bad
        made = client.call("CreateImage", SLICE, "snapapi", first, cred, {})
        assert code_of(made) == 0, made
        image_urn = made["value"][0]
        assert image_urn.endswith("+image+snapapi")
        assert code_of(client.call("CreateImage", SLICE, "snapapi", first, cred, {})) == 17
        listed = client.call("ListImages", ALICE, cred, {})
        assert [i["urn"] for i in listed["value"]] == [image_urn]
        assert listed["value"][0]["owner"] == SLICE.split("+")[1]      # the slice's project
        ad = client.call("ListResources", cred, {"geni_rspec_version": RSPEC_V})
        assert 'name="snapapi"' in ad["value"]
        alloc = client.call("Allocate", SLICE, cred, request("b", image_urn), {})
        assert code_of(alloc) == 0, alloc
        second = next(s["geni_sliver_urn"] for s in alloc["value"]["geni_slivers"]
                      if s["geni_sliver_urn"] != first)
        assert code_of(client.call("Provision", [second], cred,
                                   {"geni_rspec_version": RSPEC_V})) == 0
        seen = subprocess.run(driver.sliver_argv(second, ["cat", "/marker"]),
                              capture_output=True, text=True, timeout=30)
        assert seen.stdout == "api-7\n", seen.stderr
        busy = client.call("DeleteImage", image_urn, cred, {})
        assert code_of(busy) == 14 and "in use" in busy["output"], busy
        assert code_of(client.call("Delete", [second], cred, {})) == 0
        assert code_of(client.call("DeleteImage", image_urn, cred, {})) == 0, image_urn
        assert client.call("ListImages", ALICE, cred, {})["value"] == []
        assert code_of(client.call("DeleteImage", image_urn, cred, {})) == 12
        assert code_of(client.call("Delete", [SLICE], cred, {})) == 0
    finally:
        release_all_of(rt)


def release_all_of(rt) -> None:
    from tests.drivers.vserver.conftest import release_all
    release_all(rt.site.drivers["vserver"])
    rt.close()
