"""Credential files -> the v3 `credentials` argument (`[{geni_type, geni_version, geni_value}]`).

Accepted: a signed credential XML file (SFA privilege credential -> geni_sfa 3; ABAC speaks-for
-> geni_abac 1), omni's JSON wrapper (`{"geni_type", "geni_version", "geni_value"}`), or such a
dict directly. A file that is not a *signed* GENI credential is refused here with its name, so
the user learns which file is wrong before the AM answers a vague FORBIDDEN.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lxml import etree

from am.client.errors import ClientConfigError

CredentialSource = str | os.PathLike[str] | Mapping[str, Any]
_DSIG = "{http://www.w3.org/2000/09/xmldsig#}Signature"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False,
                          remove_blank_text=False)


def sniff(xml: str, origin: str) -> dict[str, str]:
    """Check `xml` is a signed credential and wrap it with its type."""
    try:
        root = etree.fromstring(xml.encode("utf-8"), _PARSER)
    except etree.XMLSyntaxError as exc:
        raise ClientConfigError(f"credential {origin} is not XML ({exc}): give a signed GENI "
                                "credential file (.xml) or omni's JSON wrapper") from None
    if etree.QName(root).localname != "signed-credential":
        raise ClientConfigError(f"credential {origin} is not a signed GENI credential (its root "
                                f"element is <{etree.QName(root).localname}>, not "
                                "<signed-credential>)")
    if root.find(f".//{_DSIG}") is None:
        raise ClientConfigError(f"credential {origin} is not a signed GENI credential (it has no "
                                "signature): use the file your slice authority issued")
    kind = (root.findtext("credential/type") or "privilege").strip().lower()
    if kind == "abac":
        return {"geni_type": "geni_abac", "geni_version": "1", "geni_value": xml}
    return {"geni_type": "geni_sfa", "geni_version": "3", "geni_value": xml}


def _from_wrapper(data: Mapping[str, Any], origin: str) -> dict[str, str]:
    missing = [k for k in ("geni_type", "geni_version", "geni_value") if k not in data]
    if missing:
        raise ClientConfigError(f"credential {origin} lacks {', '.join(missing)} (expected "
                                "omni's wrapper {geni_type, geni_version, geni_value})")
    value = data["geni_value"]
    if not isinstance(value, str):
        raise ClientConfigError(f"credential {origin}: geni_value must be the credential XML")
    sniffed = sniff(value, origin)
    return {"geni_type": str(data["geni_type"]), "geni_version": str(data["geni_version"]),
            "geni_value": sniffed["geni_value"]}


def load_credential(source: CredentialSource) -> dict[str, str]:
    """One credential (path, XML string or wrapper dict) -> the wire struct."""
    if isinstance(source, Mapping):
        return _from_wrapper(source, "given as a dict")
    text = os.fspath(source)
    if text.lstrip().startswith("<"):
        return sniff(text, "given as XML text")
    path = Path(text).expanduser()
    try:
        data = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ClientConfigError(f"credential file {path} does not exist (--cred)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientConfigError(f"cannot read credential file {path}: {exc}") from None
    stripped = data.lstrip()
    if stripped.startswith("{"):
        try:
            wrapper = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ClientConfigError(f"credential file {path} is not valid JSON ({exc})") from None
        if not isinstance(wrapper, dict):
            raise ClientConfigError(f"credential file {path}: expected a JSON object")
        return _from_wrapper(wrapper, f"file {path}")
    return sniff(data, f"file {path}")


def load_credentials(sources: Iterable[CredentialSource]) -> list[dict[str, str]]:
    return [load_credential(s) for s in sources]
