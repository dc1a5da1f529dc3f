"""/metrics over TLS, parsed with prometheus_client's parser, against exactly what we did."""
from __future__ import annotations

import http.client
import json
import logging
import ssl
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from am.client import AMClient, AMError
from am.logging import CallLogger, JsonFormatter, configure_logging
from am.metrics import AMMetrics
from am.api.dispatch import CallRecord
from tests.client.conftest import request_rspec

pytestmark = pytest.mark.slow


def scrape(env, cert: str = "alice") -> tuple[int, str]:
    ctx = ssl.create_default_context(cafile=str(env.ca))
    ctx.check_hostname = False
    ctx.load_cert_chain(str(env.authority_dir / f"{cert}-cert.pem"),
                        str(env.authority_dir / f"{cert}-key.pem"))
    port = int(env.url.rstrip("/").rsplit(":", 1)[1])
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(parsed: dict, name: str, **labels: str) -> float:
    return parsed.get((name, frozenset(labels.items())), 0.0)


class Spy:
    """Counts the calls the client really sent, by method and answered code."""

    def __init__(self, client: AMClient):
        self.seen: Counter = Counter()
        inner = client.connection.call

        def call(method, params):
            result = inner(method, params)
            self.seen[(method, result["code"]["geni_code"])] += 1
            return result
        client.connection.call = call


def test_metrics_agree_with_the_calls_made(am_env):
    status, before_text = scrape(am_env)
    assert status == 200
    before = samples(before_text)
    assert value(before, "geniam_store_up") == 1
    assert not any(name == "geniam_calls_total" for name, _ in before)   # fresh AM, no calls

    slice_urn = am_env.slice_urn("metered")
    good = AMClient(am_env.url, am_env.cert, am_env.key, ca=am_env.ca,
                    credentials=[am_env.user_cred, am_env.slice_cred("metered")])
    wrong = AMClient(am_env.url, am_env.cert, am_env.key, ca=am_env.ca,
                     credentials=[am_env.slice_cred("someotherslice")])
    spy_good, spy_wrong = Spy(good), Spy(wrong)
    with good, wrong:
        good.get_version()
        for compressed in (False, True, False):
            good.list_resources(compressed=compressed)
        with pytest.raises(AMError) as refused:
            wrong.allocate(slice_urn, request_rspec(1))
        good.allocate(slice_urn, request_rspec(2))
        good.provision(slice_urn)
        good.wait(slice_urn, start=True, interval=0.05, timeout=20)
        final_status = good.status(slice_urn)

    status, text = scrape(am_env)
    assert status == 200
    after = samples(text)
    # the calls, exactly: 3 ListResources SUCCESS, 1 Allocate refused with the AM's code...
    assert value(after, "geniam_calls_total", api="v3", method="ListResources",
                 outcome="SUCCESS") == 3
    assert value(after, "geniam_calls_total", api="v3", method="Allocate",
                 outcome=refused.value.label) == 1
    assert refused.value.label == "CREDENTIAL_MISMATCH"     # a credential for another slice
    # ...and every other (method, outcome) as the client saw it, nothing more
    from am.client.errors import code_label
    expected = Counter()
    for spy in (spy_good, spy_wrong):
        for (method, code), n in spy.seen.items():
            expected[(method, code_label(code))] += n
    counted = {(dict(labels)["method"], dict(labels)["outcome"]): v
               for (name, labels), v in after.items() if name == "geniam_calls_total"}
    assert counted == {k: float(n) for k, n in expected.items()}
    for method in {m for m, _ in expected}:
        calls = sum(n for (m, _), n in expected.items() if m == method)
        assert value(after, "geniam_call_duration_seconds_count", api="v3",
                     method=method) == calls
        assert value(after, "geniam_call_duration_seconds_sum", api="v3", method=method) > 0

    # slivers by state agree with what Status says; all jobs ran
    states = Counter((s["geni_allocation_status"], s["geni_operational_status"])
                     for s in final_status["geni_slivers"])
    assert states == {("geni_provisioned", "geni_ready"): 2}
    assert value(after, "geniam_slivers", allocation_state="geni_provisioned",
                 operational_state="geni_ready", driver="fake") == 2
    assert sum(v for (n, _), v in after.items() if n == "geniam_slivers") == 2
    assert value(after, "geniam_job_queue_depth") == 0
    # one job per sliver: each provision job also started its sliver (start_on_provision),
    # so wait --start found nothing resting in geni_notready and sent no geni_start
    assert not any(m == "PerformOperationalAction" for m, _ in spy_good.seen)
    assert value(after, "geniam_jobs", state="done") == len(am_env.worker.ran) == 2

    # the same credentials again and again: the verifier's cache answered
    assert value(after, "geniam_credential_cache_hits_total") > \
        value(before, "geniam_credential_cache_hits_total")
    assert value(after, "geniam_credential_cache_misses_total") >= 2
    cache = am_env.runtime.authorizer.verifier.cache
    assert value(after, "geniam_credential_cache_hits_total") <= cache.hits


def test_metrics_access(am_env):
    status, body = scrape(am_env, cert="bob")          # valid certificate, not an operator
    assert status == 403 and "operators only" in body
    client = am_env.runtime.app.test_client()
    # plain HTTP from loopback without any certificate (a local Prometheus, proxy mode)
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 403
    pem = (am_env.authority_dir / "bob-cert.pem").read_text()
    refused = client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1",
                                                   "SSL_CLIENT_CERT": pem})
    assert refused.status_code == 403


def test_registries_are_per_app_and_store_failure_is_reported():
    class BrokenReads:
        def __getattr__(self, name):
            def query(*args, **kwargs):
                raise RuntimeError("database is down")
            return query

    class BrokenStore:
        read_models = BrokenReads()

    one, two = AMMetrics(store=BrokenStore()), AMMetrics()
    one.observe_call(CallRecord("v3", "Status", "urn:x", None, "", 12, 0.01))
    first, second = samples(one.render().decode()), samples(two.render().decode())
    assert value(first, "geniam_calls_total", api="v3", method="Status",
                 outcome="SEARCHFAILED") == 1
    assert not any(name == "geniam_calls_total" for name, _ in second)
    assert value(first, "geniam_store_up") == 0


def test_structured_call_log(am_env):
    import io

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("am.calls")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with AMClient(am_env.url, am_env.cert, am_env.key, ca=am_env.ca,
                      credentials=[am_env.slice_cred("logged")]) as c:
            with pytest.raises(AMError):
                c.status(am_env.slice_urn("logged"))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    (line,) = [json.loads(l) for l in stream.getvalue().splitlines()
               if json.loads(l).get("method") == "Status"]
    assert line["event"] == "api_call" and line["api"] == "v3"
    assert line["caller"] == "urn:publicid:IDN+geni-am+user+alice"
    assert line["outcome"] == "SEARCHFAILED" and line["geni_code"] == 12
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["ts"].endswith("Z") and line["level"] == "INFO"


def test_configure_logging_json_and_text():
    import io

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        stream = io.StringIO()
        configure_logging("json", stream=stream)
        CallLogger()(CallRecord("v2", "SliverStatus", "urn:u", "urn:t", "urn:s", 0, 0.002))
        logging.getLogger("am.test").warning("plain %s", "message")
        first, second = (json.loads(l) for l in stream.getvalue().splitlines())
        assert first["method"] == "SliverStatus" and first["outcome"] == "SUCCESS"
        assert first["tool"] == "urn:t" and first["duration_ms"] == 2.0
        assert second == {**second, "level": "WARNING", "logger": "am.test",
                          "msg": "plain message"}
        stream = io.StringIO()
        configure_logging("text", stream=stream)
        logging.getLogger("am.test").warning("hello")
        assert "WARNING am.test: hello" in stream.getvalue()
        with pytest.raises(ValueError):
            configure_logging("xml")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
