"""TLS handshakes run on the worker threads: a silent or plain-HTTP client cannot stall others."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from am.server import PLAIN_HTTP_REFUSAL
from tests.api.conftest import RSPEC_V, code_of, tls_server
from tests.api.doubles import FakeService
from tests.api.tlsclient import client_context, proxy
from tests.support import wait_until

pytestmark = pytest.mark.slow


# about 1.3 MB, with non-ASCII text and characters that need escaping
BIG_AD = ('<rspec type="advertisement">'
          + "".join(f'<node component_name="n{i}" note="a&amp;b &lt; c é ✓"/>\n' for i in range(20000))
          + "</rspec>")


class BigAdService(FakeService):
    def advertisement(self, options):
        return BIG_AD


@pytest.fixture
def server(base_settings, authorizer, gcf_fixtures, trust_dir):
    with tls_server(base_settings, authorizer, BigAdService(), gcf_fixtures, trust_dir) as srv:
        yield srv


def _alice(fx_dir):
    return client_context(str(fx_dir / "ca-cert.pem"), str(fx_dir / "alice-cert.pem"),
                          str(fx_dir / "alice-key.pem"))


def test_silent_clients_do_not_stall_a_kept_connection_or_new_ones(server, gcf_fixtures):
    kept = proxy(server.url, _alice(gcf_fixtures))
    assert code_of(kept.GetVersion()) == 0
    silent = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]
    try:
        # the server has accepted them and is waiting for their ClientHello
        wait_until(lambda: server.handshaker.pending == 2, "the silent connections accepted", 10)
        started = time.monotonic()
        assert code_of(kept.GetVersion()) == 0
        assert code_of(proxy(server.url, _alice(gcf_fixtures)).GetVersion()) == 0
        # with the handshake on the accept thread, these waited for the silent sockets to
        # time out (the server's 10 s socket timeout)
        assert time.monotonic() - started < 3.0
    finally:
        for s in silent:
            s.close()


def test_concurrent_new_connections_all_complete(server, gcf_fixtures):
    codes: list[int] = []

    def call() -> None:
        codes.append(code_of(proxy(server.url, _alice(gcf_fixtures)).GetVersion()))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert codes == [0] * 8


def test_plain_http_on_the_tls_port_gets_a_plain_400(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert data.endswith(PLAIN_HTTP_REFUSAL.encode())


def test_a_large_answer_arrives_intact_on_new_and_kept_connections(server, gcf_fixtures, fx):
    kept = proxy(server.url, _alice(gcf_fixtures))
    for am in (kept, kept, proxy(server.url, _alice(gcf_fixtures))):
        result = am.ListResources([fx.cred("alice-user-cred")], {"geni_rspec_version": RSPEC_V})
        assert code_of(result) == 0
        assert result["value"] == BIG_AD
