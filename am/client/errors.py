"""What can go wrong when talking to an AM, each with a message saying what to fix.

`ClientError` is the root: the CLI prints its message (no traceback) and exits 2. `AMError` is
the AM's own answer (a non-zero `geni_code`); everything else never reached a GENI answer.
"""
from __future__ import annotations

from typing import Any

from am.errors import GeniCode

BUSY_CODES = frozenset({int(GeniCode.BUSY), int(GeniCode.SERVERBUSY)})


class ClientError(Exception):
    """Anything that stopped a call; `str()` is a complete, actionable sentence."""


class ClientConfigError(ClientError):
    """Missing or unusable local input: files, config, key/certificate pair, credential."""


class ClientTLSError(ClientError):
    """The TLS handshake failed in either direction (our trust of the AM, or its of us)."""


class ClientTransportError(ClientError):
    """No GENI answer: connection refused, timeout, HTTP error, XML-RPC fault."""


def code_label(code: int) -> str:
    try:
        return GeniCode(code).name
    except ValueError:
        return f"CODE_{code}"


class AMError(ClientError):
    """The AM answered with a non-zero geni_code."""

    def __init__(self, code: int, output: str = "", value: Any = None, method: str = ""):
        self.code = int(code)
        self.label = code_label(self.code)
        self.output = output
        self.value = value
        self.method = method
        where = f"{method}: " if method else ""
        super().__init__(f"{where}the AM answered {self.label} ({self.code})"
                         + (f": {output}" if output else ""))

    @property
    def busy(self) -> bool:
        return self.code in BUSY_CODES


class AMBusy(AMError):
    """The AM is busy (geni_code 14 BUSY, -32001 SERVERBUSY, or HTTP 503/504): retry later."""
