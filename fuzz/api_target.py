"""Harness `api`: one input is one POST to the AM's XML-RPC endpoint (the real Flask app over
the real `Aggregate`, a SQLite store and the fake site; the caller is the gcf fixture alice).

Input forms:
  * raw: the body as it is, to `/` (AM API v3); a leading `2` posts the rest to `/am/2`.
  * structured: a leading NUL byte; the rest drives `atheris.FuzzedDataProvider` to pick a
    method and build its parameters (known option names, URNs, alice's valid slice credential,
    a valid request RSpec, and arbitrary values), marshalled with `xmlrpc.client.dumps`. This
    reaches argument checking and the service far more often than mutating raw XML does.

Inputs that name `Shutdown` are skipped (see V3_METHODS).

Allowed answers: HTTP 413 for oversized bodies; a Fault with one of the four XML-RPC fault
codes; a GENI return structure with an integer geni_code. A Finding: any other HTTP status,
an answer that is not XML-RPC, or the dispatcher's catch-all ("internal error ... logged"),
which means some code under it raised an untyped exception (its traceback is in the Finding).
"""
from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import xmlrpc.client
from pathlib import Path
from typing import Any

from fuzz.harness import CORPUS_DIR, Finding, TestOneInput

KEYS = CORPUS_DIR.parent / "keys"
AUTHORITY = "geni-am:fuzz"
SLICE = "urn:publicid:IDN+geni:gpo:gcf+slice+fixture"
FAULTS = {-32700, -32600, -32601, -32603}
# Shutdown is left out: once it succeeds, the fixture slice refuses every later call (the only
# slice alice's credential names), which would leave the fuzzer nothing deeper to reach.
V3_METHODS = ("GetVersion", "ListResources", "Describe", "Allocate", "Renew", "Provision",
              "Status", "PerformOperationalAction", "Delete")
V2_METHODS = ("GetVersion", "ListResources", "CreateSliver", "SliverStatus", "RenewSliver",
              "DeleteSliver")
OPTION_KEYS = ("geni_rspec_version", "geni_available", "geni_compressed", "geni_end_time",
               "geni_best_effort", "geni_users", "geni_speaking_for", "geni_extend_alap",
               "geni_slice_urn", "geni_sliver_urn", "geni_update_users", "type", "version",
               "urn", "keys", "geni_type", "geni_value", "geni_version", "geni_api")
WORDS = (SLICE, "urn:publicid:IDN+geni:gpo:gcf+user+alice",
         f"urn:publicid:IDN+{AUTHORITY}+sliver+1", f"urn:publicid:IDN+{AUTHORITY}+node+fake1",
         "urn:publicid:IDN+geni:gpo:gcf+slice+other", "GENI", "3", "2", "geni_sfa", "geni_abac",
         "geni_start", "geni_restart", "geni_stop", "geni_update_users", "2030-01-01T00:00:00Z",
         "2001-01-01T00:00:00Z", "1 week", "ssh-rsa AAAAB3NzaC1yc2E= alice@example", "",
         "ProtoGENI", "geni_ready")


class _Queue:
    """Jobs are recorded and dropped: no worker runs in the harness."""

    def submit(self, job_id: int) -> None:
        pass

    def submit_many(self, job_ids) -> None:
        pass


class _Tracebacks(logging.Handler):
    """Keeps the ERROR records with a traceback that the AM logs while answering one input."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


def build() -> TestOneInput:
    import atheris

    from am.app import create_app
    from am.auth import Authorizer
    from am.config import Settings
    from am.service.aggregate import Aggregate
    from am.store.store import open_store
    from drivers.registry import load_site

    state = Path(tempfile.mkdtemp(prefix="geniam-fuzz-api-"))
    atexit.register(shutil.rmtree, state, True)     # the store and fake substrate of this run
    trust = state / "trust"
    trust.mkdir()
    shutil.copy(KEYS / "ca-cert.pem", trust / "ca-cert.pem")
    settings = Settings(trust_roots=str(trust), authority=AUTHORITY, state_dir=str(state),
                        fake_nodes=4, max_request_bytes=256 * 1024)
    store = open_store(settings.effective_database_url, migrate=True)
    site = load_site(None, authority=AUTHORITY, fake_nodes=4, state_dir=str(state))
    service = Aggregate(settings, store, site, _Queue())
    app = create_app(settings, service, Authorizer.from_settings(settings), call_log=False)
    client = app.test_client()
    environ = {"SSL_CLIENT_CERT": (KEYS / "alice-cert.pem").read_text(),
               "REMOTE_ADDR": "127.0.0.1"}
    credential = {"geni_type": "geni_sfa", "geni_version": "3",
                  "geni_value": (KEYS / "slice-cred-alice.xml").read_text()}
    rspec = (CORPUS_DIR / "rspec").joinpath("two-nodes.xml").read_text()
    tracebacks = _Tracebacks()
    am_log = logging.getLogger("am")
    am_log.addHandler(tracebacks)
    am_log.propagate = False          # warnings of refused calls: not the fuzzer's output

    def value(fdp: Any, depth: int) -> Any:
        kind = fdp.ConsumeIntInRange(0, 11 if depth < 3 else 5)
        if kind == 0:
            return fdp.ConsumeIntInRange(-2**31, 2**31 - 1)
        if kind == 1:
            return fdp.ConsumeBool()
        if kind == 2:
            return WORDS[fdp.ConsumeIntInRange(0, len(WORDS) - 1)]
        if kind == 3:
            return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 64))
        if kind == 4:
            return fdp.ConsumeRegularFloat()
        if kind == 5:
            return xmlrpc.client.Binary(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 32)))
        if kind == 6:
            return [value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))]
        if kind == 7:
            return {OPTION_KEYS[fdp.ConsumeIntInRange(0, len(OPTION_KEYS) - 1)]:
                    value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))}
        if kind == 8:
            return [credential]
        if kind == 9:
            return rspec
        if kind == 10:
            return {"geni_rspec_version": {"type": "GENI", "version": "3"},
                    **{OPTION_KEYS[fdp.ConsumeIntInRange(0, len(OPTION_KEYS) - 1)]:
                       value(fdp, depth + 1)}}
        return xmlrpc.client.DateTime(fdp.ConsumeIntInRange(0, 2**31 - 1))

    def structured(data: bytes) -> tuple[str, bytes]:
        fdp = atheris.FuzzedDataProvider(data)
        v2 = fdp.ConsumeBool()
        methods = V2_METHODS if v2 else V3_METHODS
        pick = fdp.ConsumeIntInRange(0, len(methods))
        method = methods[pick] if pick < len(methods) else fdp.ConsumeUnicodeNoSurrogates(16)
        params = tuple(value(fdp, 0) for _ in range(fdp.ConsumeIntInRange(0, 5)))
        try:
            body = xmlrpc.client.dumps(params, method, allow_none=False).encode("utf-8")
        except (OverflowError, TypeError, ValueError):
            body = b""
        return ("/am/2" if v2 else "/"), body

    def one(data: bytes) -> None:
        if data[:1] == b"\x00":
            path, body = structured(data[1:])
        elif data[:1] == b"2":
            path, body = "/am/2", data[1:]
        else:
            path, body = "/", data
        if b"Shutdown" in body:
            return                    # see V3_METHODS
        tracebacks.records.clear()
        response = client.post(path, data=body, content_type="text/xml", environ_base=environ)
        if tracebacks.records:
            import traceback
            record = tracebacks.records[0]
            text = "".join(traceback.format_exception(*record.exc_info))
            raise Finding(f"{record.getMessage()}; the AM logged:\n{text}")
        if response.status_code == 413:
            return
        if response.status_code != 200:
            raise Finding(f"HTTP {response.status_code}: {response.data[:300]!r}")
        try:
            (result,), _ = xmlrpc.client.loads(response.data)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode not in FAULTS:
                raise Finding(f"Fault code {fault.faultCode}: {fault.faultString}") from None
            return
        except Exception as exc:   # noqa: BLE001 - the answer itself is the finding
            raise Finding(f"the answer is not XML-RPC ({exc!r}): {response.data[:300]!r}") \
                from None
        code = result.get("code") if isinstance(result, dict) else None
        if not isinstance(code, dict) or not isinstance(code.get("geni_code"), int):
            raise Finding(f"not a GENI return structure: {str(result)[:300]}")
        if code["geni_code"] == 2 and "internal error" in str(result.get("output", "")):
            raise Finding(f"internal error answer: {result.get('output')}")
    return one
