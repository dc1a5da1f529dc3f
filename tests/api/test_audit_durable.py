"""A state-changing call is answered only once its audit entry is committed.

Through the real dispatch (Flask app, method tables, `QueuedAudit`, a SQLite store); the
database is read with a fresh store right after each answer, without waiting. A paused writer
shows the difference: a state-changing call waits for it, a read-only call does not. Also: a
SIGKILLed `geni-am serve` keeps every answered Allocate/Delete, a failing or stuck audit write
bounds the wait and is logged and counted, and concurrent callers share commits.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from am.api import v2 as api_v2
from am.api import v3 as api_v3
from am.api.audit import QueuedAudit
from am.api.dispatch import MethodTable
from am.app import create_app
from am.metrics import AMMetrics
from am.store import open_store
from tests.api.conftest import ALICE, REQUEST, SLICE, ApiClient, code_of
from tests.api.doubles import FakeService
from tests.services import free_port
from tests.support import exited, wait_until
from tests.support import slice_urn as support_slice_urn

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
LIVE = 60.0   # liveness guard for joins and gates: never reached unless something hangs


# ---- helpers --------------------------------------------------------------------------------

@pytest.fixture
def db(tmp_path) -> Iterator[tuple[str, Any]]:
    """(URL, store) of a migrated SQLite database."""
    url = f"sqlite:///{tmp_path / 'am.sqlite'}"
    store = open_store(url, migrate=True)
    yield url, store
    store.close()


def committed(url: str) -> list[tuple[str, int]]:
    """(method, outcome) of every audit entry, oldest first, read through a fresh store."""
    store = open_store(url)
    try:
        return [(e.method, e.outcome) for e in reversed(store.audit_entries(limit=10000))]
    finally:
        store.close()


class Gate:
    """Wraps `store.audit_batch`: records what each transaction held and, while closed, holds
    the writer inside the call (the writer thread is paused, nothing is committed)."""

    def __init__(self, store: Any, *, closed: bool = True):
        self.real = store.audit_batch
        self.open = threading.Event()
        if not closed:
            self.open.set()
        self.entered = threading.Event()
        self.batches: list[list[str]] = []
        store.audit_batch = self

    def __call__(self, records) -> None:
        self.batches.append([r.method for r in records])
        self.entered.set()
        assert self.open.wait(LIVE), "gate never opened"
        self.real(records)


def durable_app(settings, authorizer, audit: QueuedAudit, **kw: Any) -> Any:
    return create_app(settings, FakeService(), authorizer, audit=audit, **kw)


def client(app, fx, who: str = "alice") -> ApiClient:
    return ApiClient(app.test_client(), fx.pem(who))


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run() -> None:
        out["result"] = fn()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def unaudited(metrics: AMMetrics, api: str, method: str) -> float:
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if (sample.name == "geniam_calls_unaudited_total"
                    and sample.labels == {"api": api, "method": method}):
                return sample.value
    return 0.0


# ---- classification -------------------------------------------------------------------------

def test_every_registered_method_is_classified(base_settings, authorizer):
    tables = {"v3": api_v3.V3(base_settings, FakeService(), authorizer).table(),
              "v2": api_v2.V2(base_settings, FakeService(), authorizer).table()}
    for table in tables.values():
        assert set(table.handlers) == table.state_changing | table.read_only
        assert not table.state_changing & table.read_only
    assert tables["v3"].state_changing == {"Allocate", "Provision", "Renew",
                                           "PerformOperationalAction", "Delete", "Shutdown",
                                           "Update", "CreateImage", "DeleteImage"}
    assert tables["v3"].read_only == {"GetVersion", "ListResources", "Describe", "Status",
                                      "ListImages", "geniam_Calendar", "geniam_FindSlot"}
    assert tables["v2"].state_changing == {"CreateSliver", "RenewSliver", "DeleteSliver",
                                           "Shutdown"}
    assert tables["v2"].read_only == {"GetVersion", "ListResources", "SliverStatus"}


def test_a_table_with_an_unclassified_method_is_refused():
    def handler(call, params):
        return True

    with pytest.raises(ValueError, match=r"unclassified: \['Reboot'\]"):
        MethodTable("v9", {"Reboot": handler, "GetVersion": handler},
                    state_changing=frozenset(), read_only=frozenset({"GetVersion"}))
    with pytest.raises(ValueError, match=r"both: \['GetVersion'\]"):
        MethodTable("v9", {"GetVersion": handler}, state_changing=frozenset({"GetVersion"}),
                    read_only=frozenset({"GetVersion"}))
    with pytest.raises(ValueError, match=r"not a method: \['Gone'\]"):
        MethodTable("v9", {"GetVersion": handler}, state_changing=frozenset({"Gone"}),
                    read_only=frozenset({"GetVersion"}))


# ---- (a) committed before the answer --------------------------------------------------------

def test_state_changing_answers_come_after_their_committed_entry(base_settings, authorizer, fx,
                                                                 db):
    url, store = db
    audit = QueuedAudit(store)
    try:
        api = client(durable_app(base_settings, authorizer, audit), fx)
        cred, v2_cred = [fx.cred("slice-cred-alice")], [fx.xml("slice-cred-alice")]
        steps: list[tuple[str, Callable[[], dict]]] = [
            ("v3.Allocate", lambda: api.call("Allocate", SLICE, cred, REQUEST, {})),
            ("v3.Allocate", lambda: api.call("Allocate", SLICE, cred, "  ", {})),   # BADARGS
            ("v3.Allocate", lambda: api.call("Allocate", SLICE, [], REQUEST, {})),  # refused
            ("v3.Renew", lambda: api.call("Renew", [SLICE], cred, "2000-01-01T00:00:00Z", {})),
            ("v3.Delete", lambda: api.call("Delete", [SLICE], cred, {})),
            ("v2.CreateSliver", lambda: api.call("CreateSliver", SLICE, v2_cred, REQUEST,
                                                 [{"urn": ALICE, "keys": ["ssh-rsa A a"]}], {},
                                                 path="/am/2")),
            ("v2.DeleteSliver", lambda: api.call("DeleteSliver", SLICE, v2_cred, {},
                                                 path="/am/2")),
        ]
        codes = []
        for method, make_call in steps:
            code = code_of(make_call())
            codes.append(code)
            # no flush, no polling: the answer is out, so the entry is in the database
            assert committed(url)[-1] == (method, code)
        assert codes[0] == 0 and codes[1] == 1 and codes[2] == 3 and codes[-1] == 0, codes
    finally:
        audit.close()


@pytest.mark.parametrize("allocate_durable", [True, False], ids=["durable", "fire-and-forget"])
def test_a_paused_writer_holds_state_changing_answers_only(base_settings, authorizer, fx, db,
                                                           monkeypatch, allocate_durable):
    """The writer is stuck inside its transaction. Allocate's answer waits for it; GetVersion's
    does not. The fire-and-forget variant (Allocate reclassified read-only) shows what the
    durable one guards against: the answer is out while its entry is not in the database."""
    url, store = db
    if not allocate_durable:
        monkeypatch.setattr(api_v3, "STATE_CHANGING", api_v3.STATE_CHANGING - {"Allocate"})
        monkeypatch.setattr(api_v3, "READ_ONLY", api_v3.READ_ONLY | {"Allocate"})
    gate = Gate(store)
    audit = QueuedAudit(store, sync_wait_s=LIVE)
    try:
        app = durable_app(base_settings, authorizer, audit)
        cred = [fx.cred("slice-cred-alice")]
        allocating, alloc = in_thread(lambda: client(app, fx).call("Allocate", SLICE, cred,
                                                                   REQUEST, {}))
        assert gate.entered.wait(LIVE)                 # the writer holds Allocate's record
        assert gate.batches == [["v3.Allocate"]]
        # a read-only call is answered while the writer is stuck
        versioning, version = in_thread(lambda: client(app, fx).call("GetVersion"))
        versioning.join(LIVE)
        assert not versioning.is_alive() and code_of(version["result"]) == 0
        allocating.join(0.5)
        if allocate_durable:
            assert allocating.is_alive(), "Allocate answered before its audit entry committed"
            assert ("v3.Allocate", 0) not in committed(url)
        else:
            assert not allocating.is_alive() and code_of(alloc["result"]) == 0
            assert ("v3.Allocate", 0) not in committed(url)   # answered, yet not audited
        gate.open.set()
        allocating.join(LIVE)
        assert not allocating.is_alive() and code_of(alloc["result"]) == 0
        if allocate_durable:
            assert ("v3.Allocate", 0) in committed(url)     # at once, no flush
        audit.flush()
        assert {("v3.Allocate", 0), ("v3.GetVersion", 0)} <= set(committed(url))
    finally:
        gate.open.set()
        audit.close()


# ---- (b) hard kill --------------------------------------------------------------------------

def test_sigkill_after_the_last_answer_keeps_every_state_changing_entry(tmp_path):
    """`geni-am serve` answers Allocate/Delete (and refusals), then is SIGKILLed at once:
    every answered state-changing call is in its audit table."""
    from am.bootstrap import ensure_dev_authority
    from am.client import AMClient, AMError
    from am.config import Settings
    from credentials.authority import DevAuthority

    state, port = tmp_path / "state", free_port()
    settings, dev = ensure_dev_authority(Settings(state_dir=str(state), port=port))
    slice_name = "killed"
    slice_urn = support_slice_urn(slice_name, settings.authority.split(':', 1)[0])
    cred = DevAuthority(dev.authority_dir).slice(slice_name, owner="alice")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENI_AM_")}
    env["GENI_AM_FAKE_NODES"] = "4"
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "am", "serve", "--state-dir", str(state),
                                 "--port", str(port), "--threads", "4"],
                                stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    am = AMClient(f"https://127.0.0.1:{port}/", dev.user_cert, dev.user_key,
                  ca=dev.trust_roots / "ca-cert.pem", credentials=[cred], timeout=30)
    made: list[tuple[str, int]] = []
    try:
        def answers() -> bool:
            try:
                am.get_version()
                return True
            except Exception:
                am.close()
                raise
        wait_until(answers, "geni-am serve to answer", LIVE, 0.1, ignoring=(Exception,),
                   give_up=exited(proc, lambda: log_path.read_text(errors="replace")[-3000:]))
        for _ in range(4):
            am.allocate(slice_urn, REQUEST)
            am.delete(slice_urn)
            made += [("v3.Allocate", 0), ("v3.Delete", 0)]
        with pytest.raises(AMError) as refused:
            am.allocate(slice_urn, "<rspec")
        made.append(("v3.Allocate", refused.value.code))
        am.allocate(slice_urn, REQUEST)
        made.append(("v3.Allocate", 0))
        proc.send_signal(signal.SIGKILL)           # right after the last answer
        assert proc.wait(LIVE) == -signal.SIGKILL
    finally:
        am.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(LIVE)
    entries = committed(settings.effective_database_url)
    assert [e for e in entries if e[0] in ("v3.Allocate", "v3.Delete")] == made


# ---- (c) the audit write fails or hangs -----------------------------------------------------

def test_a_failing_audit_write_answers_logs_counts_and_retries(base_settings, authorizer, fx,
                                                               db, caplog):
    url, store = db
    real = store.audit_batch
    database_away = threading.Event()
    database_away.set()

    def flaky(records):
        if database_away.is_set():
            raise ConnectionError("database away")
        real(records)

    store.audit_batch = flaky
    metrics = AMMetrics()
    audit = QueuedAudit(store, sync_wait_s=LIVE)
    try:
        api = client(durable_app(base_settings, authorizer, audit, metrics=metrics), fx)
        with caplog.at_level(logging.ERROR, logger="am.api"):
            result = api.call("Allocate", SLICE, [fx.cred("slice-cred-alice")], REQUEST, {})
        # answered (the allocation committed) without waiting for the bound: the write failed
        assert code_of(result) == 0
        errors = [r.getMessage() for r in caplog.records
                  if r.name == "am.api" and r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert "v3.Allocate" in errors[0] and ALICE in errors[0] and SLICE in errors[0]
        assert "without its audit entry confirmed" in errors[0] and "database away" in errors[0]
        assert unaudited(metrics, "v3", "Allocate") == 1
        assert api.call("GetVersion")["code"]["geni_code"] == 0   # fire-and-forget: not counted
        assert unaudited(metrics, "v3", "GetVersion") == 0
        assert committed(url) == []
        database_away.clear()
        audit.flush()                                  # the kept records are written again
        assert committed(url) == [("v3.Allocate", 0), ("v3.GetVersion", 0)]
    finally:
        audit.close()


def test_a_stuck_audit_write_bounds_the_wait(base_settings, authorizer, fx, db, caplog):
    url, store = db
    gate = Gate(store)
    metrics = AMMetrics()
    audit = QueuedAudit(store, sync_wait_s=0.2)
    try:
        api = client(durable_app(base_settings, authorizer, audit, metrics=metrics), fx)
        with caplog.at_level(logging.ERROR, logger="am.api"):
            deleting, delete = in_thread(lambda: api.call("Delete", [SLICE],
                                                          [fx.cred("slice-cred-alice")], {}))
            deleting.join(LIVE)
        assert not deleting.is_alive()                 # the wait ended without the writer
        assert code_of(delete["result"]) == 12         # no slivers: SEARCHFAILED, answered
        errors = [r.getMessage() for r in caplog.records if r.name == "am.api"]
        assert len(errors) == 1 and "v3.Delete" in errors[0]
        assert "not committed within 0.2 s" in errors[0]
        assert unaudited(metrics, "v3", "Delete") == 1
        assert committed(url) == []
        gate.open.set()                                # the write finishes after all
        audit.flush()
        assert committed(url) == [("v3.Delete", 12)]
    finally:
        gate.open.set()
        audit.close()


def test_a_record_the_database_refuses_alone_does_not_block_the_others(db, caplog):
    """A retried record the database refuses while it takes other writes is dropped (logged),
    instead of wedging every later retry."""
    url, store = db
    real = store.audit_batch
    state = {"down": True}

    def picky(records):
        if state["down"] or any(r.caller_urn.endswith("poison") for r in records):
            raise ValueError("refused")
        real(records)

    store.audit_batch = picky
    audit = QueuedAudit(store)
    try:
        for who in ("a", "poison", "b"):
            audit(f"urn:publicid:IDN+x+user+{who}", None, "v3.GetVersion", "", 0, "", 1.0)
        audit.flush()                                  # all three kept for a retry
        state["down"] = False
        with caplog.at_level(logging.ERROR, logger="am.audit"):
            audit("urn:publicid:IDN+x+user+c", None, "v3.Delete", "", 0, "", 1.0, durable=True)
            audit.flush()
    finally:
        audit.close()
    urns = [e.caller_urn.rsplit("+", 1)[1] for e in reversed(store.audit_entries())]
    assert urns == ["c", "a", "b"]                     # the fresh one first, then the retried
    assert any("audit record dropped" in r.getMessage() and "poison" in r.getMessage()
               for r in caplog.records)


def test_a_database_that_goes_away_again_loses_no_retried_record(db, caplog):
    """Fresh records committed, then the database went away before the retry: the retried
    records are all refused, none is taken for a bad record, all are written later."""
    url, store = db
    real = store.audit_batch
    state = {"up_for": 0}

    def flapping(records):
        if state["up_for"] == 0:
            raise ConnectionError("database away")
        state["up_for"] -= 1
        real(records)

    store.audit_batch = flapping
    audit = QueuedAudit(store)
    try:
        for who in ("a", "b"):
            audit(f"urn:publicid:IDN+x+user+{who}", None, "v3.GetVersion", "", 0, "", 1.0)
        audit.flush()
        state["up_for"] = 1                            # one commit, then away again
        with caplog.at_level(logging.ERROR, logger="am.audit"):
            audit("urn:publicid:IDN+x+user+c", None, "v3.Delete", "", 0, "", 1.0, durable=True)
            audit.flush()
        assert not any("dropped" in r.getMessage() for r in caplog.records)
        assert [e.caller_urn for e in store.audit_entries()] == ["urn:publicid:IDN+x+user+c"]
        state["up_for"] = 10 ** 6
        audit.flush()
    finally:
        audit.close()
    assert sorted(e.caller_urn.rsplit("+", 1)[1] for e in store.audit_entries()) == ["a", "b",
                                                                                     "c"]


# ---- (d) concurrent callers share commits ---------------------------------------------------

def test_concurrent_state_changing_calls_share_commits(base_settings, authorizer, fx, db):
    url, store = db
    gate = Gate(store)            # hold the first transaction until every other call waits
    audit = QueuedAudit(store, sync_wait_s=LIVE)
    callers = 16
    try:
        app = durable_app(base_settings, authorizer, audit)
        cred = [fx.cred("slice-cred-alice")]
        threads = [in_thread(lambda: client(app, fx).call("Allocate", SLICE, cred, REQUEST, {}))
                   for _ in range(callers)]
        assert gate.entered.wait(LIVE)
        first = len(gate.batches[0])
        # the rest are queued, their callers waiting
        wait_until(lambda: audit.queued() >= callers - first, "the other calls to queue",
                   LIVE, 0.01, detail=lambda: f"queued: {audit.queued()}")
        assert all(t.is_alive() for t, _ in threads)   # nobody answered before a commit
        gate.open.set()
        for thread, out in threads:
            thread.join(LIVE)
            assert not thread.is_alive() and code_of(out["result"]) == 0
    finally:
        gate.open.set()
        audit.close()
    assert sum(len(b) for b in gate.batches) == callers
    assert len(gate.batches) == 2 < callers         # two transactions for sixteen calls
    assert committed(url) == [("v3.Allocate", 0)] * callers
