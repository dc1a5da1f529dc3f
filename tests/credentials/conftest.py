"""Fixtures for the credentials tests: the gcf reference fixtures and a development authority."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from credentials.authority import DevAuthority
from credentials.certs import TrustStore, load_pem_chain
from credentials.verify import CredentialVerifier

SLICE = "urn:publicid:IDN+geni:gpo:gcf+slice+fixture"
ALICE = "urn:publicid:IDN+geni:gpo:gcf+user+alice"
BOB = "urn:publicid:IDN+geni:gpo:gcf+user+bob"
TOOL = "urn:publicid:IDN+geni:gpo:gcf+user+tool"


class Gcf:
    """Accessors for the files in ../shared/fixtures/gcf."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, name: str) -> Path:
        return self.root / name

    def bytes(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def text(self, name: str) -> str:
        return (self.root / name).read_text()

    def chain(self, who: str):
        return load_pem_chain(self.bytes(f"{who}-cert.pem"))

    def key(self, who: str):
        return serialization.load_pem_private_key(self.bytes(f"{who}-key.pem"), None)


@pytest.fixture(scope="session")
def gcf(gcf_fixtures: Path) -> Gcf:
    return Gcf(gcf_fixtures)


@pytest.fixture(scope="session")
def trust(gcf: Gcf) -> TrustStore:
    return TrustStore.from_pem_files([gcf.path("ca-cert.pem")])


@pytest.fixture
def verifier(trust: TrustStore) -> CredentialVerifier:
    return CredentialVerifier(trust)


@pytest.fixture(scope="session")
def future() -> datetime:
    """A date well after every fixture expired."""
    return datetime(2032, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="session")
def later() -> datetime:
    return datetime.now(timezone.utc) + timedelta(days=365)


@pytest.fixture(scope="session")
def dev(tmp_path_factory) -> DevAuthority:
    """A development authority with users alice and bob and slice s1 owned by alice."""
    directory = tmp_path_factory.mktemp("devauth")
    auth = DevAuthority.init(directory)
    auth.user("alice")
    auth.user("bob")
    auth.slice("s1", "alice")
    return auth
