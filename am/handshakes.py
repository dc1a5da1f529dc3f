"""TLS handshakes off the request workers, with per-client bounds.

cheroot hands every accepted connection straight to its request thread pool, so with the
handshake deferred to the connection (see am/server.py) a client that connects and stays silent
holds one of the (16) request threads for the whole socket timeout: 64 idle sockets froze the API
for tens of seconds. Here one front thread drives every handshake with non-blocking sockets and a
selector; a connection reaches the request threads only once it is a complete, verified TLS
session, and then only when a request arrives (cheroot's own keep-alive selector waits for that).

Bounds, per client address (the peer IP):
* `handshake_timeout_s`: a handshake not finished by then is dropped;
* `max_connections_per_client`: open connections (handshaking, idle kept-alive or in a request).
  A new connection over the bound evicts that client's oldest unfinished handshake if that one
  has been at it for `evict_after_s` (a client stuck in handshakes cannot lock itself, or its
  NAT neighbours, out; a real handshake takes milliseconds, so a young one is left to finish);
  otherwise the new connection is refused (closed);
* `max_pending_handshakes` over all clients: the oldest unfinished handshake is dropped.
"""
from __future__ import annotations

import logging
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

log = logging.getLogger("am.server")


@dataclass(frozen=True)
class ClientLimits:
    handshake_timeout_s: float = 5.0
    max_connections_per_client: int = 128
    evict_after_s: float = 1.0
    max_pending_handshakes: int = 1024


@dataclass
class HandshakeCounts:
    """What the front thread did (for tests, benchmarks and logs)."""
    completed: int = 0
    failed: int = 0
    timed_out: int = 0
    evicted: int = 0
    refused: int = 0


class _Pending:
    __slots__ = ("conn", "fd", "started", "deadline", "events")

    def __init__(self, conn: Any, fd: int, started: float, deadline: float):
        self.conn = conn
        self.fd = fd
        self.started = started
        self.deadline = deadline
        self.events = 0


def _is_plain_http(exc: ssl.SSLError) -> bool:
    return exc.errno == ssl.SSL_ERROR_SSL and "http request" in str(exc).lower()


class Handshaker:
    """The front thread. `admit(conn)` (any thread) hands it a freshly accepted connection
    whose socket is an `SSLSocket` created with `do_handshake_on_connect=False`.

    `ready(conn)` is called (on this thread) with each connection whose handshake completed,
    after `conn.ssl_env` is set; `plain_http(conn)` with each that spoke plain HTTP (it gets an
    answer from a request thread); `environ(sock)` builds the TLS part of the WSGI environ."""

    def __init__(self, limits: ClientLimits, *, socket_timeout: float,
                 environ: Callable[[ssl.SSLSocket], dict],
                 ready: Callable[[Any], None], plain_http: Callable[[Any], None]):
        self.limits = limits
        self.counts = HandshakeCounts()
        self._socket_timeout = socket_timeout
        self._environ = environ
        self._ready = ready
        self._plain_http = plain_http
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._inbox: deque[Any] = deque()
        self._pending: dict[int, _Pending] = {}      # insertion order = oldest first
        self._open: dict[str, int] = {}               # open connections per client address
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="geni-am-tls-handshakes",
                                        daemon=True)

    # ---- any thread ---------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake()
        self._thread.join(5)

    def admit(self, conn: Any) -> None:
        self._inbox.append(conn)
        self._wake()

    def released(self, conn: Any) -> None:
        """A connection counted by `admit` is closed (called from its `close`)."""
        addr = conn.remote_addr or ""
        with self._lock:
            left = self._open.get(addr, 0) - 1
            if left > 0:
                self._open[addr] = left
            else:
                self._open.pop(addr, None)

    def open_connections(self, addr: str) -> int:
        with self._lock:
            return self._open.get(addr, 0)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass   # a wake-up is already queued, or we are closing

    # ---- the front thread ---------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stopping:
                timeout = self._next_timeout()
                for key, _events in self._selector.select(timeout):
                    if key.data is None:
                        self._drain_wake()
                    else:
                        self._step(key.data)
                self._take_inbox()
                self._expire(time.monotonic())
        except Exception:   # log, then fail every waiting client cleanly
            log.exception("TLS handshake thread failed")
        finally:
            for pending in list(self._pending.values()):
                self._drop(pending)
            while self._inbox:
                self._close(self._inbox.popleft())
            self._selector.close()
            self._wake_r.close()
            self._wake_w.close()

    def _next_timeout(self) -> float | None:
        if self._inbox:
            return 0
        if not self._pending:
            return None
        oldest = next(iter(self._pending.values()))   # deadlines grow with insertion order
        return max(0.0, oldest.deadline - time.monotonic())

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _take_inbox(self) -> None:
        while self._inbox:
            conn = self._inbox.popleft()
            if self._stopping:
                self._close(conn)
                continue
            if not self._make_room(conn.remote_addr or ""):
                self.counts.refused += 1
                log.info("client %s refused: %d connections open (max_connections_per_client)",
                         conn.remote_addr, self.limits.max_connections_per_client)
                self._close(conn)
                continue
            with self._lock:
                addr = conn.remote_addr or ""
                self._open[addr] = self._open.get(addr, 0) + 1
            conn.counted_by = self
            try:
                conn.socket.setblocking(False)
            except OSError:
                conn.close()
                continue
            now = time.monotonic()
            pending = _Pending(conn, conn.socket.fileno(), now,
                               now + self.limits.handshake_timeout_s)
            self._pending[pending.fd] = pending
            self._step(pending)

    def _make_room(self, addr: str) -> bool:
        """Room for one more connection of `addr` (evicting its oldest handshake if it is old
        enough), and for one more handshake overall."""
        if len(self._pending) >= self.limits.max_pending_handshakes:
            self.counts.evicted += 1
            self._drop(next(iter(self._pending.values())))
        if self.open_connections(addr) < self.limits.max_connections_per_client:
            return True
        old_enough = time.monotonic() - self.limits.evict_after_s
        for pending in self._pending.values():   # oldest first
            if (pending.conn.remote_addr or "") == addr:
                if pending.started > old_enough:
                    return False
                self.counts.evicted += 1
                self._drop(pending)
                return True
        return False

    def _step(self, pending: _Pending) -> None:
        conn = pending.conn
        sock = conn.socket
        peer = f"{conn.remote_addr}:{conn.remote_port}"
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._wait_for(pending, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._wait_for(pending, selectors.EVENT_WRITE)
            return
        except ssl.SSLError as exc:
            self._forget(pending)
            if _is_plain_http(exc):
                sock.settimeout(self._socket_timeout)
                self._plain_http(conn)
                return
            self.counts.failed += 1
            log.info("Client %s lost during the TLS handshake: %s", peer, exc)
            conn.close()
            return
        except OSError as exc:   # reset, or closed under us
            self.counts.failed += 1
            self._forget(pending)
            log.info("Client %s lost during the TLS handshake: %s", peer, exc)
            conn.close()
            return
        self._forget(pending)
        try:
            sock.settimeout(self._socket_timeout)
            conn.ssl_env = self._environ(sock)
        except (OSError, ValueError) as exc:
            self.counts.failed += 1
            log.info("Client %s lost after the TLS handshake: %s", peer, exc)
            conn.close()
            return
        conn.handshake_done = True
        self.counts.completed += 1
        self._ready(conn)

    def _wait_for(self, pending: _Pending, events: int) -> None:
        sock = pending.conn.socket
        if pending.events == 0:
            self._selector.register(sock, events, pending)
        elif pending.events != events:
            self._selector.modify(sock, events, pending)
        pending.events = events

    def _forget(self, pending: _Pending) -> None:
        sock = pending.conn.socket
        if pending.events:
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass
            pending.events = 0
        if self._pending.get(pending.fd) is pending:
            del self._pending[pending.fd]

    def _drop(self, pending: _Pending) -> None:
        self._forget(pending)
        self._close(pending.conn)

    def _expire(self, now: float) -> None:
        while self._pending:
            oldest = next(iter(self._pending.values()))
            if oldest.deadline > now:
                return
            self.counts.timed_out += 1
            log.info("Client %s:%s dropped: no TLS handshake within %.1f s",
                     oldest.conn.remote_addr, oldest.conn.remote_port,
                     self.limits.handshake_timeout_s)
            self._drop(oldest)

    @staticmethod
    def _close(conn: Any) -> None:
        try:
            conn.close()
        except OSError:
            pass


__all__ = ["ClientLimits", "HandshakeCounts", "Handshaker"]
