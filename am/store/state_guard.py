"""The database's own guard on a sliver's state columns: `sliver_transitions` lists every
legal (from, to) pair of (allocation state, operational state), derived from the table in
`am.states`, and a trigger on `slivers` (SQLite and PostgreSQL) refuses an UPDATE that changes
the pair to one not listed. So no write, not even raw SQL that bypasses `Transitions`, can
move a sliver where the state machine does not allow; a refused UPDATE is an IntegrityError
(PostgreSQL SQLSTATE 23514, SQLite a constraint failure) and nothing is written.

Writing a state to itself (a Renew, or an UPDATE of other columns) is always allowed. The
migration that creates the guard (0008) fills the table; `sync` (run by every `migrate`)
rewrites it from `am.states`, so a changed transition table reaches existing databases.

INSERTs are guarded the same way (migration 0010): `sliver_initial_states` lists the states a
new row may be written in, the state before Allocate (geni_unallocated) and the states one
event from it (Allocate's: the ORM writes a new row and its Allocate in one INSERT), and a
trigger refuses an INSERT in any other state, so no row is born provisioned or ready.
"""
from __future__ import annotations

from sqlalchemy import Connection, String, delete, insert, inspect, select
from sqlalchemy.orm import Mapped, mapped_column

from am import states
from am.store.models import Base

#: what an absent operational state (geni_unallocated) is stored as in the rule table
NO_OP = ""
TABLE = "sliver_transitions"
TRIGGER = "sliver_state_guard"
MESSAGE = "illegal sliver state transition"
INITIAL_TABLE = "sliver_initial_states"
INSERT_TRIGGER = "sliver_insert_guard"
INSERT_MESSAGE = "illegal initial sliver state"


class SliverTransition(Base):
    """One legal move of a sliver's (allocation, operational) state pair."""

    __tablename__ = TABLE
    __table_args__ = {"info": {"reference_data": True}}   # not emptied between tests

    from_alloc: Mapped[str] = mapped_column(String(32), primary_key=True)
    from_op: Mapped[str] = mapped_column(String(32), primary_key=True)
    to_alloc: Mapped[str] = mapped_column(String(32), primary_key=True)
    to_op: Mapped[str] = mapped_column(String(32), primary_key=True)


class SliverInitialState(Base):
    """A state a sliver row may be inserted in."""

    __tablename__ = INITIAL_TABLE
    __table_args__ = {"info": {"reference_data": True}}   # not emptied between tests

    alloc: Mapped[str] = mapped_column(String(32), primary_key=True)
    op: Mapped[str] = mapped_column(String(32), primary_key=True)


def initial_states() -> set[tuple[str, str]]:
    """(alloc, op) a new sliver row may have: `am.states.UNALLOCATED` and every state one
    event of `am.states.TRANSITIONS` leads to from it."""
    born = {_cols(states.UNALLOCATED)}
    for row in states.TRANSITIONS:
        if states.UNALLOCATED in row.sources:
            born |= {_cols(target) for target in row.targets or ()}
    return born


def stored_initial_states(conn: Connection) -> set[tuple[str, str]]:
    t = SliverInitialState.__table__
    return {tuple(r) for r in conn.execute(select(t.c.alloc, t.c.op))}


def legal_pairs() -> set[tuple[str, str, str, str]]:
    """(from_alloc, from_op, to_alloc, to_op) for every move `am.states.TRANSITIONS` allows
    that changes the state (a state to itself is always allowed by the trigger)."""
    pairs = set()
    for row in states.TRANSITIONS:
        for source in row.sources:
            for target in row.targets or (source,):
                if target != source:
                    pairs.add((*_cols(source), *_cols(target)))
    return pairs


def _cols(state: states.State) -> tuple[str, str]:
    return state[0].value, state[1].value if state[1] is not None else NO_OP


def stored_pairs(conn: Connection) -> set[tuple[str, str, str, str]]:
    t = SliverTransition.__table__
    return {tuple(r) for r in conn.execute(select(t.c.from_alloc, t.c.from_op, t.c.to_alloc,
                                                  t.c.to_op))}


def sync(conn: Connection) -> bool:
    """Make the rule tables exactly `legal_pairs()` and `initial_states()` (in the caller's
    transaction; the second only once its migration made it). True if either changed."""
    changed = False
    want, have = legal_pairs(), stored_pairs(conn)
    if want != have:
        t = SliverTransition.__table__
        conn.execute(delete(t))
        conn.execute(insert(t), [dict(zip(("from_alloc", "from_op", "to_alloc", "to_op"), p))
                                 for p in sorted(want)])
        changed = True
    if inspect(conn).has_table(INITIAL_TABLE):
        born, stored = initial_states(), stored_initial_states(conn)
        if born != stored:
            t = SliverInitialState.__table__
            conn.execute(delete(t))
            conn.execute(insert(t), [{"alloc": a, "op": o} for a, o in sorted(born)])
            changed = True
    return changed


def _matches(old: str, new: str) -> str:
    return (f"SELECT 1 FROM {TABLE} t WHERE t.from_alloc = {old}.allocation_state "
            f"AND t.from_op = COALESCE({old}.operational_state, '{NO_OP}') "
            f"AND t.to_alloc = {new}.allocation_state "
            f"AND t.to_op = COALESCE({new}.operational_state, '{NO_OP}')")


def create_trigger_sql(dialect: str) -> list[str]:
    """The statements that create the guard on `dialect` (sqlite or postgresql)."""
    if dialect == "postgresql":
        return [
            f"CREATE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF (NEW.allocation_state IS DISTINCT FROM OLD.allocation_state "
            "OR NEW.operational_state IS DISTINCT FROM OLD.operational_state) "
            f"AND NOT EXISTS ({_matches('OLD', 'NEW')}) THEN "
            f"RAISE EXCEPTION '{MESSAGE}: sliver % from %/% to %/%', OLD.id, "
            "OLD.allocation_state, OLD.operational_state, NEW.allocation_state, "
            "NEW.operational_state USING ERRCODE = 'check_violation'; "
            "END IF; RETURN NEW; END $$",
            f"CREATE TRIGGER {TRIGGER} BEFORE UPDATE OF allocation_state, operational_state "
            f"ON slivers FOR EACH ROW EXECUTE FUNCTION {TRIGGER}()",
        ]
    return [
        f"CREATE TRIGGER {TRIGGER} BEFORE UPDATE OF allocation_state, operational_state "
        "ON slivers FOR EACH ROW WHEN (NEW.allocation_state IS NOT OLD.allocation_state "
        "OR NEW.operational_state IS NOT OLD.operational_state) "
        f"AND NOT EXISTS ({_matches('OLD', 'NEW')}) "
        f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END",
    ]


def drop_trigger_sql(dialect: str, trigger: str = TRIGGER) -> list[str]:
    """The statements that drop `trigger` (and on PostgreSQL its function)."""
    if dialect == "postgresql":
        return [f"DROP TRIGGER IF EXISTS {trigger} ON slivers",
                f"DROP FUNCTION IF EXISTS {trigger}()"]
    return [f"DROP TRIGGER IF EXISTS {trigger}"]


def create_insert_trigger_sql(dialect: str) -> list[str]:
    """The statements that refuse an INSERT of a sliver in a state not in
    `sliver_initial_states`, on `dialect` (sqlite or postgresql)."""
    allowed = (f"SELECT 1 FROM {INITIAL_TABLE} t WHERE t.alloc = NEW.allocation_state "
               f"AND t.op = COALESCE(NEW.operational_state, '{NO_OP}')")
    if dialect == "postgresql":
        return [
            f"CREATE FUNCTION {INSERT_TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NOT EXISTS ({allowed}) THEN "
            f"RAISE EXCEPTION '{INSERT_MESSAGE}: sliver % in %/%', NEW.urn, "
            "NEW.allocation_state, NEW.operational_state USING ERRCODE = 'check_violation'; "
            "END IF; RETURN NEW; END $$",
            f"CREATE TRIGGER {INSERT_TRIGGER} BEFORE INSERT ON slivers FOR EACH ROW "
            f"EXECUTE FUNCTION {INSERT_TRIGGER}()",
        ]
    return [
        f"CREATE TRIGGER {INSERT_TRIGGER} BEFORE INSERT ON slivers FOR EACH ROW "
        f"WHEN NOT EXISTS ({allowed}) "
        f"BEGIN SELECT RAISE(ABORT, '{INSERT_MESSAGE}'); END",
    ]

