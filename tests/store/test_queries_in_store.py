"""Every query lives in a repository of am.store: no module outside am/store (and the
migrations) builds SQL, runs a statement or works the ORM session. SQLAlchemy's exceptions,
`Session` (as a type) and URL parsing stay allowed; any other import from sqlalchemy, a call of
`.execute`, `.scalars`, `.scalar` or `.query` on anything, or a call of an ORM session method
(`get`, `add`, `delete`, `flush`, ...) on a session, is database work outside its repository.

A session is a name called `session`, a parameter annotated `Session`, or what a `with
x.read()` / `x.write()` / `x.begin()` block binds; the store's repositories have a method for
each of these (`store.flush`, `store.slices.add_sliver`, `store.jobs.get_job`, ...)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: where SQL belongs
OWNERS = ("am/store/", "am/migrations/")
#: what may still be imported from sqlalchemy elsewhere: errors, the Session type, URLs
ALLOWED = {"sqlalchemy.exc": None, "sqlalchemy.orm": {"Session"},
           "sqlalchemy.orm.exc": None, "sqlalchemy.engine": {"make_url", "URL"}}
RUNS_SQL = {"execute", "scalars", "scalar", "query"}
#: ORM session methods that read or write rows (or send pending writes)
SESSION_CALLS = {"get", "add", "add_all", "delete", "flush", "merge", "refresh", "expunge",
                 "get_one", "bulk_save_objects", "bulk_insert_mappings", "bulk_update_mappings",
                 "connection"}
#: methods whose `with ... as name` binds a session
OPENS_SESSION = {"read", "write", "begin", "begin_nested"}


def _session_names(tree: ast.AST) -> set[str]:
    """The names that hold a session in this module (over-approximated: any scope)."""
    names = {"session"}
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            note = node.annotation
            text = note.value if isinstance(note, ast.Constant) else ast.unparse(note)
            if isinstance(text, str) and text.split("[")[0].split(".")[-1] == "Session":
                names.add(node.arg)
        elif isinstance(node, ast.withitem) and isinstance(node.optional_vars, ast.Name):
            call = node.context_expr
            if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                    and call.func.attr in OPENS_SESSION):
                names.add(node.optional_vars.id)
    return names


def _receiver(node: ast.expr) -> str | None:
    """`session` of `session.add(...)` and of `self.session.add(...)`."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def sql_outside_store(source: str) -> list[str]:
    """What in `source` builds or runs SQL (as "line: what")."""
    found = []
    tree = ast.parse(source)
    sessions = _session_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names
                      if a.name.split(".")[0] == "sqlalchemy" and a.name not in ALLOWED]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlalchemy":
            allowed = ALLOWED.get(node.module, set())
            found += [f"{node.lineno}: from {node.module} import {a.name}" for a in node.names
                      if node.module not in ALLOWED or (allowed is not None and a.name not in allowed)]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in RUNS_SQL):
            found.append(f"{node.lineno}: .{node.func.attr}(...)")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in SESSION_CALLS and _receiver(node.func.value) in sessions):
            found.append(f"{node.lineno}: {_receiver(node.func.value)}.{node.func.attr}(...)")
    return found


@pytest.mark.parametrize("source", [
    "from sqlalchemy import select",
    "from sqlalchemy import func, select\nx = 1",
    "def f():\n    from sqlalchemy import text\n",
    "import sqlalchemy as sa",
    "from sqlalchemy.sql import update",
    "from sqlalchemy.orm import aliased",
    "rows = session.execute(stmt).all()",
    "n = session.scalar(stmt)",
    "job = session.get(Job, 3)",
    "session.add(row)",
    "session.delete(lease)",
    "session.flush()",
    "self.session.flush()",
    "def f(s: Session):\n    s.add(row)",
    "def f(s: 'Session'):\n    s.flush()",
    "with store.write() as tx:\n    tx.delete(row)",
])
def test_the_check_sees_sql(source):
    assert sql_outside_store(source)


@pytest.mark.parametrize("source", [
    "from sqlalchemy.exc import IntegrityError, SQLAlchemyError",
    "from sqlalchemy.orm import Session",
    "from sqlalchemy.engine import make_url",
    "rows = store.read_models.failures(now, 10)",
    "job = store.jobs.get_job(session, 3)",
    "store.flush(session)",
    "name = options.get('name')",
    "seen.add(cid)",
    "with store.write() as session:\n    store.slices.add_sliver(session, row)",
])
def test_the_check_allows_what_is_not_sql(source):
    assert sql_outside_store(source) == []


def test_no_query_outside_the_store_repositories():
    offenders = {}
    for path in sorted((REPO / "am").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith(OWNERS):
            continue
        found = sql_outside_store(path.read_text(encoding="utf-8"))
        if found:
            offenders[rel] = found
    assert offenders == {}, "SQL or ORM session calls outside am/store (move them into a repository): " + repr(offenders)
