"""The background audit writer: batches commits, keeps order, honours flush and close, retries."""
from __future__ import annotations

from am.api.audit import QueuedAudit
from am.store import open_store


def test_records_are_written_in_order_in_batches(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'am.sqlite'}", migrate=True)
    commits: list[int] = []
    real = store.audit_batch

    def counting(records):
        commits.append(len(records))
        real(records)

    store.audit_batch = counting
    audit = QueuedAudit(store)
    try:
        for i in range(300):
            audit(f"urn:publicid:IDN+x+user+u{i}", None, "v3.GetVersion", "", 0, "", float(i))
        audit.flush()
        entries = store.audit_entries(limit=1000)
        assert [e.caller_urn for e in reversed(entries)] == \
            [f"urn:publicid:IDN+x+user+u{i}" for i in range(300)]
        assert sum(commits) == 300 and len(commits) < 300   # several records per commit
        audit("urn:publicid:IDN+x+user+last", "urn:publicid:IDN+x+user+tool", "v3.Allocate",
              "urn:publicid:IDN+x+slice+s", 7, "slice is shut down", 1.5)
    finally:
        audit.close()   # drains what is still queued
    last = store.audit_entries(limit=1)[0]
    assert (last.caller_urn, last.tool_urn, last.method, last.outcome, last.message) == (
        "urn:publicid:IDN+x+user+last", "urn:publicid:IDN+x+user+tool", "v3.Allocate", 7,
        "slice is shut down")
    store.close()


def test_a_failing_database_delays_the_batch_and_keeps_the_writer(tmp_path):
    """A failed write is kept and written again once the database answers (not lost)."""
    store = open_store(f"sqlite:///{tmp_path / 'am.sqlite'}", migrate=True)
    real = store.audit_batch
    fail = [True]

    def flaky(records):
        if fail[0]:
            raise RuntimeError("database away")
        real(records)

    store.audit_batch = flaky
    audit = QueuedAudit(store)
    try:
        audit("urn:publicid:IDN+x+user+a", None, "v3.GetVersion", "", 0, "", 1.0)
        audit.flush()
        assert store.audit_entries() == []
        fail[0] = False
        audit("urn:publicid:IDN+x+user+b", None, "v3.GetVersion", "", 0, "", 1.0)
        audit.flush()
    finally:
        audit.close()
    entries = store.audit_entries()
    assert sorted(e.caller_urn for e in entries) == ["urn:publicid:IDN+x+user+a",
                                                     "urn:publicid:IDN+x+user+b"]
    # the late record keeps the time it was made
    by_urn = {e.caller_urn: e.ts for e in entries}
    assert by_urn["urn:publicid:IDN+x+user+a"] <= by_urn["urn:publicid:IDN+x+user+b"]
    store.close()
