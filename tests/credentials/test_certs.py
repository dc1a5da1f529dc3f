"""Certificate identities and chain rules, with certificates minted under the fixture CA."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from credentials.authority import issue_certificate, new_key
from credentials.certs import TrustStore, identity_of, load_pem_chain
from credentials.errors import CertificateError

KEY = new_key()   # one subject key for every minted certificate keeps the tests fast


def mint(gcf, urn, *, issuer="ca", ca=False, days=30, not_before=None, email=None):
    issuer_cert = gcf.chain(issuer)[0] if isinstance(issuer, str) else issuer[0]
    issuer_key = gcf.key(issuer) if isinstance(issuer, str) else issuer[1]
    return issue_certificate(subject_urn=urn, public_key=KEY.public_key(),
                             issuer_cert=issuer_cert, issuer_key=issuer_key, ca=ca, days=days,
                             not_before=not_before, email=email)


def test_identity_fields(gcf):
    cert = mint(gcf, "urn:publicid:IDN+geni:gpo:gcf+user+carol", email="carol@example.org")
    ident = identity_of(cert)
    assert ident.urn == "urn:publicid:IDN+geni:gpo:gcf+user+carol"
    assert ident.email == "carol@example.org" and len(ident.uuid) == 36


def test_namespace_violation_is_refused(gcf, trust):
    cert = mint(gcf, "urn:publicid:IDN+other:place+user+mallory")
    with pytest.raises(CertificateError, match="outside its namespace") as err:
        trust.verify_chain([cert])
    assert err.value.geni_code == 23


def test_intermediate_authority_rules(gcf, trust):
    sub_key = new_key()
    sub = issue_certificate(subject_urn="urn:publicid:IDN+geni:gpo:gcf:lab+authority+sa",
                            public_key=sub_key.public_key(), issuer_cert=gcf.chain("ca")[0],
                            issuer_key=gcf.key("ca"), ca=True, days=30)
    inside = mint(gcf, "urn:publicid:IDN+geni:gpo:gcf:lab+user+dave", issuer=(sub, sub_key))
    ident = trust.verify_chain([inside, sub])
    assert [identity_of(c).urn for c in ident.chain][-1].endswith("+authority+sa")
    assert len(ident.chain) == 3
    # the sub-authority may not certify its parent's namespace
    outside = mint(gcf, "urn:publicid:IDN+geni:gpo:gcf+user+dave", issuer=(sub, sub_key))
    with pytest.raises(CertificateError, match="outside its namespace"):
        trust.verify_chain([outside, sub])
    # a CA:FALSE certificate cannot issue
    leaf_issuer = mint(gcf, "urn:publicid:IDN+geni:gpo:gcf:lab+authority+sa")
    child = mint(gcf, "urn:publicid:IDN+geni:gpo:gcf:lab+user+eve", issuer=(leaf_issuer, KEY))
    with pytest.raises(CertificateError, match="not a CA"):
        trust.verify_chain([child, leaf_issuer])
    # missing intermediate: no chain
    with pytest.raises(CertificateError, match="does not chain"):
        trust.verify_chain([inside])


def test_expired_and_not_yet_valid(gcf, trust):
    now = datetime.now(timezone.utc)
    old = mint(gcf, "urn:publicid:IDN+geni:gpo:gcf+user+old", days=1,
               not_before=now - timedelta(days=10))
    with pytest.raises(CertificateError, match="expired at") as err:
        trust.verify_chain([old])
    assert err.value.geni_code == 21
    young = mint(gcf, "urn:publicid:IDN+geni:gpo:gcf+user+young",
                 not_before=now + timedelta(days=2))
    with pytest.raises(CertificateError, match="not valid before"):
        trust.verify_chain([young])


def test_trust_store_sources_and_fingerprint(gcf, tmp_path):
    with pytest.raises(CertificateError, match="does not exist"):
        TrustStore.from_directory(tmp_path / "nope")
    with pytest.raises(CertificateError, match="no PEM files"):
        TrustStore.from_directory(tmp_path)
    (tmp_path / "a.pem").write_bytes(gcf.bytes("ca-cert.pem"))
    one = TrustStore.from_directory(tmp_path)
    (tmp_path / "b.pem").write_bytes(gcf.bytes("untrusted-ca-cert.pem"))
    two = TrustStore.from_directory(tmp_path)
    assert one.fingerprint != two.fingerprint
    assert TrustStore.from_pem_files([gcf.path("ca-cert.pem")]).fingerprint == one.fingerprint
    # with both roots, the impostor alice now validates (federation of two roots)
    assert two.verify_chain(gcf.chain("untrusted-alice")).urn.endswith("+user+alice")
    (tmp_path / "c.pem").write_text("not a certificate")
    with pytest.raises(CertificateError, match="c.pem"):
        TrustStore.from_directory(tmp_path)


def test_unparseable_pem():
    with pytest.raises(CertificateError, match="no PEM certificate"):
        load_pem_chain("hello")
    with pytest.raises(CertificateError, match="unparseable"):
        load_pem_chain("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
