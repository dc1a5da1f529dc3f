"""Hostile and broken credentials: each refused with a precise reason, none crashes."""
from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives import serialization
from lxml import etree

from credentials import sign
from credentials.authority import issue_certificate, new_key
from credentials.errors import (CertificateError, CredentialError,
                                CredentialInvalid, CredentialMismatch, SignerUntrusted,
                                SpeaksForError)
from credentials.privileges import METHOD_OPERATIONS
from credentials.verify import CredentialVerifier
from tests.credentials.conftest import ALICE, BOB, SLICE

XML_ID = "{http://www.w3.org/XML/1998/namespace}id"
DS = "{http://www.w3.org/2000/09/xmldsig#}"
ALLOCATE = METHOD_OPERATIONS["Allocate"]


def tree_of(data: bytes):
    return etree.fromstring(data, etree.XMLParser(resolve_entities=False, load_dtd=False))


def refused(verifier, data, exc=CredentialInvalid, match=None):
    with pytest.raises(exc, match=match) as err:
        verifier.verify(data)
    return err.value


def test_malformed_xml(verifier):
    refused(verifier, b"<signed-credential><credential>", match="malformed credential XML")
    refused(verifier, b"", match="empty")
    refused(verifier, b"\xff\xfe<\x00a\x00>\x00", match="UTF-8")
    refused(verifier, b"<other/>", match="expected <signed-credential>")
    refused(verifier, b"<signed-credential/>", match="lacks <credential>")


def test_billion_laughs_is_refused(verifier):
    lol = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
           + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i else b"&lol;") * 10)
                      for i in range(1, 10))
           + b']><signed-credential>&lol9;</signed-credential>')
    refused(verifier, lol, match="DOCTYPE")


def test_external_entity_is_refused(verifier):
    xxe = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           b"<signed-credential><credential>&x;</credential></signed-credential>")
    err = refused(verifier, xxe, match="DOCTYPE")
    assert "root:" not in str(err)


def test_size_limit(gcf, trust):
    small = CredentialVerifier(trust, max_bytes=4096)
    refused(small, gcf.bytes("slice-cred-alice.xml"), match="over the 4096-byte limit")
    big = gcf.bytes("slice-cred-alice.xml").replace(b"<uuid/>", b"<uuid>" + b"x" * 300_000 + b"</uuid>")
    refused(CredentialVerifier(trust), big, match="byte limit")


def test_signature_over_altered_content(gcf, verifier):
    data = gcf.bytes("slice-cred-alice.xml").replace(
        b"<expires>2031-11-20T07:03:59Z</expires>", b"<expires>2035-11-20T07:03:59Z</expires>")
    refused(verifier, data, match="signature of credential ref0 does not verify")
    data = gcf.bytes("slice-cred-delegated-to-bob-info-only.xml").replace(
        b"<name>info</name><can_delegate>false", b"<name>control</name><can_delegate>false")
    refused(verifier, data, match="ref1 does not verify")


def test_keyvalue_beside_trusted_certificate_is_ignored(gcf, verifier):
    """Re-sign with the untrusted CA's key, but present the trusted CA certificate in X509Data
    and the untrusted key as KeyValue: a verifier that used KeyValue would accept it."""
    root = tree_of(gcf.bytes("untrusted-slice-cred-alice.xml"))
    trusted_der = gcf.chain("ca")[0].public_bytes(serialization.Encoding.DER)
    for node in root.iter(f"{DS}X509Certificate"):
        node.text = base64.b64encode(trusted_der).decode()
    assert root.find(f".//{DS}KeyValue") is not None
    refused(verifier, etree.tostring(root), match="does not verify")


def test_no_certificate_only_keyvalue(gcf, verifier):
    root = tree_of(gcf.bytes("slice-cred-alice.xml"))
    x509_data = root.find(f".//{DS}X509Data")
    x509_data.getparent().remove(x509_data)
    refused(verifier, etree.tostring(root), match="bare KeyValue is never trusted")


def test_signature_wrapping_duplicate_id(gcf, verifier):
    """Forged top credential claiming bob, the genuine one hidden under the same xml:id."""
    root = tree_of(gcf.bytes("slice-cred-alice.xml"))
    genuine = root.find("credential")
    forged = etree.fromstring(etree.tostring(genuine))
    forged.find("owner_gid").text = gcf.text("bob-cert.pem")
    hide = etree.SubElement(forged, "extensions")
    hide.append(genuine)
    root.insert(0, forged)
    refused(verifier, etree.tostring(root), match="duplicate xml:id 'ref0'")


def test_signature_wrapping_reference_elsewhere(gcf, verifier):
    """Forged credential with its own id; the signature still covers the genuine one."""
    root = tree_of(gcf.bytes("slice-cred-alice.xml"))
    genuine = root.find("credential")
    forged = etree.fromstring(etree.tostring(genuine))
    forged.set(XML_ID, "forged")
    forged.find("owner_gid").text = gcf.text("bob-cert.pem")
    etree.SubElement(forged, "extensions").append(genuine)
    root.insert(0, forged)
    refused(verifier, etree.tostring(root),
            match="Reference '#ref0' does not point at a credential level")


def test_signature_wrapping_unsigned_delegation(gcf, verifier):
    """Forged delegation level (to bob) with no signature of its own."""
    root = tree_of(gcf.bytes("slice-cred-alice.xml"))
    genuine = root.find("credential")
    forged = etree.fromstring(etree.tostring(genuine))
    forged.set(XML_ID, "ref9")
    forged.find("owner_gid").text = gcf.text("bob-cert.pem")
    etree.SubElement(forged, "parent").append(genuine)
    root.insert(0, forged)
    refused(verifier, etree.tostring(root), match="level ref9 is not signed")


def test_duplicate_xml_id_anywhere(gcf, verifier):
    data = gcf.bytes("slice-cred-alice.xml").replace(
        b"<uuid/>", b'<uuid xml:id="Sig_ref0"/>')
    refused(verifier, data, match="duplicate xml:id")


def test_second_signature_or_reference(gcf, verifier):
    root = tree_of(gcf.bytes("slice-cred-alice.xml"))
    sig = root.find(f"signatures/{DS}Signature")
    extra = etree.fromstring(etree.tostring(sig))
    extra.set(XML_ID, "Sig_again")
    root.find("signatures").append(extra)
    refused(verifier, etree.tostring(root), match="more than one Signature")
    root = tree_of(gcf.bytes("slice-cred-alice.xml"))
    info = root.find(f".//{DS}SignedInfo")
    info.append(etree.fromstring(etree.tostring(info.find(f"{DS}Reference"))))
    refused(verifier, etree.tostring(root), match="2 References")


def test_self_signed_signer(gcf, verifier):
    key = new_key()
    fake_ca = issue_certificate(subject_urn="urn:publicid:IDN+geni:gpo:gcf+authority+sa",
                                public_key=key.public_key(), issuer_cert=None, issuer_key=key,
                                ca=True, days=30)
    xml = sign.create_credential(owner=gcf.chain("alice")[:1], target=gcf.chain("alice"),
                                 expires=datetime.now(timezone.utc) + timedelta(days=1),
                                 privileges={"control": True}, signer_key=key,
                                 signer_chain=[fake_ca])
    err = refused(verifier, xml, SignerUntrusted, match="self-signed certificate")
    assert err.geni_code == 23


def test_user_signing_for_a_slice_it_does_not_own(gcf, verifier):
    """alice (not an authority) issues a root credential for the fixture slice."""
    xml = sign.create_credential(owner=gcf.chain("bob")[:1], target=gcf.chain("alice"),
                                 expires=datetime.now(timezone.utc) + timedelta(days=1),
                                 privileges={"control": True}, signer_key=gcf.key("bob"),
                                 signer_chain=gcf.chain("bob"))
    refused(verifier, xml, SignerUntrusted, match="not an authority for its target")


def _delegate(gcf, parent: str, *, signer="alice", to="bob", privileges=None, expires=None):
    return sign.delegate_credential(
        gcf.bytes(parent), new_owner=gcf.chain(to)[:1], signer_key=gcf.key(signer),
        signer_chain=gcf.chain(signer), privileges=privileges or {"control": False},
        expires=expires or datetime(2031, 1, 1, tzinfo=timezone.utc))


def test_legal_delegation_made_here(gcf, verifier):
    vc = verifier.verify(_delegate(gcf, "slice-cred-alice.xml"))
    assert vc.owner_urn == BOB and vc.privileges == {"control": False}


def test_delegation_widening(gcf, verifier):
    refused(verifier, _delegate(gcf, "slice-cred-alice.xml", privileges={"ma": False}),
            match="'ma' is not held by the parent credential")


def test_delegation_extending_expiry(gcf, verifier):
    refused(verifier, _delegate(gcf, "slice-cred-alice.xml",
                                expires=datetime(2031, 11, 21, tzinfo=timezone.utc)),
            match="expires 2031-11-21T00:00:00Z, after its parent")


def test_delegation_parent_forbids(gcf, verifier):
    xml = _delegate(gcf, "slice-cred-delegated-to-bob-nodelegate.xml", signer="bob", to="alice")
    refused(verifier, xml, match="'control' is not delegatable")


def test_delegation_by_someone_not_the_owner(gcf, verifier):
    xml = _delegate(gcf, "slice-cred-alice.xml", signer="bob", to="bob")
    refused(verifier, xml, match="only the parent's owner .*alice may delegate")


def test_owner_and_target_mismatch(gcf, verifier):
    cred = [gcf.text("slice-cred-alice.xml")]
    with pytest.raises(CredentialMismatch, match="owner .*alice is not the caller .*bob") as err:
        verifier.authorize(gcf.bytes("bob-cert.pem"), cred, target_urn=SLICE, operations=ALLOCATE)
    assert err.value.geni_code == 22
    with pytest.raises(CredentialMismatch, match="target .*fixture is not .*other"):
        verifier.authorize(gcf.bytes("alice-cert.pem"), cred,
                           target_urn="urn:publicid:IDN+geni:gpo:gcf+slice+other",
                           operations=ALLOCATE)


def test_caller_outside_namespace(gcf, verifier):
    key = new_key()
    cert = issue_certificate(subject_urn="urn:publicid:IDN+elsewhere+user+alice",
                             public_key=key.public_key(), issuer_cert=gcf.chain("ca")[0],
                             issuer_key=gcf.key("ca"), ca=False, days=2)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CertificateError, match="outside its namespace") as err:
        verifier.authorize(pem, [gcf.text("alice-user-cred.xml")], target_urn=None,
                           operations=())
    assert err.value.geni_code == 23


def test_speaks_for_another_user(gcf, verifier):
    creds = [{"geni_type": "geni_abac", "geni_version": "1",
              "geni_value": gcf.text("speaks-for-tool-for-alice.xml")},
             gcf.text("slice-cred-delegated-to-bob.xml")]
    with pytest.raises(SpeaksForError, match="not by .*bob"):
        verifier.authorize(gcf.bytes("tool-cert.pem"), creds, target_urn=SLICE,
                           operations=ALLOCATE, speaking_for=BOB)


def test_tampered_speaks_for(gcf, verifier):
    data = gcf.text("speaks-for-tool-for-alice.xml").replace(
        "0510a15a538b2c1767dbcfaa851efd9b0bc4bcc5",
        "b" * 40)
    creds = [{"geni_type": "geni_abac", "geni_value": data}, gcf.text("slice-cred-alice.xml")]
    with pytest.raises(SpeaksForError, match="does not verify") as err:
        verifier.authorize(gcf.bytes("tool-cert.pem"), creds, target_urn=SLICE,
                           operations=ALLOCATE, speaking_for=ALICE)
    assert err.value.geni_code == 20


@pytest.mark.parametrize("junk", [
    b"<signed-credential><credential><type>privilege</type></credential></signed-credential>",
    b'<signed-credential><credential xml:id="a"><type>ticket</type></credential></signed-credential>',
    b'<signed-credential><credential xml:id="a"><type>privilege</type><owner_gid>x</owner_gid>'
    b"</credential></signed-credential>",
    "<signed-credential>\u00e9</signed-credential>",
    b"\x00\x01\x02",
    b"<a>" * 300 + b"</a>" * 300,
])
def test_junk_never_crashes(verifier, junk):
    with pytest.raises(CredentialError):
        verifier.verify(junk)
    with pytest.raises(CredentialError):
        verifier.verify(junk, now=datetime(2030, 1, 1, tzinfo=timezone.utc))


def test_not_text(verifier):
    with pytest.raises(CredentialInvalid, match="must be XML text"):
        verifier.verify(12)   # type: ignore[arg-type]


def test_expired_certificate_in_credential(gcf, verifier):
    now = datetime.now(timezone.utc)
    key = new_key()
    old = issue_certificate(subject_urn="urn:publicid:IDN+geni:gpo:gcf+user+old",
                            public_key=key.public_key(), issuer_cert=gcf.chain("ca")[0],
                            issuer_key=gcf.key("ca"), ca=False, days=1,
                            not_before=now - timedelta(days=5))
    xml = sign.create_credential(owner=[old], target=[old], expires=now + timedelta(days=10),
                                 privileges={"info": False}, signer_key=gcf.key("ca"),
                                 signer_chain=gcf.chain("ca"))
    err = refused(verifier, xml, CertificateError, match="owner certificate of credential ref0")
    assert "expired at" in str(err) and err.geni_code == 21


def test_mutation_fuzz_never_crashes(gcf, trust):
    """Random byte edits and truncations of a delegated credential: only CredentialErrors."""
    import random
    rng = random.Random(20261126)
    original = gcf.bytes("slice-cred-delegated-to-bob.xml")
    verifier = CredentialVerifier(trust)
    accepted = 0
    for _ in range(150):
        data = bytearray(original)
        choice = rng.random()
        if choice < 0.3:
            data = data[:rng.randrange(len(data))]
        else:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            verifier.verify(bytes(data))
            accepted += 1
        except CredentialError:
            pass
    # an edit can land in signature whitespace or KeyValue (unsigned, ignored) and leave the
    # credential genuine; but most must be refused
    assert accepted < 50


def test_far_future_offsets_are_refused_cleanly(gcf, verifier):
    data = gcf.bytes("slice-cred-alice.xml").replace(
        b"2031-11-20T07:03:59Z", b"9999-12-31T23:59:59-01:00")
    refused(verifier, data, match="not a usable xs:dateTime")


def test_caller_chain_must_be_pem(gcf, verifier):
    with pytest.raises(CertificateError, match="must be text"):
        verifier.authorize(None, [gcf.text("alice-user-cred.xml")], target_urn=None,
                           operations=())   # type: ignore[arg-type]
    with pytest.raises(CertificateError, match="no PEM certificate"):
        verifier.authorize("nonsense", [gcf.text("alice-user-cred.xml")], target_urn=None,
                           operations=())


def test_lone_surrogate_text_is_refused_not_raised(verifier):
    with pytest.raises(CredentialInvalid, match="not valid Unicode"):
        verifier.verify("\ud800")
    with pytest.raises(CertificateError):
        verifier.caller_identity("\ud800")
