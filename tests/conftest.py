"""Suite-wide fixtures: paths to the shared fixtures, and real Redis / PostgreSQL servers.

Package-specific fixtures live in the conftest.py of each test folder.
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
