"""XML-RPC over HTTPS with a client certificate, and errors translated into what to fix.

`http.client` directly (not `ServerProxy`) so the client owns the timeout, connection reuse and
the mapping of every failure: a TLS alert from the AM means it refused our certificate, a
verification error means we do not trust its certificate, HTTP 503/504 means busy.
"""
from __future__ import annotations

import http.client
import socket
import ssl
import threading
import urllib.parse
import xml.parsers.expat
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from am.client.errors import AMBusy, ClientConfigError, ClientTLSError, ClientTransportError

# TLS alerts by which a server says it does not accept the client's certificate.
_REFUSED_ALERTS = ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_REQUIRED",
                   "CERTIFICATE_UNKNOWN", "CERTIFICATE_EXPIRED", "CERTIFICATE_REVOKED",
                   "UNSUPPORTED_CERTIFICATE", "DECRYPT_ERROR", "ACCESS_DENIED")
MAX_RESPONSE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class TLSFiles:
    cert: str
    key: str
    ca: str | None = None


def _pem_certificates(path: Path) -> str:
    """The PEM certificates of a file, or of every .pem/.crt/.cer in a directory."""
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".pem", ".crt", ".cer")) \
        if path.is_dir() else [path]
    texts = []
    for file in files:
        try:
            text = file.read_text(encoding="ascii", errors="replace")
        except OSError as exc:
            raise ClientConfigError(f"cannot read CA file {file}: {exc.strerror}") from None
        if "-----BEGIN CERTIFICATE-----" in text:
            texts.append(text.strip())
    if not texts:
        raise ClientConfigError(f"--ca {path} holds no PEM certificate: give the file (or a "
                                "directory of files) with the CA that signed the AM's certificate")
    return "\n".join(texts) + "\n"


def _check_readable(what: str, flag: str, path: str) -> Path:
    if not path:
        raise ClientConfigError(f"no {what} given: pass {flag} FILE (or an omni_config with it)")
    file = Path(path).expanduser()
    if not file.is_file():
        raise ClientConfigError(f"{what} file {file} does not exist ({flag})")
    try:
        file.read_bytes()
    except OSError as exc:
        raise ClientConfigError(f"cannot read {what} file {file}: {exc.strerror}") from None
    return file


def _check_pair(cert: Path, key: Path, password: str | None) -> None:
    """Load the key (passphrase?) and compare it with the certificate, for precise messages
    where OpenSSL would only say "PEM lib"."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    except ValueError as exc:
        raise ClientConfigError(f"certificate file {cert} is not a valid PEM certificate "
                                f"({exc})") from None
    try:
        private = serialization.load_pem_private_key(
            key.read_bytes(), password.encode("utf-8") if password is not None else None)
    except TypeError:
        if password is None:
            raise ClientConfigError(f"key {key} is encrypted: give its passphrase "
                                    "(--key-password-file FILE) or use a decrypted copy") from None
        raise ClientConfigError(f"key {key} is not encrypted: drop the passphrase") from None
    except ValueError as exc:
        reason = str(exc).lower()
        if password is not None and ("password" in reason or "decrypt" in reason):
            raise ClientConfigError(f"wrong passphrase for key {key}") from None
        raise ClientConfigError(f"key file {key} is not a usable private key ({exc})") from None
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if private.public_key().public_bytes(*fmt) != leaf.public_key().public_bytes(*fmt):
        raise ClientConfigError(f"key {key} does not match certificate {cert}: pass the key "
                                "that belongs to this certificate (the first certificate in "
                                "the file)")


def client_context(files: TLSFiles, *, key_password: str | None = None,
                   check_hostname: bool = False) -> ssl.SSLContext:
    """An SSLContext presenting the user's certificate chain and trusting `files.ca` (or the
    system store when no CA is given). Host names are not checked by default: GENI AM
    certificates name the AM by URN, and the chain check is what authenticates it."""
    cert = _check_readable("certificate", "--cert", files.cert)
    key = _check_readable("private key", "--key", files.key)
    if "-----BEGIN CERTIFICATE-----" not in cert.read_text(encoding="ascii", errors="replace"):
        raise ClientConfigError(f"certificate file {cert} holds no PEM certificate (--cert)")
    if "PRIVATE KEY-----" not in key.read_text(encoding="ascii", errors="replace"):
        raise ClientConfigError(f"key file {key} holds no PEM private key (--key)")
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = check_hostname
    if files.ca:
        ca = Path(files.ca).expanduser()
        if not ca.exists():
            raise ClientConfigError(f"CA file {ca} does not exist (--ca)")
        try:
            ctx.load_verify_locations(cadata=_pem_certificates(ca))
        except ssl.SSLError as exc:
            raise ClientConfigError(f"--ca {ca}: not a usable PEM certificate ({exc.reason})") \
                from None

    _check_pair(cert, key, key_password)
    try:
        ctx.load_cert_chain(str(cert), str(key), password=key_password)
    except ssl.SSLError as exc:
        raise ClientConfigError(f"cannot load certificate {cert} with key {key}: "
                                f"{exc.reason or exc}") from None
    return ctx


class Connection:
    """One keep-alive HTTPS connection to an AM URL; `call()` is thread-safe (serialized)."""

    def __init__(self, url: str, context: ssl.SSLContext, *, timeout: float = 60.0,
                 files: TLSFiles | None = None):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("https", "http") or not parsed.hostname:
            raise ClientConfigError(f"AM URL {url!r} is not an https://host:port/path URL (--url)")
        self.url = url
        self.scheme = parsed.scheme
        self.host = parsed.hostname
        try:
            self.port = parsed.port or (443 if parsed.scheme == "https" else 80)
        except ValueError:
            raise ClientConfigError(f"AM URL {url!r} has a bad port (--url)") from None
        self.path = parsed.path or "/"
        if parsed.query:
            self.path += "?" + parsed.query
        self.context = context
        self.timeout = timeout
        self.files = files
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.scheme == "https":
                self._conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                                         context=self.context)
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def call(self, method: str, params: tuple[Any, ...]) -> Any:
        """POST one methodCall and return the decoded answer (the GENI struct)."""
        body = xmlrpc.client.dumps(params, method, allow_none=False).encode("utf-8")
        with self._lock:
            for attempt in (1, 2):   # a kept-alive connection the server closed: retry once
                try:
                    status, reason, data = self._post(body)
                    break
                except (http.client.RemoteDisconnected, BrokenPipeError,
                        ConnectionResetError) as exc:
                    stale = self._reused and attempt == 1   # server closed an idle connection
                    self._drop()
                    if not stale:
                        raise self._translate(exc) from None
                except Exception as exc:
                    self._drop()
                    raise self._translate(exc) from None
        if status in (503, 504):
            raise AMBusy(-32001, f"HTTP {status} {reason}", method=method)
        if status != 200:
            detail = data[:300].decode("utf-8", "replace").strip()
            hint = {403: "the AM refused this client (certificate not accepted at the "
                         "application level, or a proxy misconfiguration)",
                    404: f"{self.path} is not an AM API endpoint on this server (--url)",
                    405: f"{self.path} is not an AM API endpoint on this server (--url)",
                    413: "the request is larger than the AM accepts"}.get(status, "")
            raise ClientTransportError(
                f"{method}: HTTP {status} {reason} from {self.url}"
                + (f": {hint}" if hint else "") + (f" ({detail})" if detail else ""))
        try:
            (result,), _ = xmlrpc.client.loads(data, use_builtin_types=False)
        except xmlrpc.client.Fault as fault:
            raise ClientTransportError(
                f"{method}: the AM rejected the call as malformed XML-RPC "
                f"(fault {fault.faultCode}: {fault.faultString})") from None
        except (xml.parsers.expat.ExpatError, ValueError, xmlrpc.client.ResponseError):
            raise ClientTransportError(f"{method}: the answer from {self.url} is not XML-RPC: "
                                       "is --url an AM API endpoint?") from None
        return result

    _reused = False

    def _post(self, body: bytes) -> tuple[int, str, bytes]:
        self._reused = self._conn is not None
        conn = self._connection()
        conn.request("POST", self.path, body=body,
                     headers={"Content-Type": "text/xml", "User-Agent": "geni-am-client"})
        response = conn.getresponse()
        data = response.read(MAX_RESPONSE_BYTES + 1)
        if len(data) > MAX_RESPONSE_BYTES:
            raise ClientTransportError(f"answer from {self.url} larger than "
                                       f"{MAX_RESPONSE_BYTES} bytes")
        if response.will_close:
            self._drop()
        return response.status, response.reason, data

    def _translate(self, exc: BaseException) -> Exception:
        where = f"{self.host}:{self.port}"
        ca = self.files.ca if self.files else None
        cert = self.files.cert if self.files else "your certificate"
        if isinstance(exc, ssl.SSLCertVerificationError):
            why = exc.verify_message or exc.reason or str(exc)
            if "hostname" in str(why).lower() or "IP address mismatch" in str(why):
                return ClientTLSError(f"the AM's certificate does not name {self.host} ({why})")
            where_ca = f"a CA in --ca {ca}" if ca else \
                "a CA in the system trust store (pass the AM's CA with --ca FILE)"
            return ClientTLSError(f"the AM's certificate is not signed by {where_ca} ({why})")
        if isinstance(exc, ssl.SSLError):
            reason = (exc.reason or str(exc)).upper()
            if any(alert in reason for alert in _REFUSED_ALERTS):
                return ClientTLSError(
                    f"the AM at {where} refused your certificate {cert} ({exc.reason}): is it "
                    "signed by a trust root the AM knows, and still valid?")
            if isinstance(exc, ssl.SSLEOFError):
                return ClientTLSError(
                    f"the AM at {where} closed the connection during the TLS handshake: it "
                    f"probably refused your certificate {cert}; is it signed by a trust root "
                    "the AM knows?")
            if "WRONG_VERSION_NUMBER" in reason or "HTTP_REQUEST" in reason:
                return ClientTLSError(f"{where} does not speak TLS: use http:// only for a "
                                      "plain-HTTP backend, or check the port (--url)")
            return ClientTLSError(f"TLS with {where} failed: {exc.reason or exc}")
        if isinstance(exc, (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)):
            return ClientTLSError(
                f"the AM at {where} dropped the connection: it probably refused your "
                f"certificate {cert} (is it signed by a trust root the AM knows?)")
        if isinstance(exc, ConnectionRefusedError):
            return ClientTransportError(f"nothing listens at {where} (connection refused): is "
                                        "the AM running, and is --url right?")
        if isinstance(exc, socket.gaierror):
            return ClientTransportError(f"cannot resolve host {self.host!r} (--url)")
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return ClientTransportError(f"no answer from {where} within {self.timeout:g} s "
                                        "(--timeout)")
        if isinstance(exc, ClientTransportError):
            return exc
        if isinstance(exc, OSError):
            return ClientTransportError(f"cannot reach {where}: {exc.strerror or exc}")
        if isinstance(exc, http.client.HTTPException):
            return ClientTransportError(f"bad HTTP answer from {where}: {type(exc).__name__}")
        return ClientTransportError(f"call to {where} failed: {type(exc).__name__}: {exc}")
