"""Method tables and the per-call envelope: errors become GENI structs, every call is audited.

An API version is a `MethodTable`: XML-RPC method name -> handler(call, params) returning the
`value` of a successful answer (or a full result via `Answer`). Handlers raise `GeniError` for
refusals; anything unexpected becomes ERROR (2) with a logged traceback, never a Fault.

Every method of a table is classified as state-changing or read-only (the table refuses to be
built otherwise). A state-changing call, refused or not, is audited *durably*: `call` returns
(and so the answer goes out) only once the audit sink has committed its record.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from am.api import values
from am.errors import GeniCode, GeniError

log = logging.getLogger("am.api")


@dataclass
class Call:
    """One API call as it goes through the layer; the audit record is filled in on the way."""

    method: str
    caller_pem: str
    remote_addr: str = ""
    caller_urn: str = ""
    tool_urn: str | None = None
    target: str = ""


@dataclass(frozen=True)
class Answer:
    """A successful value plus optional output text and extra top-level members."""

    value: Any
    output: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[Call, tuple[Any, ...]], Any]


@dataclass(frozen=True)
class CallRecord:
    """What a call observer sees once a call is answered (metrics, structured logs)."""

    api: str            # "v3" | "v2"
    method: str         # XML-RPC method name, e.g. "Allocate"
    caller: str         # caller URN ("" when the certificate was refused)
    tool: str | None
    target: str
    code: int           # geni_code of the answer
    duration_s: float
    audited: bool = True   # False: answered without its audit record confirmed (logged)


CallObserver = Callable[[CallRecord], None]


class AuditUnconfirmed(Exception):
    """The audit sink could not confirm a record in time: the write failed, or it did not
    finish within the sink's bound, or the record could not even be queued."""


class AuditSink(Protocol):
    """Records one answered call. With `durable`, returns only once the record is committed,
    or raises `AuditUnconfirmed` within a bounded time; without, it may write later."""

    def __call__(self, caller: str, tool: str | None, method: str, target: str, code: int,
                 message: str, duration_ms: float, *, durable: bool = False) -> None: ...


class MethodTable:
    """The methods of one API version. `state_changing` and `read_only` must classify every
    handler, each in exactly one of them: a new method cannot become fire-and-forget audited
    by omission."""

    def __init__(self, name: str, handlers: dict[str, Handler], *,
                 state_changing: frozenset[str], read_only: frozenset[str],
                 audit: AuditSink | None = None, envelope_extra: dict[str, Any] | None = None):
        unclassified = sorted(set(handlers) - state_changing - read_only)
        both = sorted(state_changing & read_only)
        stray = sorted((state_changing | read_only) - set(handlers))
        if unclassified or both or stray:
            raise ValueError(f"API {name}: every method must be either state-changing or "
                             f"read-only (unclassified: {unclassified}, both: {both}, "
                             f"not a method: {stray})")
        self.name = name
        self.handlers = handlers
        self.state_changing = state_changing
        self.read_only = read_only
        self.audit = audit
        self.envelope_extra = envelope_extra or {}
        self.observers: list[CallObserver] = []

    def add_observer(self, observer: CallObserver) -> None:
        """Also tell `observer` about every answered call (after the audit record)."""
        self.observers.append(observer)

    def __contains__(self, method: str) -> bool:
        return method in self.handlers

    def call(self, call: Call, params: tuple[Any, ...]) -> dict[str, Any]:
        """Run one method and return its full GENI return structure."""
        started = time.perf_counter()
        try:
            answer = self.handlers[call.method](call, params)
            if not isinstance(answer, Answer):
                answer = Answer(answer)
            result = values.success(answer.value, answer.output,
                                    **self.envelope_extra, **answer.extra)
            code, message = 0, answer.output
        except GeniError as exc:
            result = values.failure(exc, **self.envelope_extra)
            code, message = int(exc.code), exc.message
        except Exception:   # a bug or a broken dependency: answer, log, never leak a traceback
            log.exception("%s %s failed", self.name, call.method)
            exc = GeniError(GeniCode.ERROR, f"internal error in {call.method} (logged at the AM)")
            result = values.failure(exc, **self.envelope_extra)
            code, message = int(exc.code), exc.message
        audited = self._audit(call, code, message, (time.perf_counter() - started) * 1000.0)
        if self.observers:   # -- call observers (metrics, structured logs): begin
            record = CallRecord(self.name, call.method, call.caller_urn, call.tool_urn,
                                call.target, code, time.perf_counter() - started, audited)
            for observe in self.observers:
                try:
                    observe(record)
                except Exception:
                    log.exception("call observer failed for %s", call.method)
        # -- call observers: end
        return result

    def _audit(self, call: Call, code: int, message: str, duration_ms: float) -> bool:
        """Hand the call's record to the sink (waiting for its commit when the method changes
        state). False when it is not confirmed: the call is still answered (its state change,
        if any, has committed and hiding it would be worse), and the record is in the log."""
        if self.audit is None:
            return True
        caller, method = call.caller_urn or "unauthenticated", f"{self.name}.{call.method}"
        try:
            self.audit(caller, call.tool_urn, method, call.target, code, message, duration_ms,
                       durable=call.method in self.state_changing)
            return True
        except AuditUnconfirmed as exc:
            log.error("answering %s by %s on %r (geni_code %d, %r) without its audit entry "
                      "confirmed: %s", method, caller, call.target, code, message[:200], exc)
        except Exception:
            log.exception("audit write failed for %s by %s on %r (geni_code %d)", method,
                          caller, call.target, code)
        return False
