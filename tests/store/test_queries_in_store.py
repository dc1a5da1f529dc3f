"""Every query lives in a repository of am.store: no module outside am/store (and the
migrations) builds SQL or runs a statement. SQLAlchemy's exceptions, `Session` (as a type) and
URL parsing stay allowed; any other import from sqlalchemy, or a call of `.execute`,
`.scalars`, `.scalar` or `.query`, is a query outside its repository."""
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


def sql_outside_store(source: str) -> list[str]:
    """What in `source` builds or runs SQL (as "line: what")."""
    found = []
    for node in ast.walk(ast.parse(source)):
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
])
def test_the_check_sees_sql(source):
    assert sql_outside_store(source)


@pytest.mark.parametrize("source", [
    "from sqlalchemy.exc import IntegrityError, SQLAlchemyError",
    "from sqlalchemy.orm import Session",
    "from sqlalchemy.engine import make_url",
    "rows = store.read_models.failures(now, 10)",
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
    assert offenders == {}, "SQL outside am/store (move it into a repository): " + repr(offenders)
