"""VM guest images from Debian packages: a cloud kernel and a busybox + dropbear initramfs.

Recipe `vm-initramfs` (`geni-am image build vm-initramfs`): the kernel is taken from Debian's
`linux-image-cloud-amd64` (the metapackage resolved to its versioned kernel package, downloaded
and unpacked, never installed on the host); the initramfs holds busybox-static, dropbear and the
libraries it links against (all from their .deb files), the virtio modules of that kernel, and
the guest's init scripts (`drivers/xen/guest/`). The guest configures itself at boot from a
small per-sliver cpio archive that the driver appends to the initramfs (`config_archive`), runs
an agent on the virtio-serial port `org.geni.agent.0` (geni_update_users), and prints
`GENI-READY <hostname>` on its console once SSH answers.

Image files (under the image's `data/`): `vmlinuz`, `initrd.img`; the record's `meta` names them
(`kernel`, `initrd`) with the kernel version and `boot = "initramfs"`.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from drivers.images import debs
from drivers.images.recipes import recipe
from drivers.images.store import Image, ImageError, ImageStore

GUEST_DIR = Path(__file__).with_name("guest")
KERNEL_PACKAGE = "linux-image-cloud-amd64"
# busybox (dynamic) is the shell and tools: its sh runs other programs by path, so /bin/ping
# below is really executed (busybox-static's sh would run its own, unprivileged ping applet)
USER_PACKAGES = ("busybox", "dropbear-bin", "libc6", "libcrypt1", "libgmp10",
                 "libtomcrypt1", "libtommath1", "zlib1g")
# What the guest needs from the kernel's modules (virtio NICs and the agent's serial port);
# their dependencies are added from the modules' own `depends` field.
WANTED_MODULES = ("virtio_pci", "virtio_net", "virtio_console")
BINARIES = ("bin/busybox", "usr/sbin/dropbear", "usr/bin/dropbearkey")
AGENT_PORT = "org.geni.agent.0"
READY_MARKER = "GENI-READY"
FIXED_MTIME = 1_700_000_000       # every file in the archive: the same image for the same debs


@recipe("vm-initramfs", kind="vm",
        description="VM: Debian cloud kernel + busybox/dropbear initramfs (config archive, agent)",
        options={"kernel_package": f"kernel metapackage or package (default {KERNEL_PACKAGE})"})
def build_vm_initramfs(data: Path, options: dict[str, Any]) -> dict[str, Any]:
    kernel_pkg = str(options.get("kernel_package") or KERNEL_PACKAGE)
    unknown = set(options) - {"kernel_package"}
    if unknown:
        raise ImageError(f"vm-initramfs has no option {min(unknown)!r} "
                         "(options: kernel_package)")
    if not re.match(r"^linux-image-\d", kernel_pkg):          # a metapackage: its kernel
        resolved = [d for d in debs.depends(kernel_pkg) if d.startswith("linux-image-")]
        if not resolved:
            raise ImageError(f"{kernel_pkg} depends on no linux-image package")
        kernel_pkg = resolved[0]
    with tempfile.TemporaryDirectory(prefix="geniam-vmimg-") as tmp:
        ktree, root = Path(tmp) / "kernel", Path(tmp) / "root"
        debs.extract(debs.download([kernel_pkg]), ktree)
        vmlinuz = sorted((ktree / "boot").glob("vmlinuz-*"))
        if not vmlinuz:
            raise ImageError(f"{kernel_pkg} has no /boot/vmlinuz-*")
        version = vmlinuz[-1].name[len("vmlinuz-"):]
        data.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(vmlinuz[-1], data / "vmlinuz")
        userland, static = Path(tmp) / "userland", Path(tmp) / "static"
        debs.extract(debs.download(USER_PACKAGES), userland)
        debs.extract(debs.download(["busybox-static"]), static)
        _assemble_root(root, userland, ktree / "lib/modules" / version)
        _add_ping(root, static / "bin/busybox")
        (data / "initrd.img").write_bytes(gzip_cpio(root))
    return {"kernel": "vmlinuz", "initrd": "initrd.img", "kernel_version": version,
            "guest_scripts": guest_scripts_digest(),
            "kernel_package": kernel_pkg, "boot": "initramfs", "agent_port": AGENT_PORT,
            "ready_marker": READY_MARKER}


def guest_scripts_digest() -> str:
    """sha256 of the recipe and the guest's scripts: an image built from older ones is stale."""
    h = hashlib.sha256(Path(__file__).read_bytes())       # the recipe itself, too
    for f in sorted(GUEST_DIR.iterdir()):
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def ensure_image(store: ImageStore, name: str = "vm-initramfs") -> Image:
    """The image `name` built by vm-initramfs, building it only when it is missing or was
    built from other guest scripts (tests and the benches share one cached build)."""
    try:
        image = store.get(name)
        if image.meta.get("guest_scripts") == guest_scripts_digest():
            return image
    except ImageError:
        pass
    from drivers.images.recipes import build
    return build(store, "vm-initramfs", name)


def _assemble_root(root: Path, userland: Path, modules: Path) -> None:
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "geni", "lib/modules", "lib64",
              "proc", "sys", "dev", "tmp", "run", "home", "root"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for rel in BINARIES:
        src = userland / rel
        if not src.exists():
            raise ImageError(f"the unpacked packages have no /{rel}")
        shutil.copy2(src, root / rel)
    for name in ("sh", "init"):            # the kernel runs /init; busybox is init by name
        os.symlink("busybox", root / "bin" / name)
    os.symlink("bin/busybox", root / "init")
    # dropbear's shared libraries, straight from the unpacked library packages
    libdir = root / "lib/x86_64-linux-gnu"
    libdir.mkdir(parents=True)
    for lib in sorted((userland / "lib/x86_64-linux-gnu").glob("*.so*")) + \
            sorted((userland / "usr/lib/x86_64-linux-gnu").glob("*.so*")):
        if lib.is_file():
            shutil.copy2(lib, libdir / lib.name, follow_symlinks=True)
    loader = userland / "lib64/ld-linux-x86-64.so.2"
    shutil.copy2(loader.resolve() if loader.is_symlink() and loader.resolve().exists()
                 else userland / "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
                 root / "lib64/ld-linux-x86-64.so.2")
    order = module_order(modules, WANTED_MODULES)
    for name, path in order:
        shutil.copy2(path, root / "lib/modules" / f"{name}.ko")
    (root / "lib/modules/geni.order").write_text("\n".join(n for n, _ in order) + "\n")
    for script in ("boot.sh", "agent.sh", "users.sh"):
        shutil.copy2(GUEST_DIR / script, root / "geni" / script)
        os.chmod(root / "geni" / script, 0o755)
    shutil.copy2(GUEST_DIR / "inittab", root / "etc/inittab")
    (root / "etc/passwd").write_text("root:*:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    (root / "etc/shells").write_text("/bin/sh\n")
    (root / "geni/config").write_text("hostname guest\n")     # replaced by the config archive
    (root / "geni/users").write_text("")


def _add_ping(root: Path, static_busybox: Path) -> None:
    """ping needs a raw socket: /bin/ping is busybox-static, setuid root. With no busybox.conf
    (one makes the static busybox crash for non-root users) it keeps root only for the applets
    busybox marks as needing it (ping, traceroute, su, passwd, login...) and drops it for all
    others; su/login/passwd get nowhere as every password is "*". The shell and all else run
    the plain busybox, unprivileged."""
    shutil.copy2(static_busybox, root / "bin/busybox-ping")
    os.chmod(root / "bin/busybox-ping", 0o4755)
    os.symlink("busybox-ping", root / "bin/ping")


def module_order(modules: Path, wanted: Iterable[str]) -> list[tuple[str, Path]]:
    """The modules `wanted` and what they depend on, dependencies first (`modinfo -F depends`
    on the .ko files: the package ships no modules.dep, depmod runs at install)."""
    index = {p.name[:-3]: p for p in modules.rglob("*.ko")}
    out: list[tuple[str, Path]] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        key = name.replace("-", "_")
        if key in seen:
            return
        path = index.get(key) or index.get(name)
        if path is None:
            raise ImageError(f"kernel module {name} is not in {modules}")
        seen.add(key)
        deps = subprocess.run(["modinfo", "-F", "depends", str(path)], capture_output=True,
                              text=True, check=False).stdout.strip()
        for dep in filter(None, deps.split(",")):
            visit(dep)
        out.append((key, path))

    for name in wanted:
        visit(name)
    return out


# ---- cpio (newc), written here so the per-sliver archive needs no tool and no temp files ----

def _newc_header(name: str, mode: int, size: int, ino: int, nlink: int = 1) -> bytes:
    fields = (ino, mode, 0, 0, nlink, FIXED_MTIME, size, 0, 0, 0, 0, len(name) + 1, 0)
    head = b"070701" + b"".join(f"{v:08x}".encode() for v in fields)
    body = head + name.encode() + b"\0"
    return body + b"\0" * (-len(body) % 4)


def cpio_bytes(entries: Iterable[tuple[str, int, bytes]]) -> bytes:
    """A newc archive of (path, mode, content) entries (directories: S_IFDIR, b"")."""
    buf = io.BytesIO()
    ino = 1
    for name, mode, content in entries:
        buf.write(_newc_header(name, mode, len(content), ino, 2 if stat.S_ISDIR(mode) else 1))
        buf.write(content + b"\0" * (-len(content) % 4))
        ino += 1
    buf.write(_newc_header("TRAILER!!!", 0, 0, 0))
    return buf.getvalue()


def gzip_cpio(root: Path) -> bytes:
    """The tree under `root` as a gzipped newc archive, sorted, with fixed times and owners."""
    entries: list[tuple[str, int, bytes]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted(dirnames) + sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                entries.append((rel, stat.S_IFLNK | 0o777, os.readlink(full).encode()))
            elif stat.S_ISDIR(st.st_mode):
                entries.append((rel, stat.S_IFDIR | stat.S_IMODE(st.st_mode), b""))
            elif stat.S_ISREG(st.st_mode):
                entries.append((rel, stat.S_IFREG | stat.S_IMODE(st.st_mode),
                                Path(full).read_bytes()))
    entries.sort(key=lambda e: e[0])
    return gzip.compress(cpio_bytes(entries), compresslevel=6, mtime=0)


def config_archive(config_lines: Iterable[str], users: Mapping[str, Iterable[str]]) -> bytes:
    """The per-sliver archive appended to the image's initramfs: /geni/config and /geni/users.

    The caller validates every value (addresses, MACs, host and login names); keys are single
    lines. The kernel unpacks concatenated archives in order, so these files replace the
    image's placeholders.
    """
    config = "".join(f"{line}\n" for line in config_lines).encode()
    users_text = "".join(
        "".join(f"{login} {key}\n" for key in keys) or f"{login}\n"
        for login, keys in users.items()).encode()
    return gzip.compress(cpio_bytes([("geni/config", stat.S_IFREG | 0o600, config),
                                     ("geni/users", stat.S_IFREG | 0o600, users_text)]),
                         mtime=0)


def users_payload(users: Mapping[str, Iterable[str]]) -> str:
    """The agent's USERS payload: the same lines as /geni/users."""
    return "".join("".join(f"{login} {key}\n" for key in keys) or f"{login}\n"
                   for login, keys in users.items())


__all__ = ["AGENT_PORT", "READY_MARKER", "build_vm_initramfs", "config_archive", "cpio_bytes", "ensure_image",
           "gzip_cpio", "module_order", "users_payload"]
