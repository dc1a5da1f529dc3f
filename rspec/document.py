"""Loading an RSpec: safe parse, root checks (namespace, version, type), XSD validation."""
from __future__ import annotations

from lxml import etree

from rspec import namespaces as ns
from rspec.errors import BADARGS, BADVERSION, RSpecError
from rspec.schema import DocType, schema_problems
from rspec.xmlsafe import DEFAULT_MAX_BYTES, parse_xml


def load_document(xml: str | bytes, expected: DocType | str | None, *,
                  max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[etree._ElementTree, DocType]:
    """Parse and schema-validate; `expected=None` takes the type the document declares.

    Wrong namespace, version or type raise BADVERSION (the AM API answer for "not an RSpec
    version I speak"); everything else raises BADARGS; oversized documents TOOBIG.
    """
    tree = parse_xml(xml, max_bytes=max_bytes)
    doc_type = check_root(tree.getroot(), DocType(expected) if expected else None)
    problems = schema_problems(tree, doc_type)
    if problems:
        raise RSpecError(problems, BADARGS)
    return tree, doc_type


def check_root(root: etree._Element, expected: DocType | None) -> DocType:
    line = root.sourceline
    tag = root.tag if isinstance(root.tag, str) else ""
    # split "{uri}local" by hand: libxml2 recovers from namespace errors, so a name such as
    # "rspe:" (prefix, no local part) reaches here, and etree.QName would raise ValueError
    uri, local = tag[1:].split("}", 1) if tag.startswith("{") else (None, tag)
    local = local or "?"
    if local != "rspec":
        raise RSpecError.one(f"root element is <{local}>, not an RSpec <rspec>",
                             line=line, element=local)
    if uri != ns.RSPEC3:
        if uri == ns.PROTOGENI2:
            why = "ProtoGENI v2 RSpecs are not supported"
        elif uri is None:
            why = "the <rspec> element has no namespace"
        else:
            why = f"namespace {uri!r} is not GENI RSpec v3"
        raise RSpecError.one(f"{why}; send GENI RSpec version 3 (namespace {ns.RSPEC3})",
                             line=line, element="rspec", geni_code=BADVERSION)
    declared = root.get("type")
    if declared is None:
        raise RSpecError.one("the <rspec> element has no type attribute",
                             line=line, element="rspec")
    try:
        doc_type = DocType(declared.strip())
    except ValueError:
        raise RSpecError.one(
            f"unknown RSpec type {declared!r} (expected request, advertisement or manifest)",
            line=line, element="rspec", geni_code=BADVERSION) from None
    if expected is not None and doc_type is not expected:
        raise RSpecError.one(f"document is an RSpec of type {doc_type.value!r}, "
                             f"but a {expected.value!r} RSpec is required",
                             line=line, element="rspec", geni_code=BADVERSION)
    return doc_type
