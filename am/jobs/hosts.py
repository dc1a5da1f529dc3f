"""Host affinity: a sliver's jobs go to the queue of the host that owns its component.

A site whose inventory names `[hosts.<name>]` runs one `geni-am worker --host NAME` per host
(its agent, as nova-compute is for a compute host). Celery routing does the rest:

  * `host_queue(NAME)` ("geni-am.host.NAME") is consumed only by that host's worker;
  * the site queue (`SITE_QUEUE`, Celery's default queue) carries site-wide work: the
    reaper, the reconciler's database half, route sync, and jobs of components on no host
    or spanning several (a switch fabric). Every worker consumes it;
  * `JobRouter` maps job ids to queues (one query: job -> sliver -> component -> host) when
    the service, the reconciler or a retry sends them;
  * `HostGuard` is the last line: a worker that receives a job for a component it does not
    own (a message mis-sent, an operator's manual re-send, an inventory changed under a
    running worker) refuses it with a clear log line and re-sends it to the right queue; it
    never runs it;
  * `HostHeartbeat` beats into the database (`am.store.hosts`), so a host that stops is
    seen `down` by the API.

A site with no `[hosts]` keeps today's behaviour: every job goes to the site queue and any
worker (or the embedded one in `geni-am serve`) runs it.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence

from am.jobs.celery_app import DEFAULT_QUEUE

log = logging.getLogger(__name__)

SITE_QUEUE = DEFAULT_QUEUE
HOST_QUEUE_PREFIX = f"{DEFAULT_QUEUE}.host."


def host_queue(host: str | None) -> str:
    """The Celery queue of a host's worker (the site queue for None)."""
    return SITE_QUEUE if host is None else f"{HOST_QUEUE_PREFIX}{host}"


class JobRouter:
    """job ids -> {queue: ids in their order}, from the jobs' slivers' components."""

    def __init__(self, store, site):
        self.store = store
        self.site = site

    @property
    def active(self) -> bool:
        return bool(self.site.hosts)

    def hosts_of_jobs(self, job_ids: Sequence[int]) -> dict[int, str | None]:
        rows = self.store.jobs.components_of(job_ids)
        return {job_id: self.site.host_of(component) for job_id, component in rows}

    def __call__(self, job_ids: Sequence[int]) -> dict[str, list[int]]:
        ids = list(job_ids)
        if not self.active or not ids:
            return {SITE_QUEUE: ids} if ids else {}
        hosts = self.hosts_of_jobs(ids)
        out: dict[str, list[int]] = {}
        for job_id in ids:
            out.setdefault(host_queue(hosts.get(job_id)), []).append(job_id)
        return out


class HostGuard:
    """Checks, before a job runs, that it belongs to this worker's host (see module doc)."""

    def __init__(self, router: JobRouter, host: str | None):
        self.router = router
        self.host = host

    def check(self, job_id: int) -> str | None:
        """None if this worker may run the job; otherwise the queue it belongs to."""
        if not self.router.active:
            return None
        owner = self.router.hosts_of_jobs([job_id]).get(job_id)
        if owner == self.host:
            return None
        return host_queue(owner)

    def refuse(self, app, job_id: int, queue: str) -> None:
        """Log the refusal and send the job where it belongs (the reconciler re-sends it
        later if the broker refuses now)."""
        here = f"host {self.host}" if self.host else "the site (no --host)"
        log.error("job %d belongs to %s, not to this worker's %s: refused, re-routed there",
                  job_id, queue, here)
        from am.jobs.celery_queue import RUN_JOB
        try:
            app.send_task(RUN_JOB, args=(job_id,), queue=queue)
        except Exception as exc:   # noqa: BLE001 - the reconciler re-sends queued jobs
            log.warning("job %d: could not re-route it to %s (%s); the reconciler will",
                        job_id, queue, exc)


def running_job_count() -> int:
    """Jobs running in this process now (the lease heartbeat's registry)."""
    from am.jobs.runner import _HeartbeatThread
    inst = _HeartbeatThread._instance
    return len(inst._beats) if inst is not None and inst.pid == os.getpid() else 0


class HostHeartbeat:
    """A daemon thread beating `host` into the database every `every_s` seconds."""

    def __init__(self, repo, host: str, *, every_s: float, worker: str):
        self.repo, self.host, self.every_s, self.worker = repo, host, every_s, worker
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"geni-am-host-{host}",
                                        daemon=True)

    def start(self) -> "HostHeartbeat":
        self.beat()
        self._thread.start()
        return self

    def beat(self) -> None:
        try:
            load = os.getloadavg()[0]
        except OSError:
            load = 0.0
        try:
            self.repo.beat(self.host, load=load, running_jobs=running_job_count(),
                           worker=self.worker, pid=os.getpid())
        except Exception as exc:   # noqa: BLE001 - the database is away: try next beat
            log.warning("host %s: heartbeat failed: %s", self.host, exc)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.beat()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


__all__ = ["HOST_QUEUE_PREFIX", "HostGuard", "HostHeartbeat", "JobRouter", "SITE_QUEUE",
           "host_queue", "running_job_count"]


def removed_hosts_problem(store, site) -> str | None:
    """None, or the start-up refusal for hosts the database knows that the inventory no longer
    names while they still hold live slivers (named, so the operator knows what to delete or
    where to put the host back). Hosts removed with nothing on them are forgotten."""
    from am.store.hosts import HostRepository

    repo = HostRepository(store)
    named = set(getattr(site, "hosts", {}) or {})
    components = {urn: site.host_of(urn) for urn in getattr(site, "host_map", {})}
    held = repo.orphaned_slivers(named, components)
    if not held:
        repo.forget_removed(named)
        return None
    parts = [f"host {host} holds live sliver(s) {', '.join(urns[:10])}"
             + (f" and {len(urns) - 10} more" if len(urns) > 10 else "")
             for host, urns in sorted(held.items())]
    return ("inventory no longer names " + "; ".join(parts) + ": delete those slivers (or put "
            "the host back in [hosts]) before removing it")


__all__ += ["removed_hosts_problem"]
