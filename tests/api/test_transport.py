"""The XML-RPC edge: Faults only for malformed XML-RPC, size limit, caller certificate sources."""
from __future__ import annotations

import urllib.parse
import xmlrpc.client

import pytest

from tests.api.conftest import code_of, make_client


def fault_of(response) -> xmlrpc.client.Fault:
    assert response.status_code == 200
    with pytest.raises(xmlrpc.client.Fault) as info:
        xmlrpc.client.loads(response.data)
    return info.value


@pytest.mark.parametrize("body", [
    b"this is not xml",
    b"<methodCall><methodName>GetVersion</methodName><params>",   # truncated
    b"<methodResponse><params/></methodResponse>",                   # wrong document
    b"<methodCall><methodName>GetVersion</methodName><params><param><value><int>x</int>"
    b"</value></param></params></methodCall>",                       # bad int
    b"",
])
def test_malformed_xmlrpc_is_a_fault(api, body):
    fault = fault_of(api.raw(body))
    assert fault.faultCode in (-32700, -32600)


def test_entity_declarations_are_refused(api):
    bomb = (b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "aaaaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            b"<methodCall><methodName>GetVersion</methodName><params><param><value>"
            b"<string>&b;</string></value></param></params></methodCall>")
    fault = fault_of(api.raw(bomb))
    assert fault.faultCode == -32600 and "DOCTYPE" in fault.faultString


def test_unknown_method_is_fault_32601(api):
    fault = fault_of(api.raw(xmlrpc.client.dumps(({},), "CreateSliver").encode()))
    assert fault.faultCode == -32601        # CreateSliver is v2 only
    fault = fault_of(api.raw(xmlrpc.client.dumps((), "system.listMethods").encode()))
    assert fault.faultCode == -32601


def test_body_over_limit_refused_before_parsing(api, base_settings):
    big = b"<" * (base_settings.max_request_bytes + 1)       # would be a parse error if read
    response = api.raw(big)
    assert response.status_code == 413
    # and no Content-Length (chunked): read at most limit + 1 bytes, then refuse
    import io
    environ = {"REMOTE_ADDR": "127.0.0.1", "SSL_CLIENT_CERT": api.cert,
               "wsgi.input": io.BytesIO(big), "wsgi.input_terminated": True}
    response = api.flask_client.post("/", environ_overrides=environ,
                                     headers={"Transfer-Encoding": "chunked"})
    assert response.status_code == 413


def test_no_client_certificate_is_403(api):
    response = api.raw(xmlrpc.client.dumps((), "GetVersion").encode(), cert=None)
    assert response.status_code == 403 and b"certificate" in response.data


def test_untrusted_certificate_reaching_the_app_is_refused(api, fx):
    result = api.call("GetVersion", cert=fx.pem("untrusted-alice"))
    assert code_of(result) == 23 and "refused" in result["output"]


def test_get_method_not_allowed(api):
    assert api.flask_client.get("/").status_code == 405


class TestProxyMode:
    @pytest.fixture
    def proxied(self, base_settings, authorizer, service):
        settings = base_settings.replace(trusted_proxies=("10.0.0.5",))
        return make_client(settings, authorizer, service, None, behind_proxy=True)

    def body(self):
        return xmlrpc.client.dumps((), "GetVersion").encode()

    def test_forwarded_certificate_from_trusted_proxy(self, proxied, fx):
        header = {"X-SSL-Client-Cert": urllib.parse.quote(fx.pem("alice"))}
        response = proxied.raw(self.body(), headers=header, remote="10.0.0.5", cert=None)
        (result,), _ = xmlrpc.client.loads(response.data)
        assert code_of(result) == 0

    def test_header_from_elsewhere_refused(self, proxied, fx):
        header = {"X-SSL-Client-Cert": urllib.parse.quote(fx.pem("alice"))}
        response = proxied.raw(self.body(), headers=header, remote="10.0.0.6", cert=None)
        assert response.status_code == 403

    def test_proxy_mode_ignores_direct_tls(self, proxied, fx):
        response = proxied.raw(self.body(), remote="127.0.0.1", cert=fx.pem("alice"))
        assert response.status_code == 403

    def test_trusted_proxy_without_certificate(self, proxied):
        response = proxied.raw(self.body(), headers={"X-SSL-Client-Cert": ""},
                               remote="10.0.0.5", cert=None)
        assert response.status_code == 403

    def test_direct_mode_refuses_spoofed_header(self, api, fx):
        header = {"X-SSL-Client-Cert": urllib.parse.quote(fx.pem("bob"))}
        response = api.raw(self.body(), headers=header, remote="127.0.0.1")
        assert response.status_code == 403
