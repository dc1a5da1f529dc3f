"""Fixtures for the API layer: settings over the gcf trust root, the Flask test client with the
peer certificate injected into the environ exactly as the TLS server does (SSL_CLIENT_CERT)."""
from __future__ import annotations

import json
import shutil
import xmlrpc.client
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from am.app import create_app
from am.auth import Authorizer
from am.config import Settings
from am.server import AmServer, ServerOptions
from tests.api.doubles import FakeService

SLICE = "urn:publicid:IDN+geni:gpo:gcf+slice+fixture"
EXPIRED_SLICE = "urn:publicid:IDN+geni:gpo:gcf+slice+expired"
ALICE = "urn:publicid:IDN+geni:gpo:gcf+user+alice"
BOB = "urn:publicid:IDN+geni:gpo:gcf+user+bob"
REQUEST = ('<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request">'
           '<node client_id="n1" exclusive="false"/><node client_id="n2" exclusive="false"/>'
           '</rspec>')
RSPEC_V = {"type": "GENI", "version": "3"}


@dataclass
class Fixtures:
    dir: Path

    def pem(self, name: str) -> str:
        return (self.dir / f"{name}-cert.pem").read_text()

    def cred(self, name: str) -> dict[str, str]:
        json_path = self.dir / f"{name}.json"
        if json_path.exists():
            return json.loads(json_path.read_text())
        return {"geni_type": "geni_sfa", "geni_version": "3",
                "geni_value": (self.dir / f"{name}.xml").read_text()}

    def xml(self, name: str) -> str:
        return (self.dir / f"{name}.xml").read_text()


@pytest.fixture(scope="session")
def fx(gcf_fixtures: Path) -> Fixtures:
    return Fixtures(gcf_fixtures)


@pytest.fixture(scope="session")
def trust_dir(tmp_path_factory, gcf_fixtures: Path) -> Path:
    d = tmp_path_factory.mktemp("trust-roots")
    shutil.copy(gcf_fixtures / "ca-cert.pem", d / "ca-cert.pem")
    return d


@pytest.fixture(scope="session")
def base_settings(trust_dir: Path, tmp_path_factory) -> Settings:
    return Settings(trust_roots=str(trust_dir), authority="geni-am:test",
                    state_dir=str(tmp_path_factory.mktemp("state")),
                    max_request_bytes=64 * 1024)


@pytest.fixture(scope="session")
def authorizer(base_settings: Settings) -> Authorizer:
    return Authorizer.from_settings(base_settings)


@dataclass
class ApiClient:
    """Calls the app through Flask's test client and decodes the XML-RPC answer."""

    flask_client: Any
    cert: str | None
    path: str = "/"
    audit: list = field(default_factory=list)

    def raw(self, body: bytes, *, cert: str | None | bool = True, path: str | None = None,
            headers: dict | None = None, remote: str = "127.0.0.1"):
        environ = {"REMOTE_ADDR": remote}
        pem = self.cert if cert is True else cert
        if pem:
            environ["SSL_CLIENT_CERT"] = pem
        return self.flask_client.post(path or self.path, data=body, headers=headers or {},
                                      content_type="text/xml", environ_base=environ)

    def call(self, method: str, *params: Any, **kw: Any) -> Any:
        response = self.raw(xmlrpc.client.dumps(params, method, allow_none=False).encode(), **kw)
        assert response.status_code == 200, response.data
        (result,), _ = xmlrpc.client.loads(response.data)
        return result


def make_client(settings: Settings, authorizer: Authorizer, service, cert: str | None,
                **app_kw) -> ApiClient:
    audit: list = []
    app = create_app(settings, service, authorizer,
                     audit=lambda *a, **_: audit.append(a), **app_kw)
    return ApiClient(app.test_client(), cert, audit=audit)


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture
def api(base_settings, authorizer, service, fx) -> ApiClient:
    return make_client(base_settings, authorizer, service, fx.pem("alice"))


def code_of(result: dict) -> int:
    return result["code"]["geni_code"]


@contextmanager
def tls_server(settings: Settings, authorizer: Authorizer, service, fx_dir: Path,
               trust_dir: Path, **options: Any) -> Iterator[AmServer]:
    """The real cheroot TLS server for `service` on an ephemeral loopback port (gcf's AM
    certificate), stopped on exit; `options` are further ServerOptions."""
    srv = AmServer(create_app(settings, service, authorizer),
                   ServerOptions(host="127.0.0.1", port=0, threads=4,
                                 cert=str(fx_dir / "am-cert.pem"), key=str(fx_dir / "am-key.pem"),
                                 trust_roots=str(trust_dir),
                                 max_request_bytes=settings.max_request_bytes, **options))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
