"""`stitch`: one stitched request across several aggregates, for users without the stitcher.

The aggregates are taken in the order their hops appear in the request's stitching paths (the
first hop's aggregate picks the tag). The whole request goes to each in turn; after each
Allocate the tags its manifest chose are carried into the request as every hop's
`suggestedVLANRange`, so the next aggregate takes the same tag. An aggregate answering
VLAN_UNAVAILABLE (24) makes the client delete what it allocated so far, take the refused tag
out of every hop's `vlanRangeAvailability`, suggest `any` again and start over (up to
`attempts` rounds). Any other failure deletes everything this call made and raises. Once every
aggregate has allocated, each is provisioned; a failed Provision also deletes everything.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from am.client.core import AMClient
from am.client.errors import AMError, ClientConfigError, ClientError
from am.errors import GeniCode
from rspec.stitching import manifest_tags, urn_authority, with_suggested

_VLAN = re.compile(r"\bVLAN (\d{1,4})\b")


@dataclass
class StitchResult:
    slice_urn: str
    tags: dict[str, int]                          # path id -> the tag every aggregate took
    manifests: dict[str, str] = field(default_factory=dict)   # AM URL -> manifest (Provision)
    rounds: int = 1                               # 1 + the VLAN_UNAVAILABLE retries
    excluded: dict[str, list[int]] = field(default_factory=dict)   # path id -> tags refused


def _paths(request_xml: str) -> dict[str, list[str]]:
    """path id -> the authorities of its hops, in order."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    root = etree.fromstring(request_xml.encode("utf-8"), parser)
    out: dict[str, list[str]] = {}
    for st in (c for c in root if isinstance(c.tag, str) and etree.QName(c).localname == "stitching"):
        for path in (c for c in st if isinstance(c.tag, str) and etree.QName(c).localname == "path"):
            auths = []
            for link in path.iter():
                if isinstance(link.tag, str) and etree.QName(link).localname == "link" \
                        and link.get("id"):
                    auths.append(urn_authority(link.get("id", "")))
            out[path.get("id", "")] = auths
    return out


def order(clients: Sequence[AMClient], request_xml: str,
          authority_of: Callable[[AMClient], str]) -> list[AMClient]:
    """The clients in the order their aggregates' hops first appear in the paths; an
    aggregate with no hop (only nodes) comes last. ClientConfigError when a path has a hop at
    an aggregate none of the clients talks to."""
    paths = _paths(request_xml)
    if not paths:
        raise ClientConfigError("the request has no <stitching> path: nothing to stitch")
    rank: dict[str, int] = {}
    for hops in paths.values():
        for auth in hops:
            rank.setdefault(auth, len(rank))
    known = {authority_of(c): c for c in clients}
    missing = [a for a in rank if a not in known]
    if missing:
        raise ClientConfigError(f"the stitching path has hops at {', '.join(missing)}, but no "
                                "--am names that aggregate")
    return sorted(clients, key=lambda c: rank.get(authority_of(c), len(rank)))


def am_authority(client: AMClient) -> str:
    """The aggregate's authority (from GetVersion's geniam_stitching, or its URN there)."""
    version = client.get_version()
    info = version.get("geniam_stitching") or {}
    urn = info.get("aggregate") or version.get("geniam_am_urn") or ""
    if not urn:
        raise ClientConfigError(f"{client.url} does not say it stitches (no geniam_stitching "
                                "in GetVersion)")
    return urn_authority(urn)


def stitch(clients: Sequence[AMClient], slice_urn: str, request_xml: str, *,
           attempts: int = 5, provision: bool = True,
           authority_of: Callable[[AMClient], str] = am_authority,
           say: Callable[[str], None] = lambda _m: None) -> StitchResult:
    """Allocate (and provision) a stitched request at every aggregate; see the module doc."""
    ordered = order(clients, request_xml, authority_of)
    excluded: dict[str, set[int]] = {}
    for round_no in range(1, attempts + 1):
        current = request_xml
        for path_id, tags in excluded.items():
            current = with_suggested(current, path_id, "any", exclude=tags)
        made: list[AMClient] = []
        chosen: dict[str, int] = {}
        try:
            for client in ordered:
                say(f"round {round_no}: Allocate at {client.url}")
                result = client.allocate(slice_urn, current)
                made.append(client)
                for path_id, hops in manifest_tags(result.get("geni_rspec", "")).items():
                    if hops:
                        tag = next(iter(hops.values()))
                        chosen[path_id] = tag
                        current = with_suggested(current, path_id, str(tag))
        except AMError as exc:
            _delete(made, slice_urn, say)
            match = _VLAN.search(exc.output or "")
            if exc.code != GeniCode.VLAN_UNAVAILABLE or match is None or round_no == attempts:
                raise
            tag = int(match.group(1))
            for path_id in _paths(request_xml):
                excluded.setdefault(path_id, set()).add(tag)
            say(f"round {round_no}: VLAN {tag} unavailable at {client.url}; retrying without it")
            continue
        except ClientError:
            _delete(made, slice_urn, say)
            raise
        manifests: dict[str, str] = {}
        if provision:
            try:
                for client in ordered:
                    say(f"Provision at {client.url}")
                    manifests[client.url] = client.provision(slice_urn).get("geni_rspec", "")
            except ClientError:
                _delete(ordered, slice_urn, say)
                raise
        return StitchResult(slice_urn, chosen, manifests, round_no,
                            {p: sorted(t) for p, t in excluded.items()})
    raise AssertionError("unreachable")


def _delete(clients: Sequence[AMClient], slice_urn: str, say: Callable[[str], None]) -> None:
    """Delete the slice at each of `clients`; a failure here is reported, not raised (the
    original error is what the caller must see)."""
    for client in clients:
        try:
            client.delete(slice_urn)
            say(f"deleted the slice at {client.url}")
        except ClientError as exc:
            say(f"could not delete the slice at {client.url}: {exc}")


__all__ = ["StitchResult", "am_authority", "order", "stitch"]
