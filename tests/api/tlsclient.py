"""An XML-RPC client over TLS with a client certificate (tests and bench)."""
from __future__ import annotations

import http.client
import ssl
import xmlrpc.client


def client_context(ca: str, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False           # gcf's AM certificate names a URN, not a host
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


class KeepAliveTransport(xmlrpc.client.SafeTransport):
    """SafeTransport reuses its connection already; this one can also be told not to."""

    def __init__(self, context: ssl.SSLContext, keep_alive: bool = True):
        super().__init__(context=context)
        self.keep_alive = keep_alive

    def make_connection(self, host):
        if not self.keep_alive:
            self._connection = (None, None)
        return super().make_connection(host)


def proxy(url: str, context: ssl.SSLContext, keep_alive: bool = True) -> xmlrpc.client.ServerProxy:
    return xmlrpc.client.ServerProxy(url, transport=KeepAliveTransport(context, keep_alive))


def raw_post(host: str, port: int, context: ssl.SSLContext, body: bytes,
             path: str = "/") -> tuple[int, bytes]:
    conn = http.client.HTTPSConnection(host, port, context=context, timeout=10)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "text/xml"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()
