"""Who gets into the dashboard: operator certificates (direct TLS or trusted proxy), the token
(Bearer header or login-form cookie); everyone else gets 403 with a reason."""
from __future__ import annotations

import urllib.parse

import pytest

from am.app import create_app
from am.web.dashboard import CSP
from am.web.login import COOKIE_NAME, SESSION_S, DashboardLogin
from tests.web.populate import ALICE_URN, TOKEN

PAGES = ["/dashboard/", "/dashboard/slices", "/dashboard/failures", "/dashboard/audit"]


def _get(client, path="/dashboard/", *, cert=None, remote="127.0.0.1", headers=None):
    environ = {"REMOTE_ADDR": remote}
    if cert:
        environ["SSL_CLIENT_CERT"] = cert
    return client.get(path, headers=headers or {}, environ_base=environ)


def _app(populated, **changes):
    return create_app(populated.settings.replace(**changes), populated.service,
                      populated.authorizer, call_log=False)


@pytest.mark.parametrize("path", PAGES)
def test_no_certificate_no_token_is_403_with_reason(client, path):
    r = _get(client, path)
    assert r.status_code == 403
    text = r.get_data(as_text=True)
    assert "a TLS client certificate is required" in text
    assert "log in with the dashboard token" in text
    assert "slice+demo" not in text
    assert r.headers["Content-Security-Policy"] == CSP


@pytest.mark.parametrize("path", PAGES)
def test_operator_certificate_is_let_in(client, fx_pem, path):
    r = _get(client, path, cert=fx_pem("alice"))
    assert r.status_code == 200, r.data
    assert ALICE_URN in r.get_data(as_text=True)      # shown as the viewer


def test_valid_but_unlisted_certificate_is_403(client, fx_pem):
    r = _get(client, cert=fx_pem("bob"))
    assert r.status_code == 403
    assert "user+bob) is not listed in dashboard_users or operators" in r.get_data(as_text=True)


def test_untrusted_certificate_is_403(client, fx_pem):
    r = _get(client, cert=fx_pem("untrusted-alice"))
    assert r.status_code == 403
    assert "client certificate refused" in r.get_data(as_text=True)


def test_dashboard_users_setting_admits_a_non_operator(populated, fx_pem):
    bob = "urn:publicid:IDN+geni:gpo:gcf+user+bob"
    client = _app(populated, dashboard_users=(bob.upper(),)).test_client()
    assert _get(client, cert=fx_pem("bob")).status_code == 200
    assert _get(client, cert=fx_pem("alice")).status_code == 200   # operators still count


@pytest.mark.parametrize("path", PAGES)
def test_bearer_token_is_let_in(client, bearer, path):
    r = _get(client, path, headers=bearer)
    assert r.status_code == 200
    assert "token holder" in r.get_data(as_text=True)


@pytest.mark.parametrize("value", [f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer ",
                                   f"Basic {TOKEN}", TOKEN, "Bearer \u00e9\u00e9"])
def test_wrong_token_is_403(client, value):
    r = _get(client, headers={"Authorization": value})
    assert r.status_code == 403
    assert "does not carry the dashboard token" in r.get_data(as_text=True)


def test_empty_token_setting_disables_token_login(populated):
    client = _app(populated, dashboard_token="").test_client()
    assert _get(client, headers={"Authorization": "Bearer "}).status_code == 403
    r = _get(client, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 403
    assert "token login is disabled" in _get(client).get_data(as_text=True)
    form = client.post("/dashboard/login", data={"token": TOKEN})
    assert form.status_code == 403 and "disabled" in form.get_data(as_text=True)
    assert "Set-Cookie" not in form.headers


def test_login_form_sets_a_strict_cookie_that_opens_the_pages(client):
    page = client.get("/dashboard/login")
    assert page.status_code == 200 and 'name="token"' in page.get_data(as_text=True)
    r = client.post("/dashboard/login", data={"token": TOKEN})
    assert r.status_code == 303 and r.headers["Location"].endswith("/dashboard/")
    cookie = r.headers["Set-Cookie"]
    attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")}
    assert {"httponly", "secure", "samesite"} <= attrs
    assert "SameSite=Strict" in cookie and "Path=/dashboard/" in cookie
    assert TOKEN not in cookie
    value = cookie.split(";")[0].split("=", 1)[1]

    def with_cookie(v: str):
        fresh = client.application.test_client()   # a jar holding only this value
        fresh.set_cookie(COOKIE_NAME, v, path="/dashboard/")
        return _get(fresh)

    assert _get(client.application.test_client()).status_code == 403
    ok = with_cookie(value)
    assert ok.status_code == 200 and "Log out" in ok.get_data(as_text=True)
    tampered = value[:-1] + ("0" if value[-1] != "0" else "1")
    assert with_cookie(tampered).status_code == 403
    longer = value.replace(".", ".9", 1)   # push the expiry out: the signature no longer fits
    assert with_cookie(longer).status_code == 403


def test_wrong_token_in_the_form_is_refused(client):
    r = client.post("/dashboard/login", data={"token": "guess"})
    assert r.status_code == 403
    assert "not the dashboard token" in r.get_data(as_text=True)
    assert "Set-Cookie" not in r.headers


def test_cross_site_login_post_is_refused(client):
    r = client.post("/dashboard/login", data={"token": TOKEN},
                    headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and "Set-Cookie" not in r.headers


def test_logout_clears_the_cookie(client):
    r = client.post("/dashboard/logout")
    assert r.status_code == 303
    assert f"{COOKIE_NAME}=;" in r.headers["Set-Cookie"]


def test_cookie_expires_and_dies_with_a_token_change(populated):
    now = [1_000_000.0]
    login = DashboardLogin(populated.settings, populated.authorizer, None, clock=lambda: now[0])
    cookie = login.make_cookie()
    assert login.check_cookie(cookie)
    now[0] += SESSION_S + 1
    assert not login.check_cookie(cookie)
    now[0] -= SESSION_S + 1
    other = DashboardLogin(populated.settings.replace(dashboard_token="another-token"),
                           populated.authorizer, None, clock=lambda: now[0])
    assert not other.check_cookie(cookie)
    for junk in ("", "v1", "v1..", "v2.1.x", "v1.abc.def", "v1.99999999999.zz"):
        assert not login.check_cookie(junk)


def test_proxy_forwarded_operator_certificate(populated, fx_pem):
    client = create_app(populated.settings.replace(trusted_proxies=("10.0.0.5",)),
                        populated.service, populated.authorizer, behind_proxy=True,
                        call_log=False).test_client()
    header = {"X-SSL-Client-Cert": urllib.parse.quote(fx_pem("alice"))}
    assert _get(client, headers=header, remote="10.0.0.5").status_code == 200
    # the same header from anyone else is not believed
    r = _get(client, headers=header, remote="10.9.9.9")
    assert r.status_code == 403 and "trusted proxy" in r.get_data(as_text=True)
    # the token still works in proxy mode without a certificate
    assert _get(client, headers={"Authorization": f"Bearer {TOKEN}"},
                remote="10.0.0.5").status_code == 200


def test_pages_are_read_only(client, bearer):
    for path in PAGES:
        assert client.post(path, headers=bearer).status_code == 405
        assert client.delete(path, headers=bearer).status_code == 405


def test_security_headers_on_every_page(client, bearer):
    for path in [*PAGES, "/dashboard/login", "/dashboard/static/dashboard.css"]:
        r = _get(client, path, headers=bearer)
        assert r.status_code == 200, path
        assert r.headers["Content-Security-Policy"] == CSP
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["X-Frame-Options"] == "DENY"
