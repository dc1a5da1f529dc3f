"""A guest's root filesystem as a new image: its image with its own layer applied (CreateImage).

The result is one plain tree, like every image in the store: the lower image is copied (hard
links: image files are never written) and the sliver's upper layer laid over it the way
overlayfs shows it (a whiteout removes, an opaque directory replaces), with owners shifted
back from the sliver's host ids to the guest's own (host `base + g` becomes `g`), so any
sliver booting from it sees the same owners. The layer is copied, never linked: the sliver
may change it later. The sliver's SSH host key and its users' keys are left out (a new
sliver gets its own). The copy goes to a staging folder of the store and is published by a
rename, so a snapshot that fails half-way is never listed.
"""
from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from drivers.images.recipes import link_or_copy
from drivers.images.store import Image, ImageStore

LEFT_OUT = ("etc/ssh/ssh_host_ed25519_key", "etc/ssh/ssh_host_ed25519_key.pub",
            "etc/ssh/authorized_keys", "var/log/geni")
OPAQUE = "trusted.overlay.opaque"


def snapshot(store: ImageStore, lower: Path, upper: Path, name: str, *, id_base: int,
             id_count: int, owner: str, description: str, meta: dict) -> Image:
    staging = store.staging()
    try:
        data = staging / "data"
        data.rmdir()
        shutil.copytree(lower, data, symlinks=True, copy_function=link_or_copy)
        _apply(upper, data, "", id_base=id_base, id_count=id_count)
        for rel in LEFT_OUT:
            _remove(data / rel)
        return store.publish(staging, name, kind="rootfs", owner=owner,
                             description=description, meta=meta, replace=False)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _apply(upper: Path, data: Path, rel: str, *, id_base: int, id_count: int) -> None:
    src_dir = upper / rel if rel else upper
    for entry in sorted(os.listdir(src_dir)):
        r = f"{rel}/{entry}" if rel else entry
        src, dst = upper / r, data / r
        st = os.lstat(src)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:      # a whiteout: deleted in the guest
            _remove(dst)
            continue
        uid, gid = _guest_id(st.st_uid, id_base, id_count), _guest_id(st.st_gid, id_base, id_count)
        if stat.S_ISDIR(st.st_mode):
            if _opaque(src) or (dst.exists() and not dst.is_dir()) or dst.is_symlink():
                _remove(dst)
            dst.mkdir(exist_ok=True)
            _apply(upper, data, r, id_base=id_base, id_count=id_count)
            os.lchown(dst, uid, gid)
            os.chmod(dst, stat.S_IMODE(st.st_mode))
        elif stat.S_ISLNK(st.st_mode):
            _remove(dst)
            os.symlink(os.readlink(src), dst)
            os.lchown(dst, uid, gid)
        elif stat.S_ISREG(st.st_mode):
            _remove(dst)
            shutil.copyfile(src, dst, follow_symlinks=False)   # no xattrs: overlay's stay behind
            os.lchown(dst, uid, gid)
            os.chmod(dst, stat.S_IMODE(st.st_mode))
        # fifos, sockets, device nodes: a guest cannot make devices; the rest is runtime state


def _guest_id(host_id: int, base: int, count: int) -> int:
    return host_id - base if base <= host_id < base + count else 0


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _remove(path: Path) -> None:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


__all__ = ["snapshot"]
