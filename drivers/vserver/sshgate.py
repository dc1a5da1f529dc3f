"""The SSH gate of one node sliver: accepts on the sliver's port, one `sshd -i` per connection.

The driver binds the listening socket (so a port it reports is a port it holds) and starts
this file with the socket's fd, the sliver's cgroup `tasks` files and the session command.
The gate joins the cgroups first, so stopping or deleting the sliver (which kills everything
in them) removes the gate and its sessions too; then it daemonises with a double fork (the
driver's child exits at once, leaving no zombie in a worker) and prints its pid. From then on it
accepts connections inetd-style: each one becomes the stdin/stdout of a new session process,
up to `--max-sessions` at a time (a connection beyond that is closed unanswered), and
finished sessions are reaped as their SIGCHLD arrives.

Only the standard library is imported: the driver runs this file by path with `python -I`,
so the gate costs a sliver's memory limit an interpreter and nothing of the AM.
"""
from __future__ import annotations

import argparse
import errno
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Sequence

LOG_MAX_BYTES = 1 << 20          # then the log moves to <log>.old and starts afresh
SESSION_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
# accept() failures that come and go (a client that gave up, a full fd table): keep serving
PASSING_ERRORS = {errno.ECONNABORTED, errno.EPROTO, errno.EMFILE, errno.ENFILE, errno.ENOBUFS,
                  errno.ENOMEM, errno.EPERM, errno.EINTR, errno.EAGAIN}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sshgate", description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, required=True, help="the listening socket")
    parser.add_argument("--sliver", required=True, help="the sliver's handle (for recognition)")
    parser.add_argument("--tasks", action="append", default=[], help="a cgroup tasks file")
    parser.add_argument("--log", required=True)
    parser.add_argument("--max-sessions", type=int, default=16)
    parser.add_argument("session", nargs="+", help="argv of one session (after --)")
    args = parser.parse_args(argv)
    try:
        listener = socket.socket(fileno=args.fd)
        if not listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise OSError(errno.EINVAL, "not a listening socket")
    except OSError as exc:
        print(f"sshgate: fd {args.fd}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    listener.set_inheritable(False)
    try:
        for tasks in args.tasks:
            with open(tasks, "w") as f:
                f.write(str(os.getpid()))
        log = os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError as exc:
        print(f"sshgate: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 126
    sys.stdout.flush()
    if os.fork():                       # the driver's child: returns once the gate is away
        _, status = os.wait()
        return os.waitstatus_to_exitcode(status)
    os.setsid()
    pid = os.fork()
    if pid:
        print(pid, flush=True)
        os._exit(0)
    _detach(log)
    try:
        Gate(listener, list(args.session), args.log, args.max_sessions).serve()
    except BaseException as exc:  # noqa: BLE001 - the gate's last word goes to its log
        print(f"sshgate: stopped: {exc!r}", file=sys.stderr, flush=True)
    os._exit(1)


def _detach(log: int) -> None:
    """stdin from /dev/null, stdout/stderr to the log (this also lets go of the driver's pipe)."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    for fd in (null, log):
        os.close(fd)
    os.chdir("/")
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


class Gate:
    def __init__(self, listener: socket.socket, session: list[str], log: str, cap: int):
        self.listener = listener
        self.session = session
        self.log = log
        self.cap = cap
        self.live: set[int] = set()

    def serve(self) -> None:
        # SIGCHLD only wakes the loop (through the wakeup fd); all bookkeeping happens here,
        # so a session that ends while another starts can never be miscounted.
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        self.listener.setblocking(False)
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ)
        sel.register(wake_r, selectors.EVENT_READ)
        say(f"serving {self.listener.getsockname()} (at most {self.cap} sessions)")
        while True:
            for key, _ in sel.select():
                if key.fileobj == wake_r:
                    while True:
                        try:
                            if not os.read(wake_r, 512):
                                break
                        except BlockingIOError:
                            break
            self.reap()
            self.accept_all()

    def reap(self) -> None:
        while self.live:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.live.clear()
                return
            if pid == 0:
                return
            self.live.discard(pid)

    def accept_all(self) -> None:
        while True:
            try:
                conn, peer = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in PASSING_ERRORS:
                    say(f"accept: {exc.strerror}")
                    time.sleep(0.05)
                    return
                raise
            with conn:
                if len(self.live) >= self.cap:
                    say(f"refused {peer[0]} port {peer[1]}: {len(self.live)} sessions open")
                    continue
                conn.setblocking(True)
                self.spawn(conn)

    def spawn(self, conn: socket.socket) -> None:
        self.rotate()
        try:
            err = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        except OSError:
            err = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        try:
            pid = os.posix_spawnp(self.session[0], self.session, SESSION_ENV, setsid=True,
                                  setsigdef=(signal.SIGCHLD, signal.SIGHUP, signal.SIGPIPE),
                                  file_actions=[(os.POSIX_SPAWN_DUP2, conn.fileno(), 0),
                                                (os.POSIX_SPAWN_DUP2, conn.fileno(), 1),
                                                (os.POSIX_SPAWN_DUP2, err, 2)])
            self.live.add(pid)
        except OSError as exc:
            say(f"cannot start a session: {exc.strerror}")
        finally:
            os.close(err)

    def rotate(self) -> None:
        try:
            if os.stat(self.log).st_size <= LOG_MAX_BYTES:
                return
            os.replace(self.log, f"{self.log}.old")
            log = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(log)
        except OSError:
            pass


def say(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} sshgate[{os.getpid()}]: {message}",
          file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
