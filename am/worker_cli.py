"""`geni-am worker`: a Celery worker process running the AM's jobs (production mode).

Several workers on several machines share one Redis (`--broker`) and one database
(`--database`). Each also runs the periodic timer; a claim in Redis makes exactly one of them
queue the reaper and the reconciler each period (see am/jobs/periodic.py). With no broker
configured the worker consumes from the embedded filesystem broker under `--state-dir`, so
it can also add capacity to a `geni-am serve` on the same machine.
"""
from __future__ import annotations

import argparse
import logging
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "worker", help="run a job worker (provision, actions, delete, reaper, reconciler)",
        description="Run a Celery worker for the AM's jobs. Settings come from --config, then "
                    "GENI_AM_* environment variables, then these flags.")
    p.add_argument("--config", metavar="FILE", help="TOML settings file")
    p.add_argument("--broker", metavar="URL", help="redis://host:port/db (empty: embedded broker)")
    p.add_argument("--database", metavar="URL", help="database URL (default: SQLite in the state dir)")
    p.add_argument("--inventory", metavar="FILE", help="site inventory (TOML)")
    p.add_argument("--state-dir", metavar="DIR", help="state directory")
    p.add_argument("--fake-nodes", type=int, metavar="N", help="serve over N fake nodes")
    p.add_argument("--concurrency", "-c", type=int, metavar="N",
                   help="parallel jobs (default: worker_concurrency)")
    p.add_argument("--pool", choices=("prefork", "threads", "solo"), default="prefork",
                   help="execution pool (default: prefork, one process per concurrent job)")
    p.add_argument("--hostname", "-n", metavar="NAME", help="worker node name")
    p.add_argument("--host", metavar="NAME",
                   help="be the agent of this host of the inventory ([hosts.NAME]): drive only "
                        "its components, with its driver settings, and take only its jobs "
                        "(its own queue) and site-wide work; heartbeat as this host")
    p.add_argument("--loglevel", "-l", default="INFO",
                   choices=("DEBUG", "INFO", "WARNING", "ERROR"), type=str.upper)
    p.add_argument("--no-periodic", action="store_true",
                   help="do not take part in running the reaper and reconciler")
    p.add_argument("--no-supervise", action="store_true",
                   help="run the Celery worker in this process; by default this process "
                        "supervises it as a child and starts a new one when it dies")
    tuning = p.add_argument_group("job tuning (defaults suit production)")
    tuning.add_argument("--lease-s", type=float, metavar="S",
                        help="per-sliver lock lifetime; a dead worker's lock is taken over after it")
    tuning.add_argument("--requeue-after-s", type=float, metavar="S",
                        help="re-send a queued job nobody took for this long")
    tuning.add_argument("--reconcile-interval-s", type=float, metavar="S",
                        help="seconds between reconciler runs")
    tuning.add_argument("--batch-handoff-s", type=float, metavar="S",
                        help="a job batch still running after S seconds re-queues its remaining "
                             "jobs one per message (0: never; default 1)")
    p.set_defaults(func=run_worker)


def _positive(name: str, value: float | int | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"--{name} must be > 0, not {value}")


def run_worker(args: argparse.Namespace) -> int:
    from am.config import ConfigError, load_settings
    from am.jobs.celery_app import broker_for, worker_name
    from am.fileperms import check_state_dir
    from am.jobs.runtime import JobPolicy

    try:
        for name in ("concurrency", "lease_s", "requeue_after_s", "reconcile_interval_s",
                     "fake_nodes"):
            if name != "fake_nodes" or getattr(args, name) is not None:
                _positive(name.replace("_", "-"), getattr(args, name))
        settings = load_settings(args.config, overrides={
            "broker_url": args.broker, "database_url": args.database,
            "inventory": args.inventory, "state_dir": args.state_dir,
            "fake_nodes": args.fake_nodes, "worker_concurrency": args.concurrency})
        from am.site.default import running_inventory
        settings = running_inventory(settings)   # the default site of a serve beside it
        broker_for(settings)   # validates broker_url
        for warning in check_state_dir(settings.state_path):
            print(f"geni-am worker: warning: {warning}", file=sys.stderr)
        if args.batch_handoff_s is not None and not args.batch_handoff_s >= 0:
            raise ValueError(f"--batch-handoff-s must be >= 0, not {args.batch_handoff_s}")
    except (ConfigError, ValueError, OSError) as exc:   # StateDirError is a ValueError
        print(f"geni-am worker: {exc}", file=sys.stderr)
        return 2

    logging.basicConfig(level=args.loglevel,
                        format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s")
    problem = _preflight(settings, args.host)
    if problem:
        print(f"geni-am worker: {problem}", file=sys.stderr)
        return 1

    hostname = args.hostname or worker_name(f"geni-am-{args.host}" if args.host else "geni-am")
    if not args.no_supervise:
        from am.worker_supervisor import Supervisor
        return Supervisor(_child_argv(args, hostname)).run_until_signalled()

    defaults = JobPolicy()
    policy = JobPolicy(lease_s=args.lease_s or defaults.lease_s,
                       queued_grace_s=args.requeue_after_s or defaults.queued_grace_s,
                       reconcile_interval_s=args.reconcile_interval_s,
                       batch_handoff_s=(defaults.batch_handoff_s if args.batch_handoff_s is None
                                        else args.batch_handoff_s))
    return _run(settings, policy, hostname=hostname, pool=args.pool, loglevel=args.loglevel,
                periodic=not args.no_periodic, host=args.host)


def _child_argv(args: argparse.Namespace, hostname: str) -> list[str]:
    """The supervised Celery worker's command line: these same flags, one node name for all
    its incarnations, and --no-supervise."""
    argv = [sys.executable, "-m", "am", "worker", "--no-supervise", "--hostname", hostname,
            "--pool", args.pool, "--loglevel", args.loglevel]
    if args.host:
        argv += ["--host", args.host]
    for flag, value in (("--config", args.config), ("--broker", args.broker),
                        ("--database", args.database), ("--inventory", args.inventory),
                        ("--state-dir", args.state_dir), ("--fake-nodes", args.fake_nodes),
                        ("--concurrency", args.concurrency), ("--lease-s", args.lease_s),
                        ("--requeue-after-s", args.requeue_after_s),
                        ("--reconcile-interval-s", args.reconcile_interval_s),
                        ("--batch-handoff-s", args.batch_handoff_s)):
        if value is not None:
            argv += [flag, str(value)]
    if args.no_periodic:
        argv.append("--no-periodic")
    return argv


def _preflight(settings, host: str | None = None) -> str | None:
    """Fail fast, with a message, on a database or inventory the worker could not use, instead
    of starting a worker whose every job crashes: a host the inventory does not name, or hosts
    removed from it while they hold live slivers. Nothing stays open (children fork later)."""
    from am.jobs.hosts import removed_hosts_problem
    from am.store import open_store
    from drivers.base import DriverError
    from drivers.inventory import InventoryError
    from drivers.registry import load_site

    try:
        store = open_store(settings.effective_database_url)
        try:
            store.ping()
        except Exception:
            store.close()
            raise
    except Exception as exc:   # noqa: BLE001 - any driver error means "cannot use it"
        return f"database {settings.effective_database_url!r} is not usable: {exc}"
    try:
        try:
            site = load_site(settings.inventory or None, authority=settings.authority,
                             fake_nodes=settings.fake_nodes, state_dir=str(settings.state_path),
                             host=host)
        except (InventoryError, DriverError, OSError) as exc:
            return f"inventory: {exc}"
        try:
            if host is not None and not site.components_on(host):
                return (f"inventory: host {host!r} has no components (give some "
                        f'[[components]] host = "{host}")')
            try:
                return removed_hosts_problem(store, site)
            except Exception as exc:   # noqa: BLE001 - e.g. the schema is not migrated yet
                return f"database {settings.effective_database_url!r} is not usable: {exc}"
        finally:
            site.close()
    finally:
        store.close()


def _run(settings, policy, *, hostname: str, pool: str, loglevel: str, periodic: bool,
         host: str | None = None) -> int:
    from celery import signals

    from am.jobs.embedded import period_claim, periodic_tasks
    from am.jobs.hosts import SITE_QUEUE, host_queue
    from am.jobs.periodic import PeriodicTimer
    from am.jobs.runtime import JobSystem

    jobs = JobSystem(settings, policy=policy, host=host)
    timer: PeriodicTimer | None = None
    heartbeat = None
    if host is not None:
        heartbeat = _host_start(jobs, host, hostname, policy)

    def on_ready(sender=None, **_kw) -> None:
        # Started once the pool's children exist, so no fork inherits the timer's thread.
        nonlocal timer
        if periodic and timer is None:
            tasks = periodic_tasks(settings, jobs.queue,
                                   reconcile_interval_s=policy.reconcile_interval_s)
            if host is not None:
                tasks.append(_host_reconcile_task(settings, jobs, host, policy))
            timer = PeriodicTimer(tasks, period_claim(settings, hostname))
            timer.start()

    signals.worker_ready.connect(on_ready, weak=False)
    queues = [host_queue(host), SITE_QUEUE] if host is not None else [SITE_QUEUE]
    worker = jobs.app.Worker(hostname=hostname, pool_cls=pool, queues=queues,
                             concurrency=settings.worker_concurrency, loglevel=loglevel,
                             quiet=True, without_gossip=True, without_mingle=True,
                             without_heartbeat=True, optimization="fair")
    try:
        worker.start()
    finally:
        signals.worker_ready.disconnect(on_ready)
        if timer is not None:
            timer.stop()
        if heartbeat is not None:
            heartbeat.stop()
        jobs.close()
    return int(worker.exitcode or 0)


def _host_start(jobs, host: str, hostname: str, policy):
    """A host's agent comes up: record what it owns, reconcile the host against the database
    (lost slivers failed, orphans removed) *before* taking new work, then heartbeat."""
    import os

    from am.jobs.hosts import HostHeartbeat
    from am.jobs.reconcile import reconcile
    from am.store.hosts import HostRepository

    log = logging.getLogger("am.worker")
    rt = jobs.runtime()
    repo = HostRepository(rt.store, down_after_s=jobs.settings.host_down_after_s)
    repo.register(host, rt.site.components_on(host), worker=hostname, pid=os.getpid())
    report = reconcile(rt.store, rt.site, rt.queue, max_attempts=policy.max_attempts,
                       queued_grace_s=policy.queued_grace_s,
                       waiting_grace_s=policy.waiting_grace_s)
    log.info("host %s: reconciled before taking work: %s", host, report.as_dict())
    return HostHeartbeat(repo, host, every_s=jobs.settings.host_heartbeat_s,
                         worker=hostname).start()


def _host_reconcile_task(settings, jobs, host: str, policy):
    """This host's own reconciler (its substrate against the database), on its own queue."""
    from am.jobs.celery_queue import RECONCILE
    from am.jobs.hosts import host_queue
    from am.jobs.periodic import PeriodicTask

    every = policy.reconcile_interval_s or max(5.0, 2 * settings.reaper_interval_s)
    return PeriodicTask(f"reconcile@{host}", every,
                        lambda: jobs.queue.send_periodic(RECONCILE, queue=host_queue(host)))


__all__ = ["register", "run_worker"]
