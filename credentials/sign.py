"""Creating and signing GENI credentials in the reference (gcf) layout, in process.

Layout: `<signed-credential>` with the xsi namespace and schema-location attributes, one
`<credential xml:id="refN">` per level (a delegation nests the previous top credential,
unchanged, in `<parent>`), and one `<Signature xml:id="Sig_refN">` per level in the top-level
`<signatures>`: inclusive C14N 1.0, an enveloped-signature transform, Reference `#refN`, and
KeyInfo/X509Data with the signer's certificate chain, leaf first (no KeyValue). Signing uses
python-xmlsec; rsa-sha256 by default, rsa-sha1 for the existing federation's tools.
"""
from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from lxml import etree

from credentials.certs import keyid
from credentials.document import DSIG
from credentials.errors import CredentialInvalid
from credentials.xmlsafe import XML_ID

XSI = "http://www.w3.org/2001/XMLSchema-instance"
NO_NS_SCHEMA = "http://www.geni.net/resources/credential/2/credential.xsd"
SCHEMA_LOCATION = ("http://www.protogeni.net/resources/credential/ext/policy/1 "
                   "http://www.protogeni.net/resources/credential/ext/policy/1/policy.xsd")
ALGORITHMS = {
    "rsa-sha256": (xmlsec.Transform.RSA_SHA256, xmlsec.Transform.SHA256),  # type: ignore[attr-defined]  # missing from xmlsec's stubs
    "rsa-sha1": (xmlsec.Transform.RSA_SHA1, xmlsec.Transform.SHA1),  # type: ignore[attr-defined]  # missing from xmlsec's stubs
}


def format_time(ts: datetime) -> str:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pem(certs: Sequence[x509.Certificate]) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certs)


def _sub(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, tag)
    if text is not None:
        el.text = text
    return el


def _parse(data: bytes) -> etree._ElementTree:
    # Our own output only; re-parsing registers xml:id values as IDs for xmlsec.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.parse(io.BytesIO(data), parser)


def _new_root() -> etree._Element:
    root = etree.Element("signed-credential", nsmap={"xsi": XSI})
    root.set(f"{{{XSI}}}noNamespaceSchemaLocation", NO_NS_SCHEMA)
    root.set(f"{{{XSI}}}schemaLocation", SCHEMA_LOCATION)
    return root


def _privilege_level(xml_id: str, owner: Sequence[x509.Certificate],
                     target: Sequence[x509.Certificate], expires: datetime,
                     privileges: Mapping[str, bool], serial: str) -> etree._Element:
    from credentials.certs import identity_of
    cred = etree.Element("credential")
    cred.set(XML_ID, xml_id)
    _sub(cred, "type", "privilege")
    _sub(cred, "serial", serial)
    _sub(cred, "owner_gid", _pem(owner))
    _sub(cred, "owner_urn", identity_of(owner[0]).urn)
    _sub(cred, "target_gid", _pem(target))
    _sub(cred, "target_urn", identity_of(target[0]).urn)
    _sub(cred, "uuid")
    _sub(cred, "expires", format_time(expires))
    privs = _sub(cred, "privileges")
    for name, can_delegate in privileges.items():
        priv = _sub(privs, "privilege")
        _sub(priv, "name", name)
        _sub(priv, "can_delegate", "true" if can_delegate else "false")
    return cred


def _sign(tree: etree._ElementTree, xml_id: str, key: RSAPrivateKey,
          chain: Sequence[x509.Certificate], algorithm: str) -> bytes:
    """Append and compute the Signature for level `xml_id`; return the serialized document."""
    if algorithm not in ALGORITHMS:
        raise CredentialInvalid(f"unsupported signature algorithm {algorithm!r} "
                                f"(use {' or '.join(ALGORITHMS)})")
    sign_method, digest = ALGORITHMS[algorithm]
    root = tree.getroot()
    sigs = root.find("signatures")
    if sigs is None:
        sigs = _sub(root, "signatures")
    sig = xmlsec.template.create(root, xmlsec.Transform.C14N, sign_method)  # type: ignore[attr-defined]  # missing from xmlsec's stubs
    sig.set(XML_ID, f"Sig_{xml_id}")
    sigs.append(sig)
    ref = xmlsec.template.add_reference(sig, digest, uri=f"#{xml_id}")
    xmlsec.template.add_transform(ref, xmlsec.Transform.ENVELOPED)  # type: ignore[attr-defined]  # missing from xmlsec's stubs
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_memory(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()), xmlsec.KeyFormat.PEM)  # type: ignore[attr-defined]  # missing from xmlsec's stubs
    try:
        ctx.sign(sig)
    except xmlsec.Error as exc:
        raise CredentialInvalid(f"signing credential {xml_id} failed: {exc}") from None
    # KeyInfo is outside SignedInfo, so it can be written after signing, in our order.
    key_info = etree.SubElement(sig, f"{{{DSIG}}}KeyInfo")
    x509_data = etree.SubElement(key_info, f"{{{DSIG}}}X509Data")
    for cert in chain:
        node = etree.SubElement(x509_data, f"{{{DSIG}}}X509Certificate")
        node.text = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8")


def create_credential(*, owner: Sequence[x509.Certificate], target: Sequence[x509.Certificate],
                      expires: datetime, privileges: Mapping[str, bool],
                      signer_key: RSAPrivateKey, signer_chain: Sequence[x509.Certificate],
                      serial: str = "8", algorithm: str = "rsa-sha256") -> bytes:
    """A new (undelegated) privilege credential, signed by the issuing authority."""
    root = _new_root()
    root.append(_privilege_level("ref0", owner, target, expires, privileges, serial))
    tree = _parse(etree.tostring(root))
    return _sign(tree, "ref0", signer_key, signer_chain, algorithm)


def delegate_credential(parent_xml: bytes, *, new_owner: Sequence[x509.Certificate],
                        signer_key: RSAPrivateKey, signer_chain: Sequence[x509.Certificate],
                        privileges: Mapping[str, bool], expires: datetime,
                        algorithm: str = "rsa-sha256") -> bytes:
    """Wrap `parent_xml`'s top credential in a new level owned by `new_owner`, signed by the
    parent's owner. No policy checks here: verification decides whether it is legal."""
    from credentials.certs import load_pem_chain
    tree = _parse(parent_xml)
    root = tree.getroot()
    old = root.find("credential")
    if old is None:
        raise CredentialInvalid("parent document has no <credential>")
    existing = {el.get(XML_ID) for el in root.iter() if isinstance(el.tag, str)}
    n = 1
    while f"ref{n}" in existing:
        n += 1
    target = load_pem_chain(old.findtext("target_gid") or "")
    serial = old.findtext("serial") or "8"
    level = _privilege_level(f"ref{n}", new_owner, target, expires, privileges, serial)
    parent = _sub(level, "parent")
    index = root.index(old)
    old_tail, old.tail = old.tail, None
    parent.append(old)          # moved unchanged: its signature still covers it
    level.tail = old_tail
    root.insert(index, level)
    tree = _parse(etree.tostring(tree))   # register the new xml:id
    return _sign(tree, f"ref{n}", signer_key, signer_chain, algorithm)


def create_speaks_for(*, user_key: RSAPrivateKey, user_chain: Sequence[x509.Certificate],
                      tool_cert: x509.Certificate, expires: datetime,
                      algorithm: str = "rsa-sha256") -> bytes:
    """ABAC v1.1 `user.speaks_for_<user keyid> <- tool`, signed by the user."""
    from credentials.certs import identity_of
    user_kid, tool_kid = keyid(user_chain[0]), keyid(tool_cert)
    root = _new_root()
    cred = _sub(root, "credential")
    cred.set(XML_ID, "ref0")
    _sub(cred, "type", "abac")
    for tag in ("serial", "owner_gid", "owner_urn", "target_gid", "target_urn", "uuid"):
        _sub(cred, tag)
    _sub(cred, "expires", format_time(expires))
    rt0 = _sub(_sub(cred, "abac"), "rt0")
    _sub(rt0, "version", "1.1")
    head = _sub(rt0, "head")
    principal = _sub(head, "ABACprincipal")
    _sub(principal, "keyid", user_kid)
    _sub(principal, "mnemonic", identity_of(user_chain[0]).urn)
    _sub(head, "role", f"speaks_for_{user_kid}")
    tail = _sub(rt0, "tail")
    principal = _sub(tail, "ABACprincipal")
    _sub(principal, "keyid", tool_kid)
    _sub(principal, "mnemonic", identity_of(tool_cert).urn)
    tree = _parse(etree.tostring(root))
    return _sign(tree, "ref0", user_key, user_chain, algorithm)
