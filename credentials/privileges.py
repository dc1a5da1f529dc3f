"""Privileges ("rights") and the operations they allow, as in the GENI reference code.

A credential grants rights (control, info, ...); the AM asks for operations (createsliver, ...).
Names match case-insensitively. A right whose bundle contains `*` allows every operation.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

RIGHTS: dict[str, frozenset[str]] = {
    "authority": frozenset({"register", "remove", "update", "resolve", "list",
                            "getcredential", "*"}),
    "refresh": frozenset({"remove", "update"}),
    "resolve": frozenset({"resolve", "list", "getcredential"}),
    "sa": frozenset({"getticket", "redeemslice", "redeemticket", "createslice", "createsliver",
                     "deleteslice", "deletesliver", "updateslice", "getsliceresources",
                     "loanresources", "stopslice", "startslice", "renewsliver", "resetslice",
                     "listslices", "listnodes", "getpolicy", "sliverstatus"}),
    "embed": frozenset({"getticket", "redeemslice", "redeemticket", "createslice",
                        "createsliver", "renewsliver", "deleteslice", "deletesliver",
                        "updateslice", "sliverstatus", "getsliceresources", "shutdown"}),
    "bind": frozenset({"getticket", "loanresources", "redeemticket"}),
    "control": frozenset({"updateslice", "createslice", "createsliver", "renewsliver",
                          "sliverstatus", "stopslice", "startslice", "deleteslice",
                          "deletesliver", "resetslice", "getsliceresources", "getgids"}),
    "info": frozenset({"listslices", "listnodes", "getpolicy"}),
    "ma": frozenset({"setbootstate", "getbootstate", "reboot", "getgids", "gettrustedcerts"}),
    "operator": frozenset({"gettrustedcerts", "getgids"}),
    "*": frozenset({"createsliver", "deletesliver", "sliverstatus", "renewsliver", "shutdown"}),
}

#: What a credential privilege literally named `*` expands to, by the target's type.
STAR_EXPANSION: dict[str, tuple[str, ...]] = {
    "user": ("refresh", "resolve", "info"),
    "slice": ("refresh", "embed", "bind", "control", "info"),
    "sa": ("authority", "sa"),
    "ma": ("authority", "ma"),
    "cm": ("authority", "ma"),
    "sm": ("authority", "ma"),
    "authority": ("authority", "sa", "ma"),
    "component": ("operator",),
    "node": ("operator",),
}

#: Operations each AM API method requires (v3 and v2 share names where they overlap).
METHOD_OPERATIONS: dict[str, tuple[str, ...]] = {
    # v3
    "GetVersion": (),
    "ListResources": (),
    "Describe": ("getsliceresources",),
    "Allocate": ("createsliver",),
    "Renew": ("renewsliver",),
    "Provision": ("createsliver",),
    "Status": ("getsliceresources",),
    "PerformOperationalAction": ("createsliver",),
    "Delete": ("deleteslice",),
    "Shutdown": ("shutdown",),
    "Update": ("createsliver",),
    "geniam_Calendar": (),
    "geniam_FindSlot": (),
    # v2
    "CreateSliver": ("createsliver",),
    "SliverStatus": ("getsliceresources",),
    "RenewSliver": ("renewsliver",),
    "DeleteSliver": ("deleteslice",),
}


def star_expansion(target_type: str, target_name: str = "") -> tuple[str, ...]:
    """Rights a `*` privilege stands for on a target of this URN type (authority: by name)."""
    if target_type == "authority":
        return STAR_EXPANSION.get(target_name.lower(), STAR_EXPANSION["authority"])
    return STAR_EXPANSION.get(target_type, ())


def bundle(right: str) -> frozenset[str]:
    """Operations one right allows (empty for an unknown right)."""
    return RIGHTS.get(right.lower(), frozenset())


def allowed(privileges: Mapping[str, bool] | Iterable[str], operation: str) -> bool:
    """True when some right in `privileges` allows `operation` (case-insensitive)."""
    op = operation.lower()
    for right in privileges:
        ops = bundle(right)
        if "*" in ops or op in ops:
            return True
    return False


def covers(parent_right: str, child_right: str) -> bool:
    """True when `parent_right`'s bundle contains `*` or every operation of `child_right`."""
    parent_ops = bundle(parent_right)
    if "*" in parent_ops or parent_right.lower() == child_right.lower():
        return True
    child_ops = bundle(child_right)
    return bool(child_ops) and child_ops <= parent_ops


def delegation_violation(child: Mapping[str, bool], parent: Mapping[str, bool]) -> str | None:
    """Why `child` is not a legal delegation of `parent`, or None when it is.

    Each child right needs a parent right with can_delegate true that covers it.
    """
    for right in child:
        if not any(covers(p, right) for p, can_delegate in parent.items() if can_delegate):
            if any(covers(p, right) for p in parent):
                return f"privilege {right!r} is not delegatable in the parent credential"
            return f"privilege {right!r} is not held by the parent credential (widening)"
    return None


def has_right(privileges: Mapping[str, bool] | Iterable[str], right: str) -> bool:
    """True when some held right covers the named right (used for `--privilege control`)."""
    return any(covers(p, right) for p in privileges)


def operations_for(method_or_operation: str) -> tuple[str, ...]:
    """Operations an AM API method needs; an operation name stands for itself."""
    if method_or_operation in METHOD_OPERATIONS:
        return METHOD_OPERATIONS[method_or_operation]
    return (method_or_operation.lower(),)
