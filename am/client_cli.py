"""`geni-am client ...`: the AM API v3 client on the command line.

Exit status: 0 success; 1 the AM refused the call (non-zero geni_code), or `wait` saw a sliver
fail; 2 local problems (files, config, TLS, transport) and `wait` timeouts or errors.
"""
from __future__ import annotations

import argparse
import re
import sys
import xmlrpc.client
from datetime import datetime, timedelta, timezone
from typing import Any

SLICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")
RSPEC_COMMANDS = ("listresources", "describe", "allocate", "provision", "update")


def _common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Connection and output flags; accepted before and after the subcommand."""
    d = {"default": argparse.SUPPRESS} if suppress else {}
    g = parser.add_argument_group("connection")
    g.add_argument("--url", help="AM API v3 URL, or a nickname from the omni config", **d)
    g.add_argument("--cert", metavar="PEM", help="your certificate (chain)", **d)
    g.add_argument("--key", metavar="PEM", help="your private key", **d)
    g.add_argument("--key-password-file", metavar="FILE",
                   help="file holding the passphrase of an encrypted key", **d)
    g.add_argument("--ca", metavar="PEM",
                   help="CA certificate(s) that signed the AM's certificate (file or "
                   "directory); default: the system trust store", **d)
    g.add_argument("--cred", metavar="FILE", action="append",
                   help="credential file (XML or omni JSON); repeat for several", **d)
    g.add_argument("--omni-config", metavar="FILE",
                   help=f"omni-style config (default {_default_config()} when --cert is not "
                   "given and it exists)", **d)
    g.add_argument("--slice-authority", metavar="AUTH",
                   help="authority for slice names (default: that of your certificate)", **d)
    g.add_argument("--speaks-for", metavar="USER_URN",
                   help="act for this user (geni_speaking_for); pass their speaks-for "
                   "credential with --cred", **d)
    g.add_argument("--call-timeout", type=_positive(float), metavar="S",
                   help="seconds to wait for one answer (60)", **d)
    g.add_argument("--busy-retries", type=_positive(int, zero_ok=True), metavar="N",
                   help="retry a busy AM N times with back-off (3)", **d)
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_const", const="json", dest="output",
                     help="machine-readable JSON output", **d)
    out.add_argument("--xml", action="store_const", const="xml", dest="output",
                     help="raw XML: the rspec (listresources, describe, allocate, provision) "
                     "or the XML-RPC answer", **d)


def _default_config() -> str:
    from am.client.config import DEFAULT_OMNI_CONFIG
    return DEFAULT_OMNI_CONFIG


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("client", help="talk to an AM (AM API v3): listresources, "
                            "allocate, provision, wait, ...",
                            description="An AM API v3 client. Targets are a slice name, a slice "
                            "URN, or sliver URNs. See docs/client.md.")
    _common(parser, suppress=False)
    parser.set_defaults(func=_no_command, output="text")
    cmds = parser.add_subparsers(dest="client_command", metavar="CALL")

    def add(name: str, help: str, **kw: Any) -> argparse.ArgumentParser:
        p = cmds.add_parser(name, help=help, description=help, **kw)
        _common(p, suppress=True)
        p.set_defaults(func=run)
        return p

    add("getversion", "GetVersion: the AM's API versions, rspec and credential types")
    p = add("listresources", "ListResources: the advertisement rspec")
    p.add_argument("--available", action="store_true", help="only available resources")
    p.add_argument("--compressed", action="store_true", help="ask for a compressed answer")
    p = add("describe", "Describe: manifest and sliver states")
    p.add_argument("targets", nargs="+", metavar="TARGET")
    p.add_argument("--compressed", action="store_true", help="ask for a compressed answer")
    p = add("allocate", "Allocate: reserve what a request rspec asks for")
    p.add_argument("slice", metavar="SLICE")
    p.add_argument("rspec", metavar="RSPEC_FILE", help="request rspec ('-' for stdin)")
    p.add_argument("--end-time", metavar="TIME", help="RFC 3339, or +Nd / +Nh")
    p.add_argument("--start-time", metavar="TIME",
                   help="an advance reservation from TIME (RFC 3339, or +Nh)")
    p.add_argument("--auto-provision", action="store_true",
                   help="with --start-time: the AM provisions it at its start")
    p = add("update", "Update: change a slice (or named slivers) to a new request rspec; "
                      "provision the slice afterwards to commit changes to running slivers")
    p.add_argument("targets", nargs="+", metavar="TARGET")
    p.add_argument("--rspec", dest="update_rspec", required=True, metavar="RSPEC_FILE",
                   help="the new request rspec ('-' for stdin)")
    p.add_argument("--best-effort", action="store_true",
                   help="admit what fits; leave the rest out (new) or as it is (existing)")
    p = add("calendar", "free capacity per component per hour (this AM's extension)")
    p.add_argument("--from", dest="cal_from", metavar="TIME", help="RFC 3339 or +Nh (next hour)")
    p.add_argument("--hours", type=_positive(int), default=24, metavar="N", help="hours (24)")
    p.add_argument("--resource", default="cpu_milli", metavar="NAME",
                   help="the resource the table shows (cpu_milli: thousandths of a core)")
    p.add_argument("--png", metavar="FILE", help="also draw the calendar as a PNG chart")
    p = add("find-slot", "the earliest window in which a whole request fits")
    p.add_argument("rspec", metavar="RSPEC_FILE", help="request rspec ('-' for stdin)")
    p.add_argument("--duration", required=True, metavar="D", help="how long: 90m, 2h, 1d, or s")
    p.add_argument("--from", dest="slot_from", metavar="TIME", help="RFC 3339 or +Nh")
    p.add_argument("--within", type=_positive(int), default=720, metavar="HOURS",
                   help="look this many hours ahead (720)")
    p = add("renew", "Renew: extend the expiry of slivers")
    p.add_argument("targets", nargs="+", metavar="TARGET")
    p.add_argument("--until", required=True, metavar="TIME", help="RFC 3339, or +Nd / +Nh")
    p.add_argument("--best-effort", action="store_true")
    p.add_argument("--alap", action="store_true", help="renew as long as possible")
    p = add("provision", "Provision: instantiate allocated slivers")
    p.add_argument("targets", nargs="+", metavar="TARGET")
    p.add_argument("--ssh-key", metavar="PUBFILE", action="append",
                   help="public key to install (default: keys = in the omni config)")
    p.add_argument("--user-urn", metavar="URN", help="whose keys (default: you)")
    p.add_argument("--end-time", metavar="TIME", help="RFC 3339, or +Nd / +Nh")
    p.add_argument("--best-effort", action="store_true")
    p = add("status", "Status: allocation and operational state of slivers")
    p.add_argument("targets", nargs="+", metavar="TARGET")
    p = add("poa", "PerformOperationalAction, e.g. geni_start, geni_restart, geni_stop")
    p.add_argument("action", metavar="ACTION")
    p.add_argument("targets", nargs="+", metavar="TARGET")
    p.add_argument("--best-effort", action="store_true")
    p = add("delete", "Delete: release slivers")
    p.add_argument("targets", nargs="+", metavar="TARGET")
    p.add_argument("--best-effort", action="store_true")
    p = add("shutdown", "Shutdown: operator emergency stop of a slice")
    p.add_argument("slice", metavar="SLICE")
    p = add("stitch", "a stitched request across aggregates: Allocate at each in path order, "
                      "carrying the VLAN tag; retry on VLAN_UNAVAILABLE; Provision; delete "
                      "everything if the whole fails (docs/stitching.md)")
    p.add_argument("slice", metavar="SLICE")
    p.add_argument("rspec", metavar="RSPEC_FILE", help="request rspec ('-' for stdin)")
    p.add_argument("--am", dest="ams", action="append", required=True, metavar="URL",
                   help="an aggregate's AM API v3 URL; repeat for each aggregate of the path")
    p.add_argument("--attempts", type=_positive(int), default=5, metavar="N",
                   help="rounds before giving up on VLAN_UNAVAILABLE (5)")
    p.add_argument("--no-provision", action="store_true", help="allocate only")
    p = add("wait", "poll Status until every sliver is ready or failed (progress on stderr)")
    p.add_argument("targets", nargs="+", metavar="TARGET")
    p.add_argument("--timeout", type=float, default=600.0, metavar="S",
                   help="give up after S seconds (600); exit 2")
    p.add_argument("--interval", type=float, default=2.0, metavar="S",
                   help="seconds between polls (2)")
    p.add_argument("--start", action="store_true",
                   help="send geni_start to slivers resting in geni_notready, then wait on")


def _no_command(args: argparse.Namespace) -> int:
    print("geni-am client: name a call (getversion, listresources, describe, allocate, update, "
          "renew, provision, status, poa, delete, shutdown, wait); see --help", file=sys.stderr)
    return 2


# ---- building the client ----------------------------------------------------------------

def _profile(args: argparse.Namespace):
    from pathlib import Path

    from am.client.config import DEFAULT_OMNI_CONFIG, ClientProfile, load_omni_config

    config = getattr(args, "omni_config", None)
    if not config and not getattr(args, "cert", None) \
            and Path(DEFAULT_OMNI_CONFIG).expanduser().is_file():
        config = DEFAULT_OMNI_CONFIG
    profile = load_omni_config(config) if config else ClientProfile()
    return profile.merged(url=getattr(args, "url", None), cert=getattr(args, "cert", None),
                          key=getattr(args, "key", None), ca=getattr(args, "ca", None),
                          credentials=getattr(args, "cred", None) or (),
                          slice_authority=getattr(args, "slice_authority", None))


def _client(args: argparse.Namespace, profile):
    from pathlib import Path

    from am.client import AMClient, ClientConfigError

    if not profile.url:
        raise ClientConfigError("no AM URL: pass --url URL (or aggregates = in the omni config)")
    password = None
    if getattr(args, "key_password_file", None):
        try:
            password = Path(args.key_password_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ClientConfigError(f"cannot read --key-password-file: {exc.strerror}") from None
    timeout = getattr(args, "call_timeout", None)
    timeout = 60.0 if timeout is None else timeout
    retries = getattr(args, "busy_retries", None)
    return AMClient(profile.url, profile.cert, profile.key, ca=profile.ca or None,
                    credentials=profile.credentials, timeout=timeout,
                    speaking_for=getattr(args, "speaks_for", None), key_password=password,
                    busy_retries=3 if retries is None else retries)


def _cert_urn(cert: str) -> str:
    from pathlib import Path

    from am.client import ClientConfigError
    from credentials.certs import identity_of, load_pem_chain

    try:
        return identity_of(load_pem_chain(Path(cert).expanduser().read_bytes())[0]).urn
    except Exception:   # noqa: BLE001 - any unreadable certificate: say what to do instead
        raise ClientConfigError(f"cannot read a GENI URN from certificate {cert}: give "
                                "--slice-authority, or full URNs") from None


def slice_urn(name: str, profile) -> str:
    """A slice name or URN -> the slice URN."""
    from am.client import ClientConfigError
    from credentials.urn import parse_urn

    if name.startswith("urn:"):
        try:
            parse_urn(name)
        except Exception as exc:   # noqa: BLE001 - URNError and friends
            raise ClientConfigError(f"{name!r} is not a valid GENI URN: {exc}") from None
        return name
    if not SLICE_NAME.match(name):
        raise ClientConfigError(f"{name!r} is neither a slice name (letters, digits, '-') "
                                "nor a URN")
    authority = profile.slice_authority
    if not authority:
        authority = parse_urn(_cert_urn(profile.cert)).authority
    return f"urn:publicid:IDN+{authority}+slice+{name}"


def targets(names: list[str], profile) -> list[str]:
    return [slice_urn(n, profile) for n in names]


def parse_time(text: str) -> str:
    """`+7d`, `+12h`, `+30m`, or an RFC 3339 time (checked)."""
    from am.client import ClientConfigError

    match = re.fullmatch(r"\+(\d+)([dhm])", text.strip())
    if match:
        amount, unit = int(match[1]), match[2]
        delta = {"d": timedelta(days=amount), "h": timedelta(hours=amount),
                 "m": timedelta(minutes=amount)}[unit]
        return (datetime.now(timezone.utc) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ClientConfigError(f"time {text!r} is neither RFC 3339 nor +Nd/+Nh/+Nm") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _users(args: argparse.Namespace, profile) -> list[dict[str, Any]] | None:
    from am.client.config import read_ssh_keys

    files = tuple(args.ssh_key or ()) or profile.ssh_key_files
    if not files:
        return None
    urn = args.user_urn or profile.user_urn or _cert_urn(profile.cert)
    return [{"urn": urn, "keys": read_ssh_keys(files)}]


# ---- running ----------------------------------------------------------------------------

def run(args: argparse.Namespace) -> int:
    from am.client import AMError, ClientError

    command = args.client_command
    try:
        profile = _profile(args)
        if command == "stitch":
            return _stitch(args, profile)
        with _client(args, profile) as client:
            if command == "wait":
                return _wait(client, args, profile)
            value = _call(client, command, args, profile)
            _print(command, value, args, client, profile)
            return 0
    except AMError as exc:
        print(f"geni-am client {command}: {exc}", file=sys.stderr)
        return 2 if command == "wait" else 1
    except ClientError as exc:
        print(f"geni-am client {command}: {exc}", file=sys.stderr)
        return 2


def _stitch(args: argparse.Namespace, profile) -> int:
    """`client stitch`: one client per --am, the same certificate and credentials."""
    import dataclasses
    import json

    from am.client.stitch import stitch

    clients = [_client(args, dataclasses.replace(profile, url=url)) for url in args.ams]
    try:
        result = stitch(clients, slice_urn(args.slice, profile), _read_rspec(args.rspec),
                        attempts=args.attempts, provision=not args.no_provision,
                        say=lambda m: print(m, file=sys.stderr))
    finally:
        for c in clients:
            c.close()
    if args.output == "json":
        print(json.dumps(dataclasses.asdict(result), indent=2, sort_keys=True))
    elif args.output == "xml":
        print("\n".join(result.manifests.values()))
    else:
        tags = ", ".join(f"{p}: VLAN {t}" for p, t in sorted(result.tags.items())) or "no path"
        print(f"{result.slice_urn}: stitched at {len(args.ams)} aggregate(s) in "
              f"{result.rounds} round(s); {tags}")
    return 0


def _call(client, command: str, args: argparse.Namespace, profile) -> Any:
    if command == "getversion":
        return client.get_version()
    if command == "listresources":
        return client.list_resources(available=args.available, compressed=args.compressed)
    if command == "describe":
        return client.describe(targets(args.targets, profile), compressed=args.compressed)
    if command == "allocate":
        return client.allocate(slice_urn(args.slice, profile), _read_rspec(args.rspec),
                               end_time=parse_time(args.end_time) if args.end_time else None,
                               start_time=parse_time(args.start_time) if args.start_time
                               else None, auto_provision=args.auto_provision)
    if command == "update":
        return client.update(targets(args.targets, profile), _read_rspec(args.update_rspec),
                             best_effort=args.best_effort)
    if command == "calendar":
        return client.calendar(start=parse_time(args.cal_from) if args.cal_from else None,
                               hours=args.hours)
    if command == "find-slot":
        return client.find_slot(_read_rspec(args.rspec), _duration(args.duration),
                                start=parse_time(args.slot_from) if args.slot_from else None,
                                hours=args.within)
    if command == "renew":
        return client.renew(targets(args.targets, profile), parse_time(args.until),
                            best_effort=args.best_effort, extend_alap=args.alap)
    if command == "provision":
        return client.provision(targets(args.targets, profile), users=_users(args, profile),
                                end_time=parse_time(args.end_time) if args.end_time else None,
                                best_effort=args.best_effort)
    if command == "status":
        return client.status(targets(args.targets, profile))
    if command == "poa":
        action, names = _poa_order(args.action, args.targets)
        return client.perform_operational_action(targets(names, profile), action,
                                                 best_effort=args.best_effort)
    if command == "delete":
        return client.delete(targets(args.targets, profile), best_effort=args.best_effort)
    if command == "shutdown":
        return client.shutdown(slice_urn(args.slice, profile))
    raise AssertionError(command)


def _duration(text: str) -> float:
    """Seconds from `90m`, `2h`, `1d`, `3600` or `3600s`."""
    from am.client import ClientConfigError
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    unit = text[-1:].lower()
    number = text[:-1] if unit in units else text
    try:
        value = float(number) * units.get(unit, 1)
    except ValueError:
        raise ClientConfigError(f"--duration {text!r}: say e.g. 90m, 2h or 1d") from None
    if not value > 0 or value == float("inf"):
        raise ClientConfigError(f"--duration {text!r} must be more than 0")
    return value


def _read_rspec(name: str) -> str:
    from pathlib import Path

    from am.client import ClientConfigError

    try:
        if name == "-":
            return sys.stdin.buffer.read().decode("utf-8")
        return Path(name).expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ClientConfigError(f"request rspec {name} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientConfigError(f"cannot read request rspec {name}: {exc}") from None


def _positive(kind: type, *, zero_ok: bool = False):
    """argparse type: a number > 0 (or >= 0), refused with a one-line usage error otherwise."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value != value or value < 0 or (value == 0 and not zero_ok):   # NaN, negative, zero
            raise argparse.ArgumentTypeError(
                f"must be {'at least 0' if zero_ok else 'more than 0'}: {text!r}")
        return value
    return parse


def _print(command: str, value: Any, args: argparse.Namespace, client, profile) -> None:
    from am.client import output

    mode = getattr(args, "output", "text") or "text"
    if mode == "json":
        print(output.to_json(value))
        return
    if mode == "xml":
        if command == "listresources":
            print(value)
        elif command in RSPEC_COMMANDS:
            print(value.get("geni_rspec", ""))
        else:
            print(xmlrpc.client.dumps((client.last_result,), methodresponse=True,
                                      allow_none=False))
        return
    if command == "getversion":
        print(output.version_text(value))
    elif command == "listresources":
        print(output.rspec_summary(value))
    elif command in ("describe", "allocate", "provision", "update"):
        if value.get("geni_urn"):
            print(f"slice {value['geni_urn']}")
        print(output.sliver_table(value.get("geni_slivers") or (), value.get("geni_rspec")))
        if value.get("geni_rspec"):
            print()
            print(output.rspec_summary(value["geni_rspec"]))
    elif command == "calendar":
        print(output.calendar_table(value, args.resource))
        if args.png:
            output.calendar_png(value, args.resource, args.png)
            print(f"chart written to {args.png}")
    elif command == "find-slot":
        if value:
            print(f"fits from {value['geni_start_time']} to {value['geni_end_time']}")
        else:
            print(f"no window within {args.within} h fits the whole request")
    elif command == "status":
        print(f"slice {value.get('geni_urn', '?')}")
        print(output.sliver_table(value.get("geni_slivers") or ()))
    elif command in ("renew", "poa", "delete"):
        print(output.sliver_table(value or ()))
    elif command == "shutdown":
        print(f"slice {slice_urn(args.slice, profile)} shut down" if value
              else "the AM did not shut the slice down")


def _wait(client, args: argparse.Namespace, profile) -> int:
    from am.client import output
    from am.client.progress import ProgressBar

    urns = targets(args.targets, profile)
    bar = ProgressBar(sys.stderr)
    try:
        result = client.wait(urns, timeout=args.timeout, interval=args.interval,
                             start=args.start, on_progress=bar)
    finally:
        bar.finish()
    progress = result.progress
    if getattr(args, "output", "text") == "json":
        print(output.to_json({"ready": progress.ready, "failed": progress.failed,
                              "total": progress.total, "timed_out": result.timed_out,
                              "slivers": list(progress.slivers)}))
    if result.timed_out:
        waiting = ", ".join(f"{s.get('geni_sliver_urn')} ({output.short(s.get('geni_operational_status'))})"
                            for s in progress.waiting())
        print(f"geni-am client wait: timed out after {args.timeout:g} s: {progress.ready}/"
              f"{progress.total} ready" + (f"; still waiting: {waiting}" if waiting else ""),
              file=sys.stderr)
        return 2
    if progress.failed:
        if getattr(args, "output", "text") != "json":
            for sliver in progress.failures():
                print(f"FAILED {sliver.get('geni_sliver_urn')}: "
                      f"{sliver.get('geni_error') or '(the AM gave no reason)'}")
        print(f"geni-am client wait: {progress.failed} of {progress.total} sliver(s) failed",
              file=sys.stderr)
        return 1
    if getattr(args, "output", "text") != "json":
        print(output.sliver_table(list(progress.slivers)))
        print(f"all {progress.total} sliver(s) ready")
    return 0


def _poa_order(action: str, names: list[str]) -> tuple[str, list[str]]:
    """Accept omni's order too (`poa SLICE ACTION`): action names always contain "_"
    (geni_start, geniam_sync_routes), slice names never do, and URNs contain "+"."""
    if "_" not in action and len(names) == 1 and "_" in names[0] and "+" not in names[0]:
        return names[0], [action]
    return action, names
