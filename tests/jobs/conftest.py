"""Fixtures for the job layer: a whole AM stack (store, fake site, Celery, worker) per test.

Redis tests use the suite's Redis (`redis_url`) but a database index of their own, claimed
atomically in db 0, so concurrent test runs on one machine never share a queue.
"""
from __future__ import annotations

from functools import partial
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from am.config import Settings
from am.jobs.runtime import JobPolicy, JobSystem
from am.jobs.tasks import JobRuntime, RetryPolicy
from am.service.contract import Options, Principal
from tests import support

REPO = Path(__file__).resolve().parents[2]
AUTHORITY = "geni-am:jobs-test"
USER = Principal(urn=f"urn:publicid:IDN+{AUTHORITY}+user+alice")
FAST = JobPolicy(lease_s=2.0, queued_grace_s=2.0, waiting_grace_s=30.0, reconcile_interval_s=1.0,
                 retry=RetryPolicy(max_retries=10, base_s=0.05, cap_s=0.5))


@contextlib.contextmanager
def claimed_redis_db(redis_url: str) -> Iterator[str]:
    """A redis:// URL on a database index no other concurrent run uses, flushed before and
    after use (the claim is a key in db 0)."""
    import redis

    base = redis_url.rsplit("/", 1)[0]
    admin = redis.Redis.from_url(f"{base}/0")
    token = f"{os.getpid()}-{time.time()}"
    for index in range(15, 0, -1):
        if admin.set(f"geni-am-test:db-claim:{index}", token, nx=True, ex=900):
            break
    else:
        pytest.fail("no free Redis database index (1..15) for the jobs tests")
    url = f"{base}/{index}"
    redis.Redis.from_url(url).flushdb()
    try:
        yield url
    finally:
        with contextlib.suppress(Exception):
            redis.Redis.from_url(url).flushdb()
        if admin.get(f"geni-am-test:db-claim:{index}") == token.encode():
            admin.delete(f"geni-am-test:db-claim:{index}")
        admin.close()


@pytest.fixture()
def redis_db(redis_url: str) -> Iterator[str]:
    """A redis:// URL on a database index no other concurrent run uses, flushed before use."""
    with claimed_redis_db(redis_url) as url:
        yield url


def write_inventory(folder: Path, *, nodes: int = 6, **fake: object) -> Path:
    lines = ["[site]", 'name = "jobs-test"', "", "[drivers.fake]", f"nodes = {nodes}",
             f'state_dir = "{folder / "substrate"}"']
    for key, value in fake.items():
        lines.append(f"{key} = {value!r}" if not isinstance(value, str) else f'{key} = "{value}"')
    path = folder / "inventory.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def make_settings(tmp: Path, *, broker_url: str = "", database_url: str = "",
                  **overrides: object) -> Settings:
    return Settings(state_dir=str(tmp), broker_url=broker_url, database_url=database_url,
                    authority=AUTHORITY, inventory=str(tmp / "inventory.toml"), **overrides)


def request_xml(settings: Settings, n: int = 2, sliver_type: str = "xen-vm") -> str:
    nodes = "".join(f'<node client_id="n{i}" component_manager_id="{settings.am_urn}" '
                    f'exclusive="false"><sliver_type name="{sliver_type}"/></node>'
                    for i in range(n))
    return f'<rspec type="request" xmlns="http://www.geni.net/resources/rspec/3">{nodes}</rspec>'


slice_urn = partial(support.slice_urn, authority=AUTHORITY)


@dataclass
class Stack:
    """One AM process: store, site, aggregate, Celery app; optionally an in-process worker."""

    settings: Settings
    store: object
    site: object
    aggregate: object
    jobs: JobSystem
    closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def fake(self):
        return self.site.drivers["fake"]

    def allocate(self, name: str, n: int = 2) -> list[str]:
        result = self.aggregate.allocate(USER, slice_urn(name), request_xml(self.settings, n),
                                         Options())
        return [s.sliver_urn for s in result.slivers]

    def provision(self, name: str) -> None:
        self.aggregate.provision(USER, [slice_urn(name)], Options())

    def action(self, name: str, action: str) -> None:
        self.aggregate.perform_action(USER, [slice_urn(name)], action, Options())

    def delete(self, name: str) -> None:
        self.aggregate.delete(USER, [slice_urn(name)], Options())

    def status(self, name: str) -> dict[str, tuple[str, str | None, str]]:
        st = self.aggregate.status(USER, [slice_urn(name)], Options())
        return {s.sliver_urn: (s.allocation_status, s.operational_status, s.error)
                for s in st.slivers}

    def wait_ops(self, name: str, wanted: set[str], timeout: float = 20.0) -> dict:
        def reached():
            st = self.status(name)
            return st if st and all(op in wanted for _, op, _ in st.values()) else None
        return support.wait_until(reached, f"slice {name} to reach {wanted}", timeout, 0.02)

    def close(self) -> None:
        for close in reversed(self.closers):
            close()


def build_stack(settings: Settings, *, worker: bool = True, policy: JobPolicy = FAST,
                concurrency: int = 2) -> Stack:
    from am.service.aggregate import Aggregate
    from am.store import open_store
    from drivers.registry import load_site

    store = open_store(settings.effective_database_url, migrate=True)
    site = load_site(settings.inventory, authority=settings.authority,
                     state_dir=str(settings.state_path))
    jobs = JobSystem(settings, policy=policy)
    aggregate = Aggregate(settings, store, site, jobs.queue)
    jobs.use_runtime(JobRuntime(store=store, site=site, aggregate=aggregate, queue=jobs.queue,
                                worker_id=f"test:{os.getpid()}"))
    stack = Stack(settings, store, site, aggregate, jobs,
                  closers=[store.close, site.close, jobs.close])
    if worker:
        jobs.start_embedded_worker(concurrency=concurrency)
    return stack


@pytest.fixture()
def stack_factory(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    made: list[Stack] = []

    def make(*, broker_url: str = "", database_url: str = "", nodes: int = 6,
             fake: dict | None = None, worker: bool = True, policy: JobPolicy = FAST,
             **settings_overrides: object) -> Stack:
        write_inventory(tmp_path, nodes=nodes, **(fake or {}))
        settings = make_settings(tmp_path, broker_url=broker_url, database_url=database_url,
                                 **settings_overrides)
        stack = build_stack(settings, worker=worker, policy=policy)
        made.append(stack)
        return stack

    yield make
    for stack in reversed(made):
        stack.close()


def worker_process(settings: Settings, log: Path, *, concurrency: int = 2,
                   extra: tuple[str, ...] = ()) -> subprocess.Popen:
    """A real `geni-am worker` process (prefork pool) on the given settings."""
    cmd = [sys.executable, "-m", "am", "worker", "--broker", settings.broker_url,
           "--database", settings.effective_database_url, "--inventory", settings.inventory,
           "--state-dir", settings.state_dir, "--concurrency", str(concurrency),
           "--lease-s", str(FAST.lease_s), "--requeue-after-s", str(FAST.queued_grace_s),
           "--reconcile-interval-s", str(FAST.reconcile_interval_s), "--loglevel", "INFO", *extra]
    env = {**os.environ, "GENI_AM_AUTHORITY": settings.authority,
           "GENI_AM_REAPER_INTERVAL_S": str(settings.reaper_interval_s)}
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop_process(proc: subprocess.Popen, sig: int = 15, timeout: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait(5)
