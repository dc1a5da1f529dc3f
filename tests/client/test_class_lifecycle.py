"""The importable client's whole life cycle against a running AM (TLS, store, worker)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from am.client import AMClient, AMError, NeedsStart, NotProvisioned, Progress
from tests.client.conftest import request_rspec

pytestmark = pytest.mark.slow


@pytest.fixture
def client(am_env):
    creds = [am_env.user_cred, am_env.slice_cred("classy")]
    with AMClient(am_env.url, am_env.cert, am_env.key, ca=am_env.ca, credentials=creds,
                  timeout=10) as c:
        yield c


def test_life_cycle(client, am_env):
    slice_urn = am_env.slice_urn("classy")
    version = client.get_version()
    assert version["geni_api"] == 3 and "3" in version["geni_api_versions"]

    ad = client.list_resources()
    assert "advertisement" in ad and "<node" in ad
    compressed = client.list_resources(compressed=True)
    assert compressed == ad                         # decompressed transparently
    assert client.last_result["value"] != ad         # ...but it came compressed on the wire

    allocated = client.allocate(slice_urn, request_rspec(3))
    slivers = [s["geni_sliver_urn"] for s in allocated["geni_slivers"]]
    assert len(slivers) == 3
    assert {s["geni_allocation_status"] for s in allocated["geni_slivers"]} == {"geni_allocated"}

    with pytest.raises(NotProvisioned, match="provision them first"):
        client.wait(slice_urn, timeout=5, interval=0.05)

    provisioned = client.provision(slice_urn, users=[{"urn": "urn:publicid:IDN+geni-am+user+alice",
                                                      "keys": ["ssh-ed25519 AAAAC3Nz alice"]}])
    assert {s["geni_allocation_status"] for s in provisioned["geni_slivers"]} == \
        {"geni_provisioned"}

    # Provision, Status until ready: the provision jobs start the slivers (start_on_provision)
    seen: list[Progress] = []
    result = client.wait(slice_urn, timeout=20, interval=0.05, on_progress=seen.append)
    assert result.all_ready and result.progress.ready == 3
    assert seen[0].ready < 3       # it really waited: the worker runs jobs after a delay
    assert seen[-1].ready == 3 and result.polls == len(seen) >= 2

    status = client.status(slice_urn)
    assert status["geni_urn"] == slice_urn
    assert {s["geni_operational_status"] for s in status["geni_slivers"]} == {"geni_ready"}

    # stopped slivers rest in geni_notready: plain wait says so, wait(start=True) starts them
    stopped = client.perform_operational_action(slice_urn, "geni_stop")
    assert {s["geni_operational_status"] for s in stopped} == {"geni_stopping"}
    with pytest.raises(NeedsStart, match="geni_start"):
        client.wait(slice_urn, timeout=20, interval=0.05)
    seen = []
    result = client.wait(slice_urn, timeout=20, interval=0.05, start=True,
                         on_progress=seen.append)
    assert result.all_ready and result.progress.ready == 3
    assert seen[0].ready == 0 and seen[-1].ready == 3

    restarted = client.perform_operational_action(slivers[:1], "geni_restart")
    assert [s["geni_sliver_urn"] for s in restarted] == slivers[:1]

    described = client.describe(slice_urn, compressed=True)
    assert "manifest" in described["geni_rspec"]     # decompressed
    assert {s["geni_sliver_urn"] for s in described["geni_slivers"]} == set(slivers)

    later = datetime.now(timezone.utc) + timedelta(days=2)
    renewed = client.renew(slice_urn, later)
    assert all(s["geni_expires"].startswith(later.strftime("%Y-%m-%dT%H")) for s in renewed)

    deleted = client.delete(slice_urn)
    assert {s["geni_allocation_status"] for s in deleted} == {"geni_unallocated"}
    with pytest.raises(AMError) as err:
        client.status(slice_urn)
    assert err.value.label == "SEARCHFAILED" and err.value.code == 12


def test_refusals_are_am_errors(am_env):
    """A credential for another slice: FORBIDDEN-ish code, output kept."""
    with AMClient(am_env.url, am_env.cert, am_env.key, ca=am_env.ca,
                  credentials=[am_env.slice_cred("other")]) as c:
        with pytest.raises(AMError) as err:
            c.allocate(am_env.slice_urn("notmine"), request_rspec(1))
    assert err.value.code in (3, 22) and err.value.output
    assert "the AM answered" in str(err.value)
