"""Who may see the dashboard: an operator's client certificate, or the configured token.

Two ways in, checked in this order on every request:
  * a client certificate (direct TLS peer certificate, or a trusted proxy's forwarded one:
    the same `CallerSource` the API uses), verified against the trust roots by the
    `Authorizer`, whose URN is in `settings.dashboard_users` or `settings.operators`;
  * the token `settings.dashboard_token` (empty = token login disabled), presented as
    `Authorization: Bearer <token>` or through the login form, which sets a session cookie.

Every token presented (any `Authorization` header, every login-form post) goes through the
`LoginLimiter` (am/web/ratelimit.py) first: once a client address, or all of them together,
has failed too often, the token is not even compared and the caller gets a `Lockout`.
Certificates are never limited. A valid session cookie still opens the pages during a lockout:
checking it says nothing about the token, and it keeps logged-in operators working while a
guesser is held off.

The cookie holds only an expiry time and an HMAC over it, keyed by a key derived from the
token: changing the token ends every session, and nothing secret is ever stored client-side.
Comparisons are constant-time (`hmac.compare_digest`).
"""
from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from am.auth import CallerSource, IdentityRefused
from am.config import Settings
from am.errors import GeniError
from am.web.ratelimit import Lockout, LoginLimiter, client_address

COOKIE_NAME = "geni_am_dashboard"
SESSION_S = 8 * 3600
_COOKIE_VERSION = "v1"


@dataclass(frozen=True)
class Viewer:
    """Who is looking: `how` is "certificate" or "token"; `urn` is set for certificates."""

    how: str
    urn: str = ""

    @property
    def label(self) -> str:
        return self.urn if self.how == "certificate" else "token holder"


@dataclass(frozen=True)
class Refusal:
    """Why the caller is not let in (shown to them in plain words)."""

    reason: str


class DashboardLogin:
    """Decides, per request environ, whether the caller may see the dashboard."""

    def __init__(self, settings: Settings, authorizer: Any, caller_source: CallerSource | None,
                 *, clock=time.time, limiter: LoginLimiter | None = None):
        self.token = settings.dashboard_token
        self.users = frozenset(u.strip().lower()
                               for u in (*settings.dashboard_users, *settings.operators) if u)
        self.authorizer = authorizer
        self.caller_source = caller_source
        self.clock = clock
        self.limiter = limiter or LoginLimiter.from_settings(settings)
        self._trusted_proxies = caller_source.trusted_proxies if caller_source else frozenset()
        self._key = (hashlib.sha256(b"geni-am dashboard session\0" + self.token.encode()).digest()
                     if self.token else b"")

    @property
    def token_enabled(self) -> bool:
        return bool(self.token)

    # ---- the decision -----------------------------------------------------------------------
    def viewer(self, environ: Mapping[str, Any],
               cookies: Mapping[str, str]) -> Viewer | Refusal | Lockout:
        cert_problem = ""
        try:
            pem = self.caller_source.caller_pem(environ)
        except IdentityRefused as exc:
            pem, cert_problem = None, str(exc)
        if pem is not None:
            try:
                urn = self.authorizer.identify(pem).urn
            except GeniError as exc:
                cert_problem = exc.message
            else:
                if urn.lower() in self.users:
                    return Viewer("certificate", urn)
                cert_problem = (f"your certificate ({urn}) is not listed in dashboard_users "
                                "or operators")
        auth = str(environ.get("HTTP_AUTHORIZATION", ""))
        if auth:
            scheme, _, value = auth.partition(" ")
            presented = value.strip() if scheme.lower() == "bearer" else ""
            result = self.try_token(environ, presented)
            if isinstance(result, Lockout):
                return result
            if result:
                return Viewer("token")
            return Refusal("the Authorization header does not carry the dashboard token")
        if self.check_cookie(cookies.get(COOKIE_NAME, "")):
            return Viewer("token")
        hint = ("log in with the dashboard token" if self.token_enabled
                else "token login is disabled (no dashboard_token configured)")
        return Refusal(f"{cert_problem or 'no client certificate'}; {hint}")

    # ---- token and cookie -------------------------------------------------------------------
    def try_token(self, environ: Mapping[str, Any], presented: str) -> bool | Lockout:
        """Whether `presented` is the token, under the limiter: a `Lockout` means it was not
        compared at all. A wrong (or empty) token counts as a failure of the client address;
        with token login disabled nothing is counted, there is nothing to guess."""
        if not self.token_enabled:
            return False
        attempt = self.limiter.begin(client_address(environ, self._trusted_proxies))
        if isinstance(attempt, Lockout):
            return attempt
        if self._is_token(presented):
            self.limiter.succeeded(attempt)
            return True
        return False

    def _is_token(self, presented: str) -> bool:
        """The bare comparison; callers go through `try_token`, which limits it."""
        if not self.token_enabled or not presented:
            return False
        return hmac.compare_digest(presented.encode("utf-8", "replace"), self.token.encode())

    def make_cookie(self) -> str:
        """A session cookie value valid for SESSION_S (only when token login is enabled)."""
        if not self.token_enabled:
            raise ValueError("token login is disabled")
        expires = str(int(self.clock()) + SESSION_S)
        return f"{_COOKIE_VERSION}.{expires}.{self._sign(expires)}"

    def check_cookie(self, value: str) -> bool:
        if not self.token_enabled or not value:
            return False
        parts = value.split(".")
        if len(parts) != 3 or parts[0] != _COOKIE_VERSION or not parts[1].isdigit():
            return False
        if not hmac.compare_digest(parts[2].encode("ascii", "replace"),
                                   self._sign(parts[1]).encode()):
            return False
        return int(parts[1]) > self.clock()

    def _sign(self, expires: str) -> str:
        return hmac.new(self._key, f"{_COOKIE_VERSION}.{expires}".encode(),
                        hashlib.sha256).hexdigest()


__all__ = ["COOKIE_NAME", "DashboardLogin", "Lockout", "Refusal", "SESSION_S", "Viewer"]
