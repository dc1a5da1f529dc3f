"""Engines for SQLite (default, a file in the state directory) and PostgreSQL (by URL).

SQLite runs in WAL mode with foreign keys on and a busy timeout; write transactions start with
`BEGIN IMMEDIATE` so that two writers queue on the database lock instead of failing when a
deferred transaction tries to upgrade its lock. Read transactions stay deferred (WAL readers
never block). PostgreSQL runs at READ COMMITTED: the capacity CHECK and the claim UNIQUE
constraint are evaluated against committed rows, so racing writers serialise on the rows.
"""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

WRITE_OPTION = "geniam_write"
SQLITE_BUSY_TIMEOUT_S = 30.0


class StoreURLError(ValueError):
    """The database URL names a backend the store does not support."""


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url)
    if backend == "postgresql":
        if parsed.drivername != "postgresql+psycopg":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20,
                             pool_timeout=60)
    raise StoreURLError(f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}: "
                        "use sqlite:///<path> or postgresql+psycopg://...")


def _sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    if not parsed.database or parsed.database == ":memory:":
        raise StoreURLError("an in-memory SQLite database cannot be shared by the AM and its "
                            "workers; give a file path")
    Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S,
                                                 "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None   # we issue BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        if conn.get_execution_options().get(WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine
