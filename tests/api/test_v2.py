"""AM API v2 at /am/2, over the same service and authorization."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tests.api.conftest import ALICE, EXPIRED_SLICE, REQUEST, RSPEC_V, SLICE, code_of

OPTS = {"geni_rspec_version": RSPEC_V}


def v2(api, method, *params):
    return api.call(method, *params, path="/am/2")


def test_get_version_v2(api):
    result = v2(api, "GetVersion")
    assert code_of(result) == 0 and result["geni_api"] == 2 and result["value"]["geni_api"] == 2
    assert set(result["value"]["geni_api_versions"]) == {"2", "3"}


def test_v2_life_cycle(api, fx, service):
    cred = [fx.xml("slice-cred-alice")]      # v2: bare XML strings
    assert "advertisement" in v2(api, "ListResources", [fx.xml("alice-user-cred")], OPTS)["value"]
    created = v2(api, "CreateSliver", SLICE, cred, REQUEST,
                 [{"urn": ALICE, "keys": ["ssh-rsa AAA alice"]}], {})
    assert code_of(created) == 0 and "manifest" in created["value"]
    assert all(r["alloc"] == "geni_provisioned" for r in service.slivers.values())
    manifest = v2(api, "ListResources", cred, {**OPTS, "geni_slice_urn": SLICE})
    assert code_of(manifest) == 0 and "manifest" in manifest["value"]
    status = v2(api, "SliverStatus", SLICE, cred, {})
    assert code_of(status) == 0 and status["value"]["geni_status"] == "ready"
    assert len(status["value"]["geni_resources"]) == 2
    later = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    renewed = v2(api, "RenewSliver", SLICE, cred, later, {})
    assert renewed["value"] is True and renewed["output"] == later
    assert v2(api, "DeleteSliver", SLICE, cred, {})["value"] is True
    assert not service.slivers
    assert v2(api, "Shutdown", SLICE, cred, {})["value"] is True


def test_v2_errors(api, fx, service):
    assert code_of(v2(api, "ListResources", [fx.xml("alice-user-cred")], {})) == 1
    assert code_of(v2(api, "CreateSliver", SLICE, [], REQUEST, {}, {})) == 1      # users type
    expired = v2(api, "CreateSliver", EXPIRED_SLICE, [fx.xml("slice-cred-expired")], REQUEST, [], {})
    assert code_of(expired) == 21 and not service.slivers
    assert code_of(v2(api, "SliverStatus", SLICE, [fx.xml("slice-cred-alice")], {})) == 12
