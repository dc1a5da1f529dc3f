"""Parsing untrusted XML safely: no DTDs, no entity expansion, no network, a size limit.

Every RSpec the AM receives comes from the network. libxml2 (through lxml) is configured so
that nothing in the document can make it read a file, open a socket or expand entities, and a
document that even declares a DTD is refused before it reaches the parser.
"""
from __future__ import annotations

import re

from lxml import etree

from rspec.errors import BADARGS, TOOBIG, Problem, RSpecError

DEFAULT_MAX_BYTES = 4 * 1024 * 1024

_DOCTYPE = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


def _parser(*, override_utf8: bool) -> etree.XMLParser:
    # A parser per call: lxml parsers must not be shared between threads.
    return etree.XMLParser(
        encoding="utf-8" if override_utf8 else None,
        resolve_entities=False,   # never expand entities (billion laughs, XXE)
        no_network=True,          # never fetch anything
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,          # keep libxml2's depth and text-size limits
        collect_ids=False,
        remove_pis=True,
    )


def to_bytes(xml: str | bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The document as bytes, refused with TOOBIG if it exceeds `max_bytes`."""
    if isinstance(xml, str):
        if len(xml) > max_bytes:   # cheap early exit: every character is at least one byte
            raise _too_big(len(xml), max_bytes)
        try:
            data = xml.encode("utf-8")
        except UnicodeEncodeError as exc:   # lone surrogates
            raise RSpecError.one(f"document is not valid Unicode: {exc.reason}") from None
    elif isinstance(xml, (bytes, bytearray, memoryview)):
        data = bytes(xml)
    else:
        raise RSpecError.one(f"an RSpec must be a string, not {type(xml).__name__}")
    if len(data) > max_bytes:
        raise _too_big(len(data), max_bytes)
    return data


def _too_big(size: int, limit: int) -> RSpecError:
    return RSpecError.one(f"document is {size} bytes, over the limit of {limit} bytes",
                          geni_code=TOOBIG)


def parse_xml(xml: str | bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> etree._ElementTree:
    """Parse an untrusted document; raise RSpecError naming the line of every syntax error."""
    override_utf8 = isinstance(xml, str)
    data = to_bytes(xml, max_bytes=max_bytes)
    if not data.strip():
        raise RSpecError.one("document is empty")
    scan = _ascii_view(data)
    match = _DOCTYPE.search(scan)
    if match:
        line = scan.count(b"\n", 0, match.start()) + 1
        raise RSpecError.one("DTDs and entity declarations are not allowed in an RSpec",
                             line=line, element="!" + match.group(1).decode().upper())
    parser = _parser(override_utf8=override_utf8)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise RSpecError(_syntax_problems(exc, parser.error_log), BADARGS) from None
    except (ValueError, etree.LxmlError) as exc:   # e.g. unknown encoding declared
        raise RSpecError.one(f"malformed XML: {exc}") from None
    if any(entry.level_name in ("ERROR", "FATAL") for entry in parser.error_log):
        # libxml2 recovers from some namespace errors (a root named "rspe:") and returns a
        # tree whose names lxml itself refuses later: a document it complained of is refused
        raise RSpecError(_syntax_problems(None, parser.error_log), BADARGS)
    tree = root.getroottree()
    info = tree.docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        # Reached only for encodings the byte scan above cannot read (UTF-16, UTF-32).
        raise RSpecError.one("DTDs are not allowed in an RSpec", line=1, element="!DOCTYPE")
    return tree


def _ascii_view(data: bytes) -> bytes:
    """The document re-encoded as UTF-8 when it carries a UTF-16/32 byte-order mark, so the
    DTD scan sees markup whatever the encoding."""
    for bom, codec in ((b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xff\xfe\x00\x00", "utf-32-le"),
                       (b"\xfe\xff", "utf-16-be"), (b"\xff\xfe", "utf-16-le")):
        if data.startswith(bom):
            return data[len(bom):].decode(codec, errors="replace").encode("utf-8")
    if len(data) > 1 and (data[0] == 0 or data[1] == 0):   # UTF-16 without a BOM
        codec = "utf-16-be" if data[0] == 0 else "utf-16-le"
        return data.decode(codec, errors="replace").encode("utf-8")
    return data


def _syntax_problems(exc: etree.XMLSyntaxError | None,
                     log: etree._ListErrorLog) -> list[Problem]:
    """This parse's errors only (the parser's own log, not the thread-global one)."""
    problems: list[Problem] = []
    seen: set[tuple[int, str]] = set()
    for entry in log:
        if entry.level_name not in ("ERROR", "FATAL"):
            continue
        key = (entry.line, entry.message)
        if key in seen:
            continue
        seen.add(key)
        problems.append(Problem(entry.line or None, None,
                                f"malformed XML: {entry.message.strip()}"))
    if not problems and exc is not None:
        line = exc.lineno if isinstance(exc.lineno, int) and exc.lineno > 0 else None
        problems.append(Problem(line, None, f"malformed XML: {exc.msg}"))
    return problems
