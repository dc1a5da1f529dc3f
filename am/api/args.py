"""Checking XML-RPC arguments and GENI options before anything else sees them.

Shape errors are BADARGS (1); an unsupported RSpec version is BADVERSION (4). Unknown options
are ignored, as the API requires.
"""
from __future__ import annotations

import re
import xmlrpc.client
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from am.api.values import parse_time
from am.errors import GeniCode, GeniError
from am.service.contract import Options
from drivers.base import UserKeys

_URN = re.compile(r"^urn:publicid:IDN\+([^+\s]+)\+([A-Za-z_]+)\+(\S+)$")
_CRED_TYPE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\-_.:]*$")


def badargs(message: str) -> GeniError:
    return GeniError(GeniCode.BADARGS, message)


def check_arity(method: str, params: Sequence[Any], names: Sequence[str],
                optional_last: bool = False) -> None:
    """Exact positional arity (options may be omitted only where `optional_last`)."""
    low = len(names) - 1 if optional_last else len(names)
    if not low <= len(params) <= len(names):
        expected = ", ".join(names)
        raise badargs(f"{method} takes ({expected}); got {len(params)} argument(s)")


def require_struct(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise badargs(f"{what} must be a struct")
    return value


def require_string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise badargs(f"{what} must be a string")
    return value


def rspec_arg(value: Any) -> str:
    """A request RSpec argument: a non-empty string (BADARGS otherwise)."""
    rspec = require_string(value, "rspec")
    if not rspec.strip():
        raise badargs("rspec is empty")
    return rspec


def urn_type(urn: str) -> str | None:
    match = _URN.match(urn)
    return match.group(2).lower() if match else None


def slice_urn_arg(value: Any, what: str = "slice_urn") -> str:
    urn = require_string(value, what).strip()
    if urn_type(urn) != "slice":
        raise badargs(f"{what} {urn!r} is not a slice URN")
    return urn


@dataclass(frozen=True)
class UrnSet:
    """A checked `urns` argument: one slice URN, or sliver URNs (same-slice checked later)."""

    urns: tuple[str, ...]
    slice_urn: str | None          # set when the argument named the slice itself


def urns_arg(value: Any) -> UrnSet:
    """§2 `urns`: exactly one slice URN, or one or more sliver URNs; anything else BADARGS."""
    if not isinstance(value, (list, tuple)) or not value:
        raise badargs("urns must be a non-empty array of URN strings")
    kinds: list[str] = []
    urns: list[str] = []
    for item in value:
        urn = require_string(item, "every element of urns").strip()
        kind = urn_type(urn)
        if kind not in ("slice", "sliver"):
            raise badargs(f"{urn!r} is neither a slice nor a sliver URN")
        kinds.append(kind)
        urns.append(urn)
    if "slice" in kinds:
        if len(urns) != 1:
            raise badargs("urns must name exactly one slice, or slivers of one slice, not both")
        return UrnSet(urns=tuple(urns), slice_urn=urns[0])
    return UrnSet(urns=tuple(dict.fromkeys(urns)), slice_urn=None)


def credentials_arg(value: Any) -> list[dict[str, str] | str]:
    """A credential list: structs `{geni_type, geni_version, geni_value}` (v3) or bare XML
    strings (v2, and tolerated in v3 for omni compatibility). Malformed entries are BADARGS;
    well-formed ones of types we do not understand are left for the verifier to ignore."""
    if not isinstance(value, (list, tuple)):
        raise badargs("credentials must be an array")
    creds: list[dict[str, str] | str] = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            creds.append(item)
            continue
        if not isinstance(item, dict):
            raise badargs(f"credentials[{i}] must be a struct (or an XML string)")
        ctype, version, cvalue = (item.get("geni_type"), item.get("geni_version"),
                                  item.get("geni_value"))
        if not isinstance(ctype, str) or not _CRED_TYPE.match(ctype):
            raise badargs(f"credentials[{i}].geni_type is missing or malformed")
        if isinstance(version, (int, float)) and not isinstance(version, bool):
            version = str(version)
        cvalue = _binary_text(cvalue, f"credentials[{i}].geni_value")
        if not isinstance(version, str) or not isinstance(cvalue, str):
            raise badargs(f"credentials[{i}] needs string geni_version and geni_value")
        creds.append({"geni_type": ctype, "geni_version": version, "geni_value": cvalue})
    return creds


def _binary_text(value: Any, what: str) -> Any:
    """geni-lib on Python 3 (`geni.minigcf.amapi3`) reads credential files as bytes, which
    xmlrpc marshals as `<base64>`: accept that form and decode it as the UTF-8 XML it is."""
    if not isinstance(value, xmlrpc.client.Binary):
        return value
    try:
        return value.data.decode("utf-8")
    except UnicodeDecodeError:
        raise badargs(f"{what} is base64 data that is not UTF-8 text") from None


def _bool_option(options: dict[str, Any], name: str) -> bool:
    value = options.get(name, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise badargs(f"option {name} must be a boolean")


def users_option(value: Any, what: str = "geni_users") -> tuple[UserKeys, ...]:
    if not isinstance(value, (list, tuple)):
        raise badargs(f"{what} must be an array of {{urn, keys}} structs")
    users = []
    for i, entry in enumerate(value):
        if not isinstance(entry, dict) or not isinstance(entry.get("urn"), str):
            raise badargs(f"{what}[{i}] must be a struct with a string urn")
        if urn_type(entry["urn"]) != "user":
            raise badargs(f"{what}[{i}].urn must be a user URN, not {entry['urn'][:200]!r}")
        keys = entry.get("keys", [])
        if isinstance(keys, str):
            keys = [keys]
        if not isinstance(keys, (list, tuple)) or not all(isinstance(k, str) for k in keys):
            raise badargs(f"{what}[{i}].keys must be an array of strings")
        user = UserKeys(urn=entry["urn"], keys=tuple(k.strip() for k in keys if k.strip()))
        problem = user.login_problem()
        if problem:
            raise badargs(f"{what}[{i}]: {problem}")
        users.append(user)
    return tuple(users)


def options_arg(value: Any) -> Options:
    """Type-check the options the service uses; keep all of them in `extra`."""
    options = require_struct(value, "options")
    end_time = start_time = None
    if "geni_end_time" in options:
        end_time = parse_time(options["geni_end_time"], "option geni_end_time")
    if "geni_start_time" in options:
        start_time = parse_time(options["geni_start_time"], "option geni_start_time")
    users: tuple[UserKeys, ...] = ()
    if "geni_users" in options:
        users = users_option(options["geni_users"])
    speaking_for = options.get("geni_speaking_for")
    if speaking_for is not None and (not isinstance(speaking_for, str)
                                     or urn_type(speaking_for) != "user"):
        raise badargs("option geni_speaking_for must be a user URN")
    return Options(
        best_effort=_bool_option(options, "geni_best_effort"),
        start_time=start_time,
        end_time=end_time,
        extend_alap=_bool_option(options, "geni_extend_alap"),
        users=users,
        available_only=_bool_option(options, "geni_available"),
        extra=dict(options),
    )


def compressed_option(options: Options) -> bool:
    return _bool_option(options.extra, "geni_compressed")


def speaking_for(options: Options) -> str | None:
    value = options.extra.get("geni_speaking_for")
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class RSpecVersion:
    type: str
    version: str


SUPPORTED_RSPEC = (RSpecVersion("GENI", "3"),)


def rspec_version_option(options: Options, *, required: bool = True) -> RSpecVersion | None:
    """`geni_rspec_version`: missing BADARGS (when required), unsupported BADVERSION."""
    raw = options.extra.get("geni_rspec_version")
    if raw is None:
        if required:
            raise badargs("option geni_rspec_version is required, e.g. {type: GENI, version: 3}")
        return None
    if not isinstance(raw, dict):
        raise badargs("option geni_rspec_version must be a struct {type, version}")
    rtype, version = raw.get("type"), raw.get("version")
    if isinstance(version, (int, float)) and not isinstance(version, bool):
        version = str(version)
    if not isinstance(rtype, str) or not isinstance(version, str):
        raise badargs("option geni_rspec_version needs string type and version")
    for supported in SUPPORTED_RSPEC:
        if (rtype.lower() == supported.type.lower()
                and version.strip().lower() == supported.version.lower()):
            return supported
    raise GeniError(GeniCode.BADVERSION,
                    f"RSpec version {rtype} {version} is not supported (supported: "
                    + ", ".join(f"{s.type} {s.version}" for s in SUPPORTED_RSPEC) + ")")
