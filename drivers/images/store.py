"""A content-addressed image store.

Layout under the store's root (created 0700):

    <root>/sha256-<hex>/            one image: its files under `data/`, its record in image.json
    <root>/names/<name>.json        a name -> digest reference (rewritten atomically)
    <root>/.tmp-*                   images being built or imported; never listed

An image's digest covers every path, mode, symlink target and byte of its `data/` tree, so two
builds with the same content are one image and a changed byte is a new one. Publishing is a
rename of a finished directory, so a half-written image (a crash mid-build or mid-snapshot) is
never listed; `sweep()` removes such leftovers.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DIGEST_RE = re.compile(r"^sha256-[0-9a-f]{64}$")
RECORD = "image.json"
DATA = "data"


class ImageError(Exception):
    """A refused image operation; the message names the image."""


@dataclass(frozen=True)
class Image:
    name: str
    digest: str                       # sha256-<hex> over the data tree
    kind: str                         # "rootfs" (a directory tree), "vm" (kernel/initrd/disk files)
    size: int                         # bytes in data/
    created: float
    owner: str = ""                   # URN of the project or user that made it ("" = site image)
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)   # recipe facts: kernel version, files...
    path: str = ""                    # the image's data directory (not stored in the record)

    @property
    def data(self) -> Path:
        return Path(self.path)

    @property
    def short(self) -> str:
        return self.digest[len("sha256-"):][:12]


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ImageError(f"image name {name!r} must be 1-64 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit")
    return name


def tree_digest(root: Path) -> tuple[str, int]:
    """sha256 over (relative path, type, mode, content or link target) of every entry, sorted."""
    h = hashlib.sha256()
    size = 0
    for rel, st, full in _walk(root):
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            h.update(b"L\0" + rel.encode() + b"\0" + os.readlink(full).encode() + b"\0")
        elif stat.S_ISDIR(st.st_mode):
            h.update(b"D\0" + rel.encode() + b"\0" + str(mode).encode() + b"\0")
        elif stat.S_ISREG(st.st_mode):
            h.update(b"F\0" + rel.encode() + b"\0" + str(mode).encode() + b"\0")
            with open(full, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            size += st.st_size
            h.update(b"\0")
        else:   # device nodes, fifos, sockets: by kind and numbers only
            h.update(b"S\0" + rel.encode() + b"\0" + str(st.st_mode).encode() + b"\0"
                     + str(st.st_rdev).encode() + b"\0")
    return "sha256-" + h.hexdigest(), size


def _walk(root: Path) -> Iterator[tuple[str, os.stat_result, str]]:
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        full_dir = os.path.join(root, rel_dir) if rel_dir else str(root)
        for name in sorted(os.listdir(full_dir)):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            full = os.path.join(full_dir, name)
            st = os.lstat(full)
            yield rel, st, full
            if stat.S_ISDIR(st.st_mode):
                stack.append(rel)


class ImageStore:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        (self.root / "names").mkdir(exist_ok=True)

    # --- writing -----------------------------------------------------------------------------
    def staging(self) -> Path:
        """A fresh directory to build an image in; pass its `data` subdirectory's parent to
        `publish`. Unpublished staging directories are never listed."""
        d = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
        (d / DATA).mkdir()
        return d

    def publish(self, staging: Path, name: str, *, kind: str, owner: str = "",
                description: str = "", meta: dict[str, Any] | None = None,
                replace: bool = True) -> Image:
        """Seal a staging directory as an image named `name` (content-addressed)."""
        check_name(name)
        if not replace and self._ref(name).exists():
            shutil.rmtree(staging, ignore_errors=True)
            raise ImageError(f"image {name!r} already exists")
        digest, size = tree_digest(staging / DATA)
        record = {"name": name, "digest": digest, "kind": kind, "size": size,
                  "created": time.time(), "owner": owner, "description": description,
                  "meta": dict(meta or {})}
        final = self.root / digest
        if final.exists():                       # same content already stored: share it
            shutil.rmtree(staging, ignore_errors=True)
        else:
            _write_json(staging / RECORD, record)
            os.replace(staging, final)
        _write_json(self._ref(name), {"digest": digest, "kind": kind, "owner": owner,
                                      "description": description, "meta": dict(meta or {}),
                                      "created": record["created"]})
        return self.get(name)

    def delete(self, name: str) -> Image:
        """Remove a name; its content goes when no other name refers to it."""
        image = self.get(name)
        self._ref(name).unlink()
        if not any(ref_digest == image.digest for _, ref_digest in self._refs()):
            shutil.rmtree(self.root / image.digest, ignore_errors=True)
        return image

    def sweep(self) -> list[str]:
        """Remove half-written images (staging directories) and unreferenced content."""
        gone = []
        live = {d for _, d in self._refs()}
        for entry in self.root.iterdir():
            if entry.name.startswith(".tmp-") or (DIGEST_RE.match(entry.name) and entry.name not in live):
                shutil.rmtree(entry, ignore_errors=True)
                gone.append(entry.name)
        return gone

    # --- reading -----------------------------------------------------------------------------
    def get(self, name_or_digest: str) -> Image:
        if isinstance(name_or_digest, str) and DIGEST_RE.match(name_or_digest):
            digest, ref = name_or_digest, None
            name = name_or_digest
        else:
            check_name(name_or_digest)
            name = name_or_digest
            try:
                ref = json.loads(self._ref(name).read_text())
                digest = ref["digest"]
            except (OSError, ValueError, KeyError):
                raise ImageError(f"no image {name!r}") from None
        folder = self.root / digest
        try:
            record = json.loads((folder / RECORD).read_text())
        except (OSError, ValueError):
            raise ImageError(f"image {name!r} is missing its content ({digest})") from None
        if ref:
            record.update({k: ref[k] for k in ("owner", "description", "meta", "created") if k in ref})
        record["name"] = name
        return Image(path=str(folder / DATA), **record)

    def list(self) -> list[Image]:
        out = []
        for name, _ in self._refs():
            try:
                out.append(self.get(name))
            except ImageError:
                continue
        return sorted(out, key=lambda i: i.name)

    def exists(self, name: str) -> bool:
        try:
            self.get(name)
            return True
        except ImageError:
            return False

    def verify(self, name: str) -> bool:
        """Recompute the digest of an image's content (catches tampering or a torn write)."""
        image = self.get(name)
        return tree_digest(image.data)[0] == image.digest

    # --- internals ---------------------------------------------------------------------------
    def _ref(self, name: str) -> Path:
        return self.root / "names" / f"{check_name(name)}.json"

    def _refs(self) -> Iterator[tuple[str, str]]:
        for ref in sorted((self.root / "names").glob("*.json")):
            try:
                yield ref.stem, json.loads(ref.read_text())["digest"]
            except (OSError, ValueError, KeyError):
                continue


def _write_json(path: Path, value: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(value, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def image_dict(image: Image) -> dict[str, Any]:
    d = asdict(image)
    d.pop("path")
    return d


__all__ = ["Image", "ImageError", "ImageStore", "check_name", "image_dict", "tree_digest"]
