"""GENI return structures and value conversions between XML-RPC and the service contract.

Every method answers `{code: {geni_code, am_type, am_code}, value, output}`; XML-RPC never
carries None, datetimes travel as RFC 3339 strings without fractional seconds.
"""
from __future__ import annotations

import base64
import re
import zlib
from datetime import datetime, timezone
from typing import Any

from am.api.memo import LARGE, IdentityMemo
from am.errors import GeniCode, GeniError
from am.service.contract import SliverInfo

AM_TYPE = "geni-am"

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|z|[+-]\d{2}:?\d{2})?$")


def format_time(value: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` in UTC; naive values are taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: Any, what: str) -> datetime:
    """Parse an RFC 3339 string liberally (naive = UTC) into an aware UTC datetime, or BADARGS."""
    if not isinstance(text, str):
        raise GeniError(GeniCode.BADARGS, f"{what} must be an RFC 3339 string")
    match = _RFC3339.match(text.strip())
    if not match:
        raise GeniError(GeniCode.BADARGS, f"{what}: {text!r} is not an RFC 3339 datetime")
    try:
        stamp = datetime.fromisoformat(text.strip().replace("z", "Z").replace("t", "T")
                                       .replace(" ", "T").replace("Z", "+00:00"))
    except ValueError:
        raise GeniError(GeniCode.BADARGS, f"{what}: {text!r} is not a valid datetime") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.astimezone(timezone.utc).replace(microsecond=0)


def compress(xml: str) -> str:
    """`geni_compressed`: base64(zlib(xml)) as a string. Large texts are compressed once per
    string object (the service hands out one advertisement object while it is valid)."""
    if len(xml) >= LARGE:
        return _compress_large(xml)
    return _compress(xml)


def _compress(xml: str) -> str:
    try:
        from rspec.compress import compress as rspec_compress
    except ImportError:
        return base64.b64encode(zlib.compress(xml.encode("utf-8"))).decode("ascii")
    return rspec_compress(xml)


_compress_large = IdentityMemo(_compress)


def success(value: Any, output: str = "", **extra: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"code": {"geni_code": 0, "am_type": AM_TYPE}, "value": value}
    if output:
        result["output"] = output
    result.update(extra)
    return result


def failure(error: GeniError, **extra: Any) -> dict[str, Any]:
    code: dict[str, Any] = {"geni_code": int(error.code), "am_type": AM_TYPE,
                            "am_code": int(error.code)}
    result: dict[str, Any] = {"code": code, "output": error.message or error.code.name}
    if error.value is not None:
        result["value"] = scrub(error.value)
    else:
        result["value"] = ""
    result.update(extra)
    return result


def scrub(value: Any) -> Any:
    """Drop None members and convert datetimes so a hint value can always be encoded."""
    if isinstance(value, dict):
        return {str(k): scrub(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value if v is not None]
    if isinstance(value, datetime):
        return format_time(value)
    return value


def sliver_struct(info: SliverInfo, *, with_error: bool = False) -> dict[str, Any]:
    """The §4 sliver info struct. `with_error` forces `geni_error` (required in Status)."""
    out: dict[str, Any] = {
        "geni_sliver_urn": info.sliver_urn,
        "geni_allocation_status": info.allocation_status,
        "geni_expires": format_time(info.expires),
    }
    if info.operational_status:
        out["geni_operational_status"] = info.operational_status
    if info.error or with_error:
        out["geni_error"] = info.error or ""
    if info.resource_status:
        out["geni_resource_status"] = info.resource_status
    if info.start_time is not None:
        out["geni_start_time"] = format_time(info.start_time)
    # this AM's additions (the request's name for the sliver, how to log in): geniam_ prefix
    if info.client_id:
        out["geniam_client_id"] = info.client_id
    if info.logins:
        out["geniam_ssh"] = list(info.logins)
    return out
