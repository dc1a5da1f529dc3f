"""Container root filesystems, built from Debian packages (`geni-am image build RECIPE`).

`container-busybox`: busybox-static (a shell and the usual tools as applets), iputils ping
(unprivileged ICMP echo sockets, which busybox ping lacks), OpenSSH's sshd
and the shared libraries it links (the `lib*` closure of its dependencies; no maintainer
script runs, no daemon is configured), plus the skeleton a guest needs: /proc, /dev, /tmp,
/run mount points, /etc/passwd with root and sshd's privilege-separation user.
`-o python=1` adds python3.11-minimal (tests run their workloads in the guest with it).

An image is a plain tree with host-root-owned files; the driver mounts it read-only and
idmapped, so in a guest those files are the guest root's (docs/vserver.md).
"""
from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from drivers.images import debs
from drivers.images.recipes import recipe
from drivers.images.store import ImageError

DEFAULT_IMAGE = "container-busybox"
BASE_PACKAGES = ("busybox-static", "openssh-server", "iputils-ping")
PYTHON_PACKAGES = ("python3.11-minimal",)
LIB_RE = re.compile(r"^(lib[a-z0-9.+-]+|zlib1g)$")
SKELETON_DIRS = ("proc", "dev", "sys", "tmp", "run", "root", "home", "etc/ssh", "var/log",
                 "var/empty", "usr/local/bin", "srv", "mnt", "opt")
PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "sshd:x:100:65534:sshd privilege separation:/run/sshd:/usr/sbin/nologin\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
GROUP = "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n"


def lib_closure(packages: Iterable[str]) -> list[str]:
    """The packages and the transitive closure of their library dependencies."""
    wanted = list(dict.fromkeys(packages))
    seen = set(wanted)
    queue = list(wanted)
    while queue:                          # one apt-cache call per level
        level, queue = queue, []
        for deps in debs.depends_all(level).values():
            for dep in deps:
                if LIB_RE.match(dep) and dep not in seen:
                    seen.add(dep)
                    wanted.append(dep)
                    queue.append(dep)
    return wanted


@recipe(DEFAULT_IMAGE, kind="rootfs",
        description="busybox + OpenSSH sshd container root filesystem (Debian packages)",
        options={"python": "1 to add python3.11-minimal"})
def build_busybox(data: Path, options: dict[str, Any]) -> dict[str, Any]:
    packages = list(BASE_PACKAGES)
    if str(options.get("python", "0")) not in ("0", "", "false", "no"):
        packages += PYTHON_PACKAGES
    names = lib_closure(packages)
    debs.extract(debs.download(names), data)
    _busybox_applets(data)
    for d in SKELETON_DIRS:
        (data / d).mkdir(parents=True, exist_ok=True)
    os.chmod(data / "tmp", 0o1777)
    os.chmod(data / "root", 0o700)
    (data / "etc" / "passwd").write_text(PASSWD)
    (data / "etc" / "group").write_text(GROUP)
    (data / "etc" / "hostname").write_text("guest\n")
    if PYTHON_PACKAGES[0] in packages and not (data / "usr/bin/python3").exists():
        (data / "usr/bin/python3").symlink_to("python3.11")
    for junk in ("usr/share/doc", "usr/share/man", "usr/share/locale", "usr/share/lintian",
                 "etc/init.d", "etc/pam.d", "lib/systemd", "usr/lib/systemd"):
        _rmtree(data / junk)
    return {"packages": names, "os": "Linux", "python": PYTHON_PACKAGES[0] in packages}


def _busybox_applets(data: Path) -> None:
    """A symlink per applet (in bin/ unless the packages ship that name somewhere)."""
    bb = data / "bin" / "busybox"
    if not bb.exists():
        raise ImageError("busybox-static did not unpack bin/busybox")
    try:
        out = subprocess.run([str(bb), "--list-full"], capture_output=True, text=True,
                             check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ImageError(f"busybox --list-full: {exc}") from None
    for rel in out.split():
        path = data / rel
        name = path.name
        if any((data / d / name).exists() or (data / d / name).is_symlink()
               for d in ("bin", "sbin", "usr/bin", "usr/sbin")):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(os.path.relpath(bb, path.parent))


def _rmtree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        for child in path.iterdir():
            _rmtree(child)
        path.rmdir()


__all__ = ["DEFAULT_IMAGE", "build_busybox", "lib_closure"]
