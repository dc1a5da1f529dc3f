"""`geni-am rspec validate FILE [--type request|advertisement|manifest]`."""
from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    rspec = subparsers.add_parser("rspec", help="RSpec tools")
    sub = rspec.add_subparsers(dest="rspec_command", metavar="COMMAND")
    validate = sub.add_parser(
        "validate", help="validate an RSpec v3 document against the schemas and AM rules",
        description="Print OK (exit 0), or every problem with its line (exit 1). "
                    "Exit 2 if the file cannot be read.")
    validate.add_argument("file", metavar="FILE", help="RSpec file ('-' for standard input)")
    validate.add_argument("--type", dest="doc_type",
                          choices=("request", "advertisement", "manifest"),
                          help="required document type (default: the type it declares)")
    validate.add_argument("--max-bytes", type=_positive_int, default=None,
                          help="size limit (default 4 MiB, as the AM applies to requests)")
    validate.set_defaults(func=_validate)
    rspec.set_defaults(func=lambda args: (rspec.print_help(), 2)[1])


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of bytes: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive number of bytes, not {value}")
    return value


def _validate(args: argparse.Namespace) -> int:
    from rspec.validate import validate_document
    from rspec.xmlsafe import DEFAULT_MAX_BYTES

    try:
        if args.file == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(args.file, "rb") as fh:
                data = fh.read()
    except OSError as exc:
        print(f"geni-am rspec validate: cannot read {args.file}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    limit = args.max_bytes if args.max_bytes is not None else DEFAULT_MAX_BYTES
    problems = validate_document(data, args.doc_type, max_bytes=limit)
    if not problems:
        print("OK")
        return 0
    for problem in problems:
        print(f"{args.file}: {problem}")
    return 1
