"""Run Alembic programmatically over the store's engine, and compare schema with models."""
from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def _config(connection: Connection | None) -> Any:
    from alembic.config import Config
    cfg = Config(str(MIGRATIONS / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


#: pg_advisory_lock key that serialises migrations of one PostgreSQL database ("geniamdb").
_PG_MIGRATION_LOCK = 0x67656E69616D6462


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema. Several AM processes may start at once on one new database (two
    `geni-am serve`, N workers): they take turns, and the later ones find nothing to do."""
    from alembic import command
    with _migration_lock(engine):
        with engine.begin() as conn:
            command.upgrade(_config(conn), revision)
            if revision == "head":
                # the state guard's rule table follows am.states (see am.store.state_guard)
                from am.store import state_guard
                state_guard.sync(conn)


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})
                conn.commit()
    elif engine.dialect.name == "sqlite" and engine.url.database:
        fd = os.open(f"{engine.url.database}.migrate-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)   # closing releases the flock
    else:
        yield


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command
    with engine.begin() as conn:
        command.downgrade(_config(conn), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory
    return ScriptDirectory.from_config(_config(None)).get_current_head()


def schema_diff(engine: Engine) -> list[Any]:
    """Differences between the live schema and the models (empty when they agree)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from am.store.models import Base
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True,
                                                     "compare_server_default": False})
        return compare_metadata(ctx, Base.metadata)
