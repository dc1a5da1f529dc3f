"""Installs and executes of a container sliver: checked here, carried out inside its guest.

Installs: the driver fetches the URL on the host (a `file://` URL only from inside the
configured `install_dir`, with symlinks resolved first; `http(s)` only on loopback, since this
host reaches no other network), at most `install_max_mb` in `install_timeout_s`, into an
unlinked temporary file, and hands the open file to the guest's init, which unpacks it as the
guest's root (tarballs through tarfile's "data" filter, other files copied). So an install can
never read a host file outside `install_dir`, nor write outside the guest.

Executes: handed to the guest's init as detached processes (guest root, which is an
unprivileged host uid), logged to `/var/log/geni/execute-<n>.log` in the guest; the driver
never waits for them, and their state and log tail show in the sliver's resource status.
"""
from __future__ import annotations

import ipaddress
import os
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from drivers.base import DriverError
from drivers.vserver.guest import Guests
from rspec.model import Execute, Install

LOOPBACK_HOSTS = {"localhost", "localhost.localdomain"}
ALLOWED_SHELLS = {"sh", "bash", "/bin/sh", "/bin/bash", "/usr/bin/sh", "/usr/bin/bash"}
CHUNK = 1 << 16


def install_url_problem(url: str, install_dir: str | None = None) -> str | None:
    """Why this install URL cannot be fetched here, or None when it can (pure)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("", "file"):
        if parsed.scheme == "file" and parsed.netloc not in ("", "localhost"):
            return f"install URL {url!r} names a remote host; use file:///path"
        path = urllib.parse.unquote(parsed.path) if parsed.scheme else url
        if install_dir is None:
            return (f"install URL {url!r} reads the AM host's files, and this AM allows no "
                    "file:// installs (install_dir is not set)")
        if not _within(path, install_dir):
            return (f"install URL {url!r} is outside the directory this AM serves installs "
                    f"from ({install_dir})")
        return None
    if parsed.scheme in ("http", "https"):
        host = (parsed.hostname or "").lower()
        if host in LOOPBACK_HOSTS:
            return None
        try:
            if ipaddress.ip_address(host).is_loopback:
                return None
        except ValueError:
            pass
        return (f"install URL {url!r} is not on a loopback address; this host reaches no "
                "network beyond loopback, so installs must be file:// URLs in the install "
                "directory or http(s)://127.0.0.1 URLs")
    return f"install URL scheme {parsed.scheme!r} is not supported (file, http, https)"


def _within(path: str, directory: str) -> bool:
    """Whether `path`, symlinks resolved, lies inside `directory` (also resolved)."""
    try:
        real = Path(os.path.realpath(path))
        base = Path(os.path.realpath(directory))
    except (OSError, ValueError):
        return False
    return real != base and base in real.parents


def execute_problem(ex: Execute) -> str | None:
    if (ex.shell or "sh") not in ALLOWED_SHELLS:
        return f"execute shell {ex.shell!r} is not available (sh or bash)"
    if not ex.command.strip():
        return "execute command is empty"
    return None


def run_install(inst: Install, guests: Guests, handle: str, *, install_dir: str | None,
                max_bytes: int, timeout_s: float) -> None:
    """Fetch `inst.url` (checked again: the policy may have changed since admission) and
    have the guest unpack it under `inst.install_path`."""
    problem = install_url_problem(inst.url, install_dir)
    if problem:
        raise DriverError(problem)
    dest = "/" + (inst.install_path or "/").strip("/")
    if any(part == ".." for part in dest.split("/")):
        raise DriverError(f"install path {inst.install_path!r} leaves the sliver's root")
    parsed = urllib.parse.urlparse(inst.url)
    name = Path(urllib.parse.unquote(parsed.path)).name or "download"
    with tempfile.TemporaryFile() as tmp:
        if parsed.scheme in ("http", "https"):
            _download(inst.url, tmp, max_bytes=max_bytes, timeout_s=timeout_s)
        else:
            _copy_local(inst.url, parsed, tmp, install_dir, max_bytes=max_bytes)
        tmp.flush()
        tmp.seek(0)
        guests.unpack(handle, tmp.fileno(), dest, name, timeout=timeout_s + 30)


def _copy_local(url: str, parsed, out, install_dir: str | None, *, max_bytes: int) -> None:
    path = urllib.parse.unquote(parsed.path) if parsed.scheme else url
    if install_dir is None or not _within(path, install_dir):
        raise DriverError(install_url_problem(url, install_dir) or f"install {url}: refused")
    try:
        fd = os.open(os.path.realpath(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise DriverError(f"install {url}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        if not os.path.isfile(f"/proc/self/fd/{fd}") or os.fstat(fd).st_size > max_bytes:
            raise DriverError(f"install {url}: not a regular file of at most "
                              f"{max_bytes // 2**20} MiB")
        _copy_bounded(f, out, url, max_bytes=max_bytes, deadline=None)


def _download(url: str, out, *, max_bytes: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    try:
        with urllib.request.urlopen(url, timeout=min(timeout_s, 30)) as resp:
            length = resp.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise DriverError(f"install {url}: {int(length)} bytes is more than the "
                                  f"{max_bytes // 2**20} MiB allowed")
            _copy_bounded(resp, out, url, max_bytes=max_bytes, deadline=deadline)
    except DriverError:
        raise
    except OSError as exc:
        raise DriverError(f"install {url}: {exc}", transient=True) from None


def _copy_bounded(src, out, url: str, *, max_bytes: int, deadline: float | None) -> None:
    total = 0
    while chunk := src.read(CHUNK):
        total += len(chunk)
        if total > max_bytes:
            raise DriverError(f"install {url}: more than the {max_bytes // 2**20} MiB allowed")
        if deadline is not None and time.monotonic() > deadline:
            raise DriverError(f"install {url}: took longer than allowed")
        out.write(chunk)


def start_execute(ex: Execute, index: int, guests: Guests, handle: str) -> None:
    """Hand the command to the guest's init, detached; its output goes to a log in the guest."""
    problem = execute_problem(ex)
    if problem:
        raise DriverError(problem)
    shell = ex.shell if ex.shell.startswith("/") else f"/bin/{ex.shell or 'sh'}"
    guests.spawn(handle, f"execute-{index}", [shell, "-c", ex.command],
                 log=f"/var/log/geni/execute-{index}.log")


__all__ = ["execute_problem", "install_url_problem", "run_install", "start_execute"]
