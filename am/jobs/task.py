"""A job on one sliver while it runs, in the spirit of ironic's TaskManager for a node.

`SliverTask.claim` takes the sliver's lease and marks the job running in one transaction and
keeps what that read (spec, facts, state, driver kind); `heartbeat()` renews the lease while the
driver works; the outcome methods record what the driver did, each in the job's last
transaction, which also drops the lease (`close()` releases it if none committed).

Every outcome goes through ONE decision function, `decide`: given the sliver's state, the event
that ends the job's action and the state the driver reported, it says what the sliver and the
job become. A task applies that decision in one of two ways, which can never disagree: a
conditional UPDATE on the state it knows from its claim (the hot path, no ORM load), or, when
the sliver moved meanwhile, on the locked, freshly loaded row.
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator

from sqlalchemy.orm import Session

from am import states
from am.states import Event, JobState, Op
from am.store import Sliver, Store, pending, spec_from_dict
from am.store.retry import retry_transient
from drivers.base import OperationalState, ProvisionResult, SliverSpec

PROVISIONING = (states.Alloc.PROVISIONED, Op.PENDING_ALLOCATION)
CONFIGURING = (states.Alloc.PROVISIONED, Op.CONFIGURING)


class RetryableJobError(Exception):
    """Transient: try the job again later (driver hiccup, or another worker holds the sliver)."""


class JobNotFound(LookupError):
    pass


#: Seconds between two looks at a sliver whose start is under way on the substrate.
DEFAULT_POLL_S = 0.3
#: Job actions whose driver may answer "under way" (their waiting state): the job then polls.
POLLED_ACTIONS = ("start", "restart")


class PollLater(Exception):
    """The job's action is under way on the substrate (a VM booting): the driver started it
    and reported the action's waiting state. The job is queued again with its lease dropped
    (the sliver stays in its waiting state, an open job still works on it) and should be run
    again after `delay_s`; that run asks the driver once more (`perform(geni_start)` on a
    booting sliver reports its progress) and records ready, or failed with the driver's
    reason. A poll is not an attempt: it does not count against `max_attempts`. The queue's
    worker sends the re-run (`am.jobs.tasks`); if that message is lost, the reconciler
    re-sends the queued job after its grace."""

    def __init__(self, job_id: int, delay_s: float = DEFAULT_POLL_S):
        super().__init__(f"job {job_id}: under way on the substrate; look again in {delay_s} s")
        self.job_id, self.delay_s = job_id, delay_s


class AlreadyFinished(Exception):
    """Raised inside the claiming transaction to roll it back: the job is done or failed."""


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one driver result does: the sliver moves by `event` (to `target`), or stays where
    it is (`event` None); the job becomes `job` with `note` as its error (and, for a failure,
    the sliver's geni_error)."""

    event: Event | None
    target: states.State | None
    job: str
    note: str = ""


def decide(current: states.State, done: Event, reported: states.State, *, failed: Event,
           failure: str, expect: states.State | None = None) -> Outcome:
    """THE decision for a finished driver call. `done` is the event that ends the action
    (PROVISION_DONE, START_DONE, UPDATE_DONE, ...), `reported` the state the driver left the
    sliver in; a sliver no longer in `expect` (or where `done` cannot apply) moved meanwhile
    and is left alone; a report `done` cannot lead to fails the sliver by `failed`, with
    `failure` (formatted with the reported operational state) as the cause."""
    if (expect is not None and current != expect) or not states.allowed(current, done):
        return Outcome(None, None, JobState.DONE,
                       f"sliver became {states.format_state(current)} meanwhile")
    if reported in states.targets(done):
        return Outcome(done, reported, JobState.DONE)
    return Outcome(failed, None, JobState.FAILED,
                   failure.format(state=reported[1].value if reported[1] else None))


def as_target(reported: OperationalState) -> states.State:
    return (states.Alloc.PROVISIONED, Op(OperationalState(reported).value))


@dataclasses.dataclass(frozen=True)
class Claimed:
    """What the claiming transaction read, so nothing is read twice."""

    action: str
    attempts: int
    args: dict
    spec: SliverSpec
    driver_kind: str
    facts: dict
    shut_down: bool
    state: states.State
    urn: str
    pending: dict | None = None


@dataclasses.dataclass
class HeldLease:
    """The sliver lease a running job holds. The job's last transaction drops it together with
    the outcome (`drop`); the task releases it on its own only if that never committed."""

    sliver_id: int
    owner: str
    released: bool = False

    def drop(self, store: Store, session: Session) -> None:
        store.leases.drop_lease(session, self.sliver_id, self.owner)


class SliverTask:
    """One job on one sliver, from its claim to its recorded outcome."""

    def __init__(self, store: Store, job_id: int, lease: HeldLease, claimed: Claimed):
        self.store, self.job_id, self.lease, self.claimed = store, job_id, lease, claimed

    # ---- claim and lease -------------------------------------------------------------------
    @classmethod
    def claim(cls, store: Store, job_id: int, worker_id: str, lease_s: float, *,
              lease_taken: Callable[[Session, int, int], None]) -> "SliverTask":
        """One write transaction: the job marked running, the sliver's lease taken
        (`lease_taken(session, sliver_id, job_id)` takes it, or raises RetryableJobError),
        and the sliver, spec and slice read. Raises AlreadyFinished, or what `lease_taken` and
        the store raise; everything is rolled back then."""
        return _claim(cls, store, job_id, worker_id, lease_s, lease_taken)

    def close(self) -> None:
        """Release the lease if no outcome transaction dropped it (the job raised)."""
        if not self.lease.released:
            self.store.leases.release_lease(self.lease.sliver_id, self.lease.owner)

    # ---- outcomes (each the job's last transaction unless it says otherwise) -------------
    @retry_transient()
    def provisioned(self, result: ProvisionResult, facts: dict, *,
                    then_start: bool = False) -> bool:
        """Record the provision result. With `then_start` and a sliver that came up
        geni_notready, move it on to geni_configuring (event start), keep the lease and return
        True: the caller starts it. Otherwise this is the job's last transaction."""
        values = {"facts": facts, "resource_status": result.resource_status}
        starting = False
        with self.store.write() as session:
            outcome, sliver = self._record(
                session, self.claimed.state, as_target(result.state), Event.PROVISION_DONE,
                failed=Event.PROVISION_FAILED, expect=PROVISIONING, values=values,
                failure="driver reported {state} after provisioning", mark=False)
            if (then_start and outcome.event is Event.PROVISION_DONE
                    and outcome.target is not None and outcome.target[1] is Op.NOTREADY):
                if sliver is None:
                    moved = self.store.transition_if(session, self.lease.sliver_id,
                                                     outcome.target, Event.START, error="")
                    if moved is None:   # cannot happen under our lease; decide on the row
                        sliver = self.store.jobs.lock_sliver(session, self.lease.sliver_id)
                if sliver is not None:
                    self.store.transition(session, sliver, Event.START, error="")
                starting = True
            else:
                self.store.jobs.mark(session, self.job_id, outcome.job, outcome.note)
                self.lease.drop(self.store, session)
        if not starting:
            self.lease.released = True
        return starting

    @retry_transient()
    def acted(self, action: str, reported: OperationalState, *, known: states.State | None,
              facts: dict | None = None) -> None:
        """Record an action's outcome (and the sliver's new `facts`, if given: the logins
        after geni_update_users). `known`: the sliver's state as this job last read or wrote
        it under its lease (None: load it)."""
        geni = states.JOB_ACTIONS[action].geni or action
        with self._outcome_tx() as session:
            self._record(session, known, as_target(reported), states.JOB_ACTIONS[action].finish,
                         failed=Event.ACTION_FAILED, failure=f"{geni}: driver reported {{state}}",
                         values=None if facts is None else {"facts": facts},
                         on_row=None if facts is None else _merge_logins(facts))

    @retry_transient()
    def updated(self, result: ProvisionResult, facts: dict) -> None:
        """The driver reconfigured the sliver: its pending spec becomes its spec (reservations
        shrink to what the new spec needs) and it leaves geni_configuring."""
        with self._outcome_tx() as session:
            sliver = self.store.jobs.lock_sliver(session, self.lease.sliver_id)
            current = states.as_state(sliver.allocation_state, sliver.operational_state)
            if not sliver.pending:
                outcome = Outcome(None, None, JobState.DONE,
                                  f"sliver became {states.format_state(current)} meanwhile")
            else:
                outcome = decide(current, Event.UPDATE_DONE, as_target(result.state),
                                 failed=Event.ACTION_FAILED, expect=CONFIGURING,
                                 failure="update: driver reported {state}")
            if outcome.event is Event.UPDATE_DONE:
                pending.commit(session, self.store, sliver, facts, result.resource_status)
            self._apply(session, sliver, outcome)

    @retry_transient()
    def failed(self, action: str, error: str) -> None:
        """Permanent failure: the job fails and the sliver (if still in the job's state) goes
        to geni_failed with the cause as geni_error."""
        with self._outcome_tx() as session:
            # a delete's sliver is already unallocated (the reconciler frees leaked substrate)
            if action != "delete":
                sliver = self.store.jobs.lock_sliver(session, self.lease.sliver_id)
                current = states.as_state(sliver.allocation_state, sliver.operational_state)
                # a provision-and-start job may fail in either half
                for event in (Event.PROVISION_FAILED, Event.ACTION_FAILED):
                    if states.allowed(current, event):
                        self.store.transition(session, sliver, event, error=error)
                        break
            self.store.jobs.mark(session, self.job_id, JobState.FAILED, error)

    def poll_again(self, args: dict) -> None:
        """The driver started the action and it is under way (a VM booting): queue the job
        again as a poll (its args say so, the attempt is given back, the lease dropped) and
        raise PollLater for the worker to re-send it."""
        self._queue_poll({**args, "poll": True})
        raise PollLater(self.job_id)

    @retry_transient()
    def _queue_poll(self, args: dict) -> None:
        with self._outcome_tx() as session:
            self.store.jobs.queue_poll(session, self.job_id, args)

    @retry_transient()
    def requeue(self, error: str) -> None:
        """A transient failure: the job goes back to queued (the queue retries it later)."""
        with self._outcome_tx() as session:
            self.store.jobs.mark(session, self.job_id, JobState.QUEUED, error, lease_owner=None)

    @retry_transient()
    def finish(self, *, failed: bool = False, error: str = "", note: str = "") -> None:
        """The job ends without a driver result to record (skipped, unknown action, delete)."""
        with self._outcome_tx() as session:
            self.store.jobs.mark(session, self.job_id,
                                 JobState.FAILED if failed else JobState.DONE, error or note)

    # ---- the one way an outcome is written ---------------------------------------------------
    def _record(self, session: Session, known: states.State | None, reported: states.State,
                done: Event, *, failed: Event, failure: str, expect: states.State | None = None,
                values: dict | None = None, on_row: Callable[[Sliver], None] | None = None,
                mark: bool = True) -> tuple[Outcome, Sliver | None]:
        """`decide` on the state this task knows and apply it with one conditional UPDATE; if
        the sliver moved meanwhile (or nothing is known), decide again on the locked row and
        apply that. `values` go with the state on either path (`on_row`, if given, writes
        them on the loaded row instead). Returns the outcome applied and the row, if loaded."""
        if known is not None:
            outcome = decide(known, done, reported, failed=failed, failure=failure,
                             expect=expect)
            if outcome.event is not None and self.store.transition_if(
                    session, self.lease.sliver_id, known, outcome.event, outcome.target,
                    error=outcome.note, values=values) is not None:
                if mark:
                    self.store.jobs.mark(session, self.job_id, outcome.job, outcome.note)
                return outcome, None
        sliver = self.store.jobs.lock_sliver(session, self.lease.sliver_id)
        if on_row is not None:
            on_row(sliver)
        else:
            for column, value in (values or {}).items():
                setattr(sliver, column, value)
        current = states.as_state(sliver.allocation_state, sliver.operational_state)
        outcome = decide(current, done, reported, failed=failed, failure=failure, expect=expect)
        self._apply(session, sliver, outcome, mark=mark)
        return outcome, sliver

    def _apply(self, session: Session, sliver: Sliver, outcome: Outcome, *,
               mark: bool = True) -> None:
        if outcome.event is not None:
            self.store.transition(session, sliver, outcome.event, outcome.target,
                                  error=outcome.note)
        if mark:
            self.store.jobs.mark(session, self.job_id, outcome.job, outcome.note)

    @contextlib.contextmanager
    def _outcome_tx(self) -> Iterator[Session]:
        """The job's last transaction: whatever the block records, and the lease dropped with
        it (so the outcome and the unlock commit together)."""
        with self.store.write() as session:
            yield session
            self.lease.drop(self.store, session)
        self.lease.released = True


def _merge_logins(facts: dict) -> Callable[[Sliver], None]:
    def merge(sliver: Sliver) -> None:
        sliver.facts = {**(sliver.facts or {}), "logins": facts["logins"]}
    return merge


@retry_transient()
def _claim(cls: type[SliverTask], store: Store, job_id: int, worker_id: str, lease_s: float,
           lease_taken: Callable[[Session, int, int], None]) -> SliverTask:
    with store.write() as session:
        # the job row first: on PostgreSQL that waits for (and then sees) a concurrent worker
        # finishing the same job, whose outcome and lease release commit together
        row = store.jobs.claim(session, job_id, worker_id)
        if row is None:
            if not store.jobs.exists(session, job_id):
                raise JobNotFound(f"no job {job_id}")
            raise AlreadyFinished
        sliver_id, action, attempts, args = row
        lease_taken(session, sliver_id, job_id)
        sliver = store.jobs.sliver_for_job(session, sliver_id)
        spec = spec_from_dict(sliver.spec)
        users = store.keys.user_keys(session, sliver.slice_id)
        claimed = Claimed(
            action=action, attempts=attempts, args=dict(args or {}),
            spec=dataclasses.replace(spec, users=users) if users else spec,
            driver_kind=sliver.driver, facts=dict(sliver.facts or {}),
            shut_down=bool(sliver.shutdown),
            state=states.as_state(sliver.allocation_state, sliver.operational_state),
            urn=sliver.urn, pending=sliver.pending)
    return cls(store, job_id, HeldLease(sliver_id, worker_id), claimed)

