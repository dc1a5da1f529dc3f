"""The proxy mode for real: nginx (configured from docs/nginx/geni-am.conf, paths and ports
substituted) terminates TLS and verifies client certificates against the AM's trust roots, in
front of `geni-am serve --behind-proxy` on another loopback port.

* alice's certificate completes GetVersion and ListResources through nginx;
* no certificate, or a certificate from an authority the AM does not trust, is refused by nginx
  (HTTP 400) and never reaches the AM;
* a client cannot inject its own X-SSL-Client-Cert through nginx;
* the AM refuses a forged X-SSL-Client-Cert sent straight to its backend port from an address
  that is not in trusted_proxies (all addresses here are loopback: the client binds 127.0.0.2,
  and a second AM trusts only 127.0.0.2 while the client sends from 127.0.0.1).

nginx is required: the test fails, never skips, without it (dev.sh APT_PACKAGES: nginx-light).
"""
from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import urllib.parse
import xmlrpc.client
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from am.client import AMClient
from am.errors import GeniCode
from credentials.authority import DevAuthority
from tests.conftest import REPO, require_tool
from tests.interop.stack import free_port
from tests.support import exited, wait_until

pytestmark = pytest.mark.slow

EXAMPLE = REPO / "docs" / "nginx" / "geni-am.conf"
GENI_AM = Path(sys.executable).with_name("geni-am")
AM_AUTHORITY = "geni-am:proxytest"

# What the example names, and what the test puts in its place.
EXAMPLE_TOKENS = ("listen 5001 ssl;", "/etc/geni-am/am-cert.pem", "/etc/geni-am/am-key.pem",
                  "/etc/geni-am/trust-roots.pem", "http://127.0.0.1:5002")


@dataclass
class Pki:
    dev: DevAuthority          # the AM's authority: alice, bob, the AM certificate
    stranger: DevAuthority     # an authority the AM does not trust: mallory
    roots_bundle: Path         # the AM's trust roots concatenated, for nginx


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    base = tmp_path_factory.mktemp("pki")
    dev = DevAuthority.init(base / "dev", authority="geni-am")
    dev.user("alice")
    dev.user("bob")
    dev.server_cert(AM_AUTHORITY, ["localhost", "127.0.0.1"])
    stranger = DevAuthority.init(base / "stranger", authority="geni-am")   # same name, other key
    stranger.user("mallory")
    bundle = base / "trust-roots.pem"
    bundle.write_text("".join(p.read_text() for p in sorted((dev.dir / "trust-roots").glob("*.pem"))))
    return Pki(dev, stranger, bundle)


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 20.0) -> None:
    def listening() -> bool:
        with socket.socket() as s:
            s.settimeout(0.2)
            return s.connect_ex(("127.0.0.1", port)) == 0
    wait_until(listening, f"{what} to listen on port {port}", timeout,
               give_up=exited(proc, lambda: proc.stdout.read() if proc.stdout else ""))


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()



@contextlib.contextmanager
def behind_proxy_am(tmp: Path, pki: Pki, port: int, trusted: str, public_port: int
                    ) -> Iterator[subprocess.Popen]:
    """`geni-am serve --behind-proxy` as operators run it: a TOML file and the flag."""
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "geni-am.toml"
    config.write_text(f"""[am]
host = "127.0.0.1"
port = {port}
public_url = "https://localhost:{public_port}/"
authority = "{AM_AUTHORITY}"
cert = "{pki.dev.dir / 'am-cert.pem'}"
key = "{pki.dev.dir / 'am-key.pem'}"
trust_roots = "{pki.dev.dir / 'trust-roots'}"
trusted_proxies = ["{trusted}"]
state_dir = "{tmp / 'state'}"
fake_nodes = 2
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENI_AM_")}
    proc = subprocess.Popen([str(GENI_AM), "serve", "--config", str(config), "--behind-proxy",
                             "--threads", "4"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    try:
        wait_port(port, proc, "geni-am serve --behind-proxy")
        yield proc
    finally:
        stop(proc)


def nginx_conf(tmp: Path, pki: Pki, listen: int, backend: int) -> Path:
    """docs/nginx/geni-am.conf with this test's paths and ports, inside a minimal main config."""
    server = EXAMPLE.read_text()
    for token in EXAMPLE_TOKENS:
        assert token in server, f"{EXAMPLE} no longer contains {token!r}; update this test"
    server = (server.replace("listen 5001 ssl;", f"listen 127.0.0.1:{listen} ssl;")
              .replace("/etc/geni-am/am-cert.pem", str(pki.dev.dir / "am-cert.pem"))
              .replace("/etc/geni-am/am-key.pem", str(pki.dev.dir / "am-key.pem"))
              .replace("/etc/geni-am/trust-roots.pem", str(pki.roots_bundle))
              .replace("http://127.0.0.1:5002", f"http://127.0.0.1:{backend}"))
    temp = tmp / "temp"
    temp.mkdir(parents=True, exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""   # workers must reach the temp dirs
    conf = tmp / "nginx.conf"
    conf.write_text(f"""{user}daemon off;
worker_processes 1;
pid {tmp / 'nginx.pid'};
error_log {tmp / 'error.log'} info;
events {{ worker_connections 64; }}
http {{
    access_log {tmp / 'access.log'};
    client_body_temp_path {temp / 'body'};
    proxy_temp_path {temp / 'proxy'};
    fastcgi_temp_path {temp / 'fastcgi'};
    uwsgi_temp_path {temp / 'uwsgi'};
    scgi_temp_path {temp / 'scgi'};
{server}
}}
""")
    return conf


@dataclass
class Stack:
    nginx_port: int
    backend_port: int
    pki: Pki


@pytest.fixture(scope="module")
def stack(tmp_path_factory, pki: Pki) -> Iterator[Stack]:
    nginx = require_tool("nginx")
    tmp = tmp_path_factory.mktemp("nginx")
    listen, backend = free_port(), free_port()
    conf = nginx_conf(tmp, pki, listen, backend)
    check = subprocess.run([nginx, "-t", "-p", str(tmp), "-e", str(tmp / "error.log"),
                            "-c", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    with behind_proxy_am(tmp / "am", pki, backend, "127.0.0.1", listen):
        proc = subprocess.Popen([nginx, "-p", str(tmp), "-e", str(tmp / "error.log"),
                                 "-c", str(conf)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            wait_port(listen, proc, "nginx")
            yield Stack(listen, backend, pki)
        finally:
            stop(proc)
        assert proc.returncode == 0, proc.stdout.read() if proc.stdout else ""


def tls_context(pki: Pki, who: tuple[DevAuthority, str] | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.dev.dir / "ca-cert.pem"))
    if who is not None:
        authority, name = who
        ctx.load_cert_chain(authority.dir / f"{name}-cert.pem", authority.dir / f"{name}-key.pem")
    return ctx


def xmlrpc_post(port: int, body: str, *, ctx: ssl.SSLContext | None = None,
                headers: dict[str, str] | None = None, source: str | None = None
                ) -> tuple[int, str]:
    """POST an XML-RPC body; TLS when ctx is given, else plain HTTP (the AM's backend port)."""
    if ctx is not None:
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            "localhost", port, context=ctx, timeout=30)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30,
                                          source_address=(source, 0) if source else None)
    try:
        conn.request("POST", "/", body=body.encode(),
                     headers={"Content-Type": "text/xml", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


GETVERSION = xmlrpc.client.dumps(({},), methodname="GetVersion")


def forged_header(pki: Pki, name: str = "alice") -> dict[str, str]:
    pem = (pki.dev.dir / f"{name}-cert.pem").read_text()
    return {"X-SSL-Client-Cert": urllib.parse.quote(pem)}


def test_alice_gets_version_and_resources_through_nginx(stack: Stack):
    d = stack.pki.dev.dir
    with AMClient(f"https://localhost:{stack.nginx_port}/", d / "alice-cert.pem",
                  d / "alice-key.pem", ca=d / "ca-cert.pem",
                  credentials=[d / "alice-cred.xml"]) as am:
        version = am.get_version()
        assert version["geni_api"] == 3
        assert version["geni_api_versions"]["3"] == f"https://localhost:{stack.nginx_port}/"
        ad = am.list_resources()
    assert 'type="advertisement"' in ad and "+node+fake1" in ad and "+node+fake2" in ad


def test_no_client_certificate_is_refused_by_nginx(stack: Stack):
    status, body = xmlrpc_post(stack.nginx_port, GETVERSION, ctx=tls_context(stack.pki, None))
    assert status == 400 and "No required SSL certificate was sent" in body


def test_untrusted_client_certificate_is_refused_by_nginx(stack: Stack):
    ctx = tls_context(stack.pki, (stack.pki.stranger, "mallory"))
    try:
        status, body = xmlrpc_post(stack.nginx_port, GETVERSION, ctx=ctx)
    except (ssl.SSLError, ConnectionError):
        return                              # refused in the handshake: also a refusal
    assert status == 400 and "SSL certificate error" in body


def test_client_cannot_inject_the_certificate_header_through_nginx(stack: Stack):
    """bob connects with his own certificate and sends alice's in X-SSL-Client-Cert together
    with alice's user credential. If nginx passed the header on, the AM would take him for
    alice; it must see bob, who does not own the credential."""
    d = stack.pki.dev.dir
    body = xmlrpc.client.dumps(([{"geni_type": "geni_sfa", "geni_version": "3",
                                  "geni_value": (d / "alice-cred.xml").read_text()}],
                                {"geni_rspec_version": {"type": "GENI", "version": "3"}}),
                               methodname="ListResources")
    status, text = xmlrpc_post(stack.nginx_port, body, ctx=tls_context(stack.pki, (stack.pki.dev, "bob")),
                               headers=forged_header(stack.pki))
    assert status == 200
    answer = xmlrpc.client.loads(text)[0][0]
    assert answer["code"]["geni_code"] == GeniCode.CREDENTIAL_MISMATCH, answer
    assert "bob" in answer["output"]


def test_backend_refuses_forged_header_from_an_untrusted_address(stack: Stack):
    """Straight to the backend port, from 127.0.0.2 (not in trusted_proxies = 127.0.0.1)."""
    status, text = xmlrpc_post(stack.backend_port, GETVERSION, headers=forged_header(stack.pki),
                               source="127.0.0.2")
    assert status == 403 and "trusted proxy" in text


def test_second_am_trusting_another_proxy_refuses_header_from_here(tmp_path: Path, pki: Pki):
    """An AM whose trusted_proxies is 127.0.0.2 refuses the header sent from 127.0.0.1, and a
    request without any certificate too (proxy mode has no TLS of its own)."""
    port = free_port()
    with behind_proxy_am(tmp_path / "am2", pki, port, "127.0.0.2", port):
        status, text = xmlrpc_post(port, GETVERSION, headers=forged_header(pki))
        assert status == 403 and "127.0.0.1" in text
        status, _ = xmlrpc_post(port, GETVERSION)
        assert status == 403
        # the same header from the address it does trust is believed
        status, text = xmlrpc_post(port, GETVERSION, headers=forged_header(pki), source="127.0.0.2")
        assert status == 200 and xmlrpc.client.loads(text)[0][0]["code"]["geni_code"] == 0
