"""The init of one container guest: builds the guest, then stays as its PID 1 and supervisor.

Run by the driver (as host root) with `python -I guestinit.py start HANDLE` and its
configuration as JSON on stdin (so no host path shows in the guest's `ps`). In order:
  1. join the sliver's cgroups (every guest process inherits them; the guest cannot leave:
     no cgroupfs is mounted inside and it has no host privilege to write one), except its
     memory cgroup, which each process the init starts enters before it runs anything;
  2. make the guest's user namespace (guest ids 0..count-1 = host ids base..base+count-1,
     so guest root is an unprivileged host uid with no capability outside its namespace);
  3. enter the sliver's network namespace (made and wired by the driver, owned by the host's
     user namespace: the guest cannot change its interfaces, routes or tc shaping);
  4. new mount, PID, UTS and IPC namespaces; fork the guest's PID 1 (this program), which
     mounts the overlay root (lower = the image, read-only; upper = the sliver's layer; both
     idmapped so the image's root-owned files are the guest root's), its own /proc, a
     private /dev (null, zero, full, random, urandom, tty, its own devpts), tmpfs /tmp and
     /run, then pivot_root's into it and detaches the host's tree;
  5. joins the user namespace as guest root, sets no_new_privs and makes itself
     non-dumpable (no guest process can ptrace it or open its /proc files), and serves.

PID 1 reaps orphans and serves requests from the driver on a Unix socket at a host path the
guest cannot reach (bound before the pivot): start a detached process (an execute), run one
with the caller's stdin/stdout/stderr passed over the socket (the operator shell, tests), write
a file or unpack an archive (installs: the driver fetches, the guest writes), report status
(exit codes and log tails of what it started), and hold an SSH listening socket from which
each connection becomes one `sshd -i` inside the guest. When PID 1 dies (SIGKILL from the
driver on stop/delete) the kernel kills every process of the PID namespace.

Every module PID 1 needs later is imported before the pivot: the host's files are gone after
it. Only the standard library is used, so this runs as `python -I` at a guest's memory cost.
"""
from __future__ import annotations

import array
import base64
import bz2  # noqa: F401 - tarfile's lazy imports, needed after the pivot
import contextlib
import ctypes
import errno
import gzip  # noqa: F401
import json
import lzma  # noqa: F401
import os
import selectors
import signal
import socket
import stat
import sys
import tarfile
import time
import zlib  # noqa: F401
from collections.abc import Sequence
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
MNT_DETACH = 2
SYS_PIVOT_ROOT, SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 155, 428, 429, 442
OPEN_TREE_CLONE, AT_FDCWD, AT_EMPTY_PATH, AT_RECURSIVE = 1, -100, 0x1000, 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV, MOUNT_ATTR_IDMAP = 1, 2, 4, 0x100000
PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 4, 38
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
GUEST_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "LANG": "C.UTF-8", "HOME": "/root", "TERM": "xterm"}
TAIL_BYTES = 2048
MAX_REQUEST = 1 << 20
MAX_SESSIONS = 16

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _check(rc: int, what: str) -> int:
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return rc


def _b(path: str | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)),
           f"mount {fstype or source} on {target}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def idmapped_bind(source: str, target: str, userns_fd: int, *, readonly: bool) -> None:
    """Bind `source` on `target` with ids shown through `userns_fd`'s mapping (host 0 on
    disk = guest root); the overlay takes these mounts as its layers."""
    fd = _check(_libc.syscall(SYS_OPEN_TREE, AT_FDCWD, _b(source),
                              OPEN_TREE_CLONE | os.O_CLOEXEC), f"open_tree {source}")
    try:
        attr = MountAttr(MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV
                         | (MOUNT_ATTR_RDONLY if readonly else 0), 0, 0, userns_fd)
        _check(_libc.syscall(SYS_MOUNT_SETATTR, fd, b"", AT_EMPTY_PATH, ctypes.byref(attr),
                             ctypes.sizeof(attr)), f"idmap {source}")
        _check(_libc.syscall(SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, _b(target),
                             MOVE_MOUNT_F_EMPTY_PATH), f"move_mount {target}")
    finally:
        os.close(fd)


# ---- building the guest (as host root) ------------------------------------------------------

def make_userns(base: int, count: int) -> int:
    """An fd of a new user namespace mapping guest 0..count-1 to host base..base+count-1."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(w)
            unshare(CLONE_NEWUSER)
            os.read(r, 1)                 # parent has written the maps and opened the ns
        finally:
            os._exit(0)
    os.close(r)
    try:
        deadline = time.monotonic() + 5
        while True:                       # wait until the child has its own namespace
            try:
                if os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user"):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise OSError(errno.ETIMEDOUT, "user namespace helper did not start")
            time.sleep(0.001)
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(f"0 {base} {count}\n")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(w)
        os.waitpid(pid, 0)


def _real_dir(path: str) -> None:
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(errno.ENOTDIR, f"{path} is not a directory in the guest's tree")


def build_root(cfg: dict[str, Any], userns_fd: int) -> None:
    """Mount the guest's tree under cfg["mnt"] and pivot into it (PID 1, host root)."""
    mnt, base = cfg["mnt"], cfg["id_base"]
    lower, merged = f"{mnt}/lower", f"{mnt}/merged"
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    idmapped_bind(cfg["lower"], lower, userns_fd, readonly=True)
    os.lchown(f"{cfg['layer']}/upper", base, base)    # the guest's "/" is its root's
    # The overlay's options show in the guest's /proc/self/mountinfo as given: name its
    # layers relative to the sliver's directory, so no host path (state directory, image
    # store, sliver handle) is written there. The idmapped bind of the image stays under the
    # host's tree, which is detached after the pivot.
    top = os.path.commonpath([mnt, cfg["layer"]])
    os.chdir(top)
    rel = {k: os.path.relpath(v, top) for k, v in (
        ("lowerdir", lower), ("upperdir", f"{cfg['layer']}/upper"),
        ("workdir", f"{cfg['layer']}/work"))}
    mount("overlay", merged, "overlay", MS_NOSUID | MS_NODEV,
          ",".join(f"{k}={v}" for k, v in rel.items()))
    for d in ("proc", "dev", "tmp", "run"):
        _real_dir(f"{merged}/{d}")
    mount("proc", f"{merged}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    dev = f"{merged}/dev"
    mount("tmpfs", dev, "tmpfs", MS_NOSUID, f"mode=755,size=256k,uid={base},gid={base}")
    for node in DEV_NODES:
        open(f"{dev}/{node}", "w").close()
        mount(f"/dev/{node}", f"{dev}/{node}", None, MS_BIND)
    os.mkdir(f"{dev}/pts")
    mount("devpts", f"{dev}/pts", "devpts", MS_NOSUID | MS_NOEXEC,
          "newinstance,ptmxmode=0666,mode=0620")
    os.symlink("pts/ptmx", f"{dev}/ptmx")
    os.mkdir(f"{dev}/shm", 0o1777)
    os.chmod(f"{dev}/shm", 0o1777)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{dev}/{name}")
    size = int(cfg.get("tmpfs_mb", 64))
    mount("tmpfs", f"{merged}/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
          f"mode=1777,size={size}m,uid={base},gid={base}")
    mount("tmpfs", f"{merged}/run", "tmpfs", MS_NOSUID | MS_NODEV,
          f"mode=755,size={size}m,uid={base},gid={base}")
    os.chdir(merged)
    _check(_libc.syscall(SYS_PIVOT_ROOT, b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "detach the host's tree")
    os.chdir("/")
    name = cfg.get("hostname") or "guest"
    _check(_libc.sethostname(name.encode(), len(name.encode())), "sethostname")


def become_guest_root(userns_fd: int) -> None:
    setns(userns_fd, CLONE_NEWUSER)
    os.close(userns_fd)
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    _check(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "non-dumpable")


def start(cfg: dict[str, Any]) -> int:
    """Build the guest; print PID 1's host pid. Exit status 0 once the guest serves."""
    log = os.open(cfg["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    for tasks in cfg["tasks"]:
        with open(tasks, "w") as f:
            f.write(str(os.getpid()))
    # The init itself stays out of the sliver's memory cgroup (so a guest at its memory limit
    # can never have its init OOM-killed, which would end the whole guest); every process it
    # starts moves itself in first, through this descriptor opened here by host root.
    memcg = os.open(cfg["memory_tasks"], os.O_WRONLY | os.O_CLOEXEC)
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("-999")               # the OOM killer takes a guest's process, not its init
    except OSError:
        pass                              # no CAP_SYS_RESOURCE here: init is a small target
    userns_fd = make_userns(cfg["id_base"], cfg["id_count"])
    try:
        os.unlink(cfg["ctl"])
    except FileNotFoundError:
        pass
    ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o077)
    try:
        with short_path(cfg["ctl"]) as path:
            ctl.bind(path)
    finally:
        os.umask(old)
    ctl.listen(16)
    netns = os.open(cfg["netns"], os.O_RDONLY | os.O_CLOEXEC)
    setns(netns, CLONE_NEWNET)
    os.close(netns)
    unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC)
    r, w = os.pipe2(os.O_CLOEXEC)
    sys.stdout.flush()
    pid = os.fork()
    if pid:
        os.close(w)
        reply = b""
        while chunk := os.read(r, 4096):
            reply += chunk
        if reply != b"ok":
            os.waitpid(pid, 0)
            print(reply.decode(errors="replace") or "the guest's init died while starting",
                  file=sys.stderr)
            return 1
        print(pid, flush=True)
        return 0
    # PID 1 of the guest's PID namespace
    os.close(r)
    try:
        os.setsid()
        build_root(cfg, userns_fd)
        become_guest_root(userns_fd)
        for d in ("/run/sshd", "/var/log/geni"):
            os.makedirs(d, mode=0o755, exist_ok=True)
        _detach(log)
        init = Init(ctl, memcg)
    except BaseException as exc:  # noqa: BLE001 - the driver gets the reason
        os.write(w, f"the guest could not be built: {exc}".encode())
        os._exit(1)
    os.write(w, b"ok")
    os.close(w)
    try:
        init.serve()
    except BaseException as exc:  # noqa: BLE001 - init's last word goes to its log
        say(f"stopped: {exc!r}")
    os._exit(1)


def _detach(log: int) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)


def say(message: str) -> None:
    os.write(2, f"{time.strftime('%Y-%m-%dT%H:%M:%S')} init: {message}\n".encode())


# ---- PID 1: the supervisor --------------------------------------------------------------------

class Child:
    def __init__(self, pid: int, name: str, log: str | None, conn: socket.socket | None = None):
        self.pid, self.name, self.log, self.conn = pid, name, log, conn
        self.exit: int | None = None
        self.started = time.time()


class Init:
    def __init__(self, ctl: socket.socket, memcg: int):
        self.ctl = ctl
        self.memcg = memcg
        self.ctl.set_inheritable(False)
        self.sel = selectors.DefaultSelector()
        self.children: dict[int, Child] = {}
        self.named: dict[str, Child] = {}
        self.listener: socket.socket | None = None
        self.session: list[str] = []
        self.sessions: set[int] = set()

    def serve(self) -> None:
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)   # only SIGKILL from outside ends the guest
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        self.ctl.setblocking(False)
        self.sel.register(self.ctl, selectors.EVENT_READ, "ctl")
        self.sel.register(wake_r, selectors.EVENT_READ, "wake")
        while True:
            for key, _ in self.sel.select(timeout=5):
                if key.data == "wake":
                    try:
                        while os.read(wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                elif key.data == "ctl":
                    self.accept_requests()
                elif key.data == "ssh":
                    self.accept_sessions()
                else:
                    self.request(key.fileobj)
            self.reap()

    # -- children --
    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.sessions.discard(pid)
            child = self.children.pop(pid, None)
            if child is None:
                continue                  # an orphan reparented to us
            child.exit = _exit_code(status)
            if child.conn is not None:    # a "run" request waits for this
                self.reply(child.conn, {"ok": True, "status": child.exit,
                                        "error": getattr(child, "error", None)})
                child.conn.close()

    def spawn(self, argv: Sequence[str], *, uid: int = 0, gid: int = 0, cwd: str = "/",
              env: dict[str, str] | None = None, stdio: Sequence[int] | None = None,
              log: str | None = None) -> int:
        pid = os.fork()
        if pid:
            return pid
        try:
            os.setsid()
            for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP,
                        signal.SIGPIPE):
                signal.signal(sig, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            try:
                with open("/proc/self/oom_score_adj", "w") as f:
                    f.write("0")
            except OSError:
                pass
            os.write(self.memcg, b"0")       # into the sliver's memory cgroup, or no exec
            if stdio is None:
                null = os.open(os.devnull, os.O_RDONLY)
                out = os.open(log or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND
                              | os.O_NOFOLLOW, 0o640)
                stdio = (null, out, out)
            for i, fd in enumerate(stdio):
                os.dup2(fd, i)
            os.closerange(3, 65536)
            if gid or uid:
                os.setgroups([gid])
                os.setresgid(gid, gid, gid)
                os.setresuid(uid, uid, uid)
            try:
                os.chdir(cwd)
            except OSError:
                os.chdir("/")
            os.execvpe(argv[0], list(argv), {**GUEST_ENV, **(env or {})})
        except BaseException as exc:  # noqa: BLE001
            try:
                os.write(2, f"init: cannot start {argv[0]}: {exc}\n".encode())
            finally:
                os._exit(127)
        os._exit(127)

    # -- the SSH gate --
    def accept_sessions(self) -> None:
        while self.listener is not None:
            try:
                conn, _ = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                say(f"ssh accept: {exc.strerror}")
                return
            with conn:
                self.reap()
                if len(self.sessions) >= MAX_SESSIONS:
                    continue              # closed unanswered
                conn.setblocking(True)
                log = os.open("/var/log/geni/sshd.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND
                              | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                try:
                    pid = self.spawn(self.session, stdio=(conn.fileno(), conn.fileno(), log))
                    self.sessions.add(pid)
                finally:
                    os.close(log)

    # -- requests from the driver --
    def accept_requests(self) -> None:
        while True:
            try:
                conn, _ = self.ctl.accept()
            except BlockingIOError:
                return
            conn.setblocking(True)
            conn.settimeout(10)
            self.sel.register(conn, selectors.EVENT_READ, "req")

    def request(self, conn: socket.socket) -> None:
        self.sel.unregister(conn)
        keep = False
        try:
            msg, fds = recv_message(conn)
            keep = self.handle(conn, msg, fds)
        except Exception as exc:  # noqa: BLE001 - a bad request is answered, never fatal
            try:
                self.reply(conn, {"ok": False, "error": str(exc)})
            except OSError:
                pass
        finally:
            if not keep:
                conn.close()

    def reply(self, conn: socket.socket, msg: dict[str, Any]) -> None:
        conn.sendall(json.dumps(msg).encode() + b"\n")

    def handle(self, conn: socket.socket, msg: dict[str, Any], fds: list[int]) -> bool:
        op = msg.get("op")
        try:
            if op == "ping":
                self.reply(conn, {"ok": True})
            elif op == "spawn":              # detached; its output goes to a log in the guest
                name = msg["name"]
                pid = self.spawn(msg["argv"], uid=msg.get("uid", 0), gid=msg.get("gid", 0),
                                 cwd=msg.get("cwd", "/"), env=msg.get("env"), log=msg["log"])
                child = Child(pid, name, msg["log"])
                self.children[pid] = self.named[name] = child
                self.reply(conn, {"ok": True, "pid": pid})
            elif op == "run":                # the caller's stdio; answered when it exits
                if len(fds) != 3:
                    raise ValueError("run needs three file descriptors")
                pid = self.spawn(msg["argv"], uid=msg.get("uid", 0), gid=msg.get("gid", 0),
                                 cwd=msg.get("cwd", "/"), env=msg.get("env"), stdio=fds)
                self.children[pid] = Child(pid, "run", None, conn)
                return True
            elif op in ("put", "mkdir"):
                write_item(msg)
                self.reply(conn, {"ok": True})
            elif op == "files":              # several puts and mkdirs in order, one round trip
                for item in msg["items"]:
                    write_item(item)
                self.reply(conn, {"ok": True, "listening": self.listener is not None})
            elif op == "unpack":             # an install: the driver fetched, the guest writes
                if len(fds) != 1:
                    raise ValueError("unpack needs one file descriptor")
                pid = os.fork()
                if pid == 0:
                    code = 0
                    try:
                        os.write(self.memcg, b"0")
                        unpack(fds[0], msg["dest"], msg["name"])
                    except Exception as exc:  # noqa: BLE001
                        os.write(2, f"{exc}\n".encode())
                        code = 1
                    os._exit(code)
                child = Child(pid, "unpack", None, conn)
                self.children[pid] = child
                return True
            elif op == "status":
                self.reply(conn, {"ok": True, "children": {
                    name: {"pid": c.pid, "running": c.exit is None, "exit": c.exit,
                           "started": c.started, "tail": _tail(c.log)}
                    for name, c in self.named.items()}, "sessions": len(self.sessions),
                    "listening": self.listener is not None})
            elif op == "listen":             # the SSH port's socket; one sshd -i per connection
                if len(fds) != 1:
                    raise ValueError("listen needs one file descriptor")
                self.stop_listening()
                self.listener = socket.socket(fileno=fds.pop())
                self.listener.set_inheritable(False)
                self.listener.setblocking(False)
                self.session = list(msg["session"])
                self.sel.register(self.listener, selectors.EVENT_READ, "ssh")
                self.reply(conn, {"ok": True})
            elif op == "unlisten":
                self.stop_listening()
                self.reply(conn, {"ok": True})
            else:
                raise ValueError(f"unknown request {op!r}")
        finally:
            for fd in fds:
                os.close(fd)
        return False

    def stop_listening(self) -> None:
        if self.listener is not None:
            self.sel.unregister(self.listener)
            self.listener.close()
            self.listener = None


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def _tail(path: str | None) -> str:
    if not path:
        return ""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        size = os.fstat(fd).st_size
        os.lseek(fd, max(0, size - TAIL_BYTES), os.SEEK_SET)
        return os.read(fd, TAIL_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return ""
    finally:
        os.close(fd)


def make_dirs(path: str, mode: int, uid: int, gid: int) -> None:
    if not path.startswith("/"):
        raise ValueError(f"{path!r} is not absolute")
    parts = [p for p in path.split("/") if p]
    cur = ""
    for i, part in enumerate(parts):
        cur += "/" + part
        try:
            os.mkdir(cur, mode if i == len(parts) - 1 else 0o755)
            if i == len(parts) - 1:
                os.chown(cur, uid, gid)
                os.chmod(cur, mode)
        except FileExistsError:
            if not os.path.isdir(cur):
                raise NotADirectoryError(f"{cur} exists and is not a directory") from None
    if parts and os.path.isdir(cur):
        os.chown(cur, uid, gid)
        os.chmod(cur, mode)


def write_item(msg: dict[str, Any]) -> None:
    """One "put" (a file) or "mkdir" request's work."""
    if msg.get("op") == "put":
        put_file(msg["path"], base64.b64decode(msg["data"]), msg.get("mode", 0o644),
                 msg.get("uid", 0), msg.get("gid", 0))
    elif msg.get("op") == "mkdir":
        make_dirs(msg["path"], msg.get("mode", 0o755), msg.get("uid", 0), msg.get("gid", 0))
    else:
        raise ValueError(f"a files request holds puts and mkdirs, not {msg.get('op')!r}")


def put_file(path: str, data: bytes, mode: int, uid: int, gid: int) -> None:
    """Write `path` atomically (temp + rename; a symlink there is replaced, never followed)."""
    parent = os.path.dirname(path) or "/"
    if not os.path.isdir(parent):
        make_dirs(parent, 0o755, 0, 0)
    tmp = f"{parent}/.{os.path.basename(path)}.geni-tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def unpack(fd: int, dest: str, name: str) -> None:
    """A tarball (any compression) is extracted under `dest` with tarfile's "data" filter;
    anything else is copied to dest/name."""
    if not os.path.isdir(dest):
        make_dirs(dest, 0o755, 0, 0)
    with os.fdopen(os.dup(fd), "rb") as f:
        try:
            with tarfile.open(fileobj=f, mode="r:*") as tar:
                tar.extractall(dest, filter="data")
                return
        except tarfile.ReadError:
            pass
        f.seek(0)
        target = os.path.join(dest, os.path.basename(name) or "download")
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        try:
            while chunk := f.read(1 << 20):
                os.write(out, chunk)
        finally:
            os.close(out)


# ---- the wire (shared with the driver's client) -------------------------------------------------

@contextlib.contextmanager
def short_path(path: str):
    """`path` as /proc/self/fd/N/<name> through an fd of its directory: a Unix socket's path
    may be only 107 bytes, and state directories can be deeper than that."""
    fd = os.open(os.path.dirname(path) or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{os.path.basename(path)}"
    finally:
        os.close(fd)


def recv_message(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """One JSON line, with any file descriptors sent along with its first bytes."""
    buf = b""
    fds: list[int] = []
    while not buf.endswith(b"\n"):
        data, anc, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(16 * 4))
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                arr = array.array("i")
                arr.frombytes(payload[:len(payload) - len(payload) % arr.itemsize])
                fds.extend(arr)
        if not data:
            break
        buf += data
        if len(buf) > MAX_REQUEST:
            raise ValueError("request too large")
    for fd in fds:
        os.set_inheritable(fd, False)
    if not buf.strip():
        raise ValueError("empty request")
    return json.loads(buf), fds


def send_message(conn: socket.socket, msg: dict[str, Any], fds: Sequence[int] = ()) -> None:
    data = json.dumps(msg).encode() + b"\n"
    if fds:
        conn.sendmsg([data[:1]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                   array.array("i", fds).tobytes())])
        data = data[1:]
    conn.sendall(data)


def request(ctl: str, msg: dict[str, Any], fds: Sequence[int] = (), *,
            timeout: float | None = 30) -> dict[str, Any]:
    """Send one request to a guest's init and return its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        with short_path(ctl) as path:
            conn.connect(path)
        send_message(conn, msg, fds)
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk:
                raise ConnectionError("the guest's init closed the connection")
            buf += chunk
    return json.loads(buf)


def run_here(ctl: str, argv: Sequence[str], uid: int = 0, gid: int = 0, cwd: str = "/") -> int:
    """Run argv in the guest with this process's stdin/stdout/stderr; its exit status."""
    answer = request(ctl, {"op": "run", "argv": list(argv), "uid": uid, "gid": gid,
                           "cwd": cwd}, (0, 1, 2), timeout=None)
    if not answer.get("ok"):
        print(f"guest: {answer.get('error')}", file=sys.stderr)
        return 126
    return int(answer["status"])


# ---- the fork server ----------------------------------------------------------------------------

def zygote(ctl_fd: int) -> int:
    """Serve guest starts by fork: one process per driver, started once, with this module
    already imported. Each message on the SOCK_SEQPACKET `ctl_fd` carries one connection's
    descriptor; a forked child reads a guest's configuration (JSON) from it, runs `start`
    with its stdout and stderr on it, and exits. So a guest costs a fork, not an interpreter
    start (which took 0.1-0.4 s a guest on a loaded host). The zygote ends when the driver
    closes `ctl_fd` or exits (end of file)."""
    ctl = socket.socket(fileno=ctl_fd)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)   # the kernel reaps the forked children
    while True:
        try:
            data, anc, _, _ = ctl.recvmsg(16, socket.CMSG_SPACE(4))
        except InterruptedError:
            continue
        if not data:
            return 0
        fds = array.array("i")
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
        if not fds:
            continue
        if os.fork() == 0:
            rc = 1
            try:
                ctl.close()
                for extra in fds[1:]:
                    os.close(extra)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                rc = _zygote_child(fds[0])
            finally:
                os._exit(rc)
        for fd in fds:
            os.close(fd)


def _zygote_child(conn_fd: int) -> int:
    with socket.socket(fileno=os.dup(conn_fd)) as conn:
        buf = b""
        while chunk := conn.recv(65536):
            buf += chunk
            if len(buf) > MAX_REQUEST:
                break
    os.dup2(conn_fd, 1)
    os.dup2(conn_fd, 2)
    os.close(conn_fd)
    try:
        rc = start(json.loads(buf))
    except BaseException as exc:  # noqa: BLE001 - the driver gets the reason
        print(f"the guest could not be started: {exc}", file=sys.stderr)
        rc = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return rc


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) == 2 and args[0] == "zygote":  # zygote FD (the driver's SOCK_SEQPACKET end)
        return zygote(int(args[1]))
    if len(args) == 2 and args[0] == "start":   # start HANDLE, the config as JSON on stdin
        cfg = json.loads(sys.stdin.read())
        if cfg.get("handle") != args[1]:
            print("guestinit: the config is for another guest", file=sys.stderr)
            return 2
        return start(cfg)
    if len(args) >= 3 and args[0] == "run":     # run CTL [--uid N] -- ARGV...
        ctl, rest = args[1], args[2:]
        uid = 0
        if rest[:1] == ["--uid"]:
            uid, rest = int(rest[1]), rest[2:]
        if rest[:1] == ["--"]:
            rest = rest[1:]
        try:
            return run_here(ctl, rest, uid=uid, gid=uid)
        except OSError as exc:
            print(f"guest: {ctl}: {exc}", file=sys.stderr)
            return 126
    print("usage: guestinit.py start HANDLE (config on stdin) | run CTL [--uid N] -- ARGV... "
          "| zygote FD",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
