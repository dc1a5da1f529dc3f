"""`/metrics` in the Prometheus text format, one registry per app (never the global one).

Two apps in one process (tests, benchmarks) must not share counters, so every `AMMetrics`
owns a `CollectorRegistry`. Call counters and latencies are fed by a call observer on the
method tables; sliver, job and credential-cache figures are read at scrape time from the store
and the verifier's cache, so they can never drift from the truth.

Who may read it (decided): a caller whose client certificate validates against the AM's trust
roots and whose URN is in `settings.operators`; and plain-HTTP requests from a loopback address
that carry no certificate at all (a Prometheus on the same host scraping the backend port of
the `--behind-proxy` mode). Anything else gets HTTP 403. In direct TLS mode every connection
already presented a certificate in the handshake, so only operators get through.
"""
from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, Response, request
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from am.api.dispatch import CallRecord
from am.errors import GeniError
from am.logging import outcome_label

log = logging.getLogger("am.metrics")

# Seconds: API calls range from sub-millisecond (GetVersion) to seconds (big Allocates).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0)


class StateCollector(Collector):
    """Scrape-time figures: live slivers by state and driver, jobs by state, cache counters."""

    def __init__(self, store: Any = None, cache: Any = None, hosts: Any = None):
        self.store = store
        self.cache = cache
        self.hosts = hosts      # am.service.hosts.SiteHosts on a site of many hosts

    def collect(self) -> Iterator[Metric]:
        if self.store is not None:
            yield from self._store_metrics()
        if self.hosts is not None and self.hosts.active:
            yield from self._host_metrics()
        if self.cache is not None:
            hits = CounterMetricFamily("geniam_credential_cache_hits",
                                       "Credential verifications answered from the cache.")
            hits.add_metric([], float(self.cache.hits))
            misses = CounterMetricFamily("geniam_credential_cache_misses",
                                         "Credential verifications that had to verify signatures.")
            misses.add_metric([], float(self.cache.misses))
            entries = GaugeMetricFamily("geniam_credential_cache_entries",
                                        "Verified credentials held in the cache.")
            entries.add_metric([], float(len(self.cache)))
            yield from (hits, misses, entries)

    def _store_metrics(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("geniam_store_up",
                               "1 when the store answered this scrape's queries, else 0.")
        try:
            slivers, jobs = store_counts(self.store)
            soon = expiring_soon(self.store)
        except Exception:   # noqa: BLE001 - a broken database must not break the scrape
            log.exception("metrics: cannot read the store")
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        family = GaugeMetricFamily(
            "geniam_slivers", "Live slivers (allocated or provisioned, not expired).",
            labels=["allocation_state", "operational_state", "driver"])
        for (alloc, oper, driver), count in sorted(slivers.items()):
            family.add_metric([alloc, oper, driver], float(count))
        yield family
        job_family = GaugeMetricFamily("geniam_jobs", "Jobs in the store by state.",
                                       labels=["state"])
        for state in sorted(set(jobs) | {"queued", "running", "done", "failed"}):
            job_family.add_metric([state], float(jobs.get(state, 0)))
        yield job_family
        depth = GaugeMetricFamily("geniam_job_queue_depth",
                                  "Jobs waiting for a worker (state queued).")
        depth.add_metric([], float(jobs.get("queued", 0)))
        yield depth
        expiring = GaugeMetricFamily(
            "geniam_slivers_expiring_soon",
            f"Live slivers whose expiry is within {EXPIRING_SOON_S // 3600} h (renew them or "
            "lose them).", labels=["allocation_state"])
        for alloc in ("geni_allocated", "geni_provisioned"):
            expiring.add_metric([alloc], float(soon.get(alloc, 0)))
        yield expiring


    def _host_metrics(self) -> Iterator[Metric]:
        """Per host of the site: up (1) or not, seconds since its last heartbeat, its load."""
        from am.store.types import utcnow
        try:
            views = self.hosts.repo.views(sorted(self.hosts.site.hosts))
        except Exception:   # noqa: BLE001 - a broken database must not break the scrape
            log.exception("metrics: cannot read the hosts")
            return
        up = GaugeMetricFamily("geniam_host_up", "1 when the host's worker heartbeats, else 0 "
                               "(down or never seen).", labels=["host"])
        age = GaugeMetricFamily("geniam_host_heartbeat_age_seconds",
                                "Seconds since the host's last heartbeat.", labels=["host"])
        load = GaugeMetricFamily("geniam_host_load", "The host's 1-minute load average at its "
                                 "last heartbeat.", labels=["host"])
        now = utcnow()
        for name, view in sorted(views.items()):
            up.add_metric([name], 1.0 if view.state == "up" else 0.0)
            if view.heartbeat is not None:
                age.add_metric([name], max(0.0, (now - view.heartbeat).total_seconds()))
                load.add_metric([name], float(view.load))
        yield from (up, age, load)


def store_counts(store: Any) -> tuple[dict[tuple[str, str, str], int], dict[str, int]]:
    """(live slivers by (allocation, operational, driver), jobs by state) in one read."""
    rows, job_rows = store.read_models.live_counts(datetime.now(timezone.utc))
    slivers = {(a, o or "", d): int(n) for a, o, d, n in rows}
    return slivers, {state: int(n) for state, n in job_rows}


#: "Soon" for `geniam_slivers_expiring_soon` (and the client's flag on such slivers).
EXPIRING_SOON_S = 24 * 3600


def expiring_soon(store: Any, now: datetime | None = None) -> dict[str, int]:
    """Live slivers expiring within `EXPIRING_SOON_S`, by allocation state."""
    from datetime import timedelta

    now = now or datetime.now(timezone.utc)
    return store.read_models.expiring_by_allocation(now, now + timedelta(seconds=EXPIRING_SOON_S))

class AMMetrics:
    """The metrics of one app: its registry, the call instruments and the `/metrics` view."""

    def __init__(self, *, store: Any = None, credential_cache: Any = None, hosts: Any = None):
        self.registry = CollectorRegistry()
        self.calls = Counter("geniam_calls", "API calls answered, by API, method and outcome "
                             "(the GENI code label, e.g. SUCCESS, FORBIDDEN).",
                             ["api", "method", "outcome"], registry=self.registry)
        self.latency = Histogram("geniam_call_duration_seconds",
                                 "Time to answer an API call (handler, excluding transport).",
                                 ["api", "method"], buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        # fed by the call observer: CallRecord.audited (am/api/dispatch.py, am/api/audit.py)
        self.unaudited = Counter("geniam_calls_unaudited", "API calls answered without their "
                                 "audit entry confirmed (the write failed or was too slow; the "
                                 "AM log has the record), by API and method.", ["api", "method"],
                                 registry=self.registry)
        # fed by the dashboard's token-guess limiter (am/web/ratelimit.py, am/web/dashboard.py)
        self.dashboard_lockouts = Counter(
            "geniam_dashboard_lockouts", "Dashboard token-login lockouts (HTTP 429): once per "
            "client address (scope=address), or for all clients (scope=global), per window.",
            ["scope"], registry=self.registry)
        self.registry.register(StateCollector(store, credential_cache, hosts))

    @classmethod
    def for_app(cls, store: Any, authorizer: Any, hosts: Any = None) -> "AMMetrics":
        """Wire to a store, to the authorizer's credential cache (when it has one) and to the
        site's hosts (`am.service.hosts.SiteHosts`, when the site has hosts)."""
        cache = getattr(getattr(authorizer, "verifier", None), "cache", None)
        return cls(store=store, credential_cache=cache, hosts=hosts)

    def observe_call(self, record: CallRecord) -> None:
        """Call observer for `MethodTable.add_observer`."""
        self.calls.labels(record.api, record.method, outcome_label(record.code)).inc()
        self.latency.labels(record.api, record.method).observe(record.duration_s)
        if not record.audited:
            self.unaudited.labels(record.api, record.method).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def blueprint(self, authorizer: Any, operators: frozenset[str] | set[str] = frozenset(),
                  caller_source: Any = None) -> Blueprint:
        """GET /metrics, for the readers described in the module docstring."""
        bp = Blueprint("geni_metrics", __name__)
        allowed = frozenset(u.lower() for u in operators)

        def view() -> Response:
            refusal = _refusal(request.environ, authorizer, allowed, caller_source)
            if refusal:
                return Response(refusal + "\n", status=403, mimetype="text/plain")
            return Response(self.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

        bp.add_url_rule("/metrics", "metrics", view, methods=["GET"])
        return bp


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _refusal(environ: dict, authorizer: Any, operators: frozenset[str],
             caller_source: Any) -> str:
    """Why this request may not read /metrics ("" when it may)."""
    from am.auth import _PROXY_CERT_ENVIRON, IdentityRefused

    has_cert = bool(environ.get("SSL_CLIENT_CERT")) or _PROXY_CERT_ENVIRON in environ
    if not has_cert and _is_loopback(str(environ.get("REMOTE_ADDR", ""))):
        return ""
    try:
        pem = caller_source.caller_pem(environ) if caller_source else environ["SSL_CLIENT_CERT"]
    except (IdentityRefused, KeyError) as exc:
        return f"/metrics: {exc}"
    try:
        urn = authorizer.identify(pem).urn
    except GeniError as exc:
        return f"/metrics: {exc.message}"
    if urn.lower() not in operators:
        return f"/metrics is readable by operators only; {urn} is not one (settings.operators)"
    return ""


__all__ = ["AMMetrics", "LATENCY_BUCKETS", "StateCollector", "store_counts"]
