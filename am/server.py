"""Serving the WSGI app: cheroot (a production, thread-pooled WSGI server), with TLS that
requires a client certificate chaining to the trust roots, or plain HTTP behind nginx.

cheroot's builtin SSL adapter puts the verified peer certificate into every request's environ
as `SSL_CLIENT_CERT` (PEM) when the context's verify_mode is not CERT_NONE (checked in
cheroot/ssl/builtin.py `get_environ`); `am.auth.CallerSource` reads it from there.

cheroot performs the TLS handshake inside `wrap()`, on its one accept/select thread: handshakes
are serialised, every kept-alive connection waits while one runs, and a client that connects
and stays silent stalls the whole server for the socket timeout. `DeferredHandshakeAdapter` and
`TLSConnection` move the handshake to the worker thread that serves the connection (the same
full handshake, certificate checks and environ; only the thread changes).
"""
from __future__ import annotations

import io
import logging
import os
import signal
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cheroot import errors as cheroot_errors
from cheroot import server as cheroot_server
from cheroot import wsgi
from cheroot.makefile import StreamWriter
from cheroot.ssl.builtin import BuiltinSSLAdapter

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
    """An HTTP connection that completes its TLS handshake (and so learns the verified client
    certificate for the WSGI environ) before reading its first request."""

    handshake_done = False

    def communicate(self) -> bool:
        if not self.handshake_done:
            adapter = self.server.ssl_adapter
            if isinstance(adapter, DeferredHandshakeAdapter):
                if not self._handshake(adapter):
                    return False
            self.handshake_done = True
        return super().communicate()

    def _handshake(self, adapter: DeferredHandshakeAdapter) -> bool:
        peer = f"{self.remote_addr}:{self.remote_port}"
        try:
            self.socket.do_handshake()
        except ssl.SSLError as exc:
            if exc.errno == ssl.SSL_ERROR_SSL and "http request" in str(exc).lower():
                self._refuse_plain_http(peer)
            else:
                self.server.error_log(f"Client {peer} lost during the TLS handshake: {exc}",
                                      level=logging.INFO)
            return False
        except OSError as exc:   # reset, timeout: the client went away
            self.server.error_log(f"Client {peer} lost during the TLS handshake: {exc}",
                                  level=logging.INFO)
            return False
        self.ssl_env = adapter.get_environ(self.socket)
        return True

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


class AmServer:
    """A cheroot server running `app`; `start()` returns once it listens."""

    def __init__(self, app: Callable, options: ServerOptions):
        self.options = options
        self.server = wsgi.Server((options.host, options.port), app,
                                  numthreads=options.threads,
                                  max=-1, request_queue_size=128,
                                  shutdown_timeout=options.shutdown_timeout,
                                  server_name="geni-am")
        # cheroot also refuses oversized bodies itself (HTTP 413) before the app sees them.
        self.server.max_request_body_size = options.max_request_bytes + 1024
        if options.tls:
            self.server.ssl_adapter = tls_adapter(options.cert, options.key, options.trust_roots)
            self.server.ConnectionClass = TLSConnection
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server.bind_addr[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.options.tls else "http"
        return f"{scheme}://{self.options.host}:{self.port}/"

    def start(self) -> None:
        self.server.prepare()
        self._thread = threading.Thread(target=self.server.serve, name="geni-am-http",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.stop()
        if self._thread is not None:
            self._thread.join(self.options.shutdown_timeout + 1)

    def serve_until_signalled(self, on_ready: Callable[[], None] | None = None) -> None:
        """Run in the foreground until SIGTERM or SIGINT, then finish in-flight requests."""
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set())
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            if on_ready:
                on_ready()
            while not stop.wait(0.5):
                pass
            log.info("signal received: stopping")
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
