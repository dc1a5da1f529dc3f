"""Every file in ../shared/fixtures/gcf behaves as its README says."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from credentials.certs import identity_of, keyid
from credentials.errors import (CertificateError, CredentialExpired, CredentialMismatch,
                                InsufficientPrivileges, SignerUntrusted, SpeaksForError)
from credentials.privileges import METHOD_OPERATIONS
from tests.credentials.conftest import ALICE, BOB, SLICE, TOOL

ALLOCATE = METHOD_OPERATIONS["Allocate"]
ALL_FIVE = {"refresh", "embed", "bind", "control", "info"}


def sfa(gcf, name):
    return {"geni_type": "geni_sfa", "geni_version": "3", "geni_value": gcf.text(name)}


def test_certificate_identities_and_keyids(gcf, trust):
    alice = trust.verify_chain(gcf.chain("alice"))
    assert alice.urn == ALICE
    assert alice.uuid == "cef7aeaf-19a6-4843-86f0-399ce7c5c7fc"
    assert [identity_of(c).urn for c in alice.chain] == [
        ALICE, "urn:publicid:IDN+geni:gpo:gcf+authority+sa"]
    assert keyid(gcf.chain("alice")[0]) == "12c15dba0f8a3f2b5242973c4855ef66b491a169"
    assert keyid(gcf.chain("tool")[0]) == "0510a15a538b2c1767dbcfaa851efd9b0bc4bcc5"
    am = trust.verify_chain(gcf.chain("am"))
    assert am.urn == "urn:publicid:IDN+geni:gpo:gcf:am1+authority+am"


def test_untrusted_certificates_fail_by_key_not_name(gcf, trust):
    for who in ("untrusted-alice", "untrusted-am", "untrusted-ca"):
        with pytest.raises(CertificateError) as err:
            trust.verify_chain(gcf.chain(who))
        assert err.value.geni_code == 23
        assert "trust" in str(err.value)


def test_certificates_not_yet_valid_before_issue(gcf, trust):
    with pytest.raises(CertificateError, match="not valid before 2026-11-26T07:03:48Z"):
        trust.verify_chain(gcf.chain("alice"), now=datetime(2026, 1, 1, tzinfo=timezone.utc))


def test_alice_slice_credential_authorizes_alice_for_allocate(gcf, verifier):
    for cred in (sfa(gcf, "slice-cred-alice.xml"),
                 json.loads(gcf.text("slice-cred-alice.json")),
                 gcf.text("slice-cred-alice.xml")):               # v2: bare XML string
        auth = verifier.authorize(gcf.bytes("alice-cert.pem"), [cred], target_urn=SLICE,
                                  operations=ALLOCATE)
        assert auth.caller.urn == ALICE and auth.tool is None
        assert auth.expires == datetime(2031, 11, 20, 7, 3, 59, tzinfo=timezone.utc)
        assert auth.privileges == ALL_FIVE
        assert auth.accepted[0].signer_chain == ("urn:publicid:IDN+geni:gpo:gcf+authority+sa",)


def test_every_v3_slice_method_and_shutdown(gcf, verifier):
    for method, ops in METHOD_OPERATIONS.items():
        auth = verifier.authorize(gcf.bytes("alice-cert.pem"), [sfa(gcf, "slice-cred-alice.xml")],
                                  target_urn=SLICE, operations=ops)
        assert auth.caller.urn == ALICE, method


def test_user_credential_for_list_resources_only(gcf, verifier):
    cred = json.loads(gcf.text("alice-user-cred.json"))
    auth = verifier.authorize(gcf.bytes("alice-cert.pem"), [cred], target_urn=None,
                              operations=METHOD_OPERATIONS["ListResources"])
    assert auth.privileges == {"refresh", "resolve", "info"}
    with pytest.raises(CredentialMismatch, match="target .*user\\+alice is not .*fixture"):
        verifier.authorize(gcf.bytes("alice-cert.pem"), [cred], target_urn=SLICE,
                           operations=ALLOCATE)


def test_delegated_to_bob_authorizes_bob_not_alice(gcf, verifier):
    cred = json.loads(gcf.text("slice-cred-delegated-to-bob.json"))
    auth = verifier.authorize(gcf.bytes("bob-cert.pem"), [cred], target_urn=SLICE,
                              operations=ALLOCATE)
    assert auth.caller.urn == BOB
    vc = auth.accepted[0]
    assert vc.delegated and vc.parents[0].owner_urn == ALICE
    assert vc.signer_chain == (ALICE, "urn:publicid:IDN+geni:gpo:gcf+authority+sa")
    with pytest.raises(CredentialMismatch, match="owner .*bob is not the caller .*alice"):
        verifier.authorize(gcf.bytes("alice-cert.pem"), [cred], target_urn=SLICE,
                           operations=ALLOCATE)


def test_nodelegate_variant(gcf, verifier):
    auth = verifier.authorize(gcf.bytes("bob-cert.pem"),
                              [sfa(gcf, "slice-cred-delegated-to-bob-nodelegate.xml")],
                              target_urn=SLICE, operations=ALLOCATE)
    assert auth.expires == datetime(2031, 6, 1, tzinfo=timezone.utc)
    assert not any(auth.accepted[0].privileges.values())


def test_info_only_variant(gcf, verifier):
    cred = sfa(gcf, "slice-cred-delegated-to-bob-info-only.xml")
    with pytest.raises(InsufficientPrivileges, match=r"\(info\) do not allow createsliver"):
        verifier.authorize(gcf.bytes("bob-cert.pem"), [cred], target_urn=SLICE,
                           operations=ALLOCATE)
    auth = verifier.authorize(gcf.bytes("bob-cert.pem"), [cred], target_urn=SLICE,
                              operations=METHOD_OPERATIONS["ListResources"])
    assert auth.privileges == {"info"}


def test_expired_slice_credential(gcf, verifier):
    with pytest.raises(CredentialExpired, match="expired at 2026-11-26T07:05:38Z") as err:
        verifier.authorize(gcf.bytes("alice-cert.pem"), [json.loads(gcf.text("slice-cred-expired.json"))],
                           target_urn="urn:publicid:IDN+geni:gpo:gcf+slice+expired",
                           operations=ALLOCATE)
    assert err.value.geni_code == 21


@pytest.mark.parametrize("name", ["untrusted-alice-user-cred.xml", "untrusted-slice-cred-alice.xml"])
def test_untrusted_credentials(gcf, verifier, name):
    with pytest.raises(SignerUntrusted) as err:
        verifier.verify(gcf.bytes(name))
    assert err.value.geni_code == 23
    assert "same name but a different key" in str(err.value)
    # and with the impostor's own (valid under its CA) TLS certificate, the caller is refused
    with pytest.raises(CertificateError) as err:
        verifier.authorize(gcf.bytes("untrusted-alice-cert.pem"),
                           [json.loads(gcf.text(name.replace(".xml", ".json")))],
                           target_urn=None, operations=())
    assert err.value.geni_code == 23


@pytest.mark.parametrize("abac", ["speaks-for-tool-for-alice.xml",
                                  "speaks-for-tool-for-alice-abacobj.xml"])
def test_speaks_for_tool_for_alice(gcf, verifier, abac):
    creds = [{"geni_type": "geni_abac", "geni_version": "1", "geni_value": gcf.text(abac)},
             sfa(gcf, "slice-cred-alice.xml")]
    auth = verifier.authorize(gcf.bytes("tool-cert.pem"), creds, target_urn=SLICE,
                              operations=ALLOCATE, speaking_for=ALICE)
    assert auth.caller.urn == ALICE and auth.tool.urn == TOOL
    # bob's TLS certificate is not the tool the credential names
    with pytest.raises(SpeaksForError, match="not the TLS caller .*bob"):
        verifier.authorize(gcf.bytes("bob-cert.pem"), creds, target_urn=SLICE,
                           operations=ALLOCATE, speaking_for=ALICE)
    # a speaks-for credential for another user
    with pytest.raises(SpeaksForError, match="signed by .*alice, not by .*bob"):
        verifier.authorize(gcf.bytes("tool-cert.pem"), creds, target_urn=SLICE,
                           operations=ALLOCATE, speaking_for=BOB)


def test_speaks_for_requires_the_abac_credential(gcf, verifier):
    with pytest.raises(SpeaksForError, match="no geni_abac speaks-for credential"):
        verifier.authorize(gcf.bytes("tool-cert.pem"), [sfa(gcf, "slice-cred-alice.xml")],
                           target_urn=SLICE, operations=ALLOCATE, speaking_for=ALICE)


def test_tool_without_speaks_for_is_not_alice(gcf, verifier):
    creds = [sfa(gcf, "slice-cred-alice.xml")]
    with pytest.raises(CredentialMismatch, match="not the caller .*user\\+tool"):
        verifier.authorize(gcf.bytes("tool-cert.pem"), creds, target_urn=SLICE,
                           operations=ALLOCATE)


def test_abac_credentials_are_ignored_without_speaking_for(gcf, verifier):
    creds = [{"geni_type": "geni_abac", "geni_version": "1",
              "geni_value": gcf.text("speaks-for-tool-for-alice.xml")},
             {"geni_type": "something_else", "geni_version": "1", "geni_value": "x"},
             sfa(gcf, "slice-cred-alice.xml")]
    auth = verifier.authorize(gcf.bytes("alice-cert.pem"), creds, target_urn=SLICE,
                              operations=ALLOCATE)
    assert len(auth.accepted) == 1


def test_most_relevant_failure_is_reported(gcf, verifier):
    # user credential (target mismatch) + expired slice credential: expiry is the reason
    creds = [sfa(gcf, "slice-cred-expired.xml"), sfa(gcf, "alice-user-cred.xml")]
    with pytest.raises(CredentialExpired):
        verifier.authorize(gcf.bytes("alice-cert.pem"), creds,
                           target_urn="urn:publicid:IDN+geni:gpo:gcf+slice+expired",
                           operations=ALLOCATE)
    # one good credential among bad ones is enough
    creds.append(sfa(gcf, "slice-cred-alice.xml"))
    auth = verifier.authorize(gcf.bytes("alice-cert.pem"), creds, target_urn=SLICE,
                              operations=ALLOCATE)
    assert len(auth.accepted) == 1


def test_empty_credential_list_is_refused(gcf, verifier):
    with pytest.raises(InsufficientPrivileges, match="no geni_sfa credential"):
        verifier.authorize(gcf.bytes("alice-cert.pem"), [], target_urn=None, operations=())


def test_expired_everywhere_after_2031(gcf, verifier, future):
    with pytest.raises(CredentialExpired):
        verifier.verify(gcf.bytes("slice-cred-delegated-to-bob.xml"), now=future)


def test_target_compared_case_insensitively(gcf, verifier):
    auth = verifier.authorize(gcf.bytes("alice-cert.pem"), [sfa(gcf, "slice-cred-alice.xml")],
                              target_urn="urn:publicid:IDN+GENI:GPO:gcf+slice+FIXTURE",
                              operations=ALLOCATE)
    assert auth.expires.tzinfo is not None


def test_bad_speaking_for_urn(gcf, verifier):
    with pytest.raises(SpeaksForError, match="geni_speaking_for: invalid GENI URN"):
        verifier.authorize(gcf.bytes("tool-cert.pem"), [sfa(gcf, "slice-cred-alice.xml")],
                           target_urn=SLICE, operations=ALLOCATE, speaking_for="alice")
