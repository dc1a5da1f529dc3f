"""Bad input against the real stack over real TLS: every refusal precise, never a traceback,
never partial state. (The Flask-level versions against a test double are in tests/api.)"""
from __future__ import annotations

import http.client
import ssl
import xmlrpc.client
from datetime import datetime, timedelta, timezone

import pytest

from am.client import AMClient
from tests.interop.stack import (AM_AUTHORITY, GCF_EXPIRED_SLICE, GCF_SLICE, RSPEC_V, LiveAM,
                                 component_urn, node, request)

pytestmark = pytest.mark.slow

PG2 = ('<rspec xmlns="http://www.protogeni.net/resources/rspec/2" type="request">'
       '<node client_id="n1"/></rspec>')


def tomorrow() -> str:
    return (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def code(result: dict) -> int:
    return result["code"]["geni_code"]


@pytest.fixture
def alice(am: LiveAM):
    with am.gcf_client("alice", ["slice-cred-alice.xml"]) as client:
        yield client
        # leave nothing behind for the next test
        client.call("Delete", [GCF_SLICE], client.credentials, {})


def tls_context(am: LiveAM) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(am.ca))
    ctx.load_cert_chain(str(am.gcf / "alice-cert.pem"), str(am.gcf / "alice-key.pem"))
    return ctx


def post(am: LiveAM, body: bytes, headers: dict | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPSConnection("localhost", am.port, context=tls_context(am), timeout=10)
    try:
        conn.request("POST", "/", body=body, headers={"Content-Type": "text/xml", **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def fault_of(body: bytes) -> xmlrpc.client.Fault:
    with pytest.raises(xmlrpc.client.Fault) as info:
        xmlrpc.client.loads(body)
    return info.value


@pytest.mark.parametrize("body, fault", [
    (b"<methodCall><methodName>GetVersion</methodName><params>", -32700),     # truncated
    (b"not xml at all", -32700),
    (b"<?xml version='1.0'?><methodResponse><params/></methodResponse>", -32600),
    (b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "aaaa">]><methodCall><methodName>'
     b'GetVersion</methodName><params/></methodCall>', -32600),              # entity: refused
    (b"<methodCall><methodName>GetVersion</methodName><params><param><value><int>x</int>"
     b"</value></param></params></methodCall>", None),                         # bad scalar
])
def test_malformed_xml_rpc_is_a_fault(am: LiveAM, body: bytes, fault: int | None):
    status, answer = post(am, body)
    assert status == 200
    f = fault_of(answer)
    if fault is not None:
        assert f.faultCode == fault, f
    else:
        assert f.faultCode in (-32700, -32600), f


def test_unknown_method_is_a_fault_naming_it(am: LiveAM):
    status, answer = post(am, xmlrpc.client.dumps(({},), "CreateSliver"))   # v2-only name
    f = fault_of(answer)
    assert f.faultCode == -32601 and "CreateSliver" in f.faultString
    status, answer = post(am, xmlrpc.client.dumps((), "NoSuchMethod"))
    assert fault_of(answer).faultCode == -32601


@pytest.mark.parametrize("method, params", [
    ("ListResources", ()),                                          # too few
    ("ListResources", ([], {"geni_rspec_version": RSPEC_V}, {})),   # too many
    ("Allocate", (GCF_SLICE, [], "<rspec/>")),                      # options missing
    ("Status", (GCF_SLICE, [], {})),                                # urns not an array
    ("Status", ([GCF_SLICE], "creds", {})),                         # credentials not an array
    ("Status", ([GCF_SLICE], [], [])),                              # options not a struct
    ("Renew", ([GCF_SLICE], [], 42, {})),                           # time not a string
    ("Renew", ([GCF_SLICE], [], "next tuesday", {})),               # time not RFC 3339
    ("PerformOperationalAction", ([GCF_SLICE], [], 7, {})),         # action not a string
    ("Allocate", (GCF_SLICE, [{"geni_type": 3}], "<rspec/>", {})),  # malformed credential
    ("Provision", ([GCF_SLICE], [], {"geni_rspec_version": RSPEC_V, "geni_users": "bob"})),
    ("Allocate", ("urn:publicid:IDN+geni:gpo:gcf+user+alice", [], "<rspec/>", {})),
])
def test_wrong_argument_counts_and_types_are_badargs(alice: AMClient, method, params):
    result = alice.call(method, *params)
    assert code(result) == 1, result
    assert result["output"]


def test_unknown_and_foreign_urns(alice: AMClient):
    creds = alice.credentials
    unknown_sliver = f"urn:publicid:IDN+{AM_AUTHORITY}+sliver+doesnotexist"
    foreign_sliver = "urn:publicid:IDN+elsewhere.example+sliver+abc123"
    for urns in ([unknown_sliver], [foreign_sliver]):
        for method in ("Status", "Describe", "Provision", "Delete"):
            opts = {"geni_rspec_version": RSPEC_V} if method in ("Describe", "Provision") else {}
            result = alice.call(method, urns, creds, opts)
            assert code(result) == 12, (method, urns, result)
            assert urns[0] in result["output"]
    # a slice URN with nothing here: Status/Provision find nothing
    for method in ("Status", "Provision", "Renew"):
        args = ([GCF_SLICE], creds) + ((tomorrow(),) if method == "Renew" else ()) \
            + ({"geni_rspec_version": RSPEC_V} if method == "Provision" else {},)
        assert code(alice.call(method, *args)) == 12, method


def test_urn_lists_mixing_slices_are_badargs(am: LiveAM, alice: AMClient):
    creds = alice.credentials
    mine = alice.allocate(GCF_SLICE, request(node("a1")))["geni_slivers"][0]["geni_sliver_urn"]
    other_urn, other_cred = am.dev_slice("mixother")
    with am.dev_client("carol", [other_cred]) as carol:
        theirs = carol.allocate(other_urn, request(node("b1")))["geni_slivers"][0]["geni_sliver_urn"]
        try:
            cases = [[GCF_SLICE, other_urn],                 # two slices
                     [GCF_SLICE, mine],                      # a slice and a sliver
                     [mine, theirs],                         # slivers of two slices
                     ["urn:publicid:IDN+geni:gpo:gcf+user+alice"]]   # not a slice or sliver
            for urns in cases:
                for method in ("Status", "Delete"):
                    result = alice.call(method, urns, creds, {})
                    assert code(result) == 1, (urns, method, result)
            # nothing was deleted by the refused calls
            assert len(alice.status(GCF_SLICE)["geni_slivers"]) == 1
            assert len(carol.status(other_urn)["geni_slivers"]) == 1
        finally:
            carol.delete(other_urn)


def test_body_over_the_limit_is_refused_before_it_is_read(am: LiveAM):
    """Only the headers are sent: the AM answers 413 on the Content-Length alone."""
    limit = am.settings.max_request_bytes
    conn = http.client.HTTPSConnection("localhost", am.port, context=tls_context(am), timeout=10)
    try:
        conn.putrequest("POST", "/")
        conn.putheader("Content-Type", "text/xml")
        conn.putheader("Content-Length", str(limit + 10_000))
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 413
    finally:
        conn.close()
    # a body just under the limit is parsed (and here refused as a Fault, being junk)
    status, answer = post(am, b"<" + b"x" * (limit // 2))
    assert status == 200 and fault_of(answer).faultCode == -32700
    # the server is still serving
    with am.gcf_client("alice") as client:
        assert client.get_version()["geni_api"] == 3


def test_expired_slice_credential_refused_and_nothing_allocated(am: LiveAM):
    with am.gcf_client("alice", ["slice-cred-expired.xml"]) as alice:
        result = alice.call("Allocate", GCF_EXPIRED_SLICE, alice.credentials,
                            request(node("n1")), {})
        assert code(result) == 21 and "expired" in result["output"], result
    from am.store.store import utcnow
    with am.runtime.store.read() as session:
        assert am.runtime.store.find_slice(session, GCF_EXPIRED_SLICE) is None
        assert not [s for s in am.runtime.store.live_slivers(session, utcnow())
                    if s.slice.urn == GCF_EXPIRED_SLICE]


def test_unsupported_rspec_versions_are_badversion(alice: AMClient, am: LiveAM):
    creds = alice.credentials
    assert code(alice.call("Allocate", GCF_SLICE, creds, PG2, {})) == 4
    pg = {"type": "ProtoGENI", "version": "2"}
    with am.gcf_client("alice", ["alice-user-cred.xml"]) as user:
        result = user.call("ListResources", user.credentials, {"geni_rspec_version": pg})
        assert code(result) == 4, result
        missing = user.call("ListResources", user.credentials, {})
        assert code(missing) == 1, missing          # geni_rspec_version is required
    alice.allocate(GCF_SLICE, request(node("v1")))
    assert code(alice.call("Describe", [GCF_SLICE], creds, {"geni_rspec_version": pg})) == 4
    assert code(alice.call("Provision", [GCF_SLICE], creds, {"geni_rspec_version": pg})) == 4
    # the refused Provision changed nothing
    (sliver,) = alice.status(GCF_SLICE)["geni_slivers"]
    assert sliver["geni_allocation_status"] == "geni_allocated"


def test_unsatisfiable_rspec_names_the_client_id_and_why(alice: AMClient):
    nowhere = component_urn("nosuchnode")
    result = alice.call("Allocate", GCF_SLICE, alice.credentials,
                        request(node("lonely", component=nowhere)), {})
    assert code(result) == 1, result
    assert "lonely" in result["output"] and nowhere in result["output"], result
    # 4 fake nodes: six exclusive nodes are two too many
    six = request(*(node(f"big{i}", exclusive=True) for i in range(6)))
    result = alice.call("Allocate", GCF_SLICE, alice.credentials, six, {})
    assert code(result) == 26, result
    out = result["output"]
    assert "short by 2 of the 6" in out and "6 exclusive node(s) asked, 4 free" in out, out
    # one line per cause, naming the nodes it refused, with a count
    (line,) = [l for l in out.splitlines() if "INSUFFICIENT_NODES x2" in l]
    refused = [f"big{i}" for i in range(6) if f"big{i}" in line]
    assert len(refused) == 2 and "the node" in line, out
    # all or nothing: the slice has no slivers
    assert code(alice.call("Status", [GCF_SLICE], alice.credentials, {})) == 12


def test_changes_to_a_shut_down_slice_are_refused(am: LiveAM):
    urn, cred = am.dev_slice("shutme")
    with am.dev_client("carol", [cred]) as carol:
        alloc = carol.allocate(urn, request(node("s1"), node("s2")))
        (first, second) = [s["geni_sliver_urn"] for s in alloc["geni_slivers"]]
        carol.provision([first])
        assert carol.shutdown(urn) is True
        assert carol.shutdown(urn) is True              # again: still true (spec)
        creds = carol.credentials
        later = tomorrow()
        changes = [("Allocate", (urn, creds, request(node("s3")), {})),
                   ("Provision", ([second], creds, {"geni_rspec_version": RSPEC_V})),
                   ("Renew", ([urn], creds, later, {})),
                   ("PerformOperationalAction", ([first], creds, "geni_restart", {})),
                   ("Delete", ([urn], creds, {}))]
        for method, params in changes:
            result = carol.call(method, *params)
            assert code(result) == 7, (method, result)
            assert "shut down" in result["output"].lower(), (method, result)
        # state kept for forensics, readable
        status = carol.status(urn)
        assert len(status["geni_slivers"]) == 2
