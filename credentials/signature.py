"""XML-DSig verification of one credential level, in process with python-xmlsec.

The key is set explicitly on the xmlsec context from a certificate whose chain the caller has
already validated, so xmlsec performs no key lookup from KeyInfo: a bare `KeyValue` (which the
`xmlsec1` command falls back to) is never used. Only the algorithms GENI issuers use are
accepted; anything else (XPath/XSLT transforms, HMAC, other references) is refused before
xmlsec runs.
"""
from __future__ import annotations

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from credentials.document import DSIG
from credentials.errors import CredentialInvalid

C14N_METHODS = frozenset({
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments",
    "http://www.w3.org/2001/10/xml-exc-c14n#",
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
})
SIGNATURE_METHODS = frozenset({
    "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
})
DIGEST_METHODS = frozenset({
    "http://www.w3.org/2000/09/xmldsig#sha1",
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
})
TRANSFORMS = frozenset({"http://www.w3.org/2000/09/xmldsig#enveloped-signature"}) | C14N_METHODS


def _d(tag: str) -> str:
    return f"{{{DSIG}}}{tag}"


def check_algorithms(sig: etree._Element, xml_id: str) -> None:
    info = sig.find(_d("SignedInfo"))
    if info is None:
        raise CredentialInvalid(f"signature of {xml_id} has no SignedInfo")
    c14n = info.find(_d("CanonicalizationMethod"))
    method = info.find(_d("SignatureMethod"))
    if c14n is None or c14n.get("Algorithm") not in C14N_METHODS:
        raise CredentialInvalid(f"signature of {xml_id}: unsupported canonicalization "
                                f"{None if c14n is None else c14n.get('Algorithm')!r}")
    if method is None or method.get("Algorithm") not in SIGNATURE_METHODS:
        raise CredentialInvalid(f"signature of {xml_id}: unsupported signature method "
                                f"{None if method is None else method.get('Algorithm')!r}")
    ref = info.find(_d("Reference"))
    if ref is None:
        raise CredentialInvalid(f"signature of {xml_id} has no Reference in SignedInfo")
    digest = ref.find(_d("DigestMethod"))
    if digest is None or digest.get("Algorithm") not in DIGEST_METHODS:
        raise CredentialInvalid(f"signature of {xml_id}: unsupported digest method")
    for transform in ref.iter(_d("Transform")):
        if transform.get("Algorithm") not in TRANSFORMS:
            raise CredentialInvalid(f"signature of {xml_id}: transform "
                                    f"{transform.get('Algorithm')!r} is not allowed")


def verify_signature(sig: etree._Element, signer: x509.Certificate, xml_id: str) -> None:
    """Verify `sig` with exactly `signer`'s public key; raise CredentialInvalid otherwise."""
    check_algorithms(sig, xml_id)
    der = signer.public_bytes(serialization.Encoding.DER)
    try:
        key = xmlsec.Key.from_memory(der, xmlsec.KeyFormat.CERT_DER)  # type: ignore[attr-defined]  # missing from xmlsec's stubs
        ctx = xmlsec.SignatureContext()
        ctx.key = key
        ctx.verify(sig)
    except xmlsec.VerificationError:
        raise CredentialInvalid(
            f"signature of credential {xml_id} does not verify (content altered, or not "
            "signed by the certificate it presents)") from None
    except xmlsec.Error as exc:
        raise CredentialInvalid(f"signature of credential {xml_id} cannot be verified: "
                                f"{exc}") from None
