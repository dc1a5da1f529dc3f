"""Job rows: queueing, claiming, marking (guarded by the job state table in `am.states`), and
the queries of the runner and the reconciler over jobs and the slivers they work on."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from am import states
from am.states import Alloc, JobState
from am.store.models import Job, Slice, Sliver, SliverLease
from am.store.sessions import Repository
from am.store.types import utcnow


class IllegalJobTransition(RuntimeError):
    """A job state write that `am.states.JOB_TRANSITIONS` does not allow (e.g. reopening a
    finished job)."""


_KEEP = object()

_JOB_COMPONENTS = (select(Job.id, Sliver.component_id)
                   .join(Sliver, Sliver.id == Job.sliver_id)
                   .where(Job.id.in_(bindparam("ids", expanding=True))))


class Jobs(Repository):
    def add_job(self, session: Session, sliver: Sliver, action: str,
                args: Mapping | None = None, *, flush: bool = True) -> Job:
        """Queue a job row. `flush=False` leaves the INSERT to the caller's next flush, so a
        request queueing a job per sliver writes them all in one multi-row statement (read
        the ids after that flush)."""
        job = Job(sliver_id=sliver.id, action=action, state=JobState.QUEUED, attempts=0,
                  args=dict(args or {}))
        session.add(job)
        if flush:
            session.flush()
        return job

    @staticmethod
    def add_jobs(session: Session, sliver_ids: Sequence[int], action: str) -> list[int]:
        """Queue one `action` job per sliver in multi-row INSERTs (no ORM objects); returns
        the job ids (in no particular order)."""
        if not sliver_ids:
            return []
        now = utcnow()
        table = Job.__table__
        result = session.connection().execute(
            insert(table).returning(table.c.id),
            [{"sliver_id": sid, "action": action, "state": JobState.QUEUED, "attempts": 0,
              "args": {}, "created": now, "updated": now} for sid in sliver_ids])
        return [row[0] for row in result]

    # ---- the runner's statements --------------------------------------------------------
    @staticmethod
    def claim(session: Session, job_id: int, owner: str) -> Row | None:
        """Mark a queued (or interrupted running) job running for `owner`, one more attempt:
        (sliver_id, action, attempts, args), or None if it is finished or missing."""
        return session.connection().execute(_CLAIM_JOB, {"job": job_id, "owner": owner,
                                                         "now": utcnow()}).first()

    @staticmethod
    def get_job(session: Session, job_id: int) -> Job | None:
        """The job row (an ORM object: the reconciler changes it in place), None if missing."""
        return session.get(Job, job_id)

    @staticmethod
    def exists(session: Session, job_id: int) -> bool:
        return session.scalar(select(Job.id).where(Job.id == job_id)) is not None

    @staticmethod
    def sliver_for_job(session: Session, sliver_id: int) -> Row:
        """What a job reads of its sliver and slice: spec, driver, facts, states, urn,
        slice_id, shutdown, pending."""
        return session.connection().execute(_SLIVER_FOR_JOB, {"sliver": sliver_id}).one()

    @staticmethod
    def lease_owner(session: Session, sliver_id: int) -> str | None:
        return session.scalar(select(SliverLease.owner).where(SliverLease.sliver_id == sliver_id))

    @staticmethod
    def lock_sliver(session: Session, sliver_id: int) -> Sliver:
        """The sliver, loaded fresh and locked (FOR UPDATE) in the caller's transaction."""
        return session.scalars(_LOCK_SLIVER, {"sliver": sliver_id}).one()

    @staticmethod
    def mark(session: Session, job_id: int, state: str, error: str = "", *,
             lease_owner: object = _KEEP) -> None:
        """Set the job's state (one prepared UPDATE, no ORM load), guarded by the job table:
        the UPDATE only matches a row in a state that may move to `state`."""
        params = {"job": job_id, "state": state, "error": error, "now": utcnow()}
        if lease_owner is _KEEP:
            result = session.connection().execute(_MARK_JOB[state], params)
        else:
            result = session.connection().execute(_MARK_JOB_OWNER[state],
                                                  {**params, "owner": lease_owner})
        if result.rowcount != 1:
            raise IllegalJobTransition(f"job {job_id} cannot become {state} from where it is")

    @staticmethod
    def queue_poll(session: Session, job_id: int, args: Mapping) -> None:
        """A running job handed back as a readiness poll: queued, unowned, its attempt given
        back, `args` as given (they say it is a poll)."""
        result = session.connection().execute(_POLL_JOB, {"job": job_id, "now": utcnow(),
                                                          "args": dict(args)})
        if result.rowcount != 1:
            raise IllegalJobTransition(f"job {job_id} cannot be queued again from where it is")

    # ---- the reconciler's queries -------------------------------------------------------
    def components_of(self, job_ids: Sequence[int]) -> list[tuple[int, str]]:
        """(job id, its sliver's component URN) for these jobs (the router's one query)."""
        with self.read() as session:
            return [(r[0], r[1]) for r in session.execute(_JOB_COMPONENTS, {"ids": list(job_ids)})]

    @staticmethod
    def running_with_leases(session: Session) -> list[tuple[Job, SliverLease | None]]:
        """Running jobs and their sliver's lease (None if there is none)."""
        return [(job, lease) for job, lease in session.execute(
            select(Job, SliverLease).outerjoin(SliverLease, SliverLease.sliver_id == Job.sliver_id)
            .where(Job.state == JobState.RUNNING)).all()]

    @staticmethod
    def queued_before(session: Session, before: datetime) -> list[Job]:
        """Queued jobs last touched before `before` (nobody picked them up)."""
        return list(session.scalars(select(Job).where(Job.state == JobState.QUEUED,
                                                      Job.updated <= before)))

    @staticmethod
    def attempts(session: Session, job_ids: Sequence[int]) -> dict[int, int]:
        return dict(session.execute(select(Job.id, Job.attempts)
                                    .where(Job.id.in_(list(job_ids)))).all())

    @staticmethod
    def slivers_waiting_without_job(session: Session, since: datetime) -> list[Sliver]:
        """Provisioned slivers in a transient (job-driven) state since before `since` with no
        queued or running job: locked, for the reconciler to fail."""
        waiting = sorted(op.value for op in states.TRANSIENT)   # a job works on each of these
        open_jobs = select(Job.sliver_id).where(Job.state.in_((JobState.QUEUED,
                                                               JobState.RUNNING)))
        return list(session.scalars(
            select(Sliver).where(Sliver.allocation_state == Alloc.PROVISIONED.value,
                                 Sliver.operational_state.in_(waiting),
                                 Sliver.updated <= since,
                                 Sliver.id.not_in(open_jobs))
            .with_for_update()))


# The job body's statements, built once and on the tables (Core), not the mapped classes:
# constructing a statement and going through the ORM's statement layer cost more CPU than
# SQLite takes to run them, and a worker runs these hundreds of times a second.
_JOBS, _SLIVERS, _SLICES = Job.__table__, Sliver.__table__, Slice.__table__
_CLAIM_JOB = (
    update(_JOBS).where(_JOBS.c.id == bindparam("job"),
                        _JOBS.c.state.in_((JobState.QUEUED, JobState.RUNNING)))
    .values(state=JobState.RUNNING, attempts=_JOBS.c.attempts + 1,
            lease_owner=bindparam("owner"), heartbeat=bindparam("now"), updated=bindparam("now"))
    .returning(_JOBS.c.sliver_id, _JOBS.c.action, _JOBS.c.attempts, _JOBS.c.args))
_SLIVER_FOR_JOB = (
    select(_SLIVERS.c.spec, _SLIVERS.c.driver, _SLIVERS.c.facts, _SLIVERS.c.allocation_state,
           _SLIVERS.c.operational_state, _SLIVERS.c.urn, _SLIVERS.c.slice_id,
           _SLICES.c.shutdown, _SLIVERS.c.pending)
    .join(_SLICES, _SLICES.c.id == _SLIVERS.c.slice_id)
    .where(_SLIVERS.c.id == bindparam("sliver")))
#: new job state -> its UPDATE, matching only a row in a state the job table lets move there
_MARK_JOB = {new: (update(_JOBS).where(_JOBS.c.id == bindparam("job"),
                                       _JOBS.c.state.in_(states.job_sources(new)))
                   .values(state=bindparam("state"), error=bindparam("error"),
                           heartbeat=bindparam("now"), updated=bindparam("now")))
             for new in states.JOB_TRANSITIONS}
_MARK_JOB_OWNER = {new: stmt.values(lease_owner=bindparam("owner"))
                   for new, stmt in _MARK_JOB.items()}
#: a running job handed back as a readiness poll: queued, unowned, its attempt given back
_POLL_JOB = (
    update(_JOBS).where(_JOBS.c.id == bindparam("job"), _JOBS.c.state == JobState.RUNNING)
    .values(state=JobState.QUEUED, lease_owner=None, attempts=_JOBS.c.attempts - 1,
            args=bindparam("args", type_=_JOBS.c.args.type),
            error="under way on the substrate; looking again shortly",
            heartbeat=bindparam("now"), updated=bindparam("now")))
_LOCK_SLIVER = (select(Sliver).where(Sliver.id == bindparam("sliver")).with_for_update()
                .execution_options(populate_existing=True))
