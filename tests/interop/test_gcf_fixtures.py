"""Every credential in ../shared/fixtures/gcf through the real stack (TLS server, verifier,
service, audit), doing exactly what its README says it must."""
from __future__ import annotations

import socket
import ssl

import pytest

from am.client import AMClient, ClientTLSError
from am.errors import GeniCode
from tests.interop.stack import (GCF_ALICE, GCF_EXPIRED_SLICE, GCF_SLICE, GCF_TOOL, RSPEC_V,
                                 LiveAM, node, request)
from tests.support import wait_until

pytestmark = pytest.mark.slow

REQ = request(node("n1"))
LR_OPTS = {"geni_rspec_version": RSPEC_V}


def code(result: dict) -> int:
    return result["code"]["geni_code"]


def allocate(client: AMClient, slice_urn: str = GCF_SLICE, options: dict | None = None) -> dict:
    return client.call("Allocate", slice_urn, client.credentials, REQ, options or {})


def delete(client: AMClient, options: dict | None = None) -> dict:
    result = client.call("Delete", [GCF_SLICE], client.credentials, options or {})
    assert code(result) == 0, result
    return result


def test_alice_user_credential_lists_resources(am: LiveAM):
    with am.gcf_client("alice", ["alice-user-cred.json"]) as alice:
        result = alice.call("ListResources", alice.credentials, LR_OPTS)
        assert code(result) == 0 and 'type="advertisement"' in result["value"]
        # a user credential names no slice: it cannot Allocate
        refused = allocate(alice)
        assert code(refused) == GeniCode.CREDENTIAL_MISMATCH, refused


@pytest.mark.parametrize("form", ["slice-cred-alice.xml", "slice-cred-alice.json"])
def test_alice_slice_credential_allocates_on_the_fixture_slice(am: LiveAM, form: str):
    with am.gcf_client("alice", [form]) as alice:
        result = allocate(alice)
        assert code(result) == 0, result
        assert result["value"]["geni_slivers"][0]["geni_allocation_status"] == "geni_allocated"
        # ...and only that slice
        other = allocate(alice, "urn:publicid:IDN+geni:gpo:gcf+slice+other")
        assert code(other) == GeniCode.CREDENTIAL_MISMATCH, other
        assert "slice+fixture" in other["output"] and "slice+other" in other["output"], other
        delete(alice)


@pytest.mark.parametrize("cred", ["slice-cred-delegated-to-bob.xml",
                                  "slice-cred-delegated-to-bob.json",
                                  "slice-cred-delegated-to-bob-nodelegate.xml"])
def test_bob_with_a_delegated_credential_can_run_the_slice(am: LiveAM, cred: str):
    with am.gcf_client("bob", [cred]) as bob:
        result = allocate(bob)
        assert code(result) == 0, result
        status = bob.call("Status", [GCF_SLICE], bob.credentials, {})
        assert code(status) == 0 and len(status["value"]["geni_slivers"]) == 1
        delete(bob)


def test_bob_info_only_delegation_is_refused_naming_the_privilege(am: LiveAM):
    with am.gcf_client("bob", ["slice-cred-delegated-to-bob-info-only.xml"]) as bob:
        refused = allocate(bob)
        assert code(refused) == 3, refused
        assert "info" in refused["output"] and "createsliver" in refused["output"]
        # info = listslices, listnodes, getpolicy: no v3 slice operation, not even Status
        for method, params in (("Status", ([GCF_SLICE],)), ("Describe", ([GCF_SLICE],)),
                               ("Delete", ([GCF_SLICE],))):
            opts = LR_OPTS if method == "Describe" else {}
            result = bob.call(method, *params, bob.credentials, opts)
            assert code(result) == 3, (method, result)
        # ListResources needs no privilege, only a valid credential owned by the caller
        assert code(bob.call("ListResources", bob.credentials, LR_OPTS)) == 0
    with am.gcf_client("alice", ["slice-cred-alice.xml"]) as alice:   # nothing was allocated
        assert code(alice.call("Status", [GCF_SLICE], alice.credentials, {})) == 12


def test_alice_presenting_bobs_delegation_is_an_owner_mismatch(am: LiveAM):
    with am.gcf_client("alice", ["slice-cred-delegated-to-bob.xml"]) as alice:
        refused = allocate(alice)
        assert code(refused) == GeniCode.CREDENTIAL_MISMATCH, refused
        assert "bob" in refused["output"] and "alice" in refused["output"]


def test_expired_slice_credential_is_refused_as_expired(am: LiveAM):
    with am.gcf_client("alice", ["slice-cred-expired.json"]) as alice:
        refused = allocate(alice, GCF_EXPIRED_SLICE)
        assert code(refused) == GeniCode.CREDENTIAL_EXPIRED, refused
        assert "expired" in refused["output"]


@pytest.mark.parametrize("cred", ["untrusted-alice-user-cred.xml", "untrusted-slice-cred-alice.xml"])
def test_untrusted_credentials_from_trusted_alice_name_the_signer(am: LiveAM, cred: str):
    with am.gcf_client("alice", [cred]) as alice:
        for result in (alice.call("ListResources", alice.credentials, LR_OPTS), allocate(alice)):
            assert code(result) == 23, result
            assert "urn:publicid:IDN+geni:gpo:gcf+authority+sa" in result["output"]
            assert "trust" in result["output"]


def test_untrusted_alice_certificate_fails_the_tls_handshake(am: LiveAM):
    with pytest.raises(ClientTLSError):
        with am.gcf_client("untrusted-alice", ["untrusted-alice-user-cred.xml"]) as impostor:
            impostor.get_version()
    # the same at the socket level: the server's handshake refuses the chain
    ctx = ssl.create_default_context(cafile=str(am.ca))
    ctx.load_cert_chain(str(am.gcf / "untrusted-alice-cert.pem"),
                        str(am.gcf / "untrusted-alice-key.pem"))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        with socket.create_connection(("127.0.0.1", am.port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
                if not tls.recv(1):        # TLS 1.3: the alert arrives on first read
                    raise ConnectionError("closed")


def speaks_for_cred(am: LiveAM, variant: str) -> dict:
    return {"geni_type": "geni_abac", "geni_version": "1",
            "geni_value": (am.gcf / variant).read_text()}


@pytest.mark.parametrize("variant", ["speaks-for-tool-for-alice.xml",
                                     "speaks-for-tool-for-alice-abacobj.xml"])
def test_tool_speaks_for_alice_and_the_audit_names_both(am: LiveAM, variant: str):
    opts = {"geni_speaking_for": GCF_ALICE}
    with am.gcf_client("tool", ["slice-cred-alice.xml"]) as tool:
        tool.credentials.append(speaks_for_cred(am, variant))
        result = allocate(tool, options=opts)
        assert code(result) == 0, result
        status = tool.call("Status", [GCF_SLICE], tool.credentials, opts)
        assert code(status) == 0
        delete(tool, opts)
        # without geni_speaking_for the tool is itself, and alice's credential is not its own
        assert code(allocate(tool)) == GeniCode.CREDENTIAL_MISMATCH
    def hits() -> list:
        return [e for e in am.runtime.store.audit_entries(limit=200)
                if e.method == "v3.Allocate" and e.outcome == 0
                and e.tool_urn == GCF_TOOL and e.caller_urn == GCF_ALICE]
    wait_until(hits, "the audit entry naming the tool and alice", 5,
               detail=lambda: [(e.method, e.caller_urn, e.tool_urn, e.outcome)
                               for e in am.runtime.store.audit_entries(limit=10)])


def test_speaks_for_credential_presented_by_bob_is_refused(am: LiveAM):
    with am.gcf_client("bob", ["slice-cred-alice.xml"]) as bob:
        bob.credentials.append(speaks_for_cred(am, "speaks-for-tool-for-alice.xml"))
        refused = allocate(bob, options={"geni_speaking_for": GCF_ALICE})
        assert code(refused) == 3, refused
        assert "speaks-for" in refused["output"] and "bob" in refused["output"]
    with am.gcf_client("alice", ["slice-cred-alice.xml"]) as alice:
        assert code(alice.call("Status", [GCF_SLICE], alice.credentials, {})) == 12
