"""XSD validation against the schemas shipped in `rspec/schemas/`.

Each document type has a bundle schema (`<type>-bundle.xsd`) importing the GENI v3 core schema
and the extension schemas we check. Core elements accept foreign elements with
`processContents="lax"`, so an extension element is validated exactly when its namespace is
one of ours, and unknown extensions pass untouched. The schemas are compiled once, from local
files only (the parser has no network access), and kept in module-level immutable objects.
"""
from __future__ import annotations

import re
import threading
from enum import Enum
from functools import lru_cache
from pathlib import Path

from lxml import etree

from rspec import namespaces as ns
from rspec.errors import Problem

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


class DocType(str, Enum):
    REQUEST = "request"
    ADVERTISEMENT = "advertisement"
    MANIFEST = "manifest"

    @property
    def bundle(self) -> Path:
        short = {"request": "request", "advertisement": "ad", "manifest": "manifest"}[self.value]
        return SCHEMA_DIR / f"{short}-bundle.xsd"


class _Validator:
    """A compiled schema plus a lock: an XMLSchema's error_log is per object, not per call."""

    def __init__(self, path: Path):
        parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
        self._schema = etree.XMLSchema(etree.parse(str(path), parser))
        self._lock = threading.Lock()

    def problems(self, tree: etree._ElementTree) -> list[Problem]:
        with self._lock:
            if self._schema.validate(tree):
                return []
            entries = list(self._schema.error_log)
        return [_problem(e) for e in entries]


@lru_cache(maxsize=None)
def validator(doc_type: DocType) -> _Validator:
    return _Validator(doc_type.bundle)


_ELEMENT = re.compile(r"^Element '(\{[^}]*\})?([^']+)'(?:, attribute '([^']+)')?: ")
_CLARK = re.compile(r"\{([^}]*)\}")
_PREFIX = {v: k for k, v in ns.PREFIXES.items()}


def pretty_name(tag: str) -> str:
    """`{ns}local` as `prefix:local` (core namespace elements bare), for messages."""
    if not tag.startswith("{"):
        return tag
    uri, local = tag[1:].split("}", 1)
    if uri == ns.RSPEC3:
        return local
    prefix = _PREFIX.get(uri)
    return f"{prefix}:{local}" if prefix else tag


def _problem(entry: etree._LogEntry) -> Problem:
    message = entry.message.strip()
    element = None
    match = _ELEMENT.match(message)
    if match:
        element = pretty_name((match.group(1) or "") + match.group(2))
        rest = message[match.end():]
        message = (f"attribute '{match.group(3)}': " if match.group(3) else "") + rest
    message = _CLARK.sub(lambda m: "" if m.group(1) == ns.RSPEC3 else
                         (_PREFIX.get(m.group(1), "{" + m.group(1) + "}") + ":"
                          if _PREFIX.get(m.group(1)) else "{" + m.group(1) + "}"), message)
    return Problem(entry.line or None, element, f"schema: {message}")


def schema_problems(tree: etree._ElementTree, doc_type: DocType) -> list[Problem]:
    """Every XSD violation of `tree` as a Problem with its line."""
    return validator(doc_type).problems(tree)
