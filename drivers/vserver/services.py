"""Install and execute services inside a container sliver, and its users' SSH keys.

A sliver's "root" is a private directory on the host (`<state_dir>/roots/<name>`): installs
are unpacked under it (`install_path` "/local" lands in `<root>/local`) and executes run with
it as working directory and `$SLIVER_ROOT`. The host has no network beyond loopback, so an
install URL must be `file://` (or a local path) or http(s) on a loopback address; anything else
is refused with that reason rather than attempted.

Users' keys are written here for every sliver; SSH login with them is `logins.SshLogins`.

Every process runs through `sliver_argv`: a shell writes its own pid into the sliver's cgroup
`tasks` files, then execs `nsenter --net` into the sliver's network namespace and the command, so the command and all its children are limited from their first
instruction. This is also the operator shell (docs/vserver.md).
"""
from __future__ import annotations

import ipaddress
import os
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from drivers.base import DriverError, UserKeys
from drivers.hostnet import NETNS_DIR
from drivers.vserver.accounts import check_names
from rspec.model import Execute, Install

LOOPBACK_HOSTS = {"localhost", "localhost.localdomain"}
ALLOWED_SHELLS = {"sh", "bash", "/bin/sh", "/bin/bash", "/usr/bin/sh", "/usr/bin/bash"}


def install_url_problem(url: str) -> str | None:
    """Why this install URL cannot be fetched here, or None when it can (pure)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("", "file"):
        if parsed.scheme == "file" and parsed.netloc not in ("", "localhost"):
            return f"install URL {url!r} names a remote host; use file:///path"
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
                "network beyond loopback, so installs must be file:// URLs, local paths or "
                "http(s)://127.0.0.1 URLs")
    return f"install URL scheme {parsed.scheme!r} is not supported (file, http, https)"


def execute_problem(ex: Execute) -> str | None:
    if (ex.shell or "sh") not in ALLOWED_SHELLS:
        return f"execute shell {ex.shell!r} is not available (sh or bash)"
    if not ex.command.strip():
        return "execute command is empty"
    return None


def sliver_argv(netns: str, tasks_files: Sequence[Path], root: Path,
                argv: Sequence[str]) -> list[str]:
    """argv that runs `argv` in the sliver: its cgroups, its netns, its root as cwd.

    The shell joins the cgroups first and then enters the namespace with `nsenter --net`
    (not `ip netns exec`, which remounts /sys and so hides /sys/fs/cgroup).
    """
    attach = " && ".join(f"echo $$ > {shlex.quote(str(t))}" for t in tasks_files)
    script = (f'{attach} || exit 126; cd {shlex.quote(str(root))} || exit 126; '
              f'export SLIVER_ROOT="$PWD"; '
              f'exec nsenter --net={shlex.quote(f"{NETNS_DIR}/{netns}")} -- "$@"')
    return ["sh", "-c", script, "sliver", *argv]


def operator_shell(netns: str, tasks_files: Sequence[Path], root: Path) -> str:
    """The command line an operator types to get a shell inside the sliver."""
    return shlex.join(sliver_argv(netns, tasks_files, root, ["sh", "-l"]))


def run_install(inst: Install, root: Path) -> None:
    """Fetch `inst.url` and unpack (tarball) or copy it under the sliver root."""
    problem = install_url_problem(inst.url)
    if problem:
        raise DriverError(problem)
    target = _inside(root, inst.install_path or "/")
    target.mkdir(parents=True, exist_ok=True)
    parsed = urllib.parse.urlparse(inst.url)
    with tempfile.TemporaryDirectory() as tmp:
        if parsed.scheme in ("http", "https"):
            src = Path(tmp) / (Path(parsed.path).name or "download")
            try:
                with urllib.request.urlopen(inst.url, timeout=10) as resp, open(src, "wb") as f:
                    shutil.copyfileobj(resp, f)
            except OSError as exc:
                raise DriverError(f"install {inst.url}: {exc}", transient=True) from None
        else:
            src = Path(urllib.parse.unquote(parsed.path) if parsed.scheme else inst.url)
            if not src.is_file():
                raise DriverError(f"install {inst.url}: no such file on this host")
        if tarfile.is_tarfile(src):
            try:
                with tarfile.open(src) as tar:
                    tar.extractall(target, filter="data")
            except (tarfile.TarError, OSError) as exc:
                raise DriverError(f"install {inst.url}: cannot unpack: {exc}") from None
        else:
            shutil.copy2(src, target / src.name)


def start_execute(ex: Execute, index: int, netns: str, tasks_files: Sequence[Path],
                  root: Path) -> None:
    """Start the command detached (a boot-time service); its output goes to a log in the root."""
    problem = execute_problem(ex)
    if problem:
        raise DriverError(problem)
    logs = geni_dir(root)
    log = logs / f"execute-{index}.log"
    os.close(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))   # never the umask's
    shell = ex.shell if ex.shell.startswith("/") else f"/bin/{ex.shell or 'sh'}"
    # The inner `&` detaches the command from us: our child exits at once and the command is
    # reparented, so no zombie is left in a worker process that never waits for it; the
    # subshell holds none of our pipes, so a long-running command does not keep us waiting.
    inner = (f"({shlex.quote(shell)} -c {shlex.quote(ex.command)} > {shlex.quote(str(log))} 2>&1 "
             f"< /dev/null; echo \"exit $?\" >> {shlex.quote(str(log))}) "
             "> /dev/null 2>&1 < /dev/null &")
    argv = sliver_argv(netns, tasks_files, root, ["sh", "-c", inner])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False,
                          start_new_session=True)
    if proc.returncode != 0:
        raise DriverError(f"execute {index} could not start: {proc.stderr.strip()}")


def write_keys(users: Sequence[UserKeys], root: Path) -> None:
    """Each user's keys as `<root>/.geni/users/<login>/authorized_keys` (and all in one file)."""
    check_names(users)                     # a login is a directory name here
    base = geni_dir(root) / "users"
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(mode=0o700)
    every: list[str] = []
    for user in users:
        d = base / user.login
        d.mkdir(mode=0o700, exist_ok=True)
        _write_private(d / "authorized_keys", "".join(k.strip() + "\n" for k in user.keys))
        every.extend(k.strip() for k in user.keys)
    _write_private(root / ".geni" / "authorized_keys", "".join(k + "\n" for k in every))


def geni_dir(root: Path) -> Path:
    """`<root>/.geni`, the driver's files in a sliver (keys, sshd, execute logs): root's
    alone (sshd reads the keys as root), whatever the umask."""
    d = root / ".geni"
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    if d.stat().st_mode & 0o077:
        os.chmod(d, 0o700)
    return d


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _inside(root: Path, path: str) -> Path:
    """`path` (absolute in the sliver's view) mapped under `root`, never escaping it."""
    target = (root / path.lstrip("/")).resolve()
    if target != root.resolve() and root.resolve() not in target.parents:
        raise DriverError(f"install path {path!r} leaves the sliver's root")
    return target


__all__ = ["execute_problem", "install_url_problem", "operator_shell", "run_install",
           "sliver_argv", "start_execute", "write_keys"]
