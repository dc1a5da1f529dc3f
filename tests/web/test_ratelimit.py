"""Token guesses are rate-limited: per client address and across all of them, refused (429,
`Retry-After`) without comparing the token, logged and counted once per lockout; certificates
and session cookies are never held up; behind the trusted proxy the forwarded client address
counts, from anyone else `X-Forwarded-For` is ignored."""
from __future__ import annotations

import http.client
import logging
import math
import re
import threading
from urllib.parse import urlsplit

import pytest
from flask import Flask

from am.app import create_app
from am.auth import CallerSource
from am.config import ConfigError, Settings, load_settings
from am.metrics import AMMetrics
from am.server import AmServer, ServerOptions
from am.web import make_dashboard
from am.web.login import COOKIE_NAME
from am.web.ratelimit import Attempt, LoginLimiter, Lockout, client_address
from tests.web.populate import TOKEN

pytestmark = pytest.mark.slow

GOOD = {"Authorization": f"Bearer {TOKEN}"}
BAD = {"Authorization": "Bearer not-the-token"}


def _get(client, path="/dashboard/", *, remote="127.0.0.1", headers=None, cert=None):
    environ = {"REMOTE_ADDR": remote}
    if cert:
        environ["SSL_CLIENT_CERT"] = cert
    return client.get(path, headers=headers or {}, environ_base=environ)


def _login(client, token, *, remote="127.0.0.1"):
    return client.post("/dashboard/login", data={"token": token},
                       environ_base={"REMOTE_ADDR": remote})


def _app(populated, *, metrics=None, behind_proxy=False, **changes):
    """The real app factory with changed settings (and a fresh limiter on the real clock)."""
    return create_app(populated.settings.replace(**changes), populated.service,
                      populated.authorizer, metrics=metrics, behind_proxy=behind_proxy,
                      call_log=False)


def _clocked_app(populated, now: list[float], **changes) -> tuple[Flask, AMMetrics]:
    """The dashboard blueprint mounted as `create_app` mounts it, with a limiter on `now[0]`."""
    settings = populated.settings.replace(**changes)
    limiter = LoginLimiter.from_settings(settings, clock=lambda: now[0])
    app = Flask("geni-am")
    app.register_blueprint(make_dashboard(settings, populated.store, populated.site,
                                          populated.authorizer,
                                          CallerSource(settings.trusted_proxies),
                                          limiter=limiter), url_prefix="/dashboard")
    metrics = AMMetrics()
    app.extensions["geni_am"] = {"metrics": metrics}
    return app, metrics


def _lockouts(metrics: AMMetrics, scope: str) -> float:
    return metrics.registry.get_sample_value("geniam_dashboard_lockouts_total",
                                             {"scope": scope}) or 0.0


def _lockout_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", "") == "dashboard_lockout"]


# ---- through the app ----------------------------------------------------------------------

def test_eleventh_bad_token_is_429_and_even_the_right_one_waits_for_the_window(populated,
                                                                               caplog):
    now = [1000.0]
    app, metrics = _clocked_app(populated, now)           # the defaults: 10 per 300 s
    client = app.test_client()
    for _ in range(10):
        assert _get(client, headers=BAD).status_code == 403
    caplog.set_level(logging.WARNING, logger="am.web")
    r = _get(client, headers=BAD)
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "300"
    text = r.get_data(as_text=True)
    assert "too many failed dashboard token attempts from your address" in text
    assert re.search(r'id="retry-at">\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ<', text)
    assert r.headers["Content-Security-Policy"]           # the usual headers on the 429 too

    now[0] += 120
    locked = _get(client, headers=GOOD)                   # the right token: not even compared
    assert locked.status_code == 429 and locked.headers["Retry-After"] == "180"
    form = _login(client, TOKEN)
    assert form.status_code == 429 and "Set-Cookie" not in form.headers
    assert form.headers["Retry-After"] == "180"
    now[0] += 179.5
    assert _get(client, headers=GOOD).headers["Retry-After"] == "1"   # rounded up, never 0
    # logged and counted once for the whole lockout, not per refused attempt
    assert len(_lockout_records(caplog)) == 1
    record = _lockout_records(caplog)[0]
    assert (record.client, record.scope, record.limit) == ("127.0.0.1", "address", 10)
    assert _lockouts(metrics, "address") == 1

    now[0] += 0.5                                         # the window has passed
    assert _get(client, headers=GOOD).status_code == 200
    assert _login(client, TOKEN).status_code == 303
    # the next lockout of the same address is a new one: logged and counted again
    for _ in range(10):
        assert _get(client, headers=BAD).status_code == 403
    assert _get(client, headers=BAD).status_code == 429
    assert len(_lockout_records(caplog)) == 2 and _lockouts(metrics, "address") == 2


def test_bearer_and_form_failures_count_together(populated):
    client = _app(populated, dashboard_login_attempts=3).test_client()
    assert _get(client, headers=BAD).status_code == 403
    assert _login(client, "guess").status_code == 403
    assert _get(client, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 403
    form = _login(client, TOKEN)
    assert form.status_code == 429 and "Set-Cookie" not in form.headers
    assert "too many failed dashboard token attempts" in form.get_data(as_text=True)
    retry = int(form.headers["Retry-After"])
    assert 1 <= retry <= 300
    assert _get(client, headers=GOOD).status_code == 429


def test_successes_do_not_count_and_do_not_reset(populated):
    client = _app(populated, dashboard_login_attempts=3).test_client()
    for _ in range(5):
        assert _get(client, headers=GOOD).status_code == 200
        assert _login(client, TOKEN).status_code == 303
    assert _get(client, headers=BAD).status_code == 403
    assert _get(client, headers=BAD).status_code == 403
    assert _get(client, headers=GOOD).status_code == 200      # un-counted again ...
    assert _get(client, headers=BAD).status_code == 403       # ... but the two failures stay
    assert _get(client, headers=GOOD).status_code == 429


def test_other_addresses_are_unaffected_until_the_global_cap(populated, fx_pem, caplog):
    metrics = AMMetrics()
    client = _app(populated, metrics=metrics, dashboard_login_attempts=2,
                  dashboard_login_global_attempts=5).test_client()
    caplog.set_level(logging.WARNING, logger="am.web")
    for _ in range(2):
        assert _get(client, remote="192.0.2.1", headers=BAD).status_code == 403
    assert _get(client, remote="192.0.2.1", headers=GOOD).status_code == 429
    assert _get(client, remote="192.0.2.2", headers=GOOD).status_code == 200
    for _ in range(2):
        assert _get(client, remote="192.0.2.2", headers=BAD).status_code == 403
    assert _get(client, remote="192.0.2.3", headers=BAD).status_code == 403   # 5 in all
    r = _get(client, remote="192.0.2.4", headers=GOOD, path="/dashboard/slices")
    assert r.status_code == 429
    assert "from all addresses together" in r.get_data(as_text=True)
    assert _login(client, TOKEN, remote="192.0.2.5").status_code == 429
    # certificates are never limited, not even under the global cap
    assert _get(client, remote="192.0.2.4", cert=fx_pem("alice")).status_code == 200
    assert _lockouts(metrics, "address") == 1 and _lockouts(metrics, "global") == 1
    assert [(r.scope, r.client) for r in _lockout_records(caplog)] == [
        ("address", "192.0.2.1"), ("global", "192.0.2.4")]
    # /metrics shows the counter
    scrape = client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert 'geniam_dashboard_lockouts_total{scope="global"} 1.0' in scrape.get_data(as_text=True)


def test_certificate_viewers_are_never_limited_or_counted(populated, fx_pem):
    client = _app(populated, dashboard_login_attempts=1).test_client()
    alice = fx_pem("alice")
    for _ in range(5):   # a certificate viewer who also sends a wrong token: the certificate wins
        assert _get(client, cert=alice, headers=BAD).status_code == 200
    assert _get(client, headers=GOOD).status_code == 200     # nothing was counted
    assert _get(client, headers=BAD).status_code == 403
    assert _get(client, headers=GOOD).status_code == 429
    assert _get(client, cert=alice).status_code == 200       # locked address, certificate: in


def test_session_cookie_still_works_from_a_locked_address(populated):
    client = _app(populated, dashboard_login_attempts=2).test_client()
    login = _login(client, TOKEN)
    assert login.status_code == 303
    cookie = login.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    for _ in range(2):
        assert _get(client, headers=BAD).status_code == 403
    assert _get(client, headers=GOOD).status_code == 429
    holder = client.application.test_client()
    holder.set_cookie(COOKIE_NAME, cookie, path="/dashboard/")
    assert _get(holder).status_code == 200                  # same address, earned session
    holder.set_cookie(COOKIE_NAME, cookie[:-1] + ("0" if cookie[-1] != "0" else "1"),
                      path="/dashboard/")
    assert _get(holder).status_code == 403                  # a forged one is still refused


def test_json_answer_when_asked_for(populated):
    client = _app(populated, dashboard_login_attempts=1).test_client()
    assert _get(client, headers=BAD).status_code == 403
    r = _get(client, headers={**GOOD, "Accept": "application/json"})
    assert r.status_code == 429 and r.is_json
    body = r.get_json()
    assert body["scope"] == "address"
    assert body["retry_after_s"] == int(r.headers["Retry-After"])
    assert "too many failed dashboard token attempts" in body["error"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", body["retry_at"])


def test_disabled_token_login_counts_nothing(populated):
    client = _app(populated, dashboard_token="", dashboard_login_attempts=1).test_client()
    for _ in range(3):
        assert _get(client, headers=BAD).status_code == 403
        assert _login(client, "guess").status_code == 403


def test_untrusted_peers_forwarded_for_is_ignored(populated):
    client = _app(populated, trusted_proxies=("10.0.0.5",),
                  dashboard_login_attempts=2).test_client()
    for n in range(2):
        r = _get(client, remote="10.9.9.9",
                 headers={**BAD, "X-Forwarded-For": f"198.51.100.{n}"})
        assert r.status_code == 403
    r = _get(client, remote="10.9.9.9", headers={**GOOD, "X-Forwarded-For": "198.51.100.77"})
    assert r.status_code == 429
    # the trusted proxy's clients are someone else
    r = _get(client, remote="10.0.0.5", headers={**GOOD, "X-Forwarded-For": "10.9.9.9"})
    assert r.status_code == 429                              # ... unless it names that peer
    r = _get(client, remote="10.0.0.5", headers={**GOOD, "X-Forwarded-For": "198.51.100.1"})
    assert r.status_code == 200


# ---- through the real server behind the trusted proxy ---------------------------------------

@pytest.fixture
def served_behind_proxy(populated):
    """The real cheroot server in plain-HTTP proxy mode; 127.0.0.1 (this test) is the proxy."""
    settings = populated.settings.replace(trusted_proxies=("127.0.0.1",), proxy_mode=True,
                                          dashboard_login_attempts=3,
                                          dashboard_login_global_attempts=50)
    app = create_app(settings, populated.service, populated.authorizer, behind_proxy=True,
                     call_log=False)
    server = AmServer(app, ServerOptions(host="127.0.0.1", port=0, threads=4, tls=False))
    server.start()
    yield urlsplit(server.url)
    server.stop()


def _http_get(url, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("GET", "/dashboard/", headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


def test_forwarded_clients_of_the_trusted_proxy_are_limited_separately(served_behind_proxy):
    url = served_behind_proxy
    one, two = {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "203.0.113.8"}
    for _ in range(3):
        assert _http_get(url, {**BAD, **one})[0] == 403
    status, headers = _http_get(url, {**GOOD, **one})
    assert status == 429 and 1 <= int(headers["retry-after"]) <= 300
    assert _http_get(url, {**GOOD, **two})[0] == 200
    # a client's own X-Forwarded-For entry before the proxy's does not get it a fresh address
    assert _http_get(url, {**GOOD, "X-Forwarded-For": "192.0.2.99, 203.0.113.7"})[0] == 429
    # IPv6 clients are counted per /64
    for n in range(3):
        assert _http_get(url, {**BAD, "X-Forwarded-For": f"2001:db8:1:2::{n + 1}"})[0] == 403
    assert _http_get(url, {**GOOD, "X-Forwarded-For": "2001:db8:1:2:ffff::9"})[0] == 429
    assert _http_get(url, {**GOOD, "X-Forwarded-For": "2001:db8:1:3::1"})[0] == 200


def test_concurrent_guesses_never_exceed_the_limit(served_behind_proxy):
    url = served_behind_proxy
    statuses: list[int] = []
    start = threading.Barrier(12)

    def guess() -> None:
        start.wait()
        statuses.append(_http_get(url, {**BAD, "X-Forwarded-For": "203.0.113.50"})[0])

    threads = [threading.Thread(target=guess) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [403] * 3 + [429] * 9


# ---- the limiter itself (injected clock) ------------------------------------------------------

def _limiter(now: list[float], **kw) -> LoginLimiter:
    return LoginLimiter(**{"per_address": 3, "overall": 100, "window_s": 60.0, **kw},
                        clock=lambda: now[0])


def test_sliding_window_per_address():
    now = [0.0]
    limiter = _limiter(now)
    for t in (0.0, 10.0, 20.0):
        now[0] = t
        assert isinstance(limiter.begin("a"), Attempt)
    now[0] = 30.0
    first = limiter.begin("a")
    assert first == Lockout("a", "address", 30.0, True)
    assert limiter.begin("a").report is False                 # reported once per window
    assert isinstance(limiter.begin("b"), Attempt)            # others are unaffected
    now[0] = 60.0                                             # the failure at 0 has left
    assert isinstance(limiter.begin("a"), Attempt)
    locked = limiter.begin("a")
    assert isinstance(locked, Lockout) and locked.retry_after_s == 10.0
    assert locked.report is False                             # within 60 s of the last report
    now[0] = 90.0                                             # 10 and 20 have left too
    assert isinstance(limiter.begin("a"), Attempt)
    assert isinstance(limiter.begin("a"), Attempt)
    again = limiter.begin("a")                                # a new lockout, 60 s on
    assert again == Lockout("a", "address", 30.0, True)


def test_success_uncounts_only_itself():
    now = [0.0]
    limiter = _limiter(now, overall=4)
    assert isinstance(limiter.begin("a"), Attempt)
    assert isinstance(limiter.begin("a"), Attempt)
    for _ in range(10):
        limiter.succeeded(limiter.begin("a"))                 # type: ignore[arg-type]
    assert isinstance(limiter.begin("a"), Attempt)
    assert limiter.begin("a").scope == "address"
    assert isinstance(limiter.begin("b"), Attempt)            # 4 failures in all
    assert limiter.begin("c").scope == "global"


def test_global_cap_and_its_report():
    now = [0.0]
    limiter = _limiter(now, overall=5)
    for address in "abcde":
        assert isinstance(limiter.begin(address), Attempt)
    now[0] = 5.0
    first, second = limiter.begin("f"), limiter.begin("g")
    assert first == Lockout("f", "global", 55.0, True)
    assert second.scope == "global" and second.report is False
    now[0] = 60.0
    assert isinstance(limiter.begin("f"), Attempt)


def test_memory_is_bounded_and_the_oldest_address_is_forgotten():
    now = [0.0]
    limiter = _limiter(now, per_address=1, max_addresses=3)
    for t, address in enumerate("abcd"):
        now[0] = float(t)
        assert isinstance(limiter.begin(address), Attempt)
    assert limiter.tracked_addresses == 3
    assert isinstance(limiter.begin("a"), Attempt)            # a was evicted: it starts afresh
    assert limiter.tracked_addresses == 3
    assert isinstance(limiter.begin("d"), Lockout)            # d is still tracked and locked
    now[0] = 100.0                                            # everything has left the window
    assert isinstance(limiter.begin("e"), Attempt)
    assert limiter.tracked_addresses == 1


def test_many_threads_one_address():
    limiter = LoginLimiter(per_address=10, overall=1000, window_s=300.0)
    results: list[object] = []
    start = threading.Barrier(16)

    def worker() -> None:
        start.wait()
        for _ in range(10):
            results.append(limiter.begin("203.0.113.1"))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(isinstance(r, Attempt) for r in results) == 10
    assert sum(isinstance(r, Lockout) and r.report for r in results) == 1


@pytest.mark.parametrize("kw", [{"per_address": 0}, {"per_address": True}, {"overall": 2.5},
                                {"window_s": 0}, {"window_s": math.nan}, {"window_s": math.inf},
                                {"window_s": True}, {"max_addresses": -1}])
def test_limiter_refuses_nonsense_limits(kw):
    with pytest.raises(ValueError):
        LoginLimiter(**{"per_address": 3, "overall": 10, "window_s": 60.0, **kw})


@pytest.mark.parametrize("environ, trusted, expected", [
    ({"REMOTE_ADDR": "192.0.2.1"}, (), "192.0.2.1"),
    ({"REMOTE_ADDR": "192.0.2.1", "HTTP_X_FORWARDED_FOR": "198.51.100.1"}, (), "192.0.2.1"),
    ({"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "198.51.100.1"}, ("10.0.0.5",),
     "198.51.100.1"),
    ({"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "1.2.3.4, 198.51.100.1"},
     ("10.0.0.5",), "198.51.100.1"),
    ({"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "<script>"}, ("10.0.0.5",), "10.0.0.5"),
    ({"REMOTE_ADDR": "10.0.0.5"}, ("10.0.0.5",), "10.0.0.5"),
    ({"REMOTE_ADDR": "2001:db8::1"}, (), "2001:db8::/64"),
    ({"REMOTE_ADDR": "::ffff:192.0.2.9"}, (), "192.0.2.9"),
    ({}, (), "unknown"),
])
def test_client_address(environ, trusted, expected):
    assert client_address(environ, trusted) == expected


# ---- settings --------------------------------------------------------------------------------

def test_settings_defaults_and_sources(tmp_path):
    s = Settings()
    assert (s.dashboard_login_attempts, s.dashboard_login_global_attempts,
            s.dashboard_login_window_s) == (10, 100, 300.0)
    cfg = tmp_path / "am.toml"
    cfg.write_text("[am]\ndashboard_login_attempts = 5\ndashboard_login_window_s = 60\n")
    s = load_settings(cfg, env={"GENI_AM_DASHBOARD_LOGIN_GLOBAL_ATTEMPTS": "40"})
    assert (s.dashboard_login_attempts, s.dashboard_login_global_attempts,
            s.dashboard_login_window_s) == (5, 40, 60.0)
    limiter = LoginLimiter.from_settings(s)
    assert (limiter.per_address, limiter.overall, limiter.window_s) == (5, 40, 60.0)


@pytest.mark.parametrize("key, value", [
    ("dashboard_login_attempts", 0),
    ("dashboard_login_attempts", -3),
    ("dashboard_login_attempts", True),        # a boolean is not a count
    ("dashboard_login_attempts", 10.5),        # not cut to 10
    ("dashboard_login_attempts", "ten"),
    ("dashboard_login_attempts", math.inf),
    ("dashboard_login_global_attempts", 0),
    ("dashboard_login_global_attempts", "1e3"),
    ("dashboard_login_window_s", 0),
    ("dashboard_login_window_s", "nan"),
    ("dashboard_login_window_s", "inf"),
    ("dashboard_login_window_s", False),
])
def test_settings_validation(key, value):
    with pytest.raises(ConfigError, match=repr(key)):
        load_settings(env={}, overrides={key: value})


def test_bad_setting_in_the_environment_names_it():
    with pytest.raises(ConfigError, match="dashboard_login_window_s"):
        load_settings(env={"GENI_AM_DASHBOARD_LOGIN_WINDOW_S": "-1"})
