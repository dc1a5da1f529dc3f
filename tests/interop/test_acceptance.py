"""An emulation of the GENI AM API v3 acceptance suite (geni-tools
`acceptance_tests/AM_API/am_api_accept.py`, run as `-V 3`) against the real stack over TLS.

Each test is named after the acceptance check it mirrors (`test_<check>`); checks the suite
makes through omni are made here with raw XML-RPC so the *wire* answer is what is judged
(never an XML-RPC Fault where a GENI error struct belongs). docs/acceptance.md lists them with
our result; the extra `test_v3_*` ones cover what later suite versions and the v3 spec add
(geni_single_allocation, return shapes, RFC 3339 expiries, Shutdown).
"""
from __future__ import annotations

import base64
import re
import zlib
from datetime import datetime, timedelta, timezone

import pytest
from lxml import etree

from am.client import AMClient
from am.errors import GeniCode
from rspec.validate import validate_document
from tests.interop.stack import GCF_ALICE, GCF_SLICE, RSPEC_V, LiveAM, node, request

pytestmark = pytest.mark.slow

RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
SLIVER_URN = re.compile(r"^urn:publicid:IDN\+geni-am:interop\+sliver\+[A-Za-z0-9._-]+$")
GENI3 = "http://www.geni.net/resources/rspec/3"
REQ = request(node("acc1"), node("acc2"))


def code(result: dict) -> int:
    return result["code"]["geni_code"]


def assert_geni_error(result: dict, expected: GeniCode) -> None:
    """The GENI return struct with the one right code: what the suite's NotDictAssertionError
    amounts to on the wire (REF answers some of these with a Fault, or success)."""
    assert isinstance(result, dict) and set(result) >= {"code", "value", "output"}, result
    assert result["code"]["geni_code"] == expected, result
    assert isinstance(result["output"], str) and result["output"]


def assert_ok(result: dict) -> object:
    assert isinstance(result, dict) and isinstance(result.get("code"), dict), result
    assert code(result) == 0, result
    return result["value"]


def rspec_type(xml: str) -> str:
    root = etree.fromstring(xml.encode())
    assert root.tag == f"{{{GENI3}}}rspec", root.tag
    return root.get("type")


def client_ids(xml: str) -> set[str]:
    root = etree.fromstring(xml.encode())
    return {n.get("client_id") for n in root.iter(f"{{{GENI3}}}node")}


def assert_sliver_info(s: dict, *, operational: bool = True, error: bool = False) -> None:
    assert SLIVER_URN.match(s["geni_sliver_urn"]), s
    assert s["geni_allocation_status"] in ("geni_unallocated", "geni_allocated",
                                           "geni_provisioned"), s
    assert RFC3339_Z.match(s["geni_expires"]), s
    if operational:
        assert re.match(r"^[a-zA-Z0-9][a-zA-Z0-9_]*$", s["geni_operational_status"]), s
    if error:
        assert isinstance(s["geni_error"], str), s


@pytest.fixture
def alice(am: LiveAM):
    with am.gcf_client("alice", ["slice-cred-alice.xml"]) as client:
        yield client
        client.call("Delete", [GCF_SLICE], client.credentials, {})


@pytest.fixture
def user(am: LiveAM):
    with am.gcf_client("alice", ["alice-user-cred.xml"]) as client:
        yield client


# ---- the 13 checks of am_api_accept.py (v3) ---------------------------------------------
def test_GetVersion(am: LiveAM):
    with am.gcf_client("alice") as c:
        result = c.call("GetVersion", {})
    value = assert_ok(result)
    assert result["geni_api"] == 3 and type(result["geni_api"]) is int
    assert value["geni_api"] == 3
    assert isinstance(value["geni_api_versions"], dict)
    assert value["geni_api_versions"]["3"] == am.url
    for key in ("geni_request_rspec_versions", "geni_ad_rspec_versions"):
        versions = value[key]
        assert isinstance(versions, list) and versions
        for v in versions:
            for field in ("type", "version", "schema", "namespace"):
                assert isinstance(v[field], str), (key, field, v)
            assert isinstance(v["extensions"], list)
        assert any(v["type"].lower() == "geni" and v["version"] == "3" for v in versions)
    for cred_type in value["geni_credential_types"]:
        assert isinstance(cred_type["geni_type"], str)
        assert isinstance(cred_type["geni_version"], str)
    # the one REF omits (its failure #1 in the suite): present, int or bool
    assert isinstance(value["geni_single_allocation"], (int, bool))
    assert value["geni_allocate"] in ("geni_single", "geni_disjoint", "geni_many")


def list_resources(user: AMClient, **options) -> str:
    value = assert_ok(user.call("ListResources", user.credentials,
                                {"geni_rspec_version": RSPEC_V, **options}))
    assert isinstance(value, str)
    return value


def test_ListResources(user: AMClient):
    # omni adds geni_compressed=True; the suite also sends an arbitrary option (ignored)
    packed = list_resources(user, geni_compressed=True, arbitrary_option=True)
    xml = zlib.decompress(base64.b64decode(packed)).decode()
    assert rspec_type(xml) == "advertisement"
    assert validate_document(xml, "advertisement") == []


def test_ListResources_geni_compressed(user: AMClient):
    xml = list_resources(user, geni_compressed=False)
    assert rspec_type(xml) == "advertisement"
    assert validate_document(xml, "advertisement") == []


def test_ListResources_geni_available(user: AMClient, am: LiveAM):
    # take one node whole, so "available only" has something to leave out
    with am.gcf_client("alice", ["slice-cred-alice.xml"]) as alice:
        taken = alice.allocate(GCF_SLICE, request(node("hog", exclusive=True)))
        try:
            everything = list_resources(user)
            available = list_resources(user, geni_available=True)
            assert validate_document(available, "advertisement") == []
            root = etree.fromstring(available.encode())
            nodes = list(root.iter(f"{{{GENI3}}}node"))
            assert nodes
            for n in nodes:     # rspec_util.rspec_available_only
                flags = [a.get("now") for a in n.iter(f"{{{GENI3}}}available")]
                assert flags and all(f == "true" for f in flags), etree.tostring(n)
            assert len(nodes) < len(list(etree.fromstring(everything.encode())
                                         .iter(f"{{{GENI3}}}node")))
        finally:
            alice.delete(GCF_SLICE)
        assert taken["geni_slivers"]


def test_ListResources_badCredential_malformedXML(user: AMClient):
    cred = dict(user.credentials[0])
    cred["geni_value"] = cred["geni_value"][1:]          # suite: removeFirstChar
    assert_geni_error(user.call("ListResources", [cred], {"geni_rspec_version": RSPEC_V}),
                      GeniCode.CREDENTIAL_INVALID)


def test_ListResources_badCredential_alteredObject(user: AMClient):
    cred = dict(user.credentials[0])
    root = etree.fromstring(cred["geni_value"].encode())
    root.insert(0, etree.Element("foo"))                 # suite: alterSignedObject
    cred["geni_value"] = etree.tostring(root).decode()
    result = user.call("ListResources", [cred], {"geni_rspec_version": RSPEC_V})
    assert_geni_error(result, GeniCode.CREDENTIAL_INVALID)


def test_ListResources_untrustedCredential(am: LiveAM):
    with am.gcf_client("alice", ["untrusted-alice-user-cred.xml"]) as c:
        result = c.call("ListResources", c.credentials, {"geni_rspec_version": RSPEC_V})
    # REF accepts it (its failure in the suite)
    assert_geni_error(result, GeniCode.CREDENTIAL_SIGNER_UNTRUSTED)


def test_ListResources_noCredential(am: LiveAM):
    """Not in the 13, but the suite's 'bad credentials accepted on ListResources' covers it:
    REF lets an empty list through; the spec wants a user credential."""
    with am.gcf_client("alice") as c:
        assert_geni_error(c.call("ListResources", [], {"geni_rspec_version": RSPEC_V}),
                          GeniCode.FORBIDDEN)


def test_CreateSliver(alice: AMClient, am: LiveAM):
    """v3 CreateSliver workflow: Allocate, Provision, Status, Describe (ListResources on a
    slice), a second Allocate, Renew 2 and 5 days, Delete, then the failure checks."""
    alloc = assert_ok(alice.call("Allocate", GCF_SLICE, alice.credentials, REQ, {}))
    manifest = alloc["geni_rspec"]
    assert rspec_type(manifest) == "manifest" and validate_document(manifest, "manifest") == []
    assert client_ids(manifest) == {"acc1", "acc2"}                    # assertClientIDsEqual
    assert len(alloc["geni_slivers"]) == 2
    for s in alloc["geni_slivers"]:
        assert_sliver_info(s, operational=False)
        assert s["geni_allocation_status"] == "geni_allocated"
    prov = assert_ok(alice.call("Provision", [GCF_SLICE], alice.credentials,
                                {"geni_rspec_version": RSPEC_V}))
    assert validate_document(prov["geni_rspec"], "manifest") == []
    for s in prov["geni_slivers"]:
        assert_sliver_info(s)
        assert s["geni_allocation_status"] == "geni_provisioned"
    status = assert_ok(alice.call("Status", [GCF_SLICE], alice.credentials, {}))
    assert status["geni_urn"] == GCF_SLICE
    for s in status["geni_slivers"]:
        assert_sliver_info(s, error=True)
    described = assert_ok(alice.call("Describe", [GCF_SLICE], alice.credentials,
                                     {"geni_rspec_version": RSPEC_V}))
    assert described["geni_urn"] == GCF_SLICE
    assert validate_document(described["geni_rspec"], "manifest") == []
    assert client_ids(described["geni_rspec"]) == {"acc1", "acc2"}
    # CreateSliver again: geni_many, so a second Allocate adds slivers (not an error)
    again = assert_ok(alice.call("Allocate", GCF_SLICE, alice.credentials,
                                 request(node("acc3")), {}))
    assert client_ids(again["geni_rspec"]) == {"acc3"}
    now = datetime.now(timezone.utc).replace(microsecond=0)
    for days in (2, 5):
        when = (now + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
        renewed = assert_ok(alice.call("Renew", [GCF_SLICE], alice.credentials, when, {}))
        assert {s["geni_expires"] for s in renewed} == {when}
        for s in renewed:
            assert_sliver_info(s, operational=s["geni_allocation_status"] == "geni_provisioned")
    deleted = assert_ok(alice.call("Delete", [GCF_SLICE], alice.credentials, {}))
    assert len(deleted) == 3
    assert {s["geni_allocation_status"] for s in deleted} == {"geni_unallocated"}
    for s in deleted:
        assert SLIVER_URN.match(s["geni_sliver_urn"]) and RFC3339_Z.match(s["geni_expires"])
    _workflow_failure(alice, GCF_SLICE)


def _workflow_failure(client: AMClient, slice_urn: str) -> None:
    """subtest_CreateSliverWorkflow_failure: Status on a slice without slivers is an error;
    Describe answers as the suite's --more-strict mode wants and the v3 text says: success
    with a valid manifest holding no resources (REF returns SEARCHFAILED, §9.3); Delete then
    fails or returns an empty list."""
    assert_geni_error(client.call("Status", [slice_urn], client.credentials, {}),
                      GeniCode.SEARCHFAILED)
    described = assert_ok(client.call("Describe", [slice_urn], client.credentials,
                                      {"geni_rspec_version": RSPEC_V}))
    assert described["geni_slivers"] == [] and described["geni_urn"] == slice_urn
    assert rspec_type(described["geni_rspec"]) == "manifest"
    assert validate_document(described["geni_rspec"], "manifest") == []
    assert client_ids(described["geni_rspec"]) == set()          # no resources
    result = client.call("Delete", [slice_urn], client.credentials, {})
    assert code(result) == GeniCode.SUCCESS and result["value"] == [], result   # idempotent


def test_CreateSliverWorkflow_fail_notexist(am: LiveAM):
    urn, cred = am.dev_slice("nonexist")
    with am.dev_client("carol", [cred]) as carol:
        _workflow_failure(carol, urn)


def test_CreateSliverWorkflow_multiSlice(am: LiveAM):
    slices = [am.dev_slice(f"accmulti{i}") for i in range(3)]
    clients = [am.dev_client("carol", [cred]) for _, cred in slices]
    try:
        for i, ((urn, _), c) in enumerate(zip(slices, clients)):
            alloc = assert_ok(c.call("Allocate", urn, c.credentials,
                                     request(node(f"m{i}")), {}))
            assert client_ids(alloc["geni_rspec"]) == {f"m{i}"}
        for (urn, _), c in zip(slices, clients):
            assert_ok(c.call("Status", [urn], c.credentials, {}))
        # subtest_ListResources_wrongSlice: slice i's credential on slice i+1 is refused
        for i, c in enumerate(clients):
            other = slices[(i + 1) % 3][0]
            result = c.call("Describe", [other], c.credentials, {"geni_rspec_version": RSPEC_V})
            assert_geni_error(result, GeniCode.CREDENTIAL_MISMATCH)
        for i, ((urn, _), c) in enumerate(zip(slices, clients)):
            described = assert_ok(c.call("Describe", [urn], c.credentials,
                                         {"geni_rspec_version": RSPEC_V}))
            assert client_ids(described["geni_rspec"]) == {f"m{i}"}
            when = (datetime.now(timezone.utc) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
            assert_ok(c.call("Renew", [urn], c.credentials, when, {}))
        for (urn, _), c in zip(slices, clients):
            assert_ok(c.call("Delete", [urn], c.credentials, {}))
            _workflow_failure(c, urn)
    finally:
        for c in clients:
            c.close()


@pytest.mark.parametrize("check, rspec, expected", [
    ("emptyfile", "", GeniCode.BADARGS),
    ("malformed", REQ.replace("</rspec>", "<rspec>"), GeniCode.BADARGS),
    ("manifest", f'<rspec xmlns="{GENI3}" type="manifest"><node client_id="x"/></rspec>',
     GeniCode.BADVERSION),                # a document of the wrong type is the wrong version
])
def test_CreateSliver_badrspec(alice: AMClient, check: str, rspec: str, expected: GeniCode):
    """test_CreateSliver_badrspec_emptyfile / _malformed / _manifest."""
    result = alice.call("Allocate", GCF_SLICE, alice.credentials, rspec, {})
    assert_geni_error(result, expected)
    assert code(alice.call("Status", [GCF_SLICE], alice.credentials, {})) == GeniCode.SEARCHFAILED


# ---- what later suite versions and the v3 spec add ---------------------------------------
def test_v3_PerformOperationalAction_and_Status_shapes(alice: AMClient):
    alice.allocate(GCF_SLICE, REQ)
    alice.provision(GCF_SLICE)
    alice.wait(GCF_SLICE, interval=0.05, timeout=20, start=True)
    poa = assert_ok(alice.call("PerformOperationalAction", [GCF_SLICE], alice.credentials,
                               "geni_restart", {}))
    assert isinstance(poa, list) and len(poa) == 2
    for s in poa:
        assert_sliver_info(s)
    bad = alice.call("PerformOperationalAction", [GCF_SLICE], alice.credentials,
                     "geni_no_such_action", {})
    assert_geni_error(bad, GeniCode.UNSUPPORTED)   # a struct (REF: a Fault)


def test_v3_Describe_compressed_manifest_validates(alice: AMClient):
    alice.allocate(GCF_SLICE, REQ)
    value = assert_ok(alice.call("Describe", [GCF_SLICE], alice.credentials,
                                 {"geni_rspec_version": RSPEC_V, "geni_compressed": True}))
    xml = zlib.decompress(base64.b64decode(value["geni_rspec"])).decode()
    assert validate_document(xml, "manifest") == []
    for s in value["geni_slivers"]:
        assert_sliver_info(s, operational=False)


def test_v3_credential_errors_are_structs_not_faults(am: LiveAM):
    """REF raises xmlrpclib.Fault('Insufficient privileges') here (its suite failure #2)."""
    with am.gcf_client("bob", ["slice-cred-delegated-to-bob-info-only.xml"]) as bob:
        for method, args in (("Allocate", (GCF_SLICE, bob.credentials, REQ, {})),
                             ("Status", ([GCF_SLICE], bob.credentials, {})),
                             ("Shutdown", (GCF_SLICE, bob.credentials, {}))):
            result = bob.call(method, *args)
            assert_geni_error(result, GeniCode.FORBIDDEN)


def test_v3_Shutdown(am: LiveAM):
    urn, cred = am.dev_slice("accshut")
    with am.dev_client("carol", [cred]) as carol:
        carol.allocate(urn, request(node("z1")))
        first = assert_ok(carol.call("Shutdown", urn, carol.credentials, {}))
        assert first is True
        assert assert_ok(carol.call("Shutdown", urn, carol.credentials, {})) is True
        refused = carol.call("Allocate", urn, carol.credentials, request(node("z2")), {})
        assert code(refused) == 7, refused
    assert GCF_ALICE   # (alice's fixture slice is never shut down: other tests use it)
