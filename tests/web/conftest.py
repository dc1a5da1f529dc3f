"""Fixtures for the dashboard tests: one store populated through the real service (read-only
tests share it), and Flask test clients over the real app factory."""
from __future__ import annotations

from pathlib import Path

import pytest

from am.app import create_app
from tests.web.populate import TOKEN, Populated, populate


@pytest.fixture(scope="session")
def populated(tmp_path_factory, gcf_fixtures: Path) -> Populated:
    p = populate(tmp_path_factory.mktemp("dashboard"), gcf_fixtures)
    yield p
    p.close()


@pytest.fixture(scope="session")
def app(populated):
    """One app for the whole session. Many tests make a wrong guess or two from 127.0.0.1, so
    its token-guess limits are raised out of their way (whether a test ran into the default
    limits would depend on the order of the tests); test_ratelimit.py builds its own apps."""
    settings = populated.settings.replace(dashboard_login_attempts=10_000,
                                          dashboard_login_global_attempts=10_000)
    return create_app(settings, populated.service, populated.authorizer, call_log=False)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="session")
def fx_pem(gcf_fixtures: Path):
    """`fx_pem("alice")`: the PEM certificate of a gcf fixture principal."""
    return lambda name: (gcf_fixtures / f"{name}-cert.pem").read_text()
