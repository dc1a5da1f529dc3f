"""`geni-am site check|down`: the default site outside `serve` (docs/quickstart.md)."""
from __future__ import annotations

import argparse
import os
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("site", help="the default site on this host (check, down)",
                            description="The default site that `geni-am serve` runs when given "
                            "no inventory. `check` says whether this host can run it; `down` "
                            "cleans up after a serve that crashed or was killed.")
    actions = parser.add_subparsers(dest="site_action", metavar="ACTION", required=True)
    for name, helptext in (("check", "say what this host lacks for the default site"),
                           ("down", "release every sliver and stop every part of the site")):
        p = actions.add_parser(name, help=helptext)
        p.add_argument("--config", metavar="FILE", help="TOML settings file")
        p.add_argument("--state-dir", metavar="DIR", help="state directory (state_dir)")
        if name == "down":
            p.add_argument("--force", action="store_true",
                           help="even while the serve that started the site still runs")
        p.set_defaults(func=run_site)


def run_site(args: argparse.Namespace) -> int:
    from am.config import ConfigError, load_settings
    from am.site import DefaultSite
    from am.site.default import serve_pid

    try:
        settings = load_settings(args.config, overrides={"state_dir": args.state_dir})
    except ConfigError as exc:
        print(f"geni-am site: {exc}", file=sys.stderr)
        return 2
    site = DefaultSite(settings.state_path, settings.authority)
    if args.site_action == "check":
        missing = site.missing()
        if missing:
            print("this host cannot run the default site; missing:")
            for item in missing:
                print(f"  - {item}")
            print("serve the mocked-driver harness instead: geni-am serve --fake 10")
            return 1
        print("this host can run the default site")
        return 0
    pid = serve_pid(site.ctx)
    if pid is not None and pid != os.getpid() and not args.force:
        print(f"geni-am site: the site is in use by geni-am serve (pid {pid}); stop it, or "
              "pass --force", file=sys.stderr)
        return 1
    report = site.down()
    for what in report.released:
        print(f"released sliver {what}")
    for pid in report.killed:
        print(f"killed process {pid}")
    for what in report.removed:
        print(f"removed {what}")
    for problem in report.problems:
        print(f"problem: {problem}", file=sys.stderr)
    if not (report.released or report.killed or report.removed or report.problems):
        print("nothing of the default site was left on this host")
    return 1 if report.problems else 0
