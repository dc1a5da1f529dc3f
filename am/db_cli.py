"""`geni-am db`: schema migrations for operators (upgrades, and checks before and after).

`serve` and `worker` migrate on start; this command lets an operator upgrade a shared
PostgreSQL once, before rolling out new AM processes (docs/operator-guide.md).
"""
from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("db", help="database schema: upgrade, current, check")
    actions = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    for name, help_text in (("upgrade", "apply every pending migration"),
                            ("current", "print the schema revision and the newest known"),
                            ("check", "exit 1 unless the schema is at head and matches the models")):
        p = actions.add_parser(name, help=help_text)
        p.add_argument("--config", metavar="FILE", help="TOML settings file")
        p.add_argument("--database", metavar="URL", help="database URL (database_url)")
        p.add_argument("--state-dir", metavar="DIR", help="state directory (state_dir)")
        p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from am.config import load_settings
    from am.store import migrate as migrations
    from am.store.database import make_engine

    try:
        settings = load_settings(args.config, overrides={"database_url": args.database,
                                                         "state_dir": args.state_dir})
        url = settings.effective_database_url
        if url.startswith("sqlite:///"):
            settings.state_path.mkdir(parents=True, exist_ok=True)
        engine = make_engine(url)
    except (ValueError, OSError, SQLAlchemyError) as exc:   # ConfigError, StoreURLError
        print(f"geni-am db: {exc}", file=sys.stderr)
        return 2
    try:
        head = migrations.head_revision()
        if args.db_command == "upgrade":
            before = migrations.current_revision(engine)
            migrations.upgrade(engine)
            print(f"database {engine.url.render_as_string(hide_password=True)}: "
                  f"{before or 'empty'} -> {migrations.current_revision(engine)}")
            return 0
        current = migrations.current_revision(engine)
        print(f"current revision: {current or 'none (empty database)'}; newest: {head}")
        if args.db_command == "check":
            if current != head:
                print("schema is not at the newest revision: run `geni-am db upgrade`")
                return 1
            diff = migrations.schema_diff(engine)
            if diff:
                print(f"schema differs from the models in {len(diff)} place(s): {diff[:3]}")
                return 1
            print("OK")
        return 0
    except SQLAlchemyError as exc:
        print(f"geni-am db: database error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
