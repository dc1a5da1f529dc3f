"""GENI error codes and the one exception type the domain raises.

The API layer turns a `GeniError` into the `{code, value, output}` return structure; only
malformed XML-RPC becomes an XML-RPC Fault. Libraries below `am` (credentials, rspec) raise their
own error types carrying a `geni_code`; `am.api` maps them through `GeniError.from_library`.
"""
from __future__ import annotations

import enum
from typing import Any


class GeniCode(enum.IntEnum):
    SUCCESS = 0
    BADARGS = 1
    ERROR = 2
    FORBIDDEN = 3
    BADVERSION = 4
    SERVERERROR = 5
    TOOBIG = 6
    REFUSED = 7
    TIMEDOUT = 8
    DBERROR = 9
    RPCERROR = 10
    UNAVAILABLE = 11
    SEARCHFAILED = 12
    UNSUPPORTED = 13
    BUSY = 14
    EXPIRED = 15
    INPROGRESS = 16
    ALREADYEXISTS = 17
    MISSINGARGS = 18
    OUTOFRANGE = 19
    CREDENTIAL_INVALID = 20
    CREDENTIAL_EXPIRED = 21
    CREDENTIAL_MISMATCH = 22
    CREDENTIAL_SIGNER_UNTRUSTED = 23
    VLAN_UNAVAILABLE = 24
    INSUFFICIENT_BANDWIDTH = 25
    INSUFFICIENT_NODES = 26
    SERVERBUSY = -32001


class GeniError(Exception):
    """An application error with its GENI code; `value` optionally carries hints to the client."""

    def __init__(self, code: GeniCode | int, message: str, value: Any = None):
        super().__init__(message)
        self.code = GeniCode(code)
        self.message = message
        self.value = value

    @classmethod
    def from_library(cls, exc: Exception, default: GeniCode = GeniCode.ERROR) -> "GeniError":
        """Wrap an error from credentials/ or rspec/ (anything with a `geni_code`)."""
        code = getattr(exc, "geni_code", default)
        return cls(code, str(exc))

    def __repr__(self) -> str:
        return f"GeniError({self.code.name}, {self.message!r})"
