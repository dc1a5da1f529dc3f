"""A live AM (real runtime + real TLS server) per test module; see tests/interop/stack.py."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.stack import LiveAM, live_am


@pytest.fixture(scope="module")
def am(tmp_path_factory, gcf_fixtures: Path) -> Iterator[LiveAM]:
    with live_am(tmp_path_factory.mktemp("live-am"), gcf_fixtures) as live:
        yield live
