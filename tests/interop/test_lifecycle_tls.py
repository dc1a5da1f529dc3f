"""The whole AM API v3 life cycle over real TLS with client certificates, against the real
stack (store, fake site, embedded Celery worker): one slice, then five slices at once."""
from __future__ import annotations

import base64
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest

from am.client import AMClient, AMError
from tests.interop.stack import GCF_SLICE, RSPEC_V, LiveAM, node, request

pytestmark = pytest.mark.slow

READY = "geni_ready"


def inflate(value: str) -> str:
    return zlib.decompress(base64.b64decode(value, validate=True)).decode("utf-8")


def raw_value(client: AMClient, method: str, *params):
    result = client.call(method, *params)
    assert result["code"]["geni_code"] == 0, result
    return result["value"]


def wait_state(client: AMClient, urns, state: str, timeout: float = 20.0) -> dict:
    """Poll Status (the client's own waiter) until every sliver is in `state`."""
    outcome = client.wait(urns, interval=0.05, timeout=timeout)
    assert not outcome.timed_out, outcome.progress
    states = {s["geni_operational_status"] for s in outcome.progress.slivers}
    assert states == {state}, outcome.progress.slivers
    return client.status(urns)


def life_cycle(client: AMClient, slice_urn: str, n_nodes: int = 2) -> dict:
    """GetVersion .. Delete for one slice; returns what it saw, for the caller's checks."""
    seen: dict = {}
    version = client.get_version()
    assert version["geni_api"] == 3
    alloc = client.allocate(slice_urn, request(*(node(f"n{i}") for i in range(n_nodes))))
    slivers = [s["geni_sliver_urn"] for s in alloc["geni_slivers"]]
    assert len(slivers) == n_nodes
    assert {s["geni_allocation_status"] for s in alloc["geni_slivers"]} == {"geni_allocated"}
    prov = client.provision(slice_urn, users=[{"urn": "urn:publicid:IDN+x+user+u",
                                               "keys": ["ssh-rsa AAAAB3Nza u@x"]}])
    assert sorted(s["geni_sliver_urn"] for s in prov["geni_slivers"]) == sorted(slivers)
    assert {s["geni_allocation_status"] for s in prov["geni_slivers"]} == {"geni_provisioned"}
    # the fake site's first state is geni_notready: start, then Status until ready
    client.wait(slice_urn, interval=0.05, timeout=20, start=True)
    status = wait_state(client, slice_urn, READY)
    assert status["geni_urn"] == slice_urn
    assert all(s["geni_error"] == "" for s in status["geni_slivers"])
    poa = client.perform_operational_action(slice_urn, "geni_restart")
    assert sorted(s["geni_sliver_urn"] for s in poa) == sorted(slivers)
    wait_state(client, slice_urn, READY)
    described = client.describe(slice_urn)
    assert described["geni_urn"] == slice_urn
    assert sorted(s["geni_sliver_urn"] for s in described["geni_slivers"]) == sorted(slivers)
    assert 'type="manifest"' in described["geni_rspec"]
    for urn in slivers:
        assert urn in described["geni_rspec"]
    later = (datetime.now(timezone.utc) + timedelta(days=2)).replace(microsecond=0)
    renewed = client.renew(slice_urn, later)
    assert {s["geni_expires"] for s in renewed} == {later.strftime("%Y-%m-%dT%H:%M:%SZ")}
    deleted = client.delete(slice_urn)
    assert sorted(s["geni_sliver_urn"] for s in deleted) == sorted(slivers)
    assert {s["geni_allocation_status"] for s in deleted} == {"geni_unallocated"}
    with pytest.raises(AMError) as gone:
        client.status(slivers)
    assert gone.value.code == 12            # SEARCHFAILED: deleted slivers are gone
    seen["slivers"] = slivers
    return seen


def test_one_slice_life_cycle_over_tls(am: LiveAM):
    client = am.gcf_client("alice", ["slice-cred-alice.xml"])
    with client:
        life_cycle(client, GCF_SLICE)


def test_five_slices_at_once_from_five_threads(am: LiveAM):
    slices = [am.dev_slice(f"multi{i}") for i in range(5)]

    def run(item):
        urn, cred = item
        with am.dev_client("carol", [cred]) as client:
            return life_cycle(client, urn, n_nodes=2)

    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(run, slices))
    urns = [u for r in results for u in r["slivers"]]
    assert len(urns) == len(set(urns)) == 10     # sliver URNs are unique across slices
    # nothing is left behind: the store holds no live sliver of any of these slices
    from am.store.store import utcnow
    with am.runtime.store.read() as session:
        live = am.runtime.store.live_slivers(session, utcnow())
    assert not [s for s in live if s.urn in urns]


def test_list_resources_compressed_equals_uncompressed(am: LiveAM):
    with am.gcf_client("alice", ["alice-user-cred.xml"]) as client:
        creds = client.credentials
        plain = raw_value(client, "ListResources", creds, {"geni_rspec_version": RSPEC_V})
        packed = raw_value(client, "ListResources", creds, {"geni_rspec_version": RSPEC_V,
                                                            "geni_compressed": True})
        assert plain.lstrip().startswith("<") and not packed.lstrip().startswith("<")
        assert inflate(packed) == plain
        assert 'type="advertisement"' in plain
        # and our client hands back the text either way
        assert client.list_resources(compressed=True) == plain


def test_describe_compressed_equals_uncompressed(am: LiveAM):
    with am.gcf_client("alice", ["slice-cred-alice.xml"]) as client:
        client.allocate(GCF_SLICE, request(node("c1"), node("c2")))
        try:
            creds = client.credentials
            plain = raw_value(client, "Describe", [GCF_SLICE], creds,
                              {"geni_rspec_version": RSPEC_V})
            packed = raw_value(client, "Describe", [GCF_SLICE], creds,
                               {"geni_rspec_version": RSPEC_V, "geni_compressed": True})
            assert inflate(packed["geni_rspec"]) == plain["geni_rspec"]
            assert packed["geni_slivers"] == plain["geni_slivers"]
            assert 'client_id="c1"' in plain["geni_rspec"]
        finally:
            client.delete(GCF_SLICE)


def test_compressed_request_options_are_booleans_both_ways(am: LiveAM):
    """`geni_compressed: false` is the uncompressed answer; a non-boolean is BADARGS."""
    with am.gcf_client("alice", ["alice-user-cred.xml"]) as client:
        creds = client.credentials
        off = raw_value(client, "ListResources", creds, {"geni_rspec_version": RSPEC_V,
                                                         "geni_compressed": False})
        assert off.lstrip().startswith("<")
        bad = client.call("ListResources", creds, {"geni_rspec_version": RSPEC_V,
                                                   "geni_compressed": "yes"})
        assert bad["code"]["geni_code"] == 1
