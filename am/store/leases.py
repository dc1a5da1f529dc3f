"""Per-sliver leases: the lock a running job holds on its sliver (renewed by a heartbeat)."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Executable, bindparam, delete, update
from sqlalchemy.orm import Session

from am.states import JobState
from am.store.models import Job, SliverLease
from am.store.sessions import Repository, upsert_insert
from am.store.types import utcnow


class Leases(Repository):
    def acquire_lease(self, sliver_id: int, owner: str, job_id: int, ttl_s: float,
                      now: datetime | None = None) -> bool:
        """Take the sliver's lock for `owner`, or take over one whose lease expired (a crashed
        worker). False when another live owner holds it."""
        with self.write() as session:
            return self.take_lease(session, sliver_id, owner, job_id, ttl_s, now)

    @staticmethod
    def take_lease(session: Session, sliver_id: int, owner: str, job_id: int | None,
                   ttl_s: float, now: datetime | None = None) -> bool:
        """`acquire_lease` inside the caller's write transaction (a job claims the lease and
        marks itself running in one commit)."""
        now = now or utcnow()
        bind = session.get_bind()
        taken = session.connection().execute(_take_lease_stmt(bind.dialect.name), {
            "sliver": sliver_id, "owner": owner, "job": job_id, "now": now,
            "until": now + timedelta(seconds=ttl_s)})
        return taken.first() is not None

    @staticmethod
    def drop_lease(session: Session, sliver_id: int, owner: str) -> bool:
        """`release_lease` inside the caller's write transaction (a job records its outcome
        and lets go of the sliver in one commit). True if `owner` held it."""
        return session.connection().execute(_DROP_LEASE, {"sliver": sliver_id,
                                                          "owner": owner}).rowcount == 1

    @staticmethod
    def void_lease(session: Session, lease: SliverLease) -> None:
        """Delete a lease row loaded in the caller's transaction (its holder is gone), so the
        job can be retried without waiting for it to expire."""
        session.delete(lease)

    def renew_lease(self, sliver_id: int, owner: str, ttl_s: float) -> bool:
        now = utcnow()
        with self.write() as session:
            res = cast(CursorResult[Any], session.execute(
                update(SliverLease).where(SliverLease.sliver_id == sliver_id,
                                          SliverLease.owner == owner)
                .values(expires=now + timedelta(seconds=ttl_s))))
            session.execute(update(Job).where(Job.lease_owner == owner, Job.state == JobState.RUNNING)
                            .values(heartbeat=now))
            return res.rowcount == 1

    def release_lease(self, sliver_id: int, owner: str) -> None:
        with self.write() as session:
            session.execute(delete(SliverLease).where(SliverLease.sliver_id == sliver_id,
                                                      SliverLease.owner == owner))

    def lease_holder(self, sliver_id: int) -> tuple[str, datetime] | None:
        with self.read() as session:
            lease = session.get(SliverLease, sliver_id)
            return None if lease is None else (lease.owner, lease.expires)


_TAKE_LEASE: dict[str, Executable] = {}
# Core statements on the tables (not the mapped classes): the ORM's bulk-statement layer
# costs more CPU than SQLite takes to run them, and a worker runs these for every job.
_LEASES = SliverLease.__table__
_DROP_LEASE = delete(_LEASES).where(_LEASES.c.sliver_id == bindparam("sliver"),
                                    _LEASES.c.owner == bindparam("owner"))


def _take_lease_stmt(dialect: str) -> Executable:
    """The lease upsert, built once per dialect (a job runs it every time): insert, or take
    over a lease that expired or is already ours; a live lease of another owner matches
    neither and returns no row."""
    stmt = _TAKE_LEASE.get(dialect)
    if stmt is None:
        stmt = (upsert_insert(dialect)(_LEASES)
                .values(sliver_id=bindparam("sliver"), owner=bindparam("owner"),
                        job_id=bindparam("job"), expires=bindparam("until"))
                .on_conflict_do_update(
                    index_elements=[_LEASES.c.sliver_id],
                    set_={"owner": bindparam("owner"), "job_id": bindparam("job"),
                          "expires": bindparam("until")},
                    where=(_LEASES.c.expires <= bindparam("now"))
                    | (_LEASES.c.owner == bindparam("owner")))
                .returning(_LEASES.c.sliver_id))
        _TAKE_LEASE[dialect] = stmt
    return stmt

