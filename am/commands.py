"""`geni-am` subcommands of the AM process: `serve` (and, from other packages, `worker`...).

`register(sub)` calls one `add_<command>(sub)` per command, so a new command is one function
plus one line there. Handlers import heavy modules lazily so `geni-am --help` stays fast.
"""
from __future__ import annotations

import argparse
import sys

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drivers.registry import Site

SERVE_FLAGS = {   # flag -> Settings key
    "host": "host", "port": "port", "cert": "cert", "key": "key",
    "trust_roots": "trust_roots", "database": "database_url", "broker": "broker_url",
    "inventory": "inventory", "state_dir": "state_dir", "fake_nodes": "fake_nodes",
}


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """The flags every AM process command shares (each also settable in the file and env)."""
    parser.add_argument("--config", metavar="FILE", help="TOML settings file")
    parser.add_argument("--host", help="listen address (host)")
    parser.add_argument("--port", type=int, help="listen port (port)")
    parser.add_argument("--cert", metavar="PEM", help="AM certificate (cert)")
    parser.add_argument("--key", metavar="PEM", help="AM private key (key)")
    parser.add_argument("--trust-roots", metavar="DIR", help="trust roots directory (trust_roots)")
    parser.add_argument("--database", metavar="URL", help="database URL (database_url)")
    parser.add_argument("--broker", metavar="URL", help="Celery broker URL (broker_url)")
    parser.add_argument("--inventory", metavar="FILE", help="site inventory TOML (inventory)")
    parser.add_argument("--state-dir", metavar="DIR", help="state directory (state_dir)")


def settings_from_args(args: argparse.Namespace):
    from am.config import load_settings
    overrides = {key: getattr(args, flag, None) for flag, key in SERVE_FLAGS.items()}
    return load_settings(args.config, overrides=overrides)


def add_serve(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("serve", help="serve AM API v3 and v2 over HTTPS",
                            description="Serve the AM API over HTTPS with mandatory client "
                            "certificates. With no configuration, creates a development "
                            "authority under the state directory and prints client settings.")
    add_settings_flags(parser)
    parser.add_argument("--fake", type=int, metavar="N", dest="fake_nodes", default=None,
                        help="serve N fake nodes (the mocked-driver harness) instead of the "
                        "real default site (fake_nodes; env GENI_AM_FAKE_NODES)")
    parser.add_argument("--threads", type=int, default=16, help="request threads (16)")
    parser.add_argument("--behind-proxy", action="store_true", default=None,
                        help="serve plain HTTP for a TLS-terminating proxy (nginx) listed in "
                        "trusted_proxies; see docs/serving.md")
    parser.add_argument("--log-format", choices=("text", "json"), default=None,
                        help="log lines as text or one JSON object per line "
                        "(env GENI_AM_LOG_FORMAT; default text); see docs/metrics.md")
    parser.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from am.bootstrap import banner, ensure_dev_authority, needs_dev_authority
    from am.config import ConfigError
    from am.errors import GeniError
    from am.handshakes import ClientLimits
    from am.auth import Authorizer
    from am.server import AmServer, ServerConfigError, ServerOptions, tls_adapter
    from am.fileperms import StateDirError, check_state_dir
    from am.site import SiteError
    from drivers.base import DriverError
    from drivers.inventory import InventoryError

    import os

    from am.logging import LOG_FORMATS, configure_logging
    log_format = args.log_format or os.environ.get("GENI_AM_LOG_FORMAT", "text")
    if log_format not in LOG_FORMATS:
        print(f"geni-am serve: GENI_AM_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, "
              f"not {log_format!r}", file=sys.stderr)
        return 2
    configure_logging(log_format)
    try:
        settings = settings_from_args(args)
        if args.behind_proxy:
            settings = settings.replace(proxy_mode=True)
        if args.threads < 1:
            raise ConfigError("--threads must be at least 1")
        if settings.proxy_mode and not settings.trusted_proxies:
            raise ConfigError("--behind-proxy needs trusted_proxies (the proxy's address)")
        files = None
        for warning in check_state_dir(settings.state_path):
            print(f"geni-am serve: warning: {warning}", file=sys.stderr)
        if needs_dev_authority(settings):
            settings, files = ensure_dev_authority(settings)
    except (ConfigError, ServerConfigError, GeniError, OSError, StateDirError) as exc:
        print(f"geni-am serve: {exc}", file=sys.stderr)
        return 2
    site = None
    site_info = None
    try:
        if not settings.inventory and not settings.fake_nodes:
            # what can be checked without the site first: trust roots, CRLs, certificate/key
            Authorizer.from_settings(settings)
            if not settings.proxy_mode:
                tls_adapter(settings.cert, settings.key, settings.trust_roots)
            site, running = start_default_site(settings)
            settings, site_info = settings.replace(inventory=str(running.inventory)), running
        from am.app import build_runtime          # the heavy part: after the site is up
        from am.jobs.runtime import serve_job_queue
        runtime = build_runtime(settings, behind_proxy=settings.proxy_mode,
                                job_queue=serve_job_queue)
    except (ConfigError, InventoryError, DriverError, ServerConfigError, GeniError,
            OSError, SiteError) as exc:
        print(f"geni-am serve: {exc}", file=sys.stderr)
        if site is not None:
            site.down()
        return 2
    except SQLAlchemyError as exc:
        # the database is down or refusing (e.g. a PostgreSQL restart in recovery): transient,
        # so exit 1 (a supervisor starts serve again), with one line instead of a traceback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        url = make_url(settings.effective_database_url).render_as_string(hide_password=True)
        print(f"geni-am serve: database {url!r} is not usable: "
              f"{first}", file=sys.stderr)
        if site is not None:
            site.down()
        return 1
    try:
        server = AmServer(runtime.app, ServerOptions(
            host=settings.host, port=settings.port, threads=args.threads,
            tls=not settings.proxy_mode, cert=settings.cert, key=settings.key,
            trust_roots=settings.trust_roots, max_request_bytes=settings.max_request_bytes,
            idle_timeout_s=settings.client_idle_timeout_s,
            limits=ClientLimits(handshake_timeout_s=settings.tls_handshake_timeout_s,
                                max_connections_per_client=settings.max_connections_per_client)))
        server.serve_until_signalled(
            on_ready=lambda: print(banner(settings.replace(port=server.port) if not settings.port
                                          else settings, files, site_info), flush=True))
    except (ServerConfigError, OSError) as exc:
        print(f"geni-am serve: {exc}", file=sys.stderr)
        return 2
    finally:
        runtime.close()
        if site is not None:
            stop_default_site(site)
    return 0


def start_default_site(settings):
    """The real default site (am/site) for a serve with no inventory and no --fake; a host
    that cannot run it gets SiteError saying what it lacks and how to serve fake nodes."""
    from am.site import DefaultSite, SiteError

    site = DefaultSite(settings.state_path, settings.authority)
    try:
        running = site.up()
    except SiteError as exc:
        raise SiteError(f"{exc}. Serve the mocked-driver harness instead: geni-am serve "
                        "--fake 10 (or give a site with --inventory FILE)") from None
    return site, running


def stop_default_site(site: Site) -> None:
    report = site.down()
    for problem in report.problems:
        print(f"geni-am serve: default site: {problem}", file=sys.stderr)


def register(sub: argparse._SubParsersAction) -> None:
    add_serve(sub)
