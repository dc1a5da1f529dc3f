"""Who is calling, and may they do this: TLS identity + credentials -> `Principal`.

Two ways a caller's certificate reaches the application:
  * direct TLS (`geni-am serve`): the WSGI server puts the verified peer certificate in the
    environ as `SSL_CLIENT_CERT` (PEM);
  * behind a proxy (nginx): the proxy verifies the client and forwards the certificate,
    URL-encoded, in the `X-SSL-Client-Cert` header. That header is believed only from the
    addresses in `settings.trusted_proxies`; from anyone else it is refused outright.
Either way the application checks the certificate again against the trust roots (chain,
validity, authority namespace rule, and the CRLs of the trust-store CAs), so a lax TLS layer
cannot let a stranger in.

Revocation is checked here, not in the TLS handshake: OpenSSL's CRL check
(`VERIFY_CRL_CHECK_LEAF/_CHAIN`) fails every client whose issuer publishes no CRL, and the ssl
context cannot reload CRLs without a restart. `TrustStore.refresh()` re-reads changed CRL files
(at most every `crl_refresh_s`) before the identity cache is consulted, and the cache key
carries the trust fingerprint (roots + CRLs), so a revoked caller is refused on the next call
after the reload even if its certificate was accepted a moment before.

Credentials are checked by `credentials.verify.CredentialVerifier`; its `CredentialError`s carry
the GENI code (3 FORBIDDEN, 20-23) that the API returns with the reason.
"""
from __future__ import annotations

import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from am.config import ConfigError, Settings
from am.errors import GeniCode, GeniError
from am.service.contract import Principal

PROXY_CERT_HEADER = "X-SSL-Client-Cert"
_PROXY_CERT_ENVIRON = "HTTP_" + PROXY_CERT_HEADER.upper().replace("-", "_")


class IdentityRefused(Exception):
    """No acceptable client certificate reached the application (answered with HTTP 403,
    before the body is parsed: this is a transport failure, like a refused TLS handshake)."""


class CallerSource:
    """Where the caller's certificate comes from in a WSGI environ."""

    def __init__(self, trusted_proxies: Sequence[str] = (), *, require_proxy: bool = False):
        self.trusted_proxies = frozenset(trusted_proxies)
        self.require_proxy = require_proxy

    def caller_pem(self, environ: Mapping[str, Any]) -> str:
        remote = str(environ.get("REMOTE_ADDR", ""))
        forwarded = environ.get(_PROXY_CERT_ENVIRON)
        from_proxy = remote in self.trusted_proxies
        if forwarded is not None:
            if not from_proxy:
                raise IdentityRefused(
                    f"{PROXY_CERT_HEADER} is accepted only from a trusted proxy, not {remote}")
            pem = urllib.parse.unquote(str(forwarded)).strip()
            if "-----BEGIN CERTIFICATE-----" not in pem:
                raise IdentityRefused("the proxy forwarded no client certificate")
            return pem
        if self.require_proxy:
            raise IdentityRefused("requests must come through the trusted proxy "
                                  "with the client certificate")
        if from_proxy:
            raise IdentityRefused("the proxy forwarded no client certificate")
        pem = environ.get("SSL_CLIENT_CERT")
        if not pem:
            raise IdentityRefused("a TLS client certificate is required")
        return str(pem)


class Verifier(Protocol):
    """The part of `credentials.verify.CredentialVerifier` this module uses."""

    def authorize(self, caller_chain_pem: str, credentials: list, *, target_urn: str | None,
                  operations: Sequence[str], speaking_for: str | None = None) -> Any: ...


@dataclass(frozen=True)
class CallerIdentity:
    urn: str
    not_after: datetime


class Authorizer:
    """Turns (certificate, credentials, method, target) into a Principal, or a GeniError."""

    IDENTITY_CACHE_SIZE = 4096

    def __init__(self, settings: Settings, trust: Any, verifier: Verifier,
                 method_operations: Mapping[str, Sequence[str]]):
        self.settings = settings
        self.trust = trust
        self.verifier = verifier
        self.method_operations = method_operations
        self.operators = frozenset(u.lower() for u in settings.operators)
        self._identities: OrderedDict[tuple[str, str], CallerIdentity] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, trust_roots: str | None = None, *,
                      clock: Callable[[], float] | None = None) -> "Authorizer":
        """The production wiring: trust roots directory (+ CRLs of `crl_dir`, default the same
        directory) -> TrustStore -> CredentialVerifier. `clock`: the monotonic clock the CRL
        refresh interval is measured with (tests pass a fake one)."""
        from credentials.cache import VerificationCache
        from credentials.certs import TrustStore
        from credentials.errors import CredentialError
        from credentials.privileges import METHOD_OPERATIONS
        from credentials.verify import CredentialVerifier

        directory = trust_roots or settings.trust_roots
        if not directory:
            raise GeniError(GeniCode.SERVERERROR, "no trust roots configured (trust_roots)")
        crl_dir = settings.crl_dir or None
        if crl_dir is not None and not Path(crl_dir).is_dir():
            raise ConfigError(f"setting 'crl_dir': CRL directory {crl_dir} does not exist")
        try:
            trust = TrustStore.from_directory(directory, crl_dir=crl_dir,
                                              crl_refresh_s=settings.crl_refresh_s,
                                              clock=clock or time.monotonic)
        except CredentialError as exc:
            raise GeniError(GeniCode.SERVERERROR, f"trust roots: {exc}") from None
        verifier = CredentialVerifier(trust, cache=VerificationCache())
        return cls(settings, trust, verifier, METHOD_OPERATIONS)

    # -- identity ---------------------------------------------------------------------------
    def identify(self, caller_pem: str) -> CallerIdentity:
        """Validate the caller certificate against the trust roots and their CRLs (cached per
        certificate and trust fingerprint until it expires): a TLS layer that let a stranger,
        or a revoked user, through is caught here."""
        now = datetime.now(timezone.utc)
        self.trust.refresh()   # re-read changed CRLs first: the fingerprint in the key moves
        key = (self.trust.fingerprint, caller_pem)
        with self._lock:
            known = self._identities.get(key)
            if known is not None and known.not_after > now:
                self._identities.move_to_end(key)
                return known
        from credentials.certs import load_pem_chain
        from credentials.errors import CredentialError
        try:
            identity = self.trust.verify_chain(load_pem_chain(caller_pem), now)
        except CredentialError as exc:
            raise GeniError(exc.geni_code, f"client certificate refused: {exc}") from None
        not_after = min(_not_after(c) for c in identity.chain)
        result = CallerIdentity(urn=identity.urn, not_after=not_after)
        with self._lock:
            self._identities[key] = result
            while len(self._identities) > self.IDENTITY_CACHE_SIZE:
                self._identities.popitem(last=False)
        return result

    def is_operator(self, urn: str) -> bool:
        return urn.lower() in self.operators

    # -- authorization ----------------------------------------------------------------------
    def authorize(self, method: str, caller_pem: str, credentials: list, *,
                  target_urn: str | None, speaking_for: str | None = None) -> Principal:
        """Check the credentials for `method` on `target_urn` and build the Principal.

        Every presented credential set is verified even where no privilege is needed
        (ListResources): an unparseable or untrusted credential is refused, never ignored
        into success. Shutdown needs the `shutdown` privilege, or a caller listed in
        `settings.operators` (whose credentials must still verify, without a target)."""
        from credentials.errors import CredentialError

        caller = self.identify(caller_pem)
        operations = tuple(self.method_operations.get(method, ()))
        if method == "Shutdown" and self.is_operator(caller.urn) and not speaking_for:
            target_urn, operations = None, ()
        try:
            authorization = self.verifier.authorize(
                caller_pem, credentials, target_urn=target_urn, operations=operations,
                speaking_for=speaking_for)
        except CredentialError as exc:
            raise GeniError(exc.geni_code, str(exc)) from None
        if not getattr(authorization, "accepted", ()):
            raise GeniError(GeniCode.FORBIDDEN,
                            f"{method} needs a valid credential (none was presented)")
        urn = authorization.caller.urn
        tool = authorization.tool.urn if authorization.tool is not None else None
        return Principal(urn=urn, cert_pem=caller_pem, tool_urn=tool,
                         credential_expires=authorization.expires,
                         is_operator=self.is_operator(urn))


def _not_after(cert: Any) -> datetime:
    value = getattr(cert, "not_valid_after_utc", None)
    if value is None:
        value = cert.not_valid_after.replace(tzinfo=timezone.utc)
    return value
