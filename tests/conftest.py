"""Suite-wide fixtures: paths to the shared fixtures, and real Redis / PostgreSQL servers.

Package-specific fixtures live in the conftest.py of each test folder.

Markers (pyproject.toml): a test is `redis` or `postgres` when it uses those servers' fixtures
(set here from the fixtures, so a new test cannot forget), `root` when its folder or module
needs namespaces, cgroups, OVS or libvirt (set by `pytestmark` there), `slow` by hand. Every
other test is `fast`: `pytest -m fast` needs no root, broker or database server.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests import services

REPO = Path(__file__).resolve().parent.parent
# ../shared next to the checkout (as laid out for sessions and CI); overridable.
SHARED = Path(os.environ.get("GENI_AM_SHARED", REPO.parent / "shared"))


#: Fixtures that start or reach a server or need root, and the marker a test using them gets
#: (parametrized fixtures that pick a server per parameter mark the parameter instead).
SERVER_FIXTURES = {"redis_url": "redis", "redis_db": "redis", "postgres_url": "postgres",
                   "_pg_store": "postgres", "ovs": "root", "dom0_netns": "root"}
NOT_FAST = ("root", "redis", "postgres", "slow")


def pytest_collection_modifyitems(config, items):
    for item in items:
        for fixture in getattr(item, "fixturenames", ()):
            marker = SERVER_FIXTURES.get(fixture)
            if marker and not item.get_closest_marker(marker):
                item.add_marker(marker)
        if not any(item.get_closest_marker(m) for m in NOT_FAST):
            item.add_marker("fast")


@pytest.fixture(scope="session")
def gcf_fixtures() -> Path:
    """The certificates and credentials issued by the GENI reference tools."""
    path = SHARED / "fixtures" / "gcf"
    if not path.is_dir():
        pytest.fail(f"shared fixtures not found at {path} (set GENI_AM_SHARED)")
    return path


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        with services.redis_server() as url:
            yield url
    except services.ServiceUnavailable as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def postgres_url() -> str:
    try:
        with services.postgres_server() as url:
            yield url
    except services.ServiceUnavailable as exc:
        pytest.fail(str(exc))


def require_tool(name: str) -> str:
    """Path of a command-line tool the test needs; a missing one fails the test, never skips."""
    path = shutil.which(name)
    if not path:
        pytest.fail(f"required tool {name!r} is not installed (see dev.sh APT_PACKAGES)")
    return path
