"""Serving the WSGI app: cheroot (a production, thread-pooled WSGI server), with TLS that
requires a client certificate chaining to the trust roots, or plain HTTP behind nginx.

cheroot's builtin SSL adapter puts the verified peer certificate into every request's environ
as `SSL_CLIENT_CERT` (PEM) when the context's verify_mode is not CERT_NONE (checked in
cheroot/ssl/builtin.py `get_environ`); `am.auth.CallerSource` reads it from there.
"""
from __future__ import annotations

import logging
import signal
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cheroot import wsgi
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


def tls_adapter(cert: str, key: str, trust_roots: str | Path) -> BuiltinSSLAdapter:
    """cheroot's builtin adapter with CERT_REQUIRED against all trust roots."""
    for what, file in (("certificate", cert), ("key", key)):
        if not file or not Path(file).is_file():
            raise ServerConfigError(f"AM {what} file {file!r} does not exist")
    try:
        adapter = BuiltinSSLAdapter(cert, key)
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
