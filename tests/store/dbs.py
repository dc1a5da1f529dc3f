"""Store fixtures over both backends: a fresh SQLite file per test, and one migrated PostgreSQL
database per session emptied (TRUNCATE) before each test. Imported by the conftests of
tests/store and tests/service."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from am.store import Store, open_store
from am.store.models import Base

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def _pg_store(postgres_url: str):
    store = open_store(postgres_url, migrate=True)
    yield store
    store.close()


def _empty_pg(store: Store) -> None:
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables
                       if not t.info.get("reference_data"))   # the state guard's rule table
    with store.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path) -> Store:
    """A migrated, empty store on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path / 'am.sqlite'}", migrate=True)
        yield s
        s.close()
    else:
        s = request.getfixturevalue("_pg_store")
        _empty_pg(s)
        yield s
