"""GENI URNs: `urn:publicid:IDN+<authority>+<type>+<name>`.

Authority and name compare case-insensitively (GENI identifier spec); display keeps the case
they were written with. Namespace checks ("may this authority certify that subject?") compare
authority paths, the `:`-separated sub-authorities, as the reference code's HRN prefix rule does.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from credentials.errors import URNError

PREFIX = "urn:publicid:IDN+"
MAX_URN_LENGTH = 1024

#: Types this library knows. The AM deals in the first seven; the rest appear in federations.
KNOWN_TYPES = frozenset({
    "user", "slice", "sliver", "authority", "node", "interface", "link",
    "tool", "vlan", "image", "datapath", "project", "member", "memory", "lan",
})
#: Names an authority URN may carry (sa, am, ca, ma, ...).
AUTHORITY_NAMES = frozenset({"sa", "am", "ca", "ma", "cm", "ch", "sm", "root"})

_AUTHORITY_RE = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]*(:[A-Za-z0-9][-A-Za-z0-9_.]*)*$")
_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_NAME_RULES = {
    "slice": re.compile(r"^[a-zA-Z0-9][-a-zA-Z0-9]{0,18}$"),
    "user": re.compile(r"^[a-zA-Z][\w]{0,7}$"),
    "sliver": re.compile(r"^[-a-zA-Z0-9_.]+$"),
    "tool": re.compile(r"^[a-zA-Z][a-zA-Z0-9\-_@.]{0,63}$"),
}
# Parsing other federations' URNs is lenient for users (portals issue longer names); building
# URNs (make_urn) applies the spec's rule.
_PARSE_USER = re.compile(r"^[a-zA-Z][-\w.@]{0,63}$")
_BAD_CHARS = re.compile(r"[\s?/#]")
_GENERIC_NAME = re.compile(r"^[^\s?/#]+$")


@dataclass(frozen=True, eq=False)
class URN:
    """A parsed GENI URN; equality and hash ignore the case of authority and name."""

    authority: str
    type: str
    name: str
    _key: tuple[str, str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_key",
                           (self.authority.lower(), self.type.lower(), self.name.lower()))

    def __str__(self) -> str:
        return f"{PREFIX}{self.authority}+{self.type}+{self.name}"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, URN):
            return self._key == other._key
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._key)

    @property
    def authority_path(self) -> tuple[str, ...]:
        """Sub-authorities, lower-cased: `geni:gpo:gcf` -> ('geni', 'gpo', 'gcf')."""
        return tuple(self.authority.lower().split(":"))

    @property
    def hrn(self) -> str:
        """The reference code's dotted name: `geni:gpo:gcf+user+alice` -> `geni.gpo.gcf.alice`."""
        parts = [p.replace(".", "\\.") for p in self.authority.split(":")]
        if self.type != "authority":
            parts.append(self.name.replace(".", "\\."))
        return ".".join(parts)

    @property
    def is_authority(self) -> bool:
        return self.type == "authority"


def _fail(text: str, why: str) -> URNError:
    shown = text if len(text) <= 120 else text[:117] + "..."
    return URNError(f"invalid GENI URN {shown!r}: {why}")


def parse_urn(text: str, expect_type: str | None = None) -> URN:
    """Parse and validate a URN; `expect_type` additionally requires that type."""
    if not isinstance(text, str):
        raise URNError(f"a GENI URN must be a string, not {type(text).__name__}")
    if len(text) > MAX_URN_LENGTH:
        raise _fail(text, f"longer than {MAX_URN_LENGTH} characters")
    if text[:len(PREFIX)].lower() != PREFIX.lower():
        raise _fail(text, f"must start with {PREFIX!r}")
    if _BAD_CHARS.search(text):
        raise _fail(text, "whitespace, '?', '/' and '#' are not allowed")
    parts = text[len(PREFIX):].split("+", 2)
    if len(parts) != 3 or not all(parts):
        raise _fail(text, "expected urn:publicid:IDN+<authority>+<type>+<name>")
    authority, type_, name = parts
    if not _AUTHORITY_RE.match(authority):
        raise _fail(text, f"bad authority {authority!r}")
    if not _TYPE_RE.match(type_):
        raise _fail(text, f"bad type {type_!r}")
    if type_ not in KNOWN_TYPES:
        raise _fail(text, f"unknown type {type_!r}")
    if type_ == "slice":
        if not _NAME_RULES["slice"].match(name):
            raise _fail(text, "slice names are 1-19 letters, digits or '-', not starting with '-'")
    elif type_ == "user":
        if not _PARSE_USER.match(name):
            raise _fail(text, f"bad user name {name!r}")
    elif type_ == "sliver":
        if not _NAME_RULES["sliver"].match(name):
            raise _fail(text, f"bad sliver name {name!r}")
    elif not _GENERIC_NAME.match(name):
        raise _fail(text, f"bad name {name!r}")
    if expect_type is not None and type_ != expect_type:
        raise _fail(text, f"expected a {expect_type} URN, got type {type_!r}")
    return URN(authority, type_, name)


def make_urn(authority: str, type: str, name: str) -> URN:
    """Build a URN, applying the spec's name rules for the type (stricter than parsing)."""
    rule = _NAME_RULES.get(type)
    if rule is not None and not rule.match(name):
        raise URNError(f"invalid {type} name {name!r} for a GENI URN")
    if type == "authority" and not _GENERIC_NAME.match(name):
        raise URNError(f"invalid authority name {name!r}")
    return parse_urn(f"{PREFIX}{authority}+{type}+{name}")


def is_authority_for(authority_urn: URN | str, subject_urn: URN | str) -> bool:
    """True when `authority_urn` (type authority) may certify `subject_urn`.

    Its authority path must be a prefix of (or equal to) the subject's: `geni:gpo+authority+sa`
    certifies `geni:gpo:gcf+user+x` and `geni:gpo:gcf+authority+am`, never `geni:other+...`.
    """
    auth = authority_urn if isinstance(authority_urn, URN) else parse_urn(authority_urn)
    subj = subject_urn if isinstance(subject_urn, URN) else parse_urn(subject_urn)
    if not auth.is_authority:
        return False
    a, s = auth.authority_path, subj.authority_path
    return len(a) <= len(s) and s[:len(a)] == a


def urns_equal(a: str | URN, b: str | URN) -> bool:
    """Compare two URNs case-insensitively in authority and name; unparseable ones are unequal."""
    try:
        ua = a if isinstance(a, URN) else parse_urn(a)
        ub = b if isinstance(b, URN) else parse_urn(b)
    except URNError:
        return False
    return ua == ub
