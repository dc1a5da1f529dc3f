"""The content-addressed image store: same content one image, torn writes never listed."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from drivers.images import recipes
from drivers.images.store import ImageError, ImageStore, tree_digest


def _fill(data: Path, marker: str = "hello") -> None:
    (data / "etc").mkdir()
    (data / "etc" / "hostname").write_text(marker)
    (data / "bin").mkdir()
    (data / "bin" / "sh").write_text("#!/bin/true\n")
    os.chmod(data / "bin" / "sh", 0o755)
    os.symlink("bin/sh", data / "init")


def _publish(store: ImageStore, name: str, marker: str = "hello", **kw):
    staging = store.staging()
    _fill(staging / "data", marker)
    return store.publish(staging, name, kind="rootfs", **kw)


def test_publish_get_list(tmp_path):
    store = ImageStore(tmp_path / "images")
    image = _publish(store, "base", owner="urn:publicid:IDN+x+project+p", description="d")
    assert image.digest.startswith("sha256-") and len(image.digest) == 71
    assert (image.data / "etc" / "hostname").read_text() == "hello"
    assert image.owner == "urn:publicid:IDN+x+project+p"
    assert [i.name for i in store.list()] == ["base"]
    assert store.get(image.digest).digest == image.digest
    assert store.verify("base")
    assert stat.S_IMODE(os.stat(tmp_path / "images").st_mode) == 0o700


def test_same_content_is_one_image_and_a_changed_byte_another(tmp_path):
    store = ImageStore(tmp_path / "images")
    a = _publish(store, "a")
    b = _publish(store, "b")
    c = _publish(store, "c", marker="hellO")
    assert a.digest == b.digest != c.digest
    assert len([p for p in store.root.iterdir() if p.name.startswith("sha256-")]) == 2
    store.delete("a")                      # b still refers to the content
    assert (store.root / a.digest).is_dir() and store.get("b").digest == a.digest
    store.delete("b")
    assert not (store.root / a.digest).exists()
    with pytest.raises(ImageError, match="no image 'a'"):
        store.get("a")


def test_digest_covers_modes_and_links(tmp_path):
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        _fill(tmp_path / sub)
    assert tree_digest(tmp_path / "x") == tree_digest(tmp_path / "y")
    os.chmod(tmp_path / "y" / "bin" / "sh", 0o700)
    assert tree_digest(tmp_path / "x")[0] != tree_digest(tmp_path / "y")[0]
    os.chmod(tmp_path / "y" / "bin" / "sh", 0o755)
    os.unlink(tmp_path / "y" / "init")
    os.symlink("bin/other", tmp_path / "y" / "init")
    assert tree_digest(tmp_path / "x")[0] != tree_digest(tmp_path / "y")[0]


def test_half_written_image_is_never_listed_and_is_swept(tmp_path):
    store = ImageStore(tmp_path / "images")
    staging = store.staging()              # a build that crashed before publish
    _fill(staging / "data")
    assert store.list() == []
    assert staging.name in store.sweep()
    assert not staging.exists()


def test_tampered_content_fails_verify(tmp_path):
    store = ImageStore(tmp_path / "images")
    image = _publish(store, "base")
    (image.data / "etc" / "hostname").write_text("evil")
    assert not store.verify("base")


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "x" * 65, "spa ce", 7])
def test_bad_names_refused(tmp_path, name):
    store = ImageStore(tmp_path / "images")
    with pytest.raises(ImageError, match="image name"):
        store.get(name)
    staging = store.staging()
    with pytest.raises(ImageError, match="image name"):
        store.publish(staging, name, kind="rootfs")


def test_corrupt_reference_is_not_listed(tmp_path):
    store = ImageStore(tmp_path / "images")
    _publish(store, "good")
    (store.root / "names" / "bad.json").write_text("{not json")
    (store.root / "names" / "gone.json").write_text(json.dumps({"digest": "sha256-" + "0" * 64}))
    assert [i.name for i in store.list()] == ["good"]
    with pytest.raises(ImageError, match="missing its content"):
        store.get("gone")


def test_failed_recipe_leaves_nothing(tmp_path, monkeypatch):
    store = ImageStore(tmp_path / "images")

    def broken(data: Path, options):
        (data / "partial").write_text("x")
        raise ImageError("debootstrap failed: no network")

    monkeypatch.setitem(recipes._RECIPES, "t-broken", recipes.Recipe("t-broken", "rootfs", "t", broken))
    with pytest.raises(ImageError, match="no network"):
        recipes.build(store, "t-broken", "x")
    assert store.list() == [] and not list(store.root.glob(".tmp-*"))
    with pytest.raises(ImageError, match="no image recipe 'nope'"):
        recipes.build(store, "nope")


def test_cli_lists_builds_and_refuses(tmp_path, monkeypatch, capsys):
    from am.cli import main

    def ok(data: Path, options):
        _fill(data, options.get("marker", "m"))
        return {"marker": options.get("marker", "m")}

    monkeypatch.setitem(recipes._RECIPES, "t-ok", recipes.Recipe("t-ok", "rootfs", "test", ok))
    root = str(tmp_path / "images")
    assert main(["image", "--images", root, "build", "t-ok", "--name", "mine", "-o", "marker=z"]) == 0
    assert main(["image", "--images", root, "list", "--json"]) == 0
    out = capsys.readouterr().out
    listed = json.loads(out[out.index("["):])
    assert listed[0]["name"] == "mine" and listed[0]["meta"] == {"recipe": "t-ok", "marker": "z"}
    assert main(["image", "--images", root, "build", "t-ok", "-o", "novalue"]) == 1
    assert "is not KEY=VALUE" in capsys.readouterr().err
    assert main(["image", "--images", root, "delete", "nothere"]) == 1
    assert "no image 'nothere'" in capsys.readouterr().err
