"""Migrations build exactly the models' schema; the audit log cannot be changed."""
from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from am.store import Store, open_store
from am.store import migrate as mig


def test_migrated_schema_matches_models(store: Store):
    assert mig.schema_diff(store.engine) == []
    assert mig.current_revision(store.engine) == mig.head_revision()


def test_downgrade_and_upgrade_round_trip(tmp_path):
    s = open_store(f"sqlite:///{tmp_path / 'x.sqlite'}", migrate=True)
    mig.downgrade(s.engine, "base")
    assert mig.current_revision(s.engine) is None
    assert mig.schema_diff(s.engine) != []
    s.migrate()
    assert mig.schema_diff(s.engine) == []
    s.migrate()   # idempotent
    s.close()


def test_sqlite_pragmas(tmp_path):
    s = open_store(f"sqlite:///{tmp_path / 'sub' / 'x.sqlite'}", migrate=True)
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    s.close()


def test_bad_urls_are_refused():
    from am.store import StoreURLError
    with pytest.raises(StoreURLError):
        open_store("mysql://x/y")
    with pytest.raises(StoreURLError):
        open_store("sqlite://")


def test_audit_log_is_append_only(store: Store):
    store.audit(caller_urn="urn:publicid:IDN+x+user+alice", method="Allocate",
                target="urn:publicid:IDN+x+slice+s", outcome=0, message="ok", duration_ms=3.5)
    entries = store.audit_entries()
    assert [(e.method, e.outcome, e.duration_ms) for e in entries] == [("Allocate", 0, 3.5)]
    for statement in ("UPDATE audit_log SET message = 'forged'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"):
            with store.engine.begin() as conn:
                conn.execute(text(statement))
    assert store.audit_entries()[0].message == "ok"
    # and the store offers no way to change it: append one, append several, read
    names = [n for n in dir(Store) if "audit" in n]
    assert sorted(names) == ["audit", "audit_batch", "audit_entries"]
