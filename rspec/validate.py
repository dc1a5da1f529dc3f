"""Validating any RSpec document (the `geni-am rspec validate` command and tests)."""
from __future__ import annotations


from rspec import namespaces as ns
from rspec.document import load_document
from rspec.errors import TOOBIG, Problem, RSpecError, at_start_tags
from rspec.request import _RequestReader
from rspec.schema import DocType, pretty_name
from rspec.xmlsafe import DEFAULT_MAX_BYTES

R = "{%s}" % ns.RSPEC3


def validate_document(xml: str | bytes, expected_type: DocType | str | None = None, *,
                      max_bytes: int = DEFAULT_MAX_BYTES,
                      known_sliver_types: frozenset[str] | None = None) -> list[Problem]:
    """Every problem of the document (empty list: valid). `expected_type=None`: as declared.

    Requests get the full request checks with every node counted as ours; advertisements and
    manifests get the schema plus identifier uniqueness.
    """
    try:
        tree, doc_type = load_document(xml, expected_type, max_bytes=max_bytes)
    except RSpecError as exc:
        if exc.geni_code == TOOBIG or not isinstance(xml, (str, bytes)):
            return exc.problems
        return at_start_tags(exc.problems, xml)
    root = tree.getroot()
    if doc_type is DocType.REQUEST:
        reader = _RequestReader(None, known_sliver_types)
        reader.read(root)
        problems = reader.problems
    elif doc_type is DocType.ADVERTISEMENT:
        problems = _unique(root.iterchildren(R + "node"), "component_id", "node")
        problems += _unique(root.iterchildren(R + "link"), "component_id", "link")
    else:
        problems = _unique(root.iterchildren(R + "node"), "client_id", "node")
        problems += _unique(root.iterchildren(R + "link"), "client_id", "link")
        problems += _unique((i for n in root.iterchildren(R + "node")
                             for i in n.iterchildren(R + "interface")), "client_id", "interface")
    return sorted(at_start_tags(problems, xml), key=lambda p: p.line or 0)


def _unique(elements, attribute: str, kind: str) -> list[Problem]:
    seen: dict[str, int | None] = {}
    problems = []
    for el in elements:
        value = el.get(attribute, "")
        if value in seen:
            problems.append(Problem(el.sourceline, pretty_name(el.tag),
                                    f"duplicate {kind} {attribute} {value!r} "
                                    f"(first used on line {seen[value]})"))
        else:
            seen[value] = el.sourceline
    return problems
