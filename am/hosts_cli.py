"""`geni-am hosts`: the site's hosts as the database sees them (docs/hosts.md).

One line per host: its state (up, down, unknown), its last heartbeat and how long ago, its
load and running jobs at that beat, the live slivers on its components, and the worker that
beat. Read-only: it asks no host anything (a down host cannot answer), only the database.
Exit status 0 when every host the inventory names is up, 1 otherwise (for monitoring), 2 on
a configuration or database error.
"""
from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hosts", help="list the site's hosts: state, last heartbeat, load",
                       description="List the hosts of a site of many hosts, from the "
                                   "heartbeats their `geni-am worker --host` processes write.")
    p.add_argument("--config", metavar="FILE", help="TOML settings file")
    p.add_argument("--database", metavar="URL", help="database URL (database_url)")
    p.add_argument("--inventory", metavar="FILE", help="site inventory (TOML)")
    p.add_argument("--state-dir", metavar="DIR", help="state directory (state_dir)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from am.config import ConfigError, load_settings
    from drivers.inventory import InventoryError, load_inventory

    try:
        settings = load_settings(args.config, overrides={
            "database_url": args.database, "inventory": args.inventory,
            "state_dir": args.state_dir})
        named = sorted(load_inventory(settings.inventory).hosts) if settings.inventory else []
    except (ConfigError, InventoryError, OSError, ValueError) as exc:
        print(f"geni-am hosts: {exc}", file=sys.stderr)
        return 2
    try:
        rows = _rows(settings, named)
    except SQLAlchemyError as exc:
        print(f"geni-am hosts: database error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no hosts: the inventory names none and no host worker has reported "
              "(a single-machine site)")
    else:
        _table(rows)
    return 0 if all(r["state"] == "up" for r in rows if r["name"] in named) else 1


def _rows(settings, named: list[str]) -> list[dict]:
    from am.store import open_store
    from am.store.hosts import HostRepository
    from am.store.types import utcnow

    store = open_store(settings.effective_database_url)
    try:
        views = HostRepository(store, down_after_s=settings.host_down_after_s).views(named)
        live = store.read_models.allocated_by_component()
    finally:
        store.close()
    now = utcnow()
    rows = []
    for name, view in views.items():
        rows.append({
            "name": name, "state": view.state,
            "in_inventory": name in named,
            "heartbeat": view.heartbeat.strftime("%Y-%m-%dT%H:%M:%SZ") if view.heartbeat else None,
            "age_s": round((now - view.heartbeat).total_seconds(), 1) if view.heartbeat else None,
            "load": round(view.load, 2), "running_jobs": view.running_jobs,
            "slivers": sum(live.get(c.lower(), 0) for c in view.components),
            "worker": view.worker})
    return rows


def _table(rows: list[dict]) -> None:
    head = ("HOST", "STATE", "LAST HEARTBEAT", "AGO", "LOAD", "JOBS", "SLIVERS", "WORKER")
    lines = [head]
    for r in rows:
        lines.append((r["name"] + ("" if r["in_inventory"] else " (not in inventory)"),
                      r["state"], r["heartbeat"] or "never",
                      "-" if r["age_s"] is None else f"{r['age_s']:g} s",
                      f"{r['load']:.2f}", str(r["running_jobs"]), str(r["slivers"]),
                      r["worker"] or "-"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())


__all__ = ["register", "run"]
