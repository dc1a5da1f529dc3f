"""What a harness is, and what counts as a finding.

A harness turns one fuzzer input (bytes) into one call of the code under test. The code may
refuse the input only with its typed error (`RSpecError`, `CredentialError`, an XML-RPC Fault or
a GENI error code in the answer); any other exception escapes the harness and libFuzzer records
the input as a crash. Misbehaviour that raises nothing (the API answering "internal error" after
logging a traceback, an answer that is not XML-RPC) raises `Finding` so that it is recorded the
same way.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

FUZZ_DIR = Path(__file__).resolve().parent
CORPUS_DIR = FUZZ_DIR / "corpus"

TestOneInput = Callable[[bytes], None]


class Finding(Exception):
    """The code under test misbehaved on this input without raising (or raised untyped)."""


@dataclass(frozen=True)
class Harness:
    name: str
    module: str                       # fuzz.<module> with `build() -> TestOneInput`
    instrument: tuple[str, ...]       # packages whose bytecode atheris instruments
    summary: str

    @property
    def corpus(self) -> Path:
        return CORPUS_DIR / self.name

    def build(self) -> TestOneInput:
        """Import the target (inside atheris' instrumentation when the caller set it up) and
        return the function that runs one input."""
        return importlib.import_module(self.module).build()


HARNESSES: dict[str, Harness] = {h.name: h for h in (
    Harness("api", "fuzz.api_target", ("am", "credentials", "rspec"),
            "XML-RPC request body -> parser -> AM API v3/v2 dispatch over a real service"),
    Harness("credential", "fuzz.credential_target", ("credentials",),
            "credential XML / caller certificate PEM -> CredentialVerifier"),
    Harness("rspec", "fuzz.rspec_target", ("rspec",),
            "request RSpec -> parse_request and validate_document"),
)}


def seeds(name: str) -> list[bytes]:
    """The seed corpus of one harness, in a stable order."""
    return [p.read_bytes() for p in sorted(HARNESSES[name].corpus.iterdir()) if p.is_file()]
