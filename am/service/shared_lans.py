"""Shared LANs, as ProtoGENI offers them: the owner of a LAN runs PerformOperationalAction
`geni_sharelan` on it with the options `geni_sharelan_lanname` (the LAN's client_id) and
`geni_sharelan_token` (the name it is shared under); another slice joins it with a request
link carrying `<sharedvlan:link_shared_vlan name="TOKEN"/>` and an interface of its own node;
`geni_unsharelan` (with `geni_sharelan_lanname`) ends the share and detaches every foreign
member, as the owner's Delete (or expiry) of the LAN does first.

The records are `am.store.shared_lans`; placement gets plain `ShareRef`s (the engine has no
database). Detaching deletes the joining link slivers: their delete jobs take their ports off
the LAN's bridge; their nodes stay.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from am.errors import GeniCode, GeniError
from am.states import Alloc
from am.store import Sliver, Store, shared_lans
from am.store.codec import stored_param

SHARE = "geni_sharelan"
UNSHARE = "geni_unsharelan"
ACTIONS = (SHARE, UNSHARE)
TOKEN_OPTION = "geni_sharelan_token"
LAN_OPTION = "geni_sharelan_lanname"
TOKEN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}$")


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def refs_for(store: Store, request) -> dict[str, shared_lans.ShareRef]:
    """The shares the request's joining links name (token -> ref). A token that was shared
    and is no more: SEARCHFAILED saying when it was unshared (unknown tokens are refused by
    placement, naming the link)."""
    tokens = {link.shared_vlan for link in request.links if link.shared_vlan}
    if not tokens:
        return {}
    with store.read() as session:
        refs = shared_lans.refs(session, tokens)
        for token in sorted(tokens - set(refs)):
            gone = shared_lans.last_revoked(session, token)
            if gone is not None and gone.revoked is not None:
                link = next(lk.client_id for lk in request.links if lk.shared_vlan == token)
                raise GeniError(GeniCode.SEARCHFAILED,
                                f"link {link}: the LAN shared as {token!r} (LAN "
                                f"{gone.lan_client_id} of slice {gone.slice_urn}) was unshared "
                                f"at {_iso(gone.revoked)}; nothing was allocated")
    return refs


def register(session: Session, row: Sliver) -> None:
    """A new link sliver that joins a shared LAN becomes its member, in the transaction that
    writes it; if the share ended meanwhile, SEARCHFAILED (the whole write rolls back)."""
    token = stored_param(row.spec, "shared_lan") if row.kind == "link" else None
    if not token:
        return
    share = shared_lans.active(session, token)
    if share is None:
        raise GeniError(GeniCode.SEARCHFAILED, f"link {row.client_id}: the LAN shared as "
                                               f"{token!r} was unshared meanwhile; nothing "
                                               "was allocated")
    shared_lans.join(session, share, row)


def lan_of(rows: Sequence[Sliver], options: Mapping, verb: str) -> Sliver:
    """The LAN sliver the action names: `geni_sharelan_lanname` among the target's slivers,
    or the one link sliver named by URN. BADARGS / SEARCHFAILED otherwise."""
    name = options.get(LAN_OPTION)
    links = [r for r in rows if r.kind == "link"]
    if name is not None and not isinstance(name, str):
        raise GeniError(GeniCode.BADARGS, f"{LAN_OPTION} must be the LAN's client_id (a string)")
    if name:
        found = [r for r in links if r.client_id == name]
        if not found:
            raise GeniError(GeniCode.SEARCHFAILED,
                            f"{verb}: no LAN {name!r} among the slivers named "
                            f"(LANs: {', '.join(sorted(r.client_id or r.urn for r in links)) or 'none'})")
        return found[0]
    if len(links) == 1:
        return links[0]
    raise GeniError(GeniCode.BADARGS, f"{verb}: name the LAN with the {LAN_OPTION} option "
                                      f"({len(links)} LANs among the slivers named)")


def share(session: Session, rows: Sequence[Sliver], slice_urn: str, options: Mapping,
          now: datetime) -> Sliver:
    lan = lan_of(rows, options, SHARE)
    token = options.get(TOKEN_OPTION)
    if not isinstance(token, str) or not TOKEN_RE.match(token):
        raise GeniError(GeniCode.BADARGS, f"{SHARE} needs the {TOKEN_OPTION} option: the name "
                                          "joiners give (a letter or digit, then up to 127 of "
                                          "letters, digits, _ . : + -)")
    if lan.allocation_state != Alloc.PROVISIONED.value:
        raise GeniError(GeniCode.UNAVAILABLE, f"LAN {lan.client_id} is {lan.allocation_state}; "
                                              "provision it before sharing it")
    if stored_param(lan.spec, "shared_lan"):
        raise GeniError(GeniCode.UNSUPPORTED, f"link {lan.client_id} joins another slice's "
                                              "shared LAN; only its owner shares it")
    link = (lan.spec or {}).get("link") or {}
    if link.get("mode") != "bridge":
        raise GeniError(GeniCode.UNSUPPORTED,
                        f"link {lan.client_id} is a point-to-point {link.get('mode')} link; "
                        "a shared LAN is a bridge: ask for <link_type name=\"lan\"/> (or "
                        "three or more interfaces)")
    current = shared_lans.of_lan(session, [lan.id])
    if current:
        if current[0].token == token:
            return lan                       # shared already under that name: nothing to do
        raise GeniError(GeniCode.ALREADYEXISTS, f"LAN {lan.client_id} is already shared as "
                                                f"{current[0].token!r}; unshare it first")
    taken = shared_lans.active(session, token)
    if taken is not None:
        raise GeniError(GeniCode.ALREADYEXISTS, f"the name {token!r} is already in use by "
                                                "another shared LAN; choose another token")
    shared_lans.share(session, lan, token, slice_urn, now)
    return lan


def unshare(session: Session, rows: Sequence[Sliver], options: Mapping,
            now: datetime) -> list[Sliver]:
    """End the share of the LAN named (SEARCHFAILED when it is not shared): returns its
    foreign members, for the caller to detach (unallocate)."""
    lan = lan_of(rows, options, UNSHARE)
    current = shared_lans.of_lan(session, [lan.id])
    if not current:
        raise GeniError(GeniCode.SEARCHFAILED, f"LAN {lan.client_id} is not shared")
    foreign = members_of(session, current)
    shared_lans.leave(session, [m.id for m in foreign])
    shared_lans.revoke(session, current, now)
    return foreign


def members_of(session: Session, shares) -> list[Sliver]:
    return shared_lans.member_slivers(session, [s.id for s in shares])


def ending(session: Session, rows: Sequence[Sliver], now: datetime) -> list[Sliver]:
    """Slivers going away (`rows`: Delete, expiry, shutdown, unshare): they leave the shares
    they joined, and the shares of LANs among them end. Returns the foreign members of those
    shares, to be detached (unallocated) with them."""
    ids = [r.id for r in rows]
    shared_lans.leave(session, ids)
    shares = shared_lans.of_lan(session, [r.id for r in rows if r.kind == "link"])
    if not shares:
        return []
    going = set(ids)
    foreign = [m for m in members_of(session, shares) if m.id not in going]
    shared_lans.leave(session, [m.id for m in foreign])
    shared_lans.revoke(session, shares, now)
    return foreign


__all__ = ["ACTIONS", "LAN_OPTION", "SHARE", "TOKEN_OPTION", "UNSHARE", "ending", "lan_of",
           "refs_for", "register", "share", "unshare"]
