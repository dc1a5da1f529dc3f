"""Readable renderings of AM answers: sliver tables, version summaries, rspec summaries."""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from lxml import etree

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


def short(state: Any) -> str:
    text = str(state or "")
    return text[5:] if text.startswith("geni_") else text or "-"


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()
             for row in [header, *rows]]
    return "\n".join(lines)


def sliver_table(slivers: Sequence[dict[str, Any]]) -> str:
    if not slivers:
        return "(no slivers)"
    rows = [(s.get("geni_sliver_urn", "?"), short(s.get("geni_allocation_status")),
             short(s.get("geni_operational_status")), str(s.get("geni_expires", "-")),
             str(s.get("geni_error") or "")) for s in slivers]
    return table(rows, ("SLIVER", "ALLOCATION", "OPERATIONAL", "EXPIRES", "ERROR"))


def version_text(value: dict[str, Any]) -> str:
    lines = [f"AM type: {value.get('geni_am_type', '?')} {value.get('geni_am_code', '')}".rstrip(),
             f"AM API: {value.get('geni_api', '?')}"]
    for number, url in sorted((value.get("geni_api_versions") or {}).items()):
        lines.append(f"  v{number}: {url}")
    for key, title in (("geni_request_rspec_versions", "request rspecs"),
                       ("geni_ad_rspec_versions", "advertisement rspecs")):
        versions = ", ".join(f"{v.get('type')} {v.get('version')}" for v in value.get(key) or ())
        lines.append(f"{title}: {versions or '-'}")
    creds = ", ".join(f"{c.get('geni_type')} {c.get('geni_version')}"
                      for c in value.get("geni_credential_types") or ())
    lines.append(f"credential types: {creds or '-'}")
    if "geni_allocate" in value:
        lines.append(f"allocate: {value['geni_allocate']}")
    return "\n".join(lines)


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


def rspec_summary(xml: str) -> str:
    """Nodes (with availability and sliver types) and links of an advertisement or manifest."""
    try:
        root = etree.fromstring(xml.encode("utf-8"), _PARSER)
    except etree.XMLSyntaxError as exc:
        return f"(unparseable rspec: {exc})\n{xml}"
    nodes, links = [], []
    for el in root:
        kind = _local(el)
        if kind == "node":
            avail = next((c.get("now") for c in el if _local(c) == "available"), None)
            types = ",".join(c.get("name", "") for c in el if _local(c) == "sliver_type")
            nodes.append((el.get("client_id") or el.get("component_name") or "?",
                          el.get("component_id") or "-",
                          {"true": "yes", "false": "no"}.get(str(avail).lower(), "-"),
                          types or "-", el.get("sliver_id") or ""))
        elif kind == "link":
            ends = [c.get("client_id") or c.get("component_id") or "?"
                    for c in el if _local(c) == "interface_ref"]
            links.append((el.get("client_id") or el.get("component_name") or "?",
                          " <-> ".join(ends) or "-"))
    parts = [f"{root.get('type', 'rspec')} rspec: {len(nodes)} node(s), {len(links)} link(s)"]
    if nodes:
        parts.append(table(nodes, ("NODE", "COMPONENT", "AVAILABLE", "SLIVER TYPES", "SLIVER")))
    if links:
        parts.append(table(links, ("LINK", "ENDS")))
    return "\n".join(parts)


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)
