"""Fixtures for placement tests: fake sites built in-process, and a sliver URN minter."""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest

from drivers.fake import make_fake_site
from drivers.registry import Site

AUTH = "geni-am:test"
SLICE = "urn:publicid:IDN+geni-am:test+slice+s1"


def node_urn(name: str) -> str:
    return f"urn:publicid:IDN+{AUTH}+node+{name}"


@pytest.fixture
def fake_site(tmp_path) -> Iterator[Callable[..., Site]]:
    """Factory: `fake_site(n, **fake driver config)` -> Site; closed after the test."""
    sites: list[Site] = []

    def make(n: int = 4, **config) -> Site:
        config.setdefault("state_dir", str(tmp_path / f"fake{len(sites)}"))
        site = make_fake_site(n, authority=AUTH, **config)
        sites.append(site)
        return site

    yield make
    for site in sites:
        site.close()


class Minter:
    """Records every client_id it minted a sliver URN for."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._n = itertools.count(1)

    def __call__(self, client_id: str) -> str:
        self.calls.append(client_id)
        return f"urn:publicid:IDN+{AUTH}+sliver+{next(self._n)}"


@pytest.fixture
def mint() -> Minter:
    return Minter()
