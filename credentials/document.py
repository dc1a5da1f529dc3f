"""The structure of a signed-credential document, read but not yet trusted.

`parse_document` maps the XML onto delegation levels (top credential first, then each
`<parent>`), and pairs each level with the one Signature that references it. Its checks are
what makes the later signature verification meaningful (the XML signature wrapping defence):
every xml:id is unique; each Signature has exactly one Reference, `#<id>` of a credential
level, and that id resolves (in libxml2's own ID table, which xmlsec uses) to exactly the
element we read claims from; every level has exactly one Signature; no other Signature exists.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import datetime, timezone

from cryptography import x509
from lxml import etree

from credentials.certs import identity_of, load_der, load_pem_chain
from credentials.errors import CertificateError, CredentialInvalid
from credentials.privileges import star_expansion
from credentials.urn import parse_urn
from credentials.xmlsafe import XML_ID, parse_secure

DSIG = "http://www.w3.org/2000/09/xmldsig#"
SIGNATURE = f"{{{DSIG}}}Signature"
MAX_LEVELS = 16
SUPPORTED_TYPES = ("privilege", "abac")


@dataclass
class AbacPrincipal:
    keyid: str
    mnemonic: str | None


@dataclass
class AbacStatement:
    """One ABAC rt0 statement: head.role <- tail (tail may carry its own role)."""

    version: str
    head: AbacPrincipal
    head_role: str
    tails: list[tuple[AbacPrincipal, str | None, str | None]]   # principal, role, linking_role


@dataclass
class Level:
    """One credential level of a document (claims as written, not yet verified)."""

    element: etree._Element
    xml_id: str
    type: str
    serial: str
    owner_certs: list[x509.Certificate]
    target_certs: list[x509.Certificate]
    expires: datetime
    privileges: dict[str, bool]
    signature: etree._Element | None = None
    signer_certs: list[x509.Certificate] = field(default_factory=list)
    parent: "Level | None" = None
    abac: AbacStatement | None = None

    @property
    def owner_urn(self) -> str:
        return identity_of(self.owner_certs[0]).urn if self.owner_certs else ""

    @property
    def target_urn(self) -> str:
        return identity_of(self.target_certs[0]).urn if self.target_certs else ""


@dataclass
class Document:
    tree: etree._ElementTree
    top: Level

    @property
    def levels(self) -> list[Level]:
        out: list[Level] = []
        level: Level | None = self.top
        while level is not None:
            out.append(level)
            level = level.parent
        return out


def parse_time(text: str | None, what: str = "expires") -> datetime:
    """xs:dateTime -> aware UTC datetime; no zone means UTC (GENI spec), offsets converted."""
    if not text or not text.strip():
        raise CredentialInvalid(f"credential has no <{what}>")
    raw = text.strip()
    try:
        value = datetime.fromisoformat(raw.replace("z", "Z"))
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise CredentialInvalid(f"credential <{what}> {raw!r} is not a usable xs:dateTime") \
            from None


def _one(parent: etree._Element, tag: str, required: bool = True) -> etree._Element | None:
    found = [c for c in parent if c.tag == tag]
    if len(found) > 1:
        raise CredentialInvalid(f"<{parent.tag}> has {len(found)} <{tag}> elements (one allowed)")
    if not found:
        if required:
            raise CredentialInvalid(f"<{parent.tag}> lacks <{tag}>")
        return None
    return found[0]


def _text(parent: etree._Element, tag: str) -> str:
    el = _one(parent, tag, required=False)
    return (el.text or "").strip() if el is not None else ""


def _gid(parent: etree._Element, tag: str, required: bool) -> list[x509.Certificate]:
    text = _text(parent, tag)
    if not text:
        if required:
            raise CredentialInvalid(f"credential lacks <{tag}> certificate")
        return []
    try:
        return load_pem_chain(text)
    except CertificateError as exc:
        raise CredentialInvalid(f"<{tag}>: {exc}") from None


def _bool(text: str, where: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0", ""):
        return False
    raise CredentialInvalid(f"{where}: can_delegate {text!r} is not a boolean")


def _privileges(cred: etree._Element, target_certs: list[x509.Certificate]) -> dict[str, bool]:
    privs_el = _one(cred, "privileges", required=False)
    out: dict[str, bool] = {}
    if privs_el is None:
        return out
    for priv in privs_el:
        if not isinstance(priv.tag, str):
            continue
        if priv.tag != "privilege":
            raise CredentialInvalid(f"unexpected <{priv.tag}> in <privileges>")
        name = _text(priv, "name")
        if not name:
            raise CredentialInvalid("a <privilege> has no <name>")
        delegate = _bool(_text(priv, "can_delegate"), f"privilege {name!r}")
        if name == "*":
            if not target_certs:
                raise CredentialInvalid("privilege '*' needs a target certificate")
            target = parse_urn(identity_of(target_certs[0]).urn)
            for right in star_expansion(target.type, target.name):
                out[right] = out.get(right, False) or delegate
        else:
            key = name.lower()
            out[key] = out.get(key, False) or delegate
    return out


def _abac(cred: etree._Element) -> AbacStatement:
    abac = _one(cred, "abac")
    rt0 = _one(abac, "rt0")
    assert rt0 is not None            # required: _one raised otherwise
    version = _text(rt0, "version") or "1.0"
    head = _one(rt0, "head")

    def principal(node: etree._Element) -> AbacPrincipal:
        p = _one(node, "ABACprincipal")
        kid = _text(p, "keyid").lower()
        if not kid:
            raise CredentialInvalid("ABAC principal has no <keyid>")
        return AbacPrincipal(kid, _text(p, "mnemonic") or None)

    tails = []
    for tail in (c for c in rt0 if c.tag == "tail"):
        tails.append((principal(tail), _text(tail, "role") or None,
                      _text(tail, "linking_role") or None))
    if not tails:
        raise CredentialInvalid("ABAC statement has no <tail>")
    return AbacStatement(version, principal(head), _text(head, "role"), tails)


def _level(cred: etree._Element, depth: int) -> Level:
    if depth >= MAX_LEVELS:
        raise CredentialInvalid(f"delegation deeper than {MAX_LEVELS} levels")
    xml_id = cred.get(XML_ID)
    if not xml_id:
        raise CredentialInvalid("a <credential> element lacks its xml:id")
    ctype = _text(cred, "type").lower()
    if ctype not in SUPPORTED_TYPES:
        raise CredentialInvalid(f"unsupported credential type {ctype!r} "
                                f"(supported: {', '.join(SUPPORTED_TYPES)})")
    is_abac = ctype == "abac"
    owner = _gid(cred, "owner_gid", required=not is_abac)
    target = _gid(cred, "target_gid", required=not is_abac)
    level = Level(element=cred, xml_id=xml_id, type=ctype, serial=_text(cred, "serial"),
                  owner_certs=owner, target_certs=target,
                  expires=parse_time(_text(cred, "expires")),
                  privileges={} if is_abac else _privileges(cred, target))
    if is_abac:
        level.abac = _abac(cred)
    parent_el = _one(cred, "parent", required=False)
    if parent_el is not None:
        if is_abac:
            raise CredentialInvalid("ABAC credentials cannot be delegated (<parent> present)")
        level.parent = _level(_one(parent_el, "credential"), depth + 1)
    return level


def _signer_certs(sig: etree._Element, xml_id: str) -> list[x509.Certificate]:
    """Certificates from KeyInfo/X509Data, leaf first. KeyValue is deliberately ignored."""
    certs = []
    for node in sig.iter(f"{{{DSIG}}}X509Certificate"):
        try:
            der = base64.b64decode("".join((node.text or "").split()), validate=True)
        except (binascii.Error, ValueError):
            raise CredentialInvalid(f"signature of {xml_id}: X509Certificate is not base64") \
                from None
        try:
            certs.append(load_der(der))
        except CertificateError as exc:
            raise CredentialInvalid(f"signature of {xml_id}: {exc}") from None
    if not certs:
        raise CredentialInvalid(f"signature of {xml_id} carries no X509 certificate "
                                "(a bare KeyValue is never trusted)")
    return certs


def parse_document(data: bytes, max_bytes: int) -> Document:
    tree, ids = parse_secure(data, max_bytes)
    root = tree.getroot()
    if root.tag != "signed-credential":
        raise CredentialInvalid(f"root element is <{root.tag}>, expected <signed-credential>")
    # The signatures cover the <credential> levels only, so anything else added at the top
    # would ride along unsigned; the credential schema allows nothing else there (gcf refuses
    # such a document when it validates it, and the AM API acceptance suite checks this).
    extra = [el.tag for el in root if isinstance(el.tag, str)
             and el.tag not in ("credential", "signatures")]
    if extra:
        raise CredentialInvalid(f"unexpected <{extra[0]}> in <signed-credential> (only "
                                "<credential> and <signatures> may appear there)")
    seen: set[str] = set()
    for el in root.iter():
        if isinstance(el.tag, str):
            value = el.get(XML_ID)
            if value is not None:
                if value in seen:
                    raise CredentialInvalid(f"duplicate xml:id {value!r} "
                                            "(refused: ambiguous signature reference)")
                seen.add(value)
    top = _level(_one(root, "credential"), 0)
    doc = Document(tree, top)
    levels = {lv.xml_id: lv for lv in doc.levels}

    sigs_el = _one(root, "signatures", required=False)
    all_sigs = list(root.iter(SIGNATURE))
    for sig in all_sigs:
        if sig.getparent() is not sigs_el:
            raise CredentialInvalid("a Signature outside <signatures> (refused)")
        refs = list(sig.iter(f"{{{DSIG}}}Reference"))
        if len(refs) != 1:
            raise CredentialInvalid(f"a Signature has {len(refs)} References (exactly one "
                                    "allowed)")
        uri = refs[0].get("URI") or ""
        target_id = uri[1:] if uri.startswith("#") else None
        level = levels.get(target_id or "")
        if level is None:
            raise CredentialInvalid(f"Signature Reference {uri!r} does not point at a "
                                    "credential level of this document")
        if ids.get(level.xml_id) is not level.element:
            raise CredentialInvalid(f"xml:id {level.xml_id!r} does not resolve to its "
                                    "credential element (refused)")
        if level.signature is not None:
            raise CredentialInvalid(f"credential {level.xml_id} has more than one Signature")
        level.signature = sig
        level.signer_certs = _signer_certs(sig, level.xml_id)
    for level in doc.levels:
        if level.signature is None:
            raise CredentialInvalid(f"credential level {level.xml_id} is not signed")
    return doc
