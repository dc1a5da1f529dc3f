"""Debian packages unpacked, not installed: the material every image recipe starts from."""
from __future__ import annotations

import os

import pytest

from drivers.images import debs


@pytest.mark.slow
def test_download_and_extract_busybox(tmp_path, monkeypatch):
    monkeypatch.setenv("GENI_AM_CACHE_DIR", str(tmp_path / "cache"))
    first = debs.download(["busybox-static"])
    assert first[0].name.startswith("busybox-static_") and first[0].suffix == ".deb"
    mtime = first[0].stat().st_mtime_ns
    assert debs.download(["busybox-static"])[0].stat().st_mtime_ns == mtime   # cached
    debs.extract(first, tmp_path / "root")
    busybox = tmp_path / "root" / "bin" / "busybox"
    assert busybox.is_file() and os.access(busybox, os.X_OK)


@pytest.mark.slow
def test_metapackage_resolves_to_a_kernel():
    deps = debs.depends("linux-image-cloud-amd64")
    assert any(d.startswith("linux-image-") and d.endswith("-cloud-amd64") for d in deps)


@pytest.mark.slow
def test_unknown_package_is_a_clear_error():
    import pytest
    from drivers.images.store import ImageError
    with pytest.raises(ImageError, match="not in the archive"):
        debs.candidate("geni-am-no-such-package")
