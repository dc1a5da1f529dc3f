"""Hardened XML parsing for credentials.

Credentials arrive from anyone on the network. Before libxml2 sees a byte we enforce a size
limit and refuse any DOCTYPE outright (no DTD means no entity expansion, "billion laughs" or
external entities); the parser itself is configured to resolve no entities, load no DTD,
touch no network and keep libxml2's huge-tree limits.
"""
from __future__ import annotations

import io
import re

from lxml import etree

from credentials.errors import CredentialInvalid

DEFAULT_MAX_BYTES = 256 * 1024
_DUPLICATE_ID = re.compile(r"\bID (\S+) already defined")
XML_ID = "{http://www.w3.org/XML/1998/namespace}id"


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           dtd_validation=False, huge_tree=False, remove_blank_text=False,
                           remove_comments=False, collect_ids=True)


def to_bytes(xml: str | bytes) -> bytes:
    if isinstance(xml, bytes):
        return xml
    if isinstance(xml, str):
        try:
            return xml.encode("utf-8")
        except UnicodeEncodeError:   # lone surrogates, e.g. from a JSON "\ud800"
            raise CredentialInvalid("credential text is not valid Unicode") from None
    raise CredentialInvalid(f"a credential must be XML text, not {type(xml).__name__}")


def parse_secure(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES
                 ) -> tuple[etree._ElementTree, dict[str, etree._Element]]:
    """Parse `data`; return the tree and its xml:id table (id -> the element libxml2 resolves,
    which is the element an XML signature Reference `#id` covers)."""
    if len(data) > max_bytes:
        raise CredentialInvalid(
            f"credential is {len(data)} bytes, over the {max_bytes}-byte limit")
    if not data.strip():
        raise CredentialInvalid("credential is empty")
    head = data.lstrip()
    if b"<!DOCTYPE" in data or b"<!doctype" in data or b"<!ENTITY" in data:
        raise CredentialInvalid("credential XML contains a DOCTYPE/entity declaration "
                                "(refused: no DTDs or entities are accepted)")
    if head[:2] == b"\xfe\xff" or head[:2] == b"\xff\xfe" or b"\x00" in head[:4]:
        raise CredentialInvalid("credential XML must be UTF-8 (UTF-16 refused)")
    try:
        tree, ids = etree.parseid(io.BytesIO(data), parser=_parser())
    except etree.XMLSyntaxError as exc:
        dup = _DUPLICATE_ID.search(str(exc))
        if dup:
            raise CredentialInvalid(f"duplicate xml:id {dup.group(1)!r} (refused: ambiguous "
                                    "signature reference)") from None
        raise CredentialInvalid(f"malformed credential XML: {exc}") from None
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise CredentialInvalid("credential XML contains a DOCTYPE (refused)")
    return tree, dict(ids)
