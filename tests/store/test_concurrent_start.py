"""Several AM processes starting at once on one new database (two `geni-am serve`, workers):
migrations take turns and the capacity rows are written once, whoever wins the race."""
from __future__ import annotations

import multiprocessing as mp

import pytest
from sqlalchemy import func, select

from am.store import open_store
from am.store.models import Capacity
from drivers.fake import make_fake_site
from tests import services

PROCESSES = 4


def _start(url: str, state_dir: str, barrier, results) -> None:
    try:
        site = make_fake_site(6, authority="geni-am:race", state_dir=state_dir)
        barrier.wait(timeout=30)
        store = open_store(url, migrate=True)
        store.sync_capacity(site.components)
        store.close()
        results.put("ok")
    except Exception as exc:   # noqa: BLE001 - reported to the parent
        results.put(f"{type(exc).__name__}: {exc}")


def _race(url: str, state_dir: str) -> list[str]:
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    procs = [ctx.Process(target=_start, args=(url, state_dir, barrier, results))
             for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(90)
    return [results.get(timeout=5) for _ in procs]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_simultaneous_first_start(backend, tmp_path, postgres_url):
    if backend == "sqlite":
        outcomes = _race(f"sqlite:///{tmp_path / 'am.sqlite'}", str(tmp_path / "fake"))
        url = f"sqlite:///{tmp_path / 'am.sqlite'}"
        assert outcomes == ["ok"] * PROCESSES, outcomes
        _check(url, tmp_path)
    else:
        with services.postgres_server() as url:        # a fresh, empty database
            outcomes = _race(url, str(tmp_path / "fake"))
            assert outcomes == ["ok"] * PROCESSES, outcomes
            _check(url, tmp_path)


def _check(url: str, tmp_path) -> None:
    site = make_fake_site(6, authority="geni-am:race", state_dir=str(tmp_path / "fake"))
    expected = sum(len(c.capacity) for c in site.components)
    store = open_store(url)
    with store.read() as session:
        assert session.scalar(select(func.count()).select_from(Capacity)) == expected
    store.close()
