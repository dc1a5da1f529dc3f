"""Debian packages as image material: downloaded from the archive, unpacked, never installed.

`apt-get download` fetches a package for the host's architecture from the machine's configured
archive into a cache folder (reused across builds); `dpkg -x` unpacks it into a tree. Nothing is
installed on the host, so an image may carry a kernel or a daemon the host does not run.
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

from drivers.images.store import ImageError


def cache_dir() -> Path:
    """Where downloaded .deb files are kept (GENI_AM_CACHE_DIR, else ~/.cache/geni-am)."""
    base = Path(os.environ.get("GENI_AM_CACHE_DIR") or Path.home() / ".cache" / "geni-am")
    d = base / "debs"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _run(argv: list[str], cwd: Path | None = None, timeout: float = 600) -> str:
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise ImageError(f"{argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise ImageError(f"{' '.join(argv[:3])} took longer than {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ImageError(f"{' '.join(argv[:3])} failed: {' / '.join(tail)}")
    return proc.stdout


def candidates(packages: Iterable[str]) -> dict[str, str]:
    """The version apt would install now of each package, in one apt-cache call."""
    names = list(dict.fromkeys(packages))
    if not names:
        return {}
    out = _run(["apt-cache", "policy", *names])
    found: dict[str, str] = {}
    current = None
    for line in out.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith(":"):
            current = line.rstrip()[:-1].split(":")[0]
        elif current and line.strip().startswith("Candidate:"):
            version = line.split(":", 1)[1].strip()
            if version and version != "(none)":
                found[current] = version
    missing = [n for n in names if n not in found]
    if missing:
        raise ImageError(f"Debian package(s) {', '.join(missing)} not in the archive "
                         "(run apt-get update?)")
    return found


def candidate(package: str) -> str:
    """The version apt would install now (e.g. for naming and cache keys)."""
    return candidates([package])[package]


def depends_all(packages: Iterable[str]) -> dict[str, list[str]]:
    """The direct Depends (and Pre-Depends) of each package, in one apt-cache call."""
    names = list(dict.fromkeys(packages))
    if not names:
        return {}
    out = _run(["apt-cache", "depends", "--no-recommends", "--no-suggests", "--no-conflicts",
                "--no-breaks", "--no-replaces", "--no-enhances", *names])
    deps: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in out.splitlines():
        if line and not line[0].isspace():
            current = deps.setdefault(line.strip(), [])
            continue
        line = line.strip().lstrip("|")
        if current is not None and line.startswith(("Depends:", "PreDepends:")):
            name = line.split(":", 1)[1].strip()
            if not name.startswith("<"):
                current.append(name)
    return deps


def depends(package: str) -> list[str]:
    """The direct Depends of a package (resolves metapackages such as linux-image-cloud-amd64)."""
    return depends_all([package]).get(package, [])


def download(packages: Iterable[str]) -> list[Path]:
    """The .deb file of each package (the archive's candidate), downloading what is not cached."""
    cache = cache_dir()
    names = list(packages)
    versions = candidates(names)
    out = []
    for pkg in names:
        version = versions[pkg]
        stem = f"{pkg}_{version.replace(':', '%3a')}_"
        found = sorted(cache.glob(f"{stem}*.deb"))
        if not found:
            _run(["apt-get", "download", "-q", f"{pkg}={version}"], cwd=cache)
            found = sorted(cache.glob(f"{stem}*.deb"))
            if not found:
                raise ImageError(f"apt-get download {pkg} left no .deb in {cache}")
        out.append(found[-1])
    return out


def extract(debs: Iterable[Path], dest: Path) -> None:
    """Unpack each .deb's data into dest (dpkg -x), in order."""
    dest.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        _run(["dpkg-deb", "-x", str(deb), str(dest)])


__all__ = ["cache_dir", "candidate", "candidates", "depends", "depends_all", "download",
           "extract"]
