"""The chaos suite: PostgreSQL + Redis + 2 API processes + 2 workers under client loops of whole
life cycles (Allocate, Provision, Status until ready, Renew, Delete), while an API process, a
worker's Celery process and Redis are SIGKILLed and PostgreSQL is crashed (`pg_ctl -m
immediate`) and started again, each several times at random moments. `geni-am worker` starts a
new Celery worker itself; the test restarts dead API processes, as a supervisor would.

At the end: every slice holds exactly what the answers its client got say (nothing lost,
nothing resurrected, provisioned slivers ready); every live sliver holds exactly one
reservation per resource and each component's usage is the sum of them; after the final Delete
nothing is reserved, all usage is zero, no job is open, no sliver is left in a transient state,
the substrate holds nothing; both workers are running (each with a Celery worker), no process
died that was not killed, and no Celery worker gave up with an unrecoverable error.

Bounded in CI (8 clients, about 30 s of faults, 2 of each kind; ~2 minutes in all). The long form, by hand:
  GENI_AM_CHAOS_CLIENTS=32 GENI_AM_CHAOS_SECONDS=600 pytest -s tests/chaos
(GENI_AM_CHAOS_ROUNDS: faults of each kind, default one per 20 s; GENI_AM_CHAOS_SEED.)
"""
from __future__ import annotations

import collections
import os
import random
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from am.store import Capacity, Claim, Reservation, Slice, Sliver, open_store
from am.worker_supervisor import RestartPolicy
from tests import support
from tests.chaos.cluster import AUTHORITY, Cluster
from tests.chaos.lifecycle import ChaosClient, run_clients

CLIENTS = int(os.environ.get("GENI_AM_CHAOS_CLIENTS", "8"))
SECONDS = float(os.environ.get("GENI_AM_CHAOS_SECONDS", "30"))
ROUNDS = int(os.environ.get("GENI_AM_CHAOS_ROUNDS", str(max(2, int(SECONDS // 20)))))
SEED = int(os.environ.get("GENI_AM_CHAOS_SEED", str(random.SystemRandom().randrange(10**6))))
SLIVERS = 2
TRANSIENT = {"geni_pending_allocation", "geni_notready", "geni_configuring", "geni_stopping",
             "geni_updating_users"}

# A worker's Celery consumer used to die for good on a Redis restart inside kombu's Redis
# transport (issue 13); `geni-am worker` now patches that and supervises its Celery worker.
UNRECOVERABLE = "celery.worker: Unrecoverable error"


def _refused_start(output: str) -> bool:
    """A process (re)started while PostgreSQL was down or in recovery and said so in one line,
    exit 1: the supervisor starts it again. Expected of the fault, counted, not a finding."""
    return "is not usable" in output and "Traceback" not in output


pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres]


def test_life_cycles_survive_killed_processes_redis_and_postgres(tmp_path: Path):
    nodes = max(4, -(-CLIENTS * SLIVERS // 8) + 2)     # fake nodes hold 8 default slivers
    cluster = Cluster(tmp_path, nodes=nodes)
    store = None
    started = time.monotonic()
    try:
        cluster.start()
        cluster.supervise()
        store = open_store(cluster.settings.database_url)
        stop = threading.Event()
        clients = []
        for i in range(CLIENTS):
            cred = cluster.dev.slice(f"ch{i}", owner="carol")
            clients.append(ChaosClient(
                i, cluster.urls, lambda url, cred=cred: cluster.client(url, cred),
                f"urn:publicid:IDN+geni-am+slice+ch{i}", stop, seed=SEED + i, slivers=SLIVERS))
        threads, errors = run_clients(clients)
        gap = SECONDS / (4 * ROUNDS)
        faults_done = cluster.chaos(ROUNDS, (0.5 * gap, 1.5 * gap), SEED)
        assert faults_done.wait(SECONDS * 2 + 120), "the faults did not finish"
        stop.set()
        for t in threads:
            t.join(240)
        hung = [c for c, t in zip(clients, threads) if t.is_alive()]
        assert not hung, "\n\n".join(f"client {c.index} hung; its last calls:\n"
                                      + "\n".join(c.trace) for c in hung)
        counts = sum((c.counts for c in clients), collections.Counter())
        _report(cluster, clients, counts, time.monotonic() - started)
        assert not errors, errors

        # -- what the answers say, against the database
        _wait_for_quiet_jobs(store)
        _check_slices_as_answered(store, clients)
        _check_reservations(store)
        # -- the final Delete: everything back to zero
        for c in clients:
            c.final_delete()
        _wait_for_quiet_jobs(store)
        _check_everything_released(store, cluster)
        anomalies = [a for c in clients for a in c.anomalies]
        assert not anomalies, anomalies
        # a worker killed late may still be in its supervisor's restart back-off (up to
        # RestartPolicy.max_delay_s when its quick restarts met Redis or PostgreSQL down)
        support.wait_until(lambda: sorted(cluster.workers_alive()) == ["worker0", "worker1"],
                   "both workers running again", timeout=RestartPolicy.max_delay_s + 15,
                   detail=cluster.workers_alive)
        deaths = [f"{what}:\n...{output[-3000:]}" for what, output in cluster.counts.unexpected_deaths
                  if not _refused_start(output)]
        assert not deaths, "\n\n".join(deaths)
        for m in cluster.workers:
            text = m.log.read_text(errors="replace")
            assert UNRECOVERABLE not in text, text[text.index(UNRECOVERABLE) - 2000:][:5000]
        assert all(cluster.counts.kills[k] == ROUNDS for k in ("api", "worker", "redis",
                                                                "postgres")), cluster.counts.kills
        assert sum(c.cycles for c in clients) >= CLIENTS, "the clients hardly got anywhere"
    finally:
        if store is not None:
            store.close()
        cluster.stop()


def _report(cluster: Cluster, clients: list[ChaosClient], counts, elapsed: float) -> None:
    kills = cluster.counts.kills
    print(f"\nchaos: seed {SEED}, {CLIENTS} clients, {elapsed:.0f} s; "
          f"{sum(c.cycles for c in clients)} life cycles; {counts['calls']} calls; "
          f"kills: api {kills['api']}, worker {kills['worker']}, redis {kills['redis']}, "
          f"postgres restarts {kills['postgres']}; retries: failover "
          f"{counts['retries_failover']}, busy {counts['retries_busy']}, db error "
          f"{counts['retries_dberror']}, internal error {counts['retries_internal_error']}; "
          f"ambiguous answers resolved by Status {counts['ambiguous']}; "
          f"late commits {counts['late_commits']}; failed slivers {counts['failed_slivers']}; "
          f"unexpected process deaths {len(cluster.counts.unexpected_deaths)}")
    restarts = sum(m.log.read_text(errors="replace").count("starting a new one in")
                   for m in cluster.workers)
    print(f"  Celery workers restarted by geni-am worker: {restarts} (killed: {kills['worker']})")
    for what, output in cluster.counts.unexpected_deaths:
        why = " (refused to start: database not usable)" if _refused_start(output) else ""
        print(f"  process death not caused by a fault{why}: {what}")


def _wait_for_quiet_jobs(store, timeout: float = 60.0) -> None:
    """Every job finished: the reconciler re-sent what the faults (a dead worker) held."""
    support.wait_jobs_quiet(store, timeout)


def _live_by_slice(store) -> dict[str, dict[str, tuple[str, str | None]]]:
    with store.read() as session:
        rows = session.execute(
            select(Slice.urn, Sliver.urn, Sliver.allocation_state, Sliver.operational_state)
            .join(Slice, Sliver.slice_id == Slice.id)
            .where(Sliver.allocation_state != "geni_unallocated")).all()
    out: dict[str, dict[str, tuple[str, str | None]]] = collections.defaultdict(dict)
    for slice_urn, urn, alloc, op in rows:
        out[slice_urn.lower()][urn] = (alloc, op)
    return out


def _check_slices_as_answered(store, clients: list[ChaosClient]) -> None:
    live = _live_by_slice(store)
    for c in clients:
        held = live.pop(c.slice_urn.lower(), {})
        assert {u: a for u, (a, _) in held.items()} == c.expect, (c.slice_urn, held, c.expect)
        for urn, (alloc, op) in held.items():
            if alloc == "geni_provisioned":
                assert op == "geni_ready", (urn, op)
    assert not live, f"slivers in slices no client used: {live}"


def _check_reservations(store) -> None:
    with store.read() as session:
        live = {s.id: s for s in session.scalars(
            select(Sliver).where(Sliver.allocation_state != "geni_unallocated"))}
        reservations = session.execute(select(Reservation.sliver_id, Reservation.component_id,
                                              Reservation.resource, Reservation.amount)).all()
        used = {(c.component_id, c.resource): c.used for c in session.scalars(select(Capacity))}
        claims = session.execute(select(Claim.sliver_id, Claim.component_id, Claim.token)).all()
    per = collections.Counter((r.sliver_id, r.resource) for r in reservations)
    assert {sid for sid, _ in per} == set(live), "a reservation lost or left behind"
    assert all(n == 1 for n in per.values()), f"a reservation doubled: {per}"
    sums: dict[tuple[str, str], float] = collections.defaultdict(float)
    for r in reservations:
        assert r.component_id == live[r.sliver_id].component_id
        sums[(r.component_id, r.resource)] += r.amount
    for key, amount in used.items():
        assert abs(amount - sums.get(key, 0.0)) < 1e-6, (key, amount, sums.get(key))
    assert all(c.sliver_id in live for c in claims)
    assert len({(c.component_id, c.token) for c in claims}) == len(claims)


def _check_everything_released(store, cluster: Cluster) -> None:
    from drivers.registry import load_site

    assert _live_by_slice(store) == {}
    with store.read() as session:
        assert session.scalar(select(func.count()).select_from(Reservation)) == 0
        assert session.scalar(select(func.count()).select_from(Claim)) == 0
        nonzero = [(c.component_id, c.resource, c.used) for c in session.scalars(select(Capacity))
                   if abs(c.used) > 1e-9]
        stuck = session.execute(select(Sliver.urn, Sliver.operational_state)
                                .where(Sliver.operational_state.in_(TRANSIENT))).all()
    assert not nonzero, f"capacity still in use after the final Delete: {nonzero}"
    assert not stuck, f"slivers stuck in a transient state: {stuck}"
    site = load_site(str(cluster.inventory), authority=AUTHORITY,
                     state_dir=str(cluster.settings.state_path))
    try:
        fake = site.drivers["fake"]
        # the reconciler frees what an interrupted delete left
        support.wait_until(lambda: not fake.observed(), "the substrate to hold nothing", 30,
                           0.2, detail=lambda: f"substrate leaked: {fake.observed()}")
    finally:
        site.close()
