"""Structured logs: one JSON object per line, and the per-API-call log record.

`configure_logging("json")` installs `JsonFormatter` on the root handler, so every logger of the
AM (and of its libraries) writes machine-readable lines; `"text"` keeps the classic format.
`CallLogger` is a call observer (`am.api.dispatch.MethodTable.add_observer`) that logs one
record per answered API call on the `am.calls` logger with its fields as attributes, which the
JSON formatter emits as top-level keys (ts, method, caller, outcome, duration_ms, ...).
"""
from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import IO, Any

from am.api.dispatch import CallRecord
from am.errors import GeniCode

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CALL_LOGGER = "am.calls"

# Attributes every LogRecord has; anything else on a record came from `extra=` and is emitted.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "taskName"}


def outcome_label(code: int) -> str:
    """GENI code -> label (SUCCESS, FORBIDDEN, ...); unknown codes as CODE_<n>."""
    try:
        return GeniCode(code).name
    except ValueError:
        return f"CODE_{code}"


class JsonFormatter(logging.Formatter):
    """A LogRecord -> one JSON object: ts, level, logger, msg, the `extra` fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc)
                          .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at emit time, not at construction: a process that
    swaps stderr (a daemon redirecting it, a test capturing it) never logs into a closed file."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> IO[str]:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass


def configure_logging(fmt: str = "text", *, level: int = logging.INFO,
                      stream: IO[str] | None = None) -> logging.Handler:
    """Replace the root logger's handlers with one writing `fmt` ("text" | "json")."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {fmt!r}")
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Alembic narrates every plugin it loads at INFO on each start; migrations that ran still
    # show up at WARNING and above only when something is wrong, and in `geni-am db upgrade`.
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))
    return handler


class CallLogger:
    """Call observer: one INFO record per answered API call on the `am.calls` logger."""

    def __init__(self, logger: logging.Logger | None = None):
        self.logger = logger or logging.getLogger(CALL_LOGGER)

    def __call__(self, record: CallRecord) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        outcome = outcome_label(record.code)
        duration_ms = round(record.duration_s * 1000.0, 3)
        self.logger.info(
            "%s.%s %s -> %s in %.1f ms", record.api, record.method,
            record.caller or "unauthenticated", outcome, duration_ms,
            extra={"event": "api_call", "api": record.api, "method": record.method,
                   "caller": record.caller, "tool": record.tool, "target": record.target,
                   "outcome": outcome, "geni_code": record.code, "duration_ms": duration_ms})


__all__ = ["CALL_LOGGER", "CallLogger", "JsonFormatter", "LOG_FORMATS", "configure_logging",
           "outcome_label"]
