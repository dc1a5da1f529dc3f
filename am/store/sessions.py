"""`Database`: the engine, read and write sessions, and the usage generation every
repository (am.store.*) shares. `Repository` is the base of those repositories."""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from am.store.database import WRITE_OPTION, make_engine
from am.store.models import UsageGeneration


# session.info flag: this write transaction changed what the advertisement derives from
USAGE_CHANGED = "geniam_usage_changed"


def mark_usage_changed(session: Session) -> None:
    """Have `Store.write` bump the usage generation when this transaction commits."""
    session.info[USAGE_CHANGED] = True


_GENERATION_Q = select(UsageGeneration.generation).where(UsageGeneration.id == 1)


def _fresh_generation() -> int:
    """Start value for a re-created counter row: microseconds since the epoch, far above any
    generation a cache may hold from before the row disappeared (a TRUNCATE in tests)."""
    return time.time_ns() // 1000


def upsert_insert(dialect: str) -> Callable[..., Any]:
    """`insert` of `dialect` with its ON CONFLICT clauses (PostgreSQL's or SQLite's)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert
    return sqlite_insert


class Database:
    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(**{WRITE_OPTION: True}),
                                   expire_on_commit=False)

    # ---- lifecycle ---------------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the schema to the newest revision (alembic upgrade head)."""
        from am.store.migrate import upgrade
        upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only look; objects stay readable (detached) after the block."""
        with self._read() as session:
            yield session

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises. A
        transaction that changed usage (`mark_usage_changed`) bumps the usage generation as its
        last statement, so the counter row is the last lock it takes (no lock-order cycles)."""
        with self._write() as session, session.begin():
            yield session
            if session.info.pop(USAGE_CHANGED, False):
                session.flush()
                self._bump_generation(session)

    # ---- the usage generation ----------------------------------------------------------
    def _bump_generation(self, session: Session) -> None:
        stmt = upsert_insert(self.dialect)(UsageGeneration).values(id=1, generation=_fresh_generation())
        session.execute(stmt.on_conflict_do_update(
            index_elements=[UsageGeneration.id],
            set_={"generation": UsageGeneration.generation + 1}))

    def current_generation(self) -> int | None:
        """`usage_generation` on a bare pooled connection, without an ORM session: the whole
        cost of validating a cached advertisement."""
        with self.engine.connect() as conn:
            return conn.execute(_GENERATION_Q).scalar()

    @staticmethod
    def usage_generation(session: Session) -> int | None:
        """The current usage generation (one primary-key read), None if the row is missing.
        Read it *before* the data it validates: a later statement can only see newer data."""
        return session.scalar(_GENERATION_Q)

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("select 1"))


class Repository:
    """One concern's queries over the shared `Database` (sessions come from it)."""

    def __init__(self, db: Database):
        self.db = db

    @property
    def dialect(self) -> str:
        return self.db.dialect

    def read(self) -> contextlib.AbstractContextManager[Session]:
        return self.db.read()

    def write(self) -> contextlib.AbstractContextManager[Session]:
        return self.db.write()

    @staticmethod
    def flush(session: Session) -> None:
        """Send the transaction's pending writes now, without committing: new rows get their
        ids and the database checks its constraints (the caller reads an id, or a later
        statement needs the rows)."""
        session.flush()


#: ids per IN (...) list: well under SQLite's 32,766 bound parameters, and small statements
CHUNK = 500


def chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
