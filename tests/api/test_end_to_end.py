"""The API layer over the real Aggregate, store (SQLite) and fake site; jobs run inline."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from am.app import build_runtime
from am.jobs.runner import run_job
from tests.api.conftest import ALICE, EXPIRED_SLICE, RSPEC_V, SLICE, code_of
from tests.api.tlsclient import client_context, proxy
from am.server import AmServer, ServerOptions
from tests.support import wait_until

pytestmark = pytest.mark.slow

REQUEST = ('<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request">'
           '<node client_id="n1" exclusive="false"/></rspec>')


class InlineQueue:
    """Runs each submitted job at once (tests only: the real queue is Celery)."""

    def __init__(self):
        self.store = self.site = None

    def submit(self, job_id: int) -> None:
        run_job(self.store, self.site, job_id, worker_id="test-inline")


@pytest.fixture
def runtime(base_settings, tmp_path):
    queue = InlineQueue()
    settings = base_settings.replace(state_dir=str(tmp_path), fake_nodes=4)
    rt = build_runtime(settings, job_queue=lambda s: (queue, []))
    queue.store, queue.site = rt.store, rt.site
    yield rt
    rt.close()


@pytest.fixture
def tls_am(runtime, gcf_fixtures, trust_dir):
    srv = AmServer(runtime.app, ServerOptions(port=0, threads=4,
                                              cert=str(gcf_fixtures / "am-cert.pem"),
                                              key=str(gcf_fixtures / "am-key.pem"),
                                              trust_roots=str(trust_dir)))
    srv.start()
    ctx = client_context(str(gcf_fixtures / "ca-cert.pem"), str(gcf_fixtures / "alice-cert.pem"),
                         str(gcf_fixtures / "alice-key.pem"))
    yield proxy(srv.url, ctx)
    srv.stop()


def test_v3_life_cycle_over_tls(tls_am, fx, runtime):
    am = tls_am
    cred = [fx.cred("slice-cred-alice")]
    ad = am.ListResources([fx.cred("alice-user-cred")], {"geni_rspec_version": RSPEC_V})
    assert code_of(ad) == 0 and "advertisement" in ad["value"]
    alloc = am.Allocate(SLICE, cred, REQUEST, {})
    assert code_of(alloc) == 0, alloc
    (sliver,) = alloc["value"]["geni_slivers"]
    assert sliver["geni_allocation_status"] == "geni_allocated"
    prov = am.Provision([SLICE], cred, {"geni_rspec_version": RSPEC_V,
                                        "geni_users": [{"urn": ALICE, "keys": ["ssh-rsa AAAA a"]}]})
    assert code_of(prov) == 0, prov
    status = am.Status([sliver["geni_sliver_urn"]], cred, {})
    assert code_of(status) == 0 and status["value"]["geni_urn"] == SLICE
    assert status["value"]["geni_slivers"][0]["geni_allocation_status"] == "geni_provisioned"
    # the job ran inline and started the sliver too (start_on_provision, the default)
    assert status["value"]["geni_slivers"][0]["geni_operational_status"] == "geni_ready"
    for action, after in (("geni_restart", "geni_configuring"), ("geni_stop", "geni_stopping"),
                          ("geni_start", "geni_configuring")):
        poa = am.PerformOperationalAction([SLICE], cred, action, {})
        assert code_of(poa) == 0, poa
        assert poa["value"][0]["geni_operational_status"] == after
    status = am.Status([SLICE], cred, {})
    assert status["value"]["geni_slivers"][0]["geni_operational_status"] == "geni_ready"
    later = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert code_of(am.Renew([SLICE], cred, later, {})) == 0
    desc = am.Describe([SLICE], cred, {"geni_rspec_version": RSPEC_V})
    assert code_of(desc) == 0 and "manifest" in desc["value"]["geni_rspec"]
    assert code_of(am.Delete([SLICE], cred, {})) == 0
    # bad input against the real service
    assert code_of(am.Status(["urn:publicid:IDN+geni-am:test+sliver+nosuch"], cred, {})) == 12
    assert code_of(am.Status(["urn:publicid:IDN+elsewhere+sliver+x1"], cred, {})) == 12
    pg2 = '<rspec xmlns="http://www.protogeni.net/resources/rspec/2" type="request"/>'
    assert code_of(am.Allocate(SLICE, cred, pg2, {})) == 4
    assert code_of(am.Allocate(EXPIRED_SLICE, [fx.cred("slice-cred-expired")], REQUEST, {})) == 21
    assert code_of(am.Allocate(SLICE, cred, REQUEST, {})) == 0
    assert code_of(am.Shutdown(SLICE, cred, {})) == 0
    assert code_of(am.Allocate(SLICE, cred, REQUEST, {})) == 7     # REFUSED: shut down
    # every call is audited, in the store
    wanted = {"v3.Allocate", "v3.Shutdown", "v3.ListResources"}
    def audited():                             # the audit writer batches in the background
        entries = runtime.store.audit_entries(limit=100)
        return entries if wanted <= {e.method for e in entries} else None
    entries = wait_until(audited, f"audit entries of {sorted(wanted)}", 5)
    assert any(e.caller_urn == ALICE and e.outcome == 21 for e in entries)


@pytest.fixture(params=[True, False], ids=["start_on_provision", "no_start_on_provision"])
def runtime_v2(request, base_settings, tmp_path):
    """v2 has no operational actions, so CreateSliver must boot the slivers either way."""
    queue = InlineQueue()
    settings = base_settings.replace(state_dir=str(tmp_path), fake_nodes=4,
                                     start_on_provision=request.param)
    rt = build_runtime(settings, job_queue=lambda s: (queue, []))
    queue.store, queue.site = rt.store, rt.site
    yield rt
    rt.close()


def test_v2_over_real_service(runtime_v2, fx):
    runtime = runtime_v2
    client = runtime.app.test_client()
    import xmlrpc.client

    def v2(method, *params):
        body = xmlrpc.client.dumps(params, method).encode()
        r = client.post("/am/2", data=body, environ_base={"SSL_CLIENT_CERT": fx.pem("alice"),
                                                          "REMOTE_ADDR": "127.0.0.1"})
        return xmlrpc.client.loads(r.data)[0][0]

    cred = [fx.xml("slice-cred-alice")]
    created = v2("CreateSliver", SLICE, cred, REQUEST, [{"urn": ALICE, "keys": ["ssh-rsa A a"]}], {})
    assert code_of(created) == 0, created
    status = v2("SliverStatus", SLICE, cred, {})
    assert code_of(status) == 0 and status["value"]["geni_resources"]
    assert status["value"]["geni_status"] == "ready"
    assert {r["geni_status"] for r in status["value"]["geni_resources"]} == {"ready"}
    assert v2("DeleteSliver", SLICE, cred, {})["value"] is True
