"""The VM image recipe: a Debian cloud kernel and a busybox/dropbear initramfs, built from
.deb files without installing them; the per-sliver config archive the driver appends."""
from __future__ import annotations

import gzip
import subprocess

import pytest

from drivers.images.recipes import recipes
from drivers.images.store import ImageError, ImageStore
from drivers.xen import images as vmimages
from tests.conftest import require_tool

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    store = ImageStore(tmp_path_factory.mktemp("vmimg") / "images")
    return vmimages.ensure_image(store), store


def _listing(archive: bytes, tmp_path) -> list[str]:
    cpio = require_tool("cpio")
    out = subprocess.run([cpio, "-t", "--quiet"], input=gzip.decompress(archive),
                         capture_output=True, check=True, cwd=tmp_path)
    return out.stdout.decode().split()


def test_recipe_is_registered():
    assert recipes()["vm-initramfs"].kind == "vm"


def test_build_gives_kernel_and_initramfs(image, tmp_path):
    img, store = image
    assert img.kind == "vm" and img.meta["boot"] == "initramfs"
    assert img.meta["kernel_version"].endswith("-cloud-amd64")
    kernel = (img.data / img.meta["kernel"]).read_bytes()
    assert kernel[0x202:0x206] == b"HdrS"                   # a bzImage boot header
    names = set(_listing((img.data / img.meta["initrd"]).read_bytes(), tmp_path))
    for must in ("init", "bin/busybox", "usr/sbin/dropbear", "lib64/ld-linux-x86-64.so.2",
                 "lib/modules/virtio_net.ko", "lib/modules/virtio_console.ko",
                 "geni/boot.sh", "geni/agent.sh", "etc/inittab"):
        assert must in names, must
    assert store.verify(img.name)


def test_ensure_reuses_the_build(image):
    img, store = image
    again = vmimages.ensure_image(store)
    assert again.digest == img.digest and again.created == img.created


def test_unknown_option_is_refused(image):
    _, store = image
    from drivers.images.recipes import build
    with pytest.raises(ImageError, match="no option 'colour'"):
        build(store, "vm-initramfs", "x", {"colour": "red"})
    assert not store.exists("x")


def test_config_archive_holds_config_and_users(tmp_path):
    archive = vmimages.config_archive(["hostname h1", "forward 1"],
                                      {"alice": ["ssh-ed25519 AAAA a@b"], "bob": []})
    assert sorted(_listing(archive, tmp_path)) == ["geni/config", "geni/users"]
    subprocess.run([require_tool("cpio"), "-id", "--quiet"], input=gzip.decompress(archive),
                   cwd=tmp_path, check=True)
    assert (tmp_path / "geni/config").read_text() == "hostname h1\nforward 1\n"
    assert (tmp_path / "geni/users").read_text() == "alice ssh-ed25519 AAAA a@b\nbob\n"
