"""Installs and executes of a container sliver: checked here, carried out inside its guest.

Installs: the driver fetches the URL on the host (a `file://` URL only from inside the
configured `install_dir`, with symlinks resolved first; `http(s)` only from public addresses,
or from networks the operator allows in `install_allow_networks`, resolved once and connected
to by address: `fetch`), at most `install_max_mb` in `install_timeout_s`, into an
unlinked temporary file, and hands the open file to the guest's init, which unpacks it as the
guest's root (tarballs through tarfile's "data" filter, other files copied). So an install can
never read a host file outside `install_dir`, nor write outside the guest.

Executes: handed to the guest's init as detached processes (guest root, which is an
unprivileged host uid), logged to `/var/log/geni/execute-<n>.log` in the guest; the driver
never waits for them, and their state and log tail show in the sliver's resource status.
"""
from __future__ import annotations

import os
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

from drivers.base import DriverError
from drivers.vserver import fetch
from drivers.vserver.guest import Guests
from rspec.model import Execute, Install

ALLOWED_SHELLS = {"sh", "bash", "/bin/sh", "/bin/bash", "/usr/bin/sh", "/usr/bin/bash"}
CHUNK = 1 << 16


def install_url_problem(url: str, install_dir: str | None = None,
                        allow_networks: Sequence[str] = ()) -> str | None:
    """Why this install URL cannot be fetched here, or None when it can. An http(s) URL's
    host is resolved (`fetch.checked_address`); the fetch checks it again and connects to
    the address it checked."""
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
        try:
            fetch.checked_address(url, fetch.parse_networks(allow_networks))
        except fetch.InstallRefused as exc:
            return str(exc)
        except DriverError as exc:
            return f"install URL {url!r} cannot be checked: {exc}"
        return None
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
                max_bytes: int, timeout_s: float, allow_networks: Sequence[str] = ()) -> None:
    """Fetch `inst.url` (checked again: the policy, or what the name resolves to, may have
    changed since admission) and have the guest unpack it under `inst.install_path`."""
    parsed = urllib.parse.urlparse(inst.url)
    if parsed.scheme not in ("http", "https"):
        problem = install_url_problem(inst.url, install_dir)
        if problem:
            raise DriverError(problem)
    dest = "/" + (inst.install_path or "/").strip("/")
    if any(part == ".." for part in dest.split("/")):
        raise DriverError(f"install path {inst.install_path!r} leaves the sliver's root")
    name = Path(urllib.parse.unquote(parsed.path)).name or "download"
    with tempfile.TemporaryFile() as tmp:
        if parsed.scheme in ("http", "https"):
            fetch.fetch(inst.url, tmp, allow=fetch.parse_networks(allow_networks),
                        max_bytes=max_bytes, timeout_s=timeout_s)
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
