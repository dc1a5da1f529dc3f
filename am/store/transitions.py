"""The state machine's only writer: every change of a sliver's allocation or operational state
goes through `Transitions` (the table in `am.states`; the database refuses any other move:
`am.store.state_guard`)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import Update, bindparam, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from am import states
from am.states import Alloc, Event, State
from am.store.errors import StoreError
from am.store.models import Sliver
from am.store.sessions import CHUNK, Repository, chunks, mark_usage_changed
from am.store.types import utcnow


class Transitions(Repository):
    def transition(self, session: Session, sliver: Sliver, event: Event,
                   target: State | None = None, *, error: str | None = None,
                   flush: bool = True) -> State:
        """Move `sliver` by `event` as the table in am.states allows, or raise
        IllegalTransition (a GeniError) and change nothing. `flush=False` leaves the UPDATE to
        the caller's next flush (a request moving many slivers writes them together)."""
        current = states.as_state(sliver.allocation_state, sliver.operational_state)
        new = states.next_state(current, event, target, subject=f"sliver {sliver.urn}")
        if (current[0] is Alloc.UNALLOCATED) != (new[0] is Alloc.UNALLOCATED):
            mark_usage_changed(session)   # the set of live slivers (usage) changes
        sliver.allocation_state = new[0].value
        sliver.operational_state = new[1].value if new[1] is not None else None
        if error is not None:
            sliver.error = error
        if flush:
            session.flush()
        return new

    def transition_many(self, session: Session, rows: Sequence[Sliver], event: Event) -> None:
        """`transition` by `event` for many loaded (and locked) slivers at once: every move is
        checked by the state machine first (IllegalTransition for the first refused, nothing
        written), then one UPDATE per chunk of slivers sharing a (from, to) pair of states
        instead of one per sliver. The loaded objects are kept in step with what was written.
        A Delete of 10,000 slivers is then a handful of statements."""
        groups: dict[tuple[State, State], list[Sliver]] = {}
        for row in rows:
            current = states.as_state(row.allocation_state, row.operational_state)
            new = states.next_state(current, event, None, subject=f"sliver {row.urn}")
            groups.setdefault((current, new), []).append(row)
        if any((old[0] is Alloc.UNALLOCATED) != (new[0] is Alloc.UNALLOCATED)
               for old, new in groups):
            mark_usage_changed(session)
        session.flush()   # the caller's pending changes first, in the usual order
        table, now = Sliver.__table__, utcnow()
        for (old, new), members in groups.items():
            op_was = (table.c.operational_state.is_(None) if old[1] is None
                      else table.c.operational_state == old[1].value)
            op_new = new[1].value if new[1] is not None else None
            for chunk in chunks(members, CHUNK):
                done = session.connection().execute(
                    update(table)
                    .where(table.c.id.in_([r.id for r in chunk]),
                           table.c.allocation_state == old[0].value, op_was)
                    .values(allocation_state=new[0].value, operational_state=op_new,
                            version=table.c.version + 1, updated=now)).rowcount
                if done != len(chunk):
                    raise StoreError(f"{len(chunk) - done} sliver(s) changed under a locked "
                                     f"{event.value}")
            for row in members:
                set_committed_value(row, "allocation_state", new[0].value)
                set_committed_value(row, "operational_state", op_new)
                set_committed_value(row, "version", row.version + 1)
                set_committed_value(row, "updated", now)

    def transition_if(self, session: Session, sliver_id: int, expected: State, event: Event,
                      target: State | None = None, *, error: str | None = None,
                      values: Mapping[str, object] | None = None) -> State | None:
        """`transition` for a sliver the caller has not loaded: one conditional UPDATE that
        moves it by `event` only if it is still in `expected` (the state the caller read under
        its lease), together with the column `values` given. Returns the new state, or None
        (nothing changed) when the row has moved on meanwhile: the caller then loads it and
        decides with `transition`. Illegal moves raise IllegalTransition, as `transition` does.

        This is the job runner's hot path: no ORM load, flush or identity map, and the
        compare-and-set on the state is also the lock (PostgreSQL re-checks the WHERE after
        waiting for a concurrent writer of the row)."""
        if expected[1] is None:
            return None
        new = states.next_state(expected, event, target, subject=f"sliver {sliver_id}")
        if (expected[0] is Alloc.UNALLOCATED) != (new[0] is Alloc.UNALLOCATED):
            mark_usage_changed(session)
        params: dict[str, object] = {
            "sliver": sliver_id, "from_alloc": expected[0].value, "from_op": expected[1].value,
            "allocation_state": new[0].value,
            "operational_state": new[1].value if new[1] is not None else None,
            **({"error": error} if error is not None else {}), **(values or {})}
        keys = tuple(sorted(k for k in params if k in _SETTABLE))
        stmt = _CAS_SLIVER.get(keys)
        if stmt is None:
            unknown = set(values or ()) - _SETTABLE
            if unknown:
                raise ValueError(f"transition_if cannot set {sorted(unknown)}")
            table = Sliver.__table__
            stmt = (update(table)
                    .where(table.c.id == bindparam("sliver"),
                           table.c.allocation_state == bindparam("from_alloc"),
                           table.c.operational_state == bindparam("from_op"))
                    .values({**{k: bindparam(k) for k in keys},
                             "version": table.c.version + 1, "updated": bindparam("now")}))
            _CAS_SLIVER[keys] = stmt
        params["now"] = utcnow()
        if session.connection().execute(stmt, params).rowcount != 1:
            return None
        return new


#: Columns `transition_if` may set beside the state; the statement per set of keys, built once.
_SETTABLE = frozenset({"allocation_state", "operational_state", "error", "resource_status",
                       "facts"})
_CAS_SLIVER: dict[tuple[str, ...], Update] = {}
