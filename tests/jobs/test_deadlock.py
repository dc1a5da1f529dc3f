"""A database deadlock is transient: PostgreSQL aborts the job's transaction in a real lock
cycle, and the job runs the transaction again and ends right (before: "internal error ...
deadlock detected" and a failed sliver after one attempt)."""
from __future__ import annotations

import threading

import psycopg
import pytest
from sqlalchemy import select

from am.errors import GeniCode, GeniError
from am.jobs.runner import run_job
from am.store import Job, Sliver
from am.service.contract import Options
from am.store.retry import retry_counts
from tests.jobs.conftest import USER, slice_urn
from tests.support import wait_until

pytestmark = [pytest.mark.postgres]


def _plain_url(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


def _waiting_on_lock(admin: psycopg.Connection, query_start: str) -> bool:
    rows = admin.execute(
        "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock'").fetchall()
    return any(q.lstrip().upper().startswith(query_start) for (q,) in rows)


def test_a_deadlock_recording_the_outcome_is_retried(stack_factory, postgres_url: str):
    # provisioning takes 1 s: time to lock the job's row between its claim and its outcome
    stack = stack_factory(database_url=postgres_url, worker=False, nodes=2,
                          fake={"latency_s": 1.0}, start_on_provision=False)
    stack.allocate("cycle", n=1)
    stack.provision("cycle")
    with stack.store.read() as s:
        job_id, sliver_id = s.execute(select(Job.id, Job.sliver_id).join(Sliver)
                                      .where(Job.state == "queued")).one()
    before = retry_counts().get("deadlock", 0)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            run_job(stack.store, stack.site, job_id, worker_id="deadlock-test")
        except BaseException as exc:   # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    url = _plain_url(postgres_url)
    with psycopg.connect(url, autocommit=True) as admin, psycopg.connect(url) as other:
        # the other transaction must not be the one PostgreSQL picks: it checks for a cycle
        # only after 30 s of waiting, the job's transaction after the default 1 s
        other.execute("SET deadlock_timeout = '30s'")
        thread = threading.Thread(target=worker)
        thread.start()
        wait_until(lambda: _job_state(admin, job_id) == "running", "the job running",
                   timeout=30)
        other.execute("UPDATE jobs SET heartbeat = heartbeat WHERE id = %s", (job_id,))
        # the job's outcome transaction: the sliver row first, then it waits for the job row
        wait_until(lambda: _waiting_on_lock(admin, "UPDATE JOBS"), "a lock wait", timeout=30)
        # and now the other transaction wants the sliver row: a cycle
        other.execute("UPDATE slivers SET updated = updated WHERE id = %s", (sliver_id,))
        other.commit()
        thread.join(60)
    assert not thread.is_alive() and not errors, errors
    st = stack.status("cycle")
    assert [op for _, op, _ in st.values()] == ["geni_notready"], st
    with stack.store.read() as s:
        job = s.get(Job, job_id)
        assert (job.state, job.attempts) == ("done", 1), (job.state, job.error)
    assert retry_counts().get("deadlock", 0) > before   # it was a real deadlock, retried


def _job_state(admin: psycopg.Connection, job_id: int) -> str | None:
    row = admin.execute("SELECT state FROM jobs WHERE id = %s", (job_id,)).fetchone()
    return row[0] if row else None


def test_an_api_call_caught_in_a_deadlock_is_retried(stack_factory, postgres_url: str):
    """Delete locks the slice's slivers, then the components' capacity rows; a transaction
    holding a capacity row and then wanting the sliver closes a cycle. The Delete is rolled
    back, run again, and answers as if nothing happened."""
    stack = stack_factory(database_url=postgres_url, worker=False, nodes=2)
    (urn,) = stack.allocate("apicycle", n=1)
    with stack.store.read() as s:
        sliver_id, component = s.execute(select(Sliver.id, Sliver.component_id)
                                         .where(Sliver.urn == urn)).one()
    before = retry_counts().get("deadlock", 0)
    result: list[object] = []
    url = _plain_url(postgres_url)
    with psycopg.connect(url, autocommit=True) as admin, psycopg.connect(url) as other:
        other.execute("SET deadlock_timeout = '30s'")
        other.execute("UPDATE capacity SET used = used WHERE component_id = %s", (component,))
        thread = threading.Thread(target=lambda: result.append(_delete(stack, "apicycle")))
        thread.start()
        wait_until(lambda: _waiting_on_lock(admin, "UPDATE CAPACITY"), "a lock wait",
                   timeout=30)
        other.execute("UPDATE slivers SET updated = updated WHERE id = %s", (sliver_id,))
        other.commit()
        thread.join(60)
    assert not thread.is_alive()
    assert [(i.sliver_urn, i.allocation_status) for i in result[0]] == [(urn, "geni_unallocated")]
    with pytest.raises(GeniError) as gone:   # nothing live is left in the slice
        stack.status("apicycle")
    assert gone.value.code == GeniCode.SEARCHFAILED
    assert all(used == 0 for comp, _, _, used in stack.store.capacity_rows() if comp == component)
    assert retry_counts().get("deadlock", 0) > before


def _delete(stack, name: str):
    try:
        return stack.aggregate.delete(USER, [slice_urn(name)], Options())
    except BaseException as exc:   # noqa: BLE001 - the assertion shows it
        return exc
