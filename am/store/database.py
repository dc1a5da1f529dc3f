"""Engines for SQLite (default, a file in the state directory) and PostgreSQL (by URL).

SQLite runs in WAL mode with foreign keys on and a busy timeout; write transactions start with
`BEGIN IMMEDIATE` so that two writers queue on the database lock instead of failing when a
deferred transaction tries to upgrade its lock, and before that on an flock of
`<database>.writers` (`_QueuedWriterConnection`), which hands the lock on within a millisecond
where SQLite's own busy handler sleeps up to 100 ms between tries. Read transactions stay deferred (WAL readers
never block). PostgreSQL runs at READ COMMITTED: the capacity CHECK and the claim UNIQUE
constraint are evaluated against committed rows, so racing writers serialise on the rows.
"""
from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from pathlib import Path

from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from am.fileperms import private_dir, private_file

WRITE_OPTION = "geniam_write"
SQLITE_BUSY_TIMEOUT_S = 30.0
#: Longest pause between two tries of the writers' lock (see _QueuedWriterConnection).
WRITER_POLL_MAX_S = 0.001


class _QueuedWriterConnection(sqlite3.Connection):
    """A pysqlite connection whose write transactions first queue on an flock of
    `<database>.writers`, held until COMMIT or ROLLBACK.

    SQLite's own busy handler retries a locked database after sleeps growing from 1 to 100 ms,
    so several processes writing at once (`geni-am serve` and its workers) spend most of a
    short transaction asleep. Here a waiter retries the lock at most `WRITER_POLL_MAX_S`
    apart. The wait is bounded by the busy timeout; after that the transaction goes ahead and
    SQLite's own locking decides, exactly as without the queue (so a thread that already holds
    a write transaction on another connection cannot deadlock on its own lock)."""

    writers_lock = ""          # set per engine (a subclass per database file)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._writer_fd = -1
        self._queued = False

    def queue_for_write(self) -> None:
        if self._writer_fd < 0:
            self._writer_fd = os.open(self.writers_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                                      0o600)
        deadline = None
        delay = 0.0001
        while True:
            try:
                fcntl.flock(self._writer_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._queued = True
                return
            except BlockingIOError:
                now = time.monotonic()
                deadline = deadline or now + SQLITE_BUSY_TIMEOUT_S
                if now >= deadline:
                    return
                time.sleep(delay)
                delay = min(delay * 2, WRITER_POLL_MAX_S)

    def leave_write_queue(self) -> None:
        if self._queued:
            self._queued = False
            fcntl.flock(self._writer_fd, fcntl.LOCK_UN)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.leave_write_queue()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.leave_write_queue()

    def close(self) -> None:
        try:
            self.leave_write_queue()
            if self._writer_fd >= 0:
                os.close(self._writer_fd)
                self._writer_fd = -1
        finally:
            super().close()


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
    db_path = Path(parsed.database).expanduser()
    if not db_path.parent.exists():
        private_dir(db_path.parent)
    private_file(db_path)         # 0600 whatever the umask; SQLite's -wal/-shm copy its mode
    lock_path = str(Path(parsed.database).expanduser()) + ".writers"

    class QueuedWriterConnection(_QueuedWriterConnection):
        writers_lock = lock_path

    engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S,
                                                 "check_same_thread": False,
                                                 "factory": QueuedWriterConnection})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None   # we issue BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(WRITE_OPTION):
            dbapi_conn = conn.connection.dbapi_connection
            queued = dbapi_conn if isinstance(dbapi_conn, _QueuedWriterConnection) else None
            if queued is not None:
                queued.queue_for_write()
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                if queued is not None:
                    queued.leave_write_queue()
                raise
        else:
            conn.exec_driver_sql("BEGIN")

    return engine
