"""Readable renderings of AM answers: sliver tables, version summaries, rspec summaries."""
from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
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


def sliver_table(slivers: Sequence[dict[str, Any]], manifest: str | None = None) -> str:
    """One row per sliver: its client_id, URN, states, expiry, the SSH command of each login
    and any error. client_id and logins come from this AM's `geniam_client_id`/`geniam_ssh`
    fields or, for other AMs, from `manifest` (Describe, Allocate, Provision)."""
    if not slivers:
        return "(no slivers)"
    names, logins = manifest_facts(manifest) if manifest else ({}, {})
    rows = []
    for s in slivers:
        urn = s.get("geni_sliver_urn", "?")
        ssh = s.get("geniam_ssh") or logins.get(urn, ())
        rows.append((s.get("geniam_client_id") or names.get(urn, "-"), urn,
                     short(s.get("geni_allocation_status")),
                     short(s.get("geni_operational_status")), _expires(s),
                     ", ".join(ssh) or "-", str(s.get("geni_error") or "")))
    return table(rows, ("CLIENT_ID", "SLIVER", "ALLOCATION", "OPERATIONAL", "EXPIRES", "LOGIN",
                        "ERROR"))


def manifest_facts(xml: str) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """sliver URN -> client_id, and sliver URN -> SSH commands, from a manifest."""
    try:
        root = etree.fromstring(xml.encode("utf-8"), _PARSER)
    except etree.XMLSyntaxError:
        return {}, {}
    names: dict[str, str] = {}
    logins: dict[str, tuple[str, ...]] = {}
    for el in root.iter():
        sliver = el.get("sliver_id") if isinstance(el.tag, str) else None
        if not sliver or not el.get("client_id"):
            continue
        names[sliver] = el.get("client_id")
        found = []
        for login in el.iter():
            if _local(login) == "login" and login.get("hostname") and login.get("username"):
                port = login.get("port")
                found.append(f"ssh -p {port or 22} {login.get('username')}@"
                             f"{login.get('hostname')}")
        if found:
            logins[sliver] = tuple(found)
    return names, logins


#: A sliver expiring sooner than this is flagged (as /metrics counts it).
SOON = timedelta(hours=24)


def _expires(sliver: dict[str, Any], now: datetime | None = None) -> str:
    """The expiry, flagged `(within 24 h!)` when it is that close, and the start of an
    advance reservation (`from ...`)."""
    text = str(sliver.get("geni_expires", "-"))
    start = sliver.get("geni_start_time")
    if start:
        text = f"{start} .. {text}"
    try:
        when = datetime.strptime(str(sliver.get("geni_expires")), "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return text
    now = now or datetime.now(timezone.utc)
    left = when.replace(tzinfo=timezone.utc) - now
    if short(sliver.get("geni_allocation_status")) != "unallocated" and left < SOON:
        text += " (within 24 h!)"
    return text


def calendar_table(value: dict[str, Any], resource: str = "cpu_milli") -> str:
    """One row per hour, one column per component: the free amount of `resource`."""
    comps = [c for c in value.get("components") or () if c.get("resource") == resource]
    if not comps:
        return f"(no component meters {resource})"
    start = datetime.strptime(str(value["start"]), "%Y-%m-%dT%H:%M:%SZ")
    step = timedelta(seconds=int(value.get("step_s", 3600)))
    header = ("HOUR (UTC)", *(f"{c['name']} /{c['capacity']:g}" for c in comps))
    rows = [(f"{start + k * step:%Y-%m-%d %H:%M}", *(f"{c['free'][k]:g}" for c in comps))
            for k in range(int(value.get("hours", 0)))]
    return f"free {resource} per component and hour\n" + table(rows, header)


def calendar_png(value: dict[str, Any], resource: str, path: str) -> None:
    """The calendar as a heat map (components x hours, free share of `resource`)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comps = [c for c in value.get("components") or () if c.get("resource") == resource]
    grid = [[f / c["capacity"] if c["capacity"] else 0.0 for f in c["free"]] for c in comps]
    fig, ax = plt.subplots(figsize=(max(6, len(grid[0]) / 6 if grid else 6),
                                    1.5 + 0.4 * len(comps)))
    image = ax.imshow(grid or [[0.0]], aspect="auto", cmap="RdYlGn", vmin=0, vmax=1,
                      interpolation="nearest")
    ax.set_yticks(range(len(comps)), [c["name"] for c in comps])
    ax.set_xlabel(f"hours from {value['start']}")
    ax.set_title(f"free {resource} (share of capacity)")
    fig.colorbar(image, ax=ax, fraction=0.03)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
    nodes, links, datapaths = [], [], []
    for el in root:
        kind = _local(el)
        if kind == "datapath":
            ports = [p.get("name") or p.get("num") for p in el if _local(p) == "port"]
            datapaths.append((el.get("component_id", "?").rsplit("+", 1)[-1],
                              el.get("component_id") or "-", el.get("dpid") or "-",
                              ", ".join(str(p) for p in ports) or "-"))
            continue
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
    parts = [f"{root.get('type', 'rspec')} rspec: {len(nodes)} node(s), {len(links)} link(s)"
             + (f", {len(datapaths)} OpenFlow datapath(s)" if datapaths else "")]
    if nodes:
        parts.append(table(nodes, ("NODE", "COMPONENT", "AVAILABLE", "SLIVER TYPES", "SLIVER")))
    if datapaths:
        parts.append(table(datapaths, ("DATAPATH", "COMPONENT", "DPID", "PORTS")))
    if links:
        parts.append(table(links, ("LINK", "ENDS")))
    return "\n".join(parts)


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)
