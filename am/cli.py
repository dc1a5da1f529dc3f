"""The `geni-am` command: one entry point, subcommands contributed by the packages.

Each module in COMMAND_MODULES exposes `register(subparsers)`, adding its subcommands with
`set_defaults(func=handler)`; a handler takes the parsed namespace and returns an exit status.
Modules import their heavy dependencies inside the handlers, so `geni-am --help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMAND_MODULES: tuple[str, ...] = (
    "credentials.cli",   # authority ..., credential verify
    "rspec.cli",         # rspec validate
    "am.commands",       # serve
    "am.worker_cli",     # worker
    "am.client_cli",     # client (AM API v3 client)
    "am.db_cli",         # db upgrade|current|check
    "am.hosts_cli",      # hosts (a site of many hosts)
    "am.site.cli",       # site check|down
    "drivers.images.cli",  # image build|list|show|delete|verify
    "drivers.xen.calibrate_cli",  # calibrate forwarding
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geni-am", description="GENI aggregate manager (AM API v3 and v2).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue   # that part of the AM is not installed yet
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
