"""Slow and idle clients cannot starve request handling in direct-TLS mode: handshakes run on a
front thread, bounded in time and in connections per client address (am/handshakes.py)."""
from __future__ import annotations

import socket
import ssl
import xmlrpc.client

import pytest

from am.handshakes import ClientLimits
from tests.api.conftest import code_of, tls_server
from tests.api.doubles import FakeService
from tests.api.tlsclient import client_context
from tests.support import wait_until

#: Client-side bound on one call. Shorter than the server's idle socket timeout (10 s): on a
#: server whose request threads wait on silent handshakes, the call cannot come back in time.
CALL_TIMEOUT_S = 8.0


class _TimeoutTransport(xmlrpc.client.SafeTransport):
    def make_connection(self, host):
        conn = super().make_connection(host)
        conn.timeout = CALL_TIMEOUT_S
        return conn


def _alice(fx_dir) -> ssl.SSLContext:
    return client_context(str(fx_dir / "ca-cert.pem"), str(fx_dir / "alice-cert.pem"),
                          str(fx_dir / "alice-key.pem"))


def _get_version(server, fx_dir) -> dict:
    am = xmlrpc.client.ServerProxy(server.url, transport=_TimeoutTransport(context=_alice(fx_dir)))
    return am.GetVersion()


def _wait(condition, timeout: float = 10.0) -> bool:
    return bool(wait_until(condition, "the handshaker's counts", timeout, 0.02))


def _closed_by_server(sock: socket.socket, timeout: float = 10.0) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@pytest.fixture(scope="module")
def server(base_settings, authorizer, gcf_fixtures, trust_dir):
    with tls_server(base_settings, authorizer, FakeService(), gcf_fixtures, trust_dir) as srv:
        yield srv


def test_get_version_answers_under_64_idle_connections(server, gcf_fixtures):
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(64)]
    try:
        # a partial ClientHello on a few of them: a client that starts and stalls
        for s in idle[:8]:
            s.sendall(b"\x16\x03\x01\x02\x00\x01")
        assert _wait(lambda: server.handshaker.pending > 0)
        for _ in range(3):   # 4 request threads: more calls than threads, and they all answer
            assert code_of(_get_version(server, gcf_fixtures)) == 0
        assert server.handshaker.pending >= 56   # still held open, yet the calls went through
    finally:
        for s in idle:
            s.close()


def test_silent_handshake_is_dropped_after_the_timeout(base_settings, authorizer, gcf_fixtures,
                                                       trust_dir):
    limits = ClientLimits(handshake_timeout_s=0.3)
    with tls_server(base_settings, authorizer, FakeService(), gcf_fixtures, trust_dir,
                    limits=limits) as srv:
        with socket.create_connection(("127.0.0.1", srv.port)) as silent:
            assert _closed_by_server(silent)
        assert _wait(lambda: srv.handshaker.counts.timed_out == 1)
        assert _wait(lambda: srv.handshaker.open_connections("127.0.0.1") == 0)
        assert code_of(_get_version(srv, gcf_fixtures)) == 0


def test_over_the_bound_a_new_connection_evicts_the_oldest_handshake(
        base_settings, authorizer, gcf_fixtures, trust_dir):
    limits = ClientLimits(max_connections_per_client=4, evict_after_s=0)
    with tls_server(base_settings, authorizer, FakeService(), gcf_fixtures, trust_dir,
                    limits=limits) as srv:
        silent = []
        try:
            for _ in range(4):
                silent.append(socket.create_connection(("127.0.0.1", srv.port)))
                assert _wait(lambda n=len(silent): srv.handshaker.pending == n)
            assert code_of(_get_version(srv, gcf_fixtures)) == 0
            assert _closed_by_server(silent[0])
            assert srv.handshaker.counts.evicted == 1 and srv.handshaker.counts.refused == 0
            assert srv.handshaker.open_connections("127.0.0.1") <= 4
        finally:
            for s in silent:
                s.close()


def test_connections_per_client_are_bounded(base_settings, authorizer, gcf_fixtures, trust_dir):
    """Two finished TLS sessions kept alive use up a bound of 2: a third connection is refused
    (nothing of that client's is handshaking, so nothing can be evicted); once one closes, the
    client is served again."""
    limits = ClientLimits(max_connections_per_client=2)
    with tls_server(base_settings, authorizer, FakeService(), gcf_fixtures, trust_dir,
                    limits=limits) as srv:
        ctx = _alice(gcf_fixtures)
        kept = [ctx.wrap_socket(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
                for _ in range(2)]
        try:
            assert _wait(lambda: srv.handshaker.counts.completed == 2)
            with socket.create_connection(("127.0.0.1", srv.port)) as third:
                assert _closed_by_server(third)
            assert srv.handshaker.counts.refused == 1
        finally:
            kept[0].close()
        assert _wait(lambda: srv.handshaker.open_connections("127.0.0.1") == 1)
        try:
            assert code_of(_get_version(srv, gcf_fixtures)) == 0
        finally:
            kept[1].close()
