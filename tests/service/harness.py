"""A test harness: an Aggregate over a fake site, a store and a queue that collects job ids;
`run_jobs()` plays the worker by calling `am.jobs.runner.run_job` directly."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from am.config import Settings
from am.jobs.runner import RetryableJobError, run_job
from am.service.aggregate import Aggregate
from am.service.contract import Principal
from am.store import Store, utcnow
from drivers.fake import make_fake_site
from tests.support import slice_urn  # noqa: F401 - re-exported: the service tests' slice URNs

AUTH = "geni-am:test"
AM = f"urn:publicid:IDN+{AUTH}+authority+am"
ALICE = Principal(urn="urn:publicid:IDN+geni-am:test:sa+user+alice")
RSPEC = 'xmlns="http://www.geni.net/resources/rspec/3"'


def node_xml(client_id: str, *, component: str | None = None, stype: str = "xen-vm",
             iface: bool = False) -> str:
    comp = f' component_id="urn:publicid:IDN+{AUTH}+node+{component}"' if component else ""
    inner = f'<interface client_id="{client_id}:if0"/>' if iface else ""
    return (f'<node client_id="{client_id}" component_manager_id="{AM}"{comp} exclusive="false">'
            f'<sliver_type name="{stype}"/>{inner}</node>')


def request(*elements: str) -> str:
    return f'<rspec {RSPEC} type="request">{"".join(elements)}</rspec>'


def two_nodes_and_link() -> str:
    return request(node_xml("a", iface=True), node_xml("b", iface=True),
                   '<link client_id="l"><interface_ref client_id="a:if0"/>'
                   '<interface_ref client_id="b:if0"/></link>')


class CollectingQueue:
    def __init__(self) -> None:
        self.submitted: list[int] = []

    def submit(self, job_id: int) -> None:
        self.submitted.append(job_id)


@dataclass
class Clock:
    now: datetime = field(default_factory=utcnow)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Harness:
    def __init__(self, store: Store, tmp_path, *, nodes: int = 3,
                 settings: Mapping[str, Any] | None = None, **fake_config):
        """`settings`: Settings fields to change (e.g. start_on_provision=False);
        `fake_config`: fake driver keys (failure_rate, seed, ...)."""
        self.settings = Settings(authority=AUTH, state_dir=str(tmp_path), **(settings or {}))
        self.site = make_fake_site(nodes, authority=AUTH, **fake_config)
        self.driver = self.site.drivers["fake"]
        self.store = store
        self.queue = CollectingQueue()
        self.clock = Clock()
        self.am = Aggregate(self.settings, store, self.site, self.queue, clock=self.clock)

    def run_jobs(self, *, retries: int = 0) -> int:
        """Run every submitted job once (like one worker draining the queue)."""
        ran = 0
        while self.queue.submitted:
            job_id = self.queue.submitted.pop(0)
            for attempt in range(retries + 1):
                try:
                    run_job(self.store, self.site, job_id, worker_id="test-worker")
                    break
                except RetryableJobError:
                    if attempt == retries:
                        raise
            ran += 1
        return ran

    def close(self) -> None:
        self.site.close()
