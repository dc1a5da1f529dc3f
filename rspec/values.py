"""Checked conversions of attribute text to typed values; each returns (value, error)."""
from __future__ import annotations

import ipaddress
import math


def parse_bool(text: str | None) -> bool | None:
    """xs:boolean (already schema-checked): "true"/"1" or "false"/"0"."""
    if text is None:
        return None
    return text.strip() in ("true", "1")


def parse_float(text: str, what: str, *, low: float | None = None,
                high: float | None = None) -> tuple[float | None, str | None]:
    try:
        value = float(text.strip())
    except ValueError:
        return None, f"{what} {text!r} is not a number"
    if not math.isfinite(value):
        return None, f"{what} {text!r} is not a finite number"
    if low is not None and value < low:
        return None, f"{what} {text!r} is below {low:g}"
    if high is not None and value > high:
        return None, f"{what} {text!r} is above {high:g}"
    return value, None


def parse_int(text: str, what: str, *, low: int | None = None,
              high: int | None = None) -> tuple[int | None, str | None]:
    """An integer; "100000.0" is accepted (some tools write floats), "1.5" is not."""
    value, error = parse_float(text, what)
    if error:
        return None, error
    assert value is not None
    if not value.is_integer():
        return None, f"{what} {text!r} is not a whole number"
    result = int(value)
    if low is not None and result < low:
        return None, f"{what} {text!r} is below {low}"
    if high is not None and result > high:
        return None, f"{what} {text!r} is above {high}"
    return result, None


def check_ipv4(address: str) -> str | None:
    try:
        ipaddress.IPv4Address(address.strip())
    except ValueError:
        return f"{address!r} is not an IPv4 address"
    return None


def check_ip(address: str) -> str | None:
    try:
        ipaddress.ip_address(address.strip())
    except ValueError:
        return f"{address!r} is not an IP address"
    return None


def check_netmask(mask: str) -> str | None:
    """A dotted IPv4 netmask ("255.255.255.0") or a prefix length ("24")."""
    text = mask.strip()
    try:
        ipaddress.IPv4Network(f"0.0.0.0/{text}")
    except ValueError:
        return f"{mask!r} is not an IPv4 netmask"
    return None


def check_cidr(text: str) -> str | None:
    try:
        ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        return f"{text!r} is not a network prefix ({exc})"
    return None


def split_list(text: str) -> tuple[str, ...]:
    """The comma-separated value lists of the OpenFlow v3 packet fields."""
    return tuple(part.strip() for part in text.split(",") if part.strip())
