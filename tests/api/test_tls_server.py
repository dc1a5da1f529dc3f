"""The real cheroot TLS server on an ephemeral loopback port, with real client certificates."""
from __future__ import annotations

import ssl
import http.client
import xmlrpc.client

import pytest

from am.app import create_app
from am.server import AmServer, ServerConfigError, ServerOptions
from tests.api.conftest import RSPEC_V, SLICE, REQUEST, code_of, tls_server
from tests.api.doubles import FakeService
from tests.api.tlsclient import client_context, proxy, raw_post


@pytest.fixture(scope="module")
def server(base_settings, authorizer, gcf_fixtures, trust_dir):
    with tls_server(base_settings, authorizer, FakeService(), gcf_fixtures, trust_dir) as srv:
        yield srv


def ctx(fx_dir, who=None):
    ca = str(fx_dir / "ca-cert.pem")
    if who is None:
        return client_context(ca)
    return client_context(ca, str(fx_dir / f"{who}-cert.pem"), str(fx_dir / f"{who}-key.pem"))


def test_get_version_over_tls(server, gcf_fixtures):
    am = proxy(server.url, ctx(gcf_fixtures, "alice"))
    result = am.GetVersion()
    assert code_of(result) == 0 and result["value"]["geni_api"] == 3


def test_life_cycle_over_tls_with_kept_connection(server, gcf_fixtures, fx):
    am = proxy(server.url, ctx(gcf_fixtures, "alice"))
    cred = [fx.cred("slice-cred-alice")]
    assert code_of(am.ListResources([fx.cred("alice-user-cred")],
                                    {"geni_rspec_version": RSPEC_V})) == 0
    assert code_of(am.Allocate(SLICE, cred, REQUEST, {})) == 0
    assert code_of(am.Provision([SLICE], cred, {"geni_rspec_version": RSPEC_V})) == 0
    assert code_of(am.Delete([SLICE], cred, {})) == 0


def test_no_client_certificate_fails_handshake(server, gcf_fixtures):
    am = proxy(server.url, ctx(gcf_fixtures))
    with pytest.raises((ssl.SSLError, ConnectionError, xmlrpc.client.ProtocolError, OSError)):
        am.GetVersion()


def test_untrusted_client_certificate_fails_handshake(server, gcf_fixtures):
    am = proxy(server.url, ctx(gcf_fixtures, "untrusted-alice"))
    with pytest.raises((ssl.SSLError, ConnectionError, xmlrpc.client.ProtocolError, OSError)):
        am.GetVersion()


def test_malformed_and_oversized_over_tls(server, gcf_fixtures, base_settings):
    status, body = raw_post("127.0.0.1", server.port, ctx(gcf_fixtures, "alice"), b"<bad")
    assert status == 200
    with pytest.raises(xmlrpc.client.Fault):
        xmlrpc.client.loads(body)
    # Announce an oversized body but send only the headers: the AM answers 413 on the
    # Content-Length alone, before reading (a client still streaming the body would race the
    # server's close and see an EOF instead of the answer).
    conn = http.client.HTTPSConnection("127.0.0.1", server.port,
                                       context=ctx(gcf_fixtures, "alice"), timeout=10)
    try:
        conn.putrequest("POST", "/")
        conn.putheader("Content-Type", "text/xml")
        conn.putheader("Content-Length", str(base_settings.max_request_bytes + 10))
        conn.endheaders()
        assert conn.getresponse().status == 413
    finally:
        conn.close()


def test_missing_files_are_config_errors(authorizer, base_settings, trust_dir, tmp_path):
    app = create_app(base_settings, FakeService(), authorizer)
    with pytest.raises(ServerConfigError):
        AmServer(app, ServerOptions(port=0, cert=str(tmp_path / "none.pem"),
                                    key=str(tmp_path / "none.key"), trust_roots=str(trust_dir)))
