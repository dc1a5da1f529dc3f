"""The operator dashboard: a read-only Flask blueprint over the store (mounted at /dashboard).

Server-rendered HTML (Jinja, autoescaped: everything from the database is untrusted text), one
CSS file, no JavaScript and nothing loaded from outside the AM; a strict Content-Security-Policy
says so to the browser. The only non-GET routes are the login and logout forms, which set or
clear the session cookie and change nothing in the AM. Token guesses are rate-limited
(am/web/ratelimit.py): a locked-out client gets 429 with `Retry-After`.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from flask import (Blueprint, Response, abort, current_app, g, jsonify, redirect,
                   render_template, request, url_for)
from markupsafe import Markup
from sqlalchemy.exc import SQLAlchemyError

from am.auth import CallerSource
from am.config import Settings
from am.web.login import COOKIE_NAME, SESSION_S, DashboardLogin, Refusal
from am.web.queries import DashboardQueries
from am.web.ratelimit import Lockout, LoginLimiter
from am.web.topology import LEGEND, TopologyError, format_capacity, manifest_to_svg, state_colour

log = logging.getLogger("am.web")

CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",   # "no-referrer" would make form posts send Origin: null
    "Cache-Control": "no-store",
}
PUBLIC_ENDPOINTS = frozenset({"dashboard.login", "dashboard.login_form", "dashboard.logout",
                              "dashboard.static"})
MAX_TOKEN_CHARS = 4096


def make_dashboard(settings: Settings, store: Any, site: Any, authorizer: Any,
                   caller_source: CallerSource, *, clock=None,
                   limiter: LoginLimiter | None = None) -> Blueprint:
    """The dashboard blueprint over `store` and `site`; register it with
    `url_prefix="/dashboard"`. `authorizer.identify(pem)` validates client certificates.
    `limiter`: the token-guess limiter (default: from the settings, on the monotonic clock).
    Lockouts are counted in the app's `AMMetrics`, found at request time where `create_app`
    puts it (`app.extensions["geni_am"]["metrics"]`), when there is one."""
    bp = Blueprint("dashboard", __name__, template_folder="templates",
                   static_folder="static", static_url_path="/static")
    gate = DashboardLogin(settings, authorizer, caller_source, limiter=limiter)
    queries = DashboardQueries(store, site, clock=clock)

    @bp.before_request
    def _check_viewer() -> Response | None:
        if request.method not in ("GET", "HEAD") and request.endpoint not in PUBLIC_ENDPOINTS:
            return _plain(405, "the dashboard is read-only")
        if request.endpoint in PUBLIC_ENDPOINTS:
            return None
        who = gate.viewer(request.environ, request.cookies)
        if isinstance(who, Lockout):
            return _locked_out(who, gate)
        if isinstance(who, Refusal):
            return _forbidden(who.reason, gate.token_enabled)
        g.viewer = who
        return None

    @bp.after_request
    def _headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @bp.errorhandler(SQLAlchemyError)
    def _database_error(exc: SQLAlchemyError) -> Response:
        log.warning("dashboard: database error: %s", exc)
        return _plain(503, f"the database is unavailable ({type(exc).__name__}); retry shortly")

    @bp.context_processor
    def _helpers() -> dict[str, Any]:
        return {"fmt_time": fmt_time, "fmt_left": fmt_left, "state_class": state_class,
                "fmt_amount": fmt_amount, "viewer": g.get("viewer"),
                "token_login": gate.token_enabled}

    # ---- pages ------------------------------------------------------------------------------
    @bp.get("/")
    def overview() -> str:
        return render_template("dashboard/overview.html", page="overview",
                               o=queries.overview(), hosts=_hosts())

    def _hosts() -> list:
        """The site's hosts and their heartbeats (a site of many hosts; else empty)."""
        if not getattr(site, "hosts", None):
            return []
        from am.store.hosts import HostRepository
        repo = HostRepository(store, down_after_s=settings.host_down_after_s)
        return list(repo.views(sorted(site.hosts)).values())

    @bp.get("/slices")
    def slices() -> str:
        return render_template("dashboard/slices.html", page="slices", slices=queries.slices())

    @bp.get("/slices/<int:slice_id>")
    def slice_detail(slice_id: int) -> str:
        detail = queries.slice_detail(slice_id)
        if detail is None:
            abort(404)
        svg, problem = _topology(slice_id, detail.slice.urn)
        return render_template("dashboard/slice.html", page="slices", d=detail,
                               svg=Markup(svg) if svg else None, problem=problem,
                               legend=[(name, c.value) for name, c in LEGEND])

    @bp.get("/slices/<int:slice_id>/topology.svg")
    def topology_svg(slice_id: int) -> Response:
        detail = queries.slice_detail(slice_id)
        if detail is None:
            abort(404)
        svg, problem = _topology(slice_id, detail.slice.urn)
        if svg is None:
            return _plain(500, f"no picture: {problem}")
        return Response('<?xml version="1.0" encoding="UTF-8"?>\n' + svg,
                        mimetype="image/svg+xml")

    @bp.get("/failures")
    def failures() -> str:
        slivers, jobs = queries.failures()
        return render_template("dashboard/failures.html", page="failures", slivers=slivers,
                               jobs=jobs)

    @bp.get("/audit")
    def audit() -> Response | str:
        raw = request.args.get("page", "1")
        if not raw.isdigit() or int(raw) < 1 or len(raw) > 9:
            return _plain(400, f"page must be a whole number from 1, not {raw[:40]!r}")
        return render_template("dashboard/audit.html", page="audit",
                               a=queries.audit_page(int(raw)))

    # ---- login ------------------------------------------------------------------------------
    @bp.get("/login")
    def login_form() -> str:
        return render_template("dashboard/login.html", page="login", message="")

    @bp.post("/login")
    def login() -> Response | tuple[str, int]:
        if not _same_origin():
            return _plain(403, "cross-site login refused")
        if not gate.token_enabled:
            return render_template("dashboard/login.html", page="login",
                                   message="token login is disabled at this AM"), 403
        token = request.form.get("token", "")[:MAX_TOKEN_CHARS]
        result = gate.try_token(request.environ, token)
        if isinstance(result, Lockout):
            return _locked_out(result, gate)
        if not result:
            return render_template("dashboard/login.html", page="login",
                                   message="that is not the dashboard token"), 403
        response = redirect(url_for("dashboard.overview"), code=303)
        response.set_cookie(COOKIE_NAME, gate.make_cookie(), max_age=SESSION_S,
                            path=url_for("dashboard.overview"), secure=True, httponly=True,
                            samesite="Strict")
        return response

    @bp.post("/logout")
    def logout() -> Response:
        if not _same_origin():
            return _plain(403, "cross-site logout refused")
        response = redirect(url_for("dashboard.login_form"), code=303)
        response.delete_cookie(COOKIE_NAME, path=url_for("dashboard.overview"), secure=True,
                               httponly=True, samesite="Strict")
        return response

    def _topology(slice_id: int, slice_urn: str) -> tuple[str | None, str]:
        from am.service.manifests import manifest_for
        rows = queries.live_sliver_records(slice_id)
        try:
            manifest = manifest_for(rows, am_urn=settings.am_urn)
            return manifest_to_svg(manifest, title=f"topology of {slice_urn}"), ""
        except (TopologyError, ValueError) as exc:
            log.warning("dashboard: no topology for slice %d: %s", slice_id, exc)
            return None, str(exc)

    return bp


# ---- helpers -----------------------------------------------------------------------------------

def _plain(status: int, text: str) -> Response:
    response = Response(text + "\n", status=status, mimetype="text/plain")
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


def _forbidden(reason: str, token_login: bool) -> Response:
    body = render_template("dashboard/forbidden.html", page="forbidden", reason=reason,
                           token_login=token_login, viewer=None)
    return Response(body, status=403, mimetype="text/html")


def _locked_out(lockout: Lockout, gate: DashboardLogin) -> Response:
    """429 for a locked-out token attempt: `Retry-After`, and a page (or JSON, when the client
    asks for it) saying when to come back. The first refusal of a lockout is logged and
    counted; the ones after it within the window are not."""
    window = gate.limiter.window_s
    if lockout.report:
        limit = (gate.limiter.per_address if lockout.scope == "address"
                 else gate.limiter.overall)
        whose = (f"from {lockout.address}" if lockout.scope == "address"
                 else f"from all clients together (refusing {lockout.address} first)")
        log.warning("dashboard: token login locked: %d failed attempts %s within %g s; "
                    "refusing for %.0f s", limit, whose, window, lockout.retry_after_s,
                    extra={"event": "dashboard_lockout", "scope": lockout.scope,
                           "client": lockout.address, "limit": limit, "window_s": window,
                           "retry_after_s": round(lockout.retry_after_s, 3)})
        metrics = current_app.extensions.get("geni_am", {}).get("metrics")
        if metrics is not None:
            metrics.dashboard_lockouts.labels(lockout.scope).inc()
    seconds = int(lockout.retry_after_header)
    retry_at = fmt_time(datetime.now(timezone.utc) + timedelta(seconds=seconds))
    who = "your address" if lockout.scope == "address" else "all addresses together"
    reason = (f"too many failed dashboard token attempts from {who}; the token is not checked "
              f"until {retry_at} (in {seconds} s)")
    if request.accept_mimetypes.best_match(("text/html", "application/json")) \
            == "application/json":
        response = jsonify(error=reason, scope=lockout.scope, retry_after_s=seconds,
                           retry_at=retry_at)
        response.status_code = 429
    else:
        body = render_template("dashboard/locked.html", page="locked", reason=reason,
                               retry_at=retry_at, seconds=seconds, viewer=None)
        response = Response(body, status=429, mimetype="text/html")
    response.headers["Retry-After"] = lockout.retry_after_header
    return response


def _same_origin() -> bool:
    """A form post must come from this site: Origin (or Referer) absent or naming our host."""
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if origin is None:
        return True     # non-browser clients send neither
    return urlsplit(origin).netloc == request.host


def fmt_time(when: datetime | None) -> str:
    if when is None:
        return "\u2014"
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def fmt_left(when: datetime | None, now: datetime | None = None) -> str:
    """"in 2h 5m" / "3m ago": how far an expiry is from now."""
    if when is None:
        return ""
    now = now or datetime.now(timezone.utc)
    seconds = int((when - now).total_seconds())
    span = abs(seconds)
    days, rest = divmod(span, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    text = (f"{days}d {hours}h" if days else f"{hours}h {minutes}m" if hours
            else f"{minutes}m" if minutes else f"{span}s")
    return f"in {text}" if seconds >= 0 else f"{text} ago"


def state_class(operational: str | None) -> str:
    """CSS class for a state badge: the same families (and colours) as the picture."""
    return "state-" + state_colour(operational).name.lower()


def fmt_amount(resource: str, value: float) -> str:
    if resource.startswith("kbps"):
        return format_capacity(int(value)) or "0"
    if resource == "cpu_milli":
        return f"{value / 1000:g} cores"
    if resource.startswith("memory_mb"):
        return f"{value / 1024:.1f} GiB" if value >= 1024 else f"{value:.0f} MiB"
    return f"{value:g}"


__all__ = ["CSP", "make_dashboard", "fmt_left", "fmt_time"]
