"""Serving the WSGI app: cheroot (a production, thread-pooled WSGI server), with TLS that
requires a client certificate chaining to the trust roots, or plain HTTP behind nginx.

cheroot's builtin SSL adapter puts the verified peer certificate into every request's environ
as `SSL_CLIENT_CERT` (PEM) when the context's verify_mode is not CERT_NONE (checked in
cheroot/ssl/builtin.py `get_environ`); `am.auth.CallerSource` reads it from there.

cheroot would perform the TLS handshake inside `wrap()`, on its one accept/select thread, or
(deferred) on the request thread that serves the connection; either way a client that connects
and stays silent stalls requests for the socket timeout. `DeferredHandshakeAdapter` only
attaches TLS to the accepted socket, and `am.handshakes.Handshaker` completes every handshake on
a front thread with non-blocking sockets, bounded in time and in connections per client address;
only finished sessions reach the request threads (the same full handshake, certificate checks
and environ as cheroot's own).
"""
from __future__ import annotations

import io
import logging
import os
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cheroot import errors as cheroot_errors
from cheroot import server as cheroot_server
from cheroot import wsgi
from cheroot.makefile import StreamWriter
from cheroot.ssl.builtin import BuiltinSSLAdapter

from am.handshakes import ClientLimits, Handshaker

log = logging.getLogger("am.server")

PEM_SUFFIXES = (".pem", ".crt", ".cer")


class ServerConfigError(ValueError):
    """The server cannot start with these files (missing certificate, no trust roots...)."""


def trust_roots_pem(directory: str | Path) -> str:
    """All PEM trust roots of a directory, concatenated (the TLS layer's CA file)."""
    path = Path(directory)
    if not path.is_dir():
        raise ServerConfigError(f"trust-roots directory {path} does not exist")
    texts = [p.read_text(encoding="ascii", errors="replace") for p in sorted(path.iterdir())
             if p.is_file() and p.suffix.lower() in PEM_SUFFIXES]
    pem = "\n".join(t.strip() for t in texts if "-----BEGIN CERTIFICATE-----" in t)
    if not pem:
        raise ServerConfigError(f"no PEM certificates in trust-roots directory {path}")
    return pem + "\n"


class DeferredHandshakeAdapter(BuiltinSSLAdapter):
    """cheroot's builtin adapter, but `wrap` only attaches TLS to the accepted socket; the
    handshake runs in `TLSConnection.communicate` on a worker thread."""

    def wrap(self, sock):
        try:
            tls = self.context.wrap_socket(sock, do_handshake_on_connect=False, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            raise cheroot_errors.FatalSSLAlert(*exc.args) from exc
        return tls, {}

    def makefile(self, sock, mode="r", bufsize=io.DEFAULT_BUFFER_SIZE):
        if "r" in mode:
            return super().makefile(sock, mode, bufsize)
        return SendallWriter(sock, mode, bufsize)

    def get_environ(self, sock):
        """cheroot's environ, without SSL_SESSION_ID: reading `SSLSocket.session` costs as much
        as the rest of the environ together, once per connection, and nothing here reads it
        (the application uses SSL_CLIENT_CERT)."""
        return super().get_environ(_WithoutSession(sock))


class SendallWriter(StreamWriter):
    """cheroot's socket writer sends every write at once anyway (write = buffer + flush), but
    its flush copies the whole remaining buffer for each 16 KB TLS record it manages to send:
    quadratic in the response size (a 260 KB advertisement was copied ~17 times). This hands
    the data to `sendall`, which loops over a memoryview without copying."""

    def write(self, b, *args, **kwargs) -> int:
        self._checkClosed()
        if isinstance(b, str):
            raise TypeError("can't write str to binary stream")
        with self._write_lock:
            if self._write_buf:   # never the case with cheroot's own writes; keep the order
                self._flush_unlocked()
            self.raw._sock.sendall(b)
        self.bytes_written += len(b)
        return len(b)


class _WithoutSession:
    """A TLS socket as `get_environ` sees it, minus `session` (cheroot skips a missing one)."""

    def __init__(self, sock: ssl.SSLSocket):
        self._sock = sock

    def __getattr__(self, name: str):
        if name == "session":
            raise AttributeError(name)
        return getattr(self._sock, name)


PLAIN_HTTP_REFUSAL = ("The client sent a plain HTTP request, but this server only speaks "
                      "HTTPS on this port.")


class TLSConnection(cheroot_server.HTTPConnection):
    """An HTTP connection whose TLS handshake the front thread completes (setting `ssl_env`
    with the verified client certificate) before it reaches a request thread; one that spoke
    plain HTTP instead gets cheroot's plain-text 400 from the request thread."""

    handshake_done = False
    plain_http = False
    counted_by: Handshaker | None = None

    def communicate(self) -> bool:
        if self.plain_http:
            self._refuse_plain_http(f"{self.remote_addr}:{self.remote_port}")
            return False
        if not self.handshake_done:   # never reached: _Server routes these to the handshaker
            return False
        return super().communicate()

    def close(self) -> None:
        counted, self.counted_by = self.counted_by, None
        try:
            super().close()
        finally:
            if counted is not None:
                counted.released(self)

    def _refuse_plain_http(self, peer: str) -> None:
        """What cheroot answers a plain-HTTP client on a TLS port: a 400 in plain text."""
        self.server.error_log(f"Client {peer} spoke plain HTTP to the TLS port",
                              level=logging.INFO)
        body = PLAIN_HTTP_REFUSAL.encode("ascii")
        head = (f"{self.server.protocol} 400 Bad Request\r\nContent-Length: {len(body)}\r\n"
                "Content-Type: text/plain\r\n\r\n").encode("ascii")
        try:   # the TLS layer never came up: write below it, on the same TCP connection
            plain = socket.socket(fileno=os.dup(self.socket.fileno()))
            try:
                plain.sendall(head + body)
                plain.shutdown(socket.SHUT_WR)
                plain.settimeout(0.5)   # drain the request: closing on unread data sends a
                while plain.recv(65536):   # reset that can destroy the answer in flight
                    pass
            finally:
                plain.close()
        except OSError:
            pass


def tls_adapter(cert: str, key: str, trust_roots: str | Path) -> BuiltinSSLAdapter:
    """cheroot's builtin adapter with CERT_REQUIRED against all trust roots (handshakes on
    the worker threads, see DeferredHandshakeAdapter)."""
    for what, file in (("certificate", cert), ("key", key)):
        if not file or not Path(file).is_file():
            raise ServerConfigError(f"AM {what} file {file!r} does not exist")
    try:
        adapter = DeferredHandshakeAdapter(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ServerConfigError(f"cannot load the AM certificate/key: {exc}") from None
    context = adapter.context
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_verify_locations(cadata=trust_roots_pem(trust_roots))
    except ssl.SSLError as exc:
        raise ServerConfigError(f"cannot load trust roots: {exc}") from None
    context.verify_mode = ssl.CERT_REQUIRED
    adapter.context = context
    return adapter


class _Server(wsgi.Server):
    """cheroot's WSGI server, passing new TLS connections to the handshake thread first."""

    handshaker: Handshaker | None = None

    def process_conn(self, conn) -> None:
        if self.handshaker is not None and not (conn.handshake_done or conn.plain_http):
            self.handshaker.admit(conn)
        else:
            super().process_conn(conn)


@dataclass
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 5001
    threads: int = 16
    tls: bool = True
    cert: str = ""
    key: str = ""
    trust_roots: str = ""
    max_request_bytes: int = 4 * 1024 * 1024
    shutdown_timeout: float = 5.0
    idle_timeout_s: float = 10.0   # socket timeout: idle kept-alive connection, stalled read/write
    limits: ClientLimits = field(default_factory=ClientLimits)


class AmServer:
    """A cheroot server running `app`; `start()` returns once it listens."""

    def __init__(self, app: Callable, options: ServerOptions):
        self.options = options
        self.server = _Server((options.host, options.port), app,
                                  numthreads=options.threads,
                                  max=-1, request_queue_size=128,
                                  shutdown_timeout=options.shutdown_timeout,
                                  server_name="geni-am", timeout=options.idle_timeout_s)
        # cheroot also refuses oversized bodies itself (HTTP 413) before the app sees them.
        self.server.max_request_body_size = options.max_request_bytes + 1024
        if options.tls:
            self.server.ssl_adapter = tls_adapter(options.cert, options.key, options.trust_roots)
            self.server.ConnectionClass = TLSConnection
        self._thread: threading.Thread | None = None

    @property
    def handshaker(self) -> Handshaker | None:
        return self.server.handshaker

    @property
    def port(self) -> int:
        return int(self.server.bind_addr[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.options.tls else "http"
        return f"{scheme}://{self.options.host}:{self.port}/"

    def start(self) -> None:
        self.server.prepare()
        if self.options.tls:
            adapter = self.server.ssl_adapter
            self.server.handshaker = Handshaker(
                self.options.limits, socket_timeout=self.server.timeout,
                environ=adapter.get_environ,
                ready=self.server.put_conn,
                plain_http=lambda conn: setattr(conn, "plain_http", True) or
                self.server.process_conn(conn))
            self.server.handshaker.start()
        self._thread = threading.Thread(target=self.server.serve, name="geni-am-http",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.stop()
        if self.server.handshaker is not None:
            self.server.handshaker.stop()
        if self._thread is not None:
            self._thread.join(self.options.shutdown_timeout + 1)

    def serve_until_signalled(self, on_ready: Callable[[], None] | None = None) -> None:
        """Run in the foreground until SIGTERM or SIGINT, then finish in-flight requests.

        The handler only appends to a list: it runs in the main thread between any two
        bytecodes, so taking a lock there (threading.Event.set does) deadlocks when the main
        thread was holding that lock, e.g. inside Event.wait, or a second signal arrives while
        the first handler holds it. A serve stopped by `timeout` plus a kill hung so."""
        received: list[int] = []
        previous = {sig: signal.signal(sig, lambda signum, _frame: received.append(signum))
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            if on_ready:
                on_ready()
            while not received:
                time.sleep(0.2)
            log.info("signal received: stopping")
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
