"""http(s) installs never reach the AM's own or internal services (SSRF), whatever the URL's
host name resolves to, unless the operator allows a network (install_allow_networks)."""
from __future__ import annotations

import http.server
import io
import socket
import threading

import pytest

from drivers.base import DriverError
from drivers.vserver import fetch
from drivers.vserver.services import install_url_problem

LOOP = fetch.parse_networks(["127.0.0.1/32"])


class _Handler(http.server.BaseHTTPRequestHandler):
    redirect_to: str | None = None

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path == "/redirect" and self.redirect_to:
            self.send_response(302)
            self.send_header("Location", self.redirect_to)
            self.end_headers()
            return
        body = f"payload for {self.headers['Host']}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("url, reason", [
    ("http://127.0.0.1:8000/x.tgz", "loopback"),
    ("http://localhost:8000/x.tgz", "loopback"),                 # a name, resolved
    ("http://169.254.169.254/latest/meta-data/", "link-local"),  # cloud metadata
    ("http://10.1.2.3/x.tgz", "private"),
    ("https://192.168.1.1/x.tgz", "private"),
    ("http://100.64.0.1/x.tgz", "shared"),
    ("http://[::1]:6379/", "loopback"),
    ("http://[::ffff:127.0.0.1]:5432/", "loopback"),
    ("http://0.0.0.0:6379/", "unspecified"),
])
def test_internal_addresses_are_refused_naming_the_url(url, reason):
    problem = install_url_problem(url)
    assert problem is not None and repr(url) in problem and reason in problem, problem


def test_the_hosts_own_addresses_are_refused():
    own = fetch.host_addresses()
    assert any(not a.is_loopback for a in own), "this host has an address besides loopback"
    for addr in own:
        url = f"http://{addr}:8080/x" if addr.version == 4 else f"http://[{addr}]:8080/x"
        problem = install_url_problem(url)
        assert problem is not None and repr(url) in problem, url
    # a public address is refused once it is the host's own
    public = next(iter(fetch.parse_networks(["93.184.215.14/32"])))[0]
    assert fetch.why_internal(public, own | {public}) == "an address of the AM's own host"


def test_an_operator_allowed_network_and_public_addresses_pass():
    assert install_url_problem("http://127.0.0.1:8000/x.tgz", None, ["127.0.0.0/8"]) is None
    assert install_url_problem("http://93.184.215.14/x.tgz") is None   # public: no lookup
    with pytest.raises(ValueError, match="not an IP network"):
        fetch.parse_networks(["loopback"])


def test_fetch_connects_to_the_address_it_checked(server, monkeypatch):
    """A name that resolves to an allowed address first and to another one later (DNS
    rebinding) is fetched from the first: resolved once, connected to by address."""
    real = socket.getaddrinfo
    answers = iter(["127.0.0.1"] + ["127.0.0.2"] * 10)
    lookups = []

    def fake(host, *args, **kw):
        if host == "mirror.test":
            lookups.append(host)
            return real(next(answers), *args, **kw)
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    out = io.BytesIO()
    fetch.fetch(f"http://mirror.test:{server}/x.tgz", out, allow=LOOP, max_bytes=1 << 20,
                timeout_s=10)
    assert out.getvalue() == f"payload for mirror.test:{server}".encode()
    assert lookups == ["mirror.test"]
    # the next lookup answers 127.0.0.2, outside the allowed network: refused, nothing fetched
    out = io.BytesIO()
    with pytest.raises(fetch.InstallRefused, match="mirror.test.*127.0.0.2, loopback"):
        fetch.fetch(f"http://mirror.test:{server}/x.tgz", out, allow=LOOP, max_bytes=1 << 20,
                    timeout_s=10)
    assert out.getvalue() == b""


def test_a_redirect_to_an_internal_address_is_refused(server, monkeypatch):
    monkeypatch.setattr(_Handler, "redirect_to", f"http://127.0.0.2:{server}/x")
    with pytest.raises(fetch.InstallRefused, match=r"'http://127.0.0.2:\d+/x'.*loopback"):
        fetch.fetch(f"http://127.0.0.1:{server}/redirect", io.BytesIO(), allow=LOOP,
                    max_bytes=1 << 20, timeout_s=10)
    monkeypatch.setattr(_Handler, "redirect_to", f"http://127.0.0.1:{server}/y")
    out = io.BytesIO()
    fetch.fetch(f"http://127.0.0.1:{server}/redirect", out, allow=LOOP, max_bytes=1 << 20,
                timeout_s=10)
    assert out.getvalue().startswith(b"payload")
    with pytest.raises(DriverError, match="more than the 0 MiB"):
        fetch.fetch(f"http://127.0.0.1:{server}/z", io.BytesIO(), allow=LOOP, max_bytes=4,
                    timeout_s=10)
