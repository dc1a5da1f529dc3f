"""Certificate revocation: CRLs loaded from the trust directory and enforced on every chain
(TLS caller, credential signers, owners and targets), with reloads that beat the caches."""
from __future__ import annotations

import logging
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from credentials import sign
from credentials.authority import DevAuthority, issue_certificate, new_key
from credentials.cache import VerificationCache
from credentials.certs import TrustStore, load_pem_chain
from credentials.crl import (CertificateRevoked, CRLError, RevokedEntry, build_crl,
                             format_serial, load_crl_files, parse_serial)
from credentials.errors import CREDENTIAL_SIGNER_UNTRUSTED, CertificateError, SignerUntrusted
from credentials.privileges import METHOD_OPERATIONS, STAR_EXPANSION
from credentials.verify import CredentialVerifier

S1 = "urn:publicid:IDN+geni-am+slice+s1"
ALICE = "urn:publicid:IDN+geni-am+user+alice"
BOB = "urn:publicid:IDN+geni-am+user+bob"
REVOKED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
ALLOCATE = METHOD_OPERATIONS["Allocate"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def auth(tmp_path_factory) -> DevAuthority:
    """alice owns slice s1 and delegated it to bob; carol is a bystander of the same CA."""
    authority = DevAuthority.init(tmp_path_factory.mktemp("crl") / "auth")
    for user in ("alice", "bob", "carol"):
        authority.user(user)
    authority.slice("s1", "alice")
    authority.delegate(authority.dir / "s1-slice-cred-alice.xml", "bob")
    return authority


def leaf(auth: DevAuthority, who: str) -> x509.Certificate:
    return load_pem_chain((auth.dir / f"{who}-cert.pem").read_bytes())[0]


def crl_bytes(issuer: x509.Certificate, key, serials, *, der: bool = False,
              this_update: datetime | None = None, next_update: datetime | None = None,
              number: int = 1, reason: str | None = None) -> bytes:
    now = datetime.now(timezone.utc)
    crl = build_crl(issuer, key, [RevokedEntry(s, REVOKED_AT, reason) for s in serials],
                    this_update=this_update or now - timedelta(hours=1),
                    next_update=next_update or now + timedelta(days=7), number=number)
    return crl.public_bytes(serialization.Encoding.DER if der else serialization.Encoding.PEM)


def trust_dir(tmp_path: Path, auth: DevAuthority, **crls: bytes) -> Path:
    """A trust-roots directory: the authority's CA, plus CRL files name -> content."""
    directory = tmp_path / "trust"
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(auth.dir / "ca-cert.pem", directory / "ca-cert.pem")
    for name, data in crls.items():
        (directory / name.replace("_", ".")).write_bytes(data)
    return directory


def cred(auth: DevAuthority, name: str) -> bytes:
    return (auth.dir / name).read_bytes()


def pem(auth: DevAuthority, who: str) -> bytes:
    return (auth.dir / f"{who}-cert.pem").read_bytes()


# ---- enforcement -------------------------------------------------------------------------------

def test_revoked_user_is_refused_with_subject_serial_and_date(auth, tmp_path):
    bob = leaf(auth, "bob")
    directory = trust_dir(tmp_path, auth, ca_crl=crl_bytes(
        auth.ca_cert, auth.ca_key, [bob.serial_number], reason="keyCompromise"))
    verifier = CredentialVerifier(TrustStore.from_directory(directory))
    delegated = cred(auth, "s1-slice-cred-alice-delegated-to-bob.xml")
    expected = (f"certificate {BOB} (subject 'CN=geni-am.bob', serial "
                f"{format_serial(bob.serial_number)}) was revoked by "
                f"urn:publicid:IDN+geni-am+authority+sa on 2026-01-02T03:04:05Z, "
                "reason keyCompromise")
    # as the owner inside a credential
    with pytest.raises(CertificateRevoked) as err:
        verifier.verify(delegated)
    assert expected in str(err.value) and "owner certificate of credential" in str(err.value)
    assert err.value.geni_code == CREDENTIAL_SIGNER_UNTRUSTED
    # as the TLS caller: refused before any credential is looked at
    with pytest.raises(CertificateError) as err:
        verifier.authorize(pem(auth, "bob"), [delegated], target_urn=S1, operations=ALLOCATE)
    assert str(err.value) == f"caller certificate refused: {expected}"
    assert err.value.geni_code == CREDENTIAL_SIGNER_UNTRUSTED
    # the other users of the same CA are untouched
    ok = verifier.authorize(pem(auth, "alice"), [cred(auth, "s1-slice-cred-alice.xml")],
                            target_urn=S1, operations=ALLOCATE)
    assert ok.caller.urn == ALICE
    assert verifier.caller_identity(pem(auth, "carol")).urn.endswith("+user+carol")


def test_revoked_signer_of_a_delegation_is_untrusted(auth, tmp_path):
    alice = leaf(auth, "alice")
    directory = trust_dir(tmp_path, auth, ca_crl=crl_bytes(auth.ca_cert, auth.ca_key,
                                                           [alice.serial_number]))
    verifier = CredentialVerifier(TrustStore.from_directory(directory))
    with pytest.raises(CertificateRevoked, match=r"\+user\+alice .*was revoked") as err:
        verifier.verify(cred(auth, "s1-slice-cred-alice.xml"))   # alice is the owner
    assert err.value.geni_code == CREDENTIAL_SIGNER_UNTRUSTED
    # bob's copy is signed by alice: her signature no longer counts
    with pytest.raises(SignerUntrusted, match="signer of credential .* is not trusted: "
                                              r"certificate .*\+user\+alice .*was revoked"):
        verifier.verify(cred(auth, "s1-slice-cred-alice-delegated-to-bob.xml"))


def test_der_pem_and_multi_block_pem_all_load(auth, tmp_path):
    bob, carol = leaf(auth, "bob"), leaf(auth, "carol")
    other_key = new_key()
    other = issue_certificate(subject_urn="urn:publicid:IDN+other+authority+sa",
                              public_key=other_key.public_key(), issuer_cert=None,
                              issuer_key=other_key, ca=True, days=30)
    other_pem = other.public_bytes(serialization.Encoding.PEM)
    # DER .crl; PEM bundle (.pem, certificate + CRL blocks of two issuers)
    directory = trust_dir(tmp_path, auth, ca_crl=crl_bytes(auth.ca_cert, auth.ca_key,
                                                           [bob.serial_number], der=True))
    (directory / "other.pem").write_bytes(
        other_pem + crl_bytes(other, other_key, [7]) + crl_bytes(auth.ca_cert, auth.ca_key,
                                                                 [carol.serial_number]))
    trust = TrustStore.from_directory(directory)
    assert len(trust.roots) == 2
    assert len(trust.revocations.crls) == 2   # one CRL in force per CA
    # a .pem holding only CRL blocks is not mistaken for a broken trust root
    (directory / "other.pem").write_bytes(other_pem)
    (directory / "only-crls.pem").write_bytes(crl_bytes(other, other_key, [7]))
    trust = TrustStore.from_directory(directory)
    assert len(trust.roots) == 2 and len(trust.revocations.crls) == 2
    with pytest.raises(CertificateRevoked, match=r"\+user\+bob"):
        trust.verify_chain(load_pem_chain(pem(auth, "bob")))
    trust.verify_chain(load_pem_chain(pem(auth, "carol")))


def test_newest_crl_of_a_ca_wins(auth, tmp_path):
    bob, carol = leaf(auth, "bob"), leaf(auth, "carol")
    now = datetime.now(timezone.utc)
    old = crl_bytes(auth.ca_cert, auth.ca_key, [bob.serial_number], number=4,
                    this_update=now - timedelta(days=2))
    new = crl_bytes(auth.ca_cert, auth.ca_key, [carol.serial_number], number=5,
                    this_update=now - timedelta(days=1))
    trust = TrustStore.from_directory(trust_dir(tmp_path, auth, a_crl=new, b_crl=old))
    trust.verify_chain(load_pem_chain(pem(auth, "bob")))
    with pytest.raises(CertificateRevoked, match=r"\+user\+carol"):
        trust.verify_chain(load_pem_chain(pem(auth, "carol")))


def test_crl_signed_by_the_wrong_key_is_a_load_error(auth, tmp_path):
    impostor_key = new_key()   # same issuer name as the CA, another key
    bad = crl_bytes(auth.ca_cert, impostor_key, [leaf(auth, "bob").serial_number])
    directory = trust_dir(tmp_path, auth, forged_crl=bad)
    with pytest.raises(CRLError, match=r"forged\.crl: CRL signature does not verify with the "
                                       r"key of trust root urn:publicid:IDN\+geni-am\+"
                                       r"authority\+sa"):
        TrustStore.from_directory(directory)


def test_crl_of_an_issuer_outside_the_trust_roots_is_a_load_error(auth, tmp_path):
    stranger_key = new_key()
    stranger = issue_certificate(subject_urn="urn:publicid:IDN+elsewhere+authority+sa",
                                 public_key=stranger_key.public_key(), issuer_cert=None,
                                 issuer_key=stranger_key, ca=True, days=30)
    directory = trust_dir(tmp_path, auth, elsewhere_crl=crl_bytes(stranger, stranger_key, [9]))
    with pytest.raises(CRLError, match=r"elsewhere\.crl: CRL issuer 'CN=elsewhere' is not "
                                       "one of the trust roots"):
        TrustStore.from_directory(directory)


@pytest.mark.parametrize("content, fragment", [
    (b"", "the file is empty"),
    (b"\x30\x03\x02\x01\x01", "unparseable CRL"),
    (b"-----BEGIN X509 CRL-----\nAAAA\n", "unterminated X509 CRL block"),
    (b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n", "unparseable CRL"),
    (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
     "PEM file without an X509 CRL block"),
])
def test_unparseable_crl_files_name_the_file(auth, tmp_path, content, fragment):
    directory = trust_dir(tmp_path, auth, broken_crl=content)
    with pytest.raises(CRLError, match=rf"broken\.crl: .*{fragment}"):
        TrustStore.from_directory(directory)


def test_delta_crls_are_refused(auth, tmp_path):
    now = datetime.now(timezone.utc)
    delta = (x509.CertificateRevocationListBuilder().issuer_name(auth.ca_cert.subject)
             .last_update(now).next_update(now + timedelta(days=1))
             .add_extension(x509.DeltaCRLIndicator(1), critical=True)
             .sign(auth.ca_key, hashes.SHA256()))
    directory = trust_dir(tmp_path, auth,
                          delta_crl=delta.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(CRLError, match=r"delta\.crl: delta CRLs are not supported"):
        TrustStore.from_directory(directory)


def test_crl_past_next_update_is_enforced_with_a_warning(auth, tmp_path, caplog):
    bob = leaf(auth, "bob")
    now = datetime.now(timezone.utc)
    stale = crl_bytes(auth.ca_cert, auth.ca_key, [bob.serial_number],
                      this_update=now - timedelta(days=40), next_update=now - timedelta(days=10))
    with caplog.at_level(logging.WARNING, logger="credentials.crl"):
        trust = TrustStore.from_directory(trust_dir(tmp_path, auth, stale_crl=stale))
    assert "stale.crl" in caplog.text and "past its nextUpdate" in caplog.text
    assert "still enforcing its 1 entries" in caplog.text
    with pytest.raises(CertificateRevoked, match=r"\+user\+bob"):
        trust.verify_chain(load_pem_chain(pem(auth, "bob")))
    trust.verify_chain(load_pem_chain(pem(auth, "alice")))


# ---- intermediate authorities --------------------------------------------------------------

@pytest.fixture(scope="module")
def sub(auth):
    """A slice authority `geni-am:lab` certified by the root, with user dave and a slice
    credential for him signed by the slice authority."""
    sa_key = new_key()
    sa = issue_certificate(subject_urn="urn:publicid:IDN+geni-am:lab+authority+sa",
                           public_key=sa_key.public_key(), issuer_cert=auth.ca_cert,
                           issuer_key=auth.ca_key, ca=True, days=30)
    user_key = new_key()
    dave = issue_certificate(subject_urn="urn:publicid:IDN+geni-am:lab+user+dave",
                             public_key=user_key.public_key(), issuer_cert=sa,
                             issuer_key=sa_key, ca=False, days=30)
    erin = issue_certificate(subject_urn="urn:publicid:IDN+geni-am:lab+user+erin",
                             public_key=user_key.public_key(), issuer_cert=sa,
                             issuer_key=sa_key, ca=False, days=30)
    slice_cert = issue_certificate(subject_urn="urn:publicid:IDN+geni-am:lab+slice+lab1",
                                   public_key=user_key.public_key(), issuer_cert=sa,
                                   issuer_key=sa_key, ca=False, days=30)
    xml = sign.create_credential(
        owner=[dave, sa], target=[slice_cert, sa],
        expires=datetime.now(timezone.utc) + timedelta(days=10),
        privileges={p: True for p in STAR_EXPANSION["slice"]},
        signer_key=sa_key, signer_chain=[sa])
    return {"sa": sa, "sa_key": sa_key, "dave": dave, "erin": erin, "cred": xml}


def test_intermediate_revoked_by_the_root_refuses_everything_it_issued(auth, sub, tmp_path):
    sa, dave, erin = sub["sa"], sub["dave"], sub["erin"]
    clean = TrustStore.from_directory(trust_dir(tmp_path / "clean", auth))
    assert clean.verify_chain([dave, sa]).urn.endswith("+user+dave")
    assert CredentialVerifier(clean).verify(sub["cred"]).target_urn.endswith("+slice+lab1")

    directory = trust_dir(tmp_path, auth, root_crl=crl_bytes(auth.ca_cert, auth.ca_key,
                                                             [sa.serial_number]))
    trust = TrustStore.from_directory(directory)
    for user in (dave, erin):
        with pytest.raises(CertificateRevoked,
                           match=r"certificate urn:publicid:IDN\+geni-am:lab\+authority\+sa "
                                 r".*was revoked by urn:publicid:IDN\+geni-am\+authority\+sa"):
            trust.verify_chain([user, sa])
    with pytest.raises(SignerUntrusted, match=r"geni-am:lab\+authority\+sa .*was revoked"):
        CredentialVerifier(trust).verify(sub["cred"])
    # direct TLS mode: the intermediate is itself among the trust roots (the handshake only
    # passes the leaf), and the root's CRL still withdraws it
    (directory / "lab-sa.pem").write_bytes(sa.public_bytes(serialization.Encoding.PEM))
    both = TrustStore.from_directory(directory)
    with pytest.raises(CertificateRevoked, match=r"geni-am:lab\+authority\+sa .*was revoked"):
        both.verify_chain([dave])
    (directory / "root.crl").unlink()
    assert TrustStore.from_directory(directory).verify_chain([dave]).urn.endswith("+dave")


def test_crl_of_an_intermediate_among_the_trust_roots(auth, sub, tmp_path):
    sa, sa_key, dave, erin = sub["sa"], sub["sa_key"], sub["dave"], sub["erin"]
    directory = trust_dir(tmp_path, auth, lab_crl=crl_bytes(sa, sa_key, [dave.serial_number]))
    # the slice authority's CRL needs its certificate among the roots to be verifiable
    with pytest.raises(CRLError, match=r"lab\.crl: CRL issuer .* is not one of the trust roots"):
        TrustStore.from_directory(directory)
    (directory / "lab-sa.pem").write_bytes(sa.public_bytes(serialization.Encoding.PEM))
    trust = TrustStore.from_directory(directory)
    with pytest.raises(CertificateRevoked, match=r"geni-am:lab\+user\+dave .*revoked by "
                                                 r"urn:publicid:IDN\+geni-am:lab\+authority"):
        trust.verify_chain([dave, sa])
    with pytest.raises(CertificateRevoked, match=r"geni-am:lab\+user\+dave"):
        trust.verify_chain([dave])
    assert trust.verify_chain([erin]).urn.endswith("+user+erin")


# ---- reload and caches -------------------------------------------------------------------

def test_reload_beats_warm_caches(auth, tmp_path, caplog):
    directory = trust_dir(tmp_path, auth)
    clock = FakeClock()
    trust = TrustStore.from_directory(directory, crl_refresh_s=60, clock=clock)
    cache = VerificationCache()
    verifier = CredentialVerifier(trust, cache=cache)
    delegated = cred(auth, "s1-slice-cred-alice-delegated-to-bob.xml")

    def call():
        return verifier.authorize(pem(auth, "bob"), [delegated], target_urn=S1,
                                  operations=ALLOCATE)

    before = trust.fingerprint
    assert call().caller.urn == BOB
    assert call().caller.urn == BOB and cache.hits == 1   # warm: credential and caller cached
    bob = leaf(auth, "bob")
    (directory / "ca.crl").write_bytes(crl_bytes(auth.ca_cert, auth.ca_key, [bob.serial_number]))
    clock.now += 59   # inside the interval the files are not even looked at
    assert call().caller.urn == BOB
    clock.now += 1
    with pytest.raises(CertificateRevoked, match=r"caller certificate refused: .*\+user\+bob"):
        call()
    assert trust.fingerprint != before
    with pytest.raises(CertificateRevoked, match=r"owner certificate .*\+user\+bob"):
        verifier.verify(delegated)   # the cached verification is not served either

    # a broken update keeps the CRLs in force and says which file is wrong
    (directory / "extra.crl").write_bytes(b"garbage")
    clock.now += 60
    with caplog.at_level(logging.ERROR, logger="credentials.certs"):
        with pytest.raises(CertificateRevoked):
            call()
    assert "extra.crl" in caplog.text and "stay in force" in caplog.text
    # the operator fixes it and lifts the revocation: bob is back after the next check
    (directory / "extra.crl").unlink()
    (directory / "ca.crl").unlink()
    clock.now += 60
    assert call().caller.urn == BOB and trust.fingerprint == before


def test_refresh_interval_zero_reads_once(auth, tmp_path):
    directory = trust_dir(tmp_path, auth)
    clock = FakeClock()
    trust = TrustStore.from_directory(directory, crl_refresh_s=0, clock=clock)
    (directory / "ca.crl").write_bytes(crl_bytes(auth.ca_cert, auth.ca_key,
                                                 [leaf(auth, "bob").serial_number]))
    clock.now += 10 ** 6
    assert trust.refresh() is False
    trust.verify_chain(load_pem_chain(pem(auth, "bob")))
    assert trust.reload_crls() is True   # an explicit reload still works
    with pytest.raises(CertificateRevoked):
        trust.verify_chain(load_pem_chain(pem(auth, "bob")))


def test_fingerprint_unchanged_without_crls(auth, tmp_path):
    plain = TrustStore.from_pem_files([auth.dir / "ca-cert.pem"])
    directory = trust_dir(tmp_path, auth)
    assert TrustStore.from_directory(directory).fingerprint == plain.fingerprint
    (directory / "ca.crl").write_bytes(crl_bytes(auth.ca_cert, auth.ca_key, [5]))
    assert TrustStore.from_directory(directory).fingerprint != plain.fingerprint


def test_separate_crl_directory(auth, tmp_path):
    directory = trust_dir(tmp_path, auth)
    crls = tmp_path / "crls"
    crls.mkdir()
    (crls / "ca.crl").write_bytes(crl_bytes(auth.ca_cert, auth.ca_key,
                                            [leaf(auth, "bob").serial_number]))
    trust = TrustStore.from_directory(directory, crl_dir=crls)
    with pytest.raises(CertificateRevoked):
        trust.verify_chain(load_pem_chain(pem(auth, "bob")))
    with pytest.raises(CRLError, match="CRL directory .* does not exist"):
        TrustStore.from_directory(directory, crl_dir=tmp_path / "missing")


def test_load_crl_files_and_serial_parsing(auth, tmp_path):
    path = tmp_path / "x.crl"
    path.write_bytes(crl_bytes(auth.ca_cert, auth.ca_key, [0x1A2B, 42]))
    index = load_crl_files([path], [auth.ca_cert])
    assert index.entry_count == 2 and index.digest
    assert parse_serial("0x1A2B") == parse_serial("1A:2B") == parse_serial("6699") == 0x1A2B
    for bad in ("", "zz", "-3", "0"):
        with pytest.raises(CRLError, match="serial"):
            parse_serial(bad)
    with pytest.raises(CRLError, match="cannot read CRL file"):
        load_crl_files([tmp_path / "absent.crl"], [auth.ca_cert])
