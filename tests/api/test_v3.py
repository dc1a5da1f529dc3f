"""AM API v3 through the Flask app: dispatch, argument checks, error codes, authorization."""
from __future__ import annotations

import base64
import zlib
from datetime import datetime, timedelta, timezone

import pytest

from tests.api.conftest import (ALICE, EXPIRED_SLICE, REQUEST, RSPEC_V, SLICE, code_of,
                                make_client)

LR_OPTS = {"geni_rspec_version": RSPEC_V}


def test_get_version_is_complete(api):
    result = api.call("GetVersion")
    assert code_of(result) == 0 and result["geni_api"] == 3
    v = result["value"]
    assert v["geni_api"] == 3
    assert v["geni_api_versions"]["3"].endswith("/") and v["geni_api_versions"]["2"].endswith("/am/2")
    for key in ("geni_request_rspec_versions", "geni_ad_rspec_versions"):
        (entry,) = v[key]
        assert entry["type"] == "GENI" and entry["version"] == "3"
        assert isinstance(entry["namespace"], str) and isinstance(entry["extensions"], list)
        assert "http://www.geni.net/resources/rspec/ext/opstate/1" in entry["extensions"]
    assert v["geni_request_rspec_versions"][0]["schema"].endswith("request.xsd")
    assert v["geni_ad_rspec_versions"][0]["schema"].endswith("ad.xsd")
    assert {(c["geni_type"], c["geni_version"]) for c in v["geni_credential_types"]} == {
        ("geni_sfa", "3"), ("geni_sfa", "2"), ("geni_abac", "1")}
    assert v["geni_single_allocation"] == 0 and type(v["geni_single_allocation"]) is int
    assert v["geni_allocate"] == "geni_many"
    assert v["geni_handles_speaksfor"] is True
    assert v["geni_am_type"] and v["geni_am_code"]
    assert api.call("GetVersion", {})["code"]["geni_code"] == 0
    assert api.call("GetVersion", {}, path="/am/3")["value"]["geni_api"] == 3


def test_list_resources_authorized_and_compressed(api, fx, service):
    result = api.call("ListResources", [fx.cred("alice-user-cred")], LR_OPTS)
    assert code_of(result) == 0
    assert "pc0" in result["value"] and "advertisement" in result["value"]
    packed = api.call("ListResources", [fx.cred("alice-user-cred")],
                      {**LR_OPTS, "geni_compressed": True})["value"]
    assert zlib.decompress(base64.b64decode(packed)).decode() == result["value"]
    # audit saw the caller
    caller, tool, method, target, code, message, ms = api.audit[-1]
    assert caller == ALICE and method == "v3.ListResources" and code == 0 and ms >= 0


@pytest.mark.parametrize("options,code", [
    ({}, 1),                                                         # missing geni_rspec_version
    ({"geni_rspec_version": "GENI 3"}, 1),                           # wrong type
    ({"geni_rspec_version": {"type": "ProtoGENI", "version": "2"}}, 4),
    ({"geni_rspec_version": {"type": "GENI", "version": "4"}}, 4),
    ({"geni_rspec_version": {"type": "geni", "version": "3"}}, 0),   # case-insensitive
    ({"geni_rspec_version": RSPEC_V, "geni_slice_urn": SLICE}, 1),   # v2 only
    ({"geni_rspec_version": RSPEC_V, "geni_available": "maybe"}, 1),
])
def test_list_resources_options(api, fx, options, code):
    assert code_of(api.call("ListResources", [fx.cred("alice-user-cred")], options)) == code


def test_list_resources_refuses_bad_credentials(api, fx):
    # no credential at all: the spec wants a user credential (REF lets it through)
    assert code_of(api.call("ListResources", [], LR_OPTS)) == 3
    garbage = {"geni_type": "geni_sfa", "geni_version": "3", "geni_value": "<not a credential"}
    assert code_of(api.call("ListResources", [garbage], LR_OPTS)) == 20     # CREDENTIAL_INVALID
    untrusted = api.call("ListResources", [fx.cred("untrusted-alice-user-cred")], LR_OPTS)
    assert code_of(untrusted) == 23 and untrusted["output"]     # CREDENTIAL_SIGNER_UNTRUSTED


def test_unknown_credential_types_are_ignored(api, fx):
    other = {"geni_type": "geni_unknown", "geni_version": "9", "geni_value": "x"}
    assert code_of(api.call("ListResources", [other, fx.cred("alice-user-cred")], LR_OPTS)) == 0


def life_cycle(api, fx, cred_name="slice-cred-alice"):
    cred = [fx.cred(cred_name)]
    alloc = api.call("Allocate", SLICE, cred, REQUEST, {})
    assert code_of(alloc) == 0, alloc
    slivers = alloc["value"]["geni_slivers"]
    assert len(slivers) == 2 and all(s["geni_allocation_status"] == "geni_allocated" for s in slivers)
    for s in slivers:
        datetime.strptime(s["geni_expires"], "%Y-%m-%dT%H:%M:%SZ")
    urns = [s["geni_sliver_urn"] for s in slivers]
    prov = api.call("Provision", [SLICE], cred, {"geni_rspec_version": RSPEC_V,
                                                 "geni_users": [{"urn": ALICE, "keys": ["ssh-rsa A"]}]})
    assert code_of(prov) == 0 and "manifest" in prov["value"]["geni_rspec"]
    status = api.call("Status", [SLICE], cred, {})
    assert code_of(status) == 0 and status["value"]["geni_urn"] == SLICE
    assert all(s["geni_error"] == "" for s in status["value"]["geni_slivers"])
    poa = api.call("PerformOperationalAction", urns[:1], cred, "geni_start", {})
    assert code_of(poa) == 0 and poa["value"][0]["geni_operational_status"] == "geni_ready"
    later = (datetime.now(timezone.utc) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    renew = api.call("Renew", urns, cred, later, {})
    assert code_of(renew) == 0 and renew["value"][0]["geni_expires"] == later
    desc = api.call("Describe", [SLICE], cred, {"geni_rspec_version": RSPEC_V,
                                                "geni_compressed": True})
    assert code_of(desc) == 0 and desc["value"]["geni_urn"] == SLICE
    assert b"manifest" in zlib.decompress(base64.b64decode(desc["value"]["geni_rspec"]))
    delete = api.call("Delete", [SLICE], cred, {})
    assert code_of(delete) == 0
    assert {s["geni_allocation_status"] for s in delete["value"]} == {"geni_unallocated"}
    return urns


def test_v3_life_cycle(api, fx, service):
    life_cycle(api, fx)
    principal = service.calls[0][1]
    assert principal.urn == ALICE and principal.credential_expires.year == 2031


def test_delegated_credential_works_for_bob(base_settings, authorizer, service, fx):
    bob = make_client(base_settings, authorizer, service, fx.pem("bob"))
    life_cycle(bob, fx, "slice-cred-delegated-to-bob")


@pytest.mark.parametrize("method,params", [
    ("ListResources", ([],)),                                        # too few
    ("ListResources", ([], {}, {})),                                 # too many
    ("ListResources", ({}, {"geni_rspec_version": RSPEC_V})),       # credentials not an array
    ("ListResources", ([42], {"geni_rspec_version": RSPEC_V})),      # credential entry type
    ("ListResources", ([{"geni_type": "geni_sfa"}], {"geni_rspec_version": RSPEC_V})),
    ("Describe", ("urn", [], {"geni_rspec_version": RSPEC_V})),      # urns not an array
    ("Describe", ([], [], {"geni_rspec_version": RSPEC_V})),         # empty urns
    ("Describe", ([SLICE], [], [])),                                 # options not a struct
    ("Allocate", (SLICE, [], 42, {})),                               # rspec not a string
    ("Allocate", ("urn:publicid:IDN+x+user+bob", [], REQUEST, {})),  # not a slice URN
    ("Allocate", (SLICE, [], REQUEST, {"geni_end_time": "tomorrow"})),
    ("Renew", ([SLICE], [], "not a time", {})),
    ("Renew", ([SLICE], [], 20301010, {})),
    ("Status", (["urn:publicid:IDN+x+node+pc1"], [], {})),          # wrong URN type
    ("Status", ([SLICE, "urn:publicid:IDN+geni:gpo:gcf+slice+other"], [], {})),  # two slices
    ("Status", ([SLICE, "urn:publicid:IDN+geni-am:test+sliver+s1"], [], {})),     # slice + sliver
    ("PerformOperationalAction", ([SLICE], [], 5, {})),
    ("PerformOperationalAction", ([SLICE], [], "geni_update_users", {})),
    ("Provision", ([SLICE], [], {"geni_rspec_version": RSPEC_V, "geni_users": "alice"})),
    ("Provision", ([SLICE], [], {"geni_rspec_version": RSPEC_V,          # not a user URN
                                 "geni_users": [{"urn": SLICE, "keys": ["k"]}]})),
    ("Provision", ([SLICE], [], {"geni_rspec_version": RSPEC_V,          # no account name
                                 "geni_users": [{"urn": "urn:publicid:IDN+x+user+9lives",
                                                 "keys": ["k"]}]})),
    ("PerformOperationalAction", ([SLICE], [], "geni_update_users",
                                  {"geni_users": [{"urn": "urn:publicid:IDN+x+user+a%2F..",
                                                   "keys": ["k"]}]})),
    ("Shutdown", (SLICE, [])),
    ("GetVersion", ({}, {})),
    ("GetVersion", ("x",)),
])
def test_bad_arguments_are_badargs(api, method, params):
    result = api.call(method, *params)
    assert code_of(result) == 1, result
    assert result["output"]


def test_sliver_urns_of_two_slices_are_badargs(api, fx, service):
    cred = [fx.cred("slice-cred-alice")]
    mine = api.call("Allocate", SLICE, cred, REQUEST, {})["value"]["geni_slivers"][0]
    other_slice = "urn:publicid:IDN+geni:gpo:gcf+slice+other"
    service.slivers["urn:publicid:IDN+geni-am:test+sliver+x9"] = {
        "slice": other_slice, "alloc": "geni_allocated", "op": "geni_pending_allocation",
        "expires": datetime.now(timezone.utc), "client_id": "z"}
    result = api.call("Status", [mine["geni_sliver_urn"], "urn:publicid:IDN+geni-am:test+sliver+x9"],
                      cred, {})
    assert code_of(result) == 1


def test_unknown_and_foreign_urns(api, fx):
    cred = [fx.cred("slice-cred-alice")]
    # unknown sliver of this AM, and a sliver URN from another AM: SEARCHFAILED
    for urn in ("urn:publicid:IDN+geni-am:test+sliver+nope",
                "urn:publicid:IDN+other-am+sliver+s1"):
        assert code_of(api.call("Status", [urn], cred, {})) == 12
    # a slice with nothing here: the credential is good, the service says SEARCHFAILED
    assert code_of(api.call("Status", [SLICE], cred, {})) == 12
    # a slice the credential does not name: refused before the service is asked
    foreign = api.call("Status", ["urn:publicid:IDN+geni:gpo:gcf+slice+other"], cred, {})
    assert code_of(foreign) == 22 and "other" in foreign["output"]     # CREDENTIAL_MISMATCH


def test_expired_slice_credential(api, fx, service):
    result = api.call("Allocate", EXPIRED_SLICE, [fx.cred("slice-cred-expired")], REQUEST, {})
    assert code_of(result) == 21 and "expire" in result["output"]
    assert not service.slivers


def test_credentials_of_someone_else(base_settings, authorizer, service, fx):
    bob = make_client(base_settings, authorizer, service, fx.pem("bob"))
    result = bob.call("Allocate", SLICE, [fx.cred("slice-cred-alice")], REQUEST, {})
    assert code_of(result) == 22 and not service.slivers     # CREDENTIAL_MISMATCH


def test_insufficient_privileges(base_settings, authorizer, service, fx):
    bob = make_client(base_settings, authorizer, service, fx.pem("bob"))
    cred = {"geni_type": "geni_sfa", "geni_version": "3",
            "geni_value": fx.xml("slice-cred-delegated-to-bob-info-only")}
    result = bob.call("Allocate", SLICE, [cred], REQUEST, {})
    assert code_of(result) == 3 and "createsliver" in result["output"]


def test_unsupported_request_rspec_version(api, fx):
    pg2 = '<rspec xmlns="http://www.protogeni.net/resources/rspec/2" type="request"/>'
    assert code_of(api.call("Allocate", SLICE, [fx.cred("slice-cred-alice")], pg2, {})) == 4


def test_shutdown_then_changes_refused(api, fx, service):
    cred = [fx.cred("slice-cred-alice")]
    assert code_of(api.call("Allocate", SLICE, cred, REQUEST, {})) == 0
    result = api.call("Shutdown", SLICE, cred, {})
    assert code_of(result) == 0 and result["value"] is True
    assert code_of(api.call("Allocate", SLICE, cred, REQUEST, {})) == 7
    assert code_of(api.call("Delete", [SLICE], cred, {})) == 7


def test_shutdown_needs_shutdown_privilege_or_operator(base_settings, authorizer, service, fx):
    # alice's user credential names no slice and carries no shutdown privilege
    alice = make_client(base_settings, authorizer, service, fx.pem("alice"))
    assert code_of(alice.call("Shutdown", SLICE, [fx.cred("alice-user-cred")], {})) == 22
    operator_settings = base_settings.replace(operators=(ALICE,))
    from am.auth import Authorizer
    op = make_client(operator_settings, Authorizer.from_settings(operator_settings), service,
                     fx.pem("alice"))
    result = op.call("Shutdown", SLICE, [fx.cred("alice-user-cred")], {})
    assert code_of(result) == 0 and SLICE in service.shut_down
    assert service.calls[-1][1].is_operator


def test_speaks_for(base_settings, authorizer, service, fx):
    tool = make_client(base_settings, authorizer, service, fx.pem("tool"))
    abac = {"geni_type": "geni_abac", "geni_version": "1",
            "geni_value": fx.xml("speaks-for-tool-for-alice")}
    result = tool.call("Allocate", SLICE, [fx.cred("slice-cred-alice"), abac], REQUEST,
                       {"geni_speaking_for": ALICE})
    assert code_of(result) == 0, result
    principal = service.calls[-1][1]
    assert principal.urn == ALICE and principal.tool_urn.endswith("+user+tool")
    # without the ABAC credential the tool may not speak for alice
    refused = tool.call("Allocate", SLICE, [fx.cred("slice-cred-alice")], REQUEST,
                        {"geni_speaking_for": ALICE})
    assert code_of(refused) == 3


def test_service_errors_become_structs(api, fx):
    cred = [fx.cred("slice-cred-alice")]
    assert code_of(api.call("Allocate", SLICE, cred, "<rspec", {})) == 1
    assert code_of(api.call("PerformOperationalAction", [SLICE], cred, "geni_start", {})) == 12
    api.call("Allocate", SLICE, cred, REQUEST, {})
    assert code_of(api.call("PerformOperationalAction", [SLICE], cred, "geni_fly", {})) == 13


def test_unexpected_exception_is_error_struct(base_settings, authorizer, fx):
    class Broken:
        def advertisement(self, options):
            raise RuntimeError("boom")
    api = make_client(base_settings, authorizer, Broken(), fx.pem("alice"))
    result = api.call("ListResources", [fx.cred("alice-user-cred")], LR_OPTS)
    assert code_of(result) == 2 and "boom" not in result["output"]


def test_nothing_is_none_on_the_wire(api, fx):
    """Responses are encoded with allow_none=False: a <nil/> would have raised."""
    cred = [fx.cred("slice-cred-alice")]
    body = api.raw(__import__("xmlrpc.client").client.dumps(
        (SLICE, cred, REQUEST, {}), "Allocate").encode()).data
    assert b"<nil/>" not in body and b"dateTime" not in body


def test_get_version_lists_the_operational_actions_the_am_takes(base_settings, authorizer, fx,
                                                                 tmp_path):
    """GetVersion's geniam_operational_actions (the real Aggregate over a fake site) names every
    action PerformOperationalAction takes, the shared-LAN ones with their options: each
    listed action reaches the slice lookup (no such slice: SEARCHFAILED), and an unknown
    action's UNSUPPORTED answer lists exactly the same set."""
    from am.service.aggregate import Aggregate
    from am.store import open_store
    from drivers.fake import make_fake_site
    store = open_store(f"sqlite:///{tmp_path / 'am.sqlite'}", migrate=True)
    site = make_fake_site(2, authority="geni-am:test")
    try:
        aggregate = Aggregate(base_settings, store, site, queue=None)
        api = make_client(base_settings, authorizer, aggregate, fx.pem("alice"))
        listed = {a["action"]: a for a in api.call("GetVersion")["value"]
                  ["geniam_operational_actions"]}
        assert listed["geni_sharelan"]["options"] == ["geni_sharelan_lanname",
                                                      "geni_sharelan_token"]
        assert listed["geni_unsharelan"]["options"] == ["geni_sharelan_lanname"]
        assert listed["geni_update_users"]["options"] == ["geni_users"]
        assert {"geni_start", "geni_stop", "geni_restart"} <= set(listed)
        cred = [fx.cred("slice-cred-alice")]
        for action in listed:
            opts = {"geni_users": [{"urn": ALICE, "keys": ["ssh-ed25519 AAAA k"]}]} \
                if action == "geni_update_users" else {}
            result = api.call("PerformOperationalAction", [SLICE], cred, action, opts)
            assert code_of(result) == 12, (action, result["output"])     # SEARCHFAILED
        refused = api.call("PerformOperationalAction", [SLICE], cred, "geni_fly", {})
        assert code_of(refused) == 13
        named = refused["output"].split("(supported: ", 1)[1].rstrip(")").split(", ")
        assert sorted(named) == sorted(listed)
    finally:
        site.close()
        store.close()
