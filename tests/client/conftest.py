"""A running AM for the client: real cheroot TLS server, real store and fake site, a dev
authority for the user, and a worker thread running the queued jobs (as the embedded worker
would) after a short delay, so `wait` really watches slivers become ready."""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from am.app import Runtime, build_runtime
from am.config import Settings
from am.jobs.runner import RetryableJobError, run_job
from am.server import AmServer, ServerOptions
from credentials.authority import DevAuthority
from tests import support

AUTHORITY = "geni-am"          # the dev authority: users and slices
AM_AUTHORITY = "geni-am:test"  # the AM inside it


class DelayedWorker:
    """The job queue: a thread runs each submitted job `delay_s` after submission (long
    enough that a `geni-am client` process started on a busy host still sees it pending)."""

    def __init__(self, delay_s: float = 1.5):
        self.delay_s = delay_s
        self.store = self.site = None
        self._jobs: queue.Queue[tuple[float, int] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="test-worker", daemon=True)
        self.ran: list[int] = []

    def start(self) -> None:
        self._thread.start()

    def submit(self, job_id: int) -> None:
        self._jobs.put((time.monotonic() + self.delay_s, job_id))

    def _loop(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            due, job_id = item
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                run_job(self.store, self.site, job_id, worker_id="test-worker")
                self.ran.append(job_id)
            except RetryableJobError:
                self._jobs.put((time.monotonic() + 0.05, job_id))

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join(5)


@dataclass
class Env:
    """Paths the client needs, and the AM behind them."""

    url: str
    authority_dir: Path
    ca: Path
    cert: Path
    key: Path
    user_cred: Path
    runtime: Runtime
    worker: DelayedWorker

    def slice_cred(self, name: str) -> Path:
        path = self.authority_dir / f"{name}-slice-cred-alice.xml"
        if not path.exists():
            DevAuthority(self.authority_dir).slice(name, "alice")
        return path

    def slice_urn(self, name: str) -> str:
        return support.slice_urn(name, AUTHORITY)


@pytest.fixture(scope="session")
def dev_authority(tmp_path_factory) -> DevAuthority:
    directory = tmp_path_factory.mktemp("client-authority") / "authority"
    authority = DevAuthority.init(directory, authority=AUTHORITY)
    authority.user("alice")
    authority.user("bob")
    authority.server_cert(AM_AUTHORITY, ["localhost", "127.0.0.1"])
    return authority


def start_am(tmp: Path, authority: DevAuthority, *, failure_rate: float = 0.0,
             nodes: int = 6, start_on_provision: bool = True
             ) -> tuple[Runtime, AmServer, DelayedWorker]:
    tmp.mkdir(parents=True, exist_ok=True)
    inventory = tmp / "inventory.toml"
    inventory.write_text("[site]\nname = \"client-test\"\n\n[drivers.fake]\n"
                         f"nodes = {nodes}\nstate_dir = \"{tmp / 'substrate'}\"\n"
                         f"failure_rate = {failure_rate}\n")
    settings = Settings(state_dir=str(tmp), authority=AM_AUTHORITY, inventory=str(inventory),
                        trust_roots=str(authority.dir / "trust-roots"),
                        cert=str(authority.dir / "am-cert.pem"),
                        key=str(authority.dir / "am-key.pem"),
                        operators=(f"urn:publicid:IDN+{AUTHORITY}+user+alice",),
                        start_on_provision=start_on_provision)
    worker = DelayedWorker()
    runtime = build_runtime(settings, job_queue=lambda s: (worker, []))
    worker.store, worker.site = runtime.store, runtime.site
    worker.start()
    server = AmServer(runtime.app, ServerOptions(port=0, threads=4, cert=settings.cert,
                                                 key=settings.key,
                                                 trust_roots=settings.trust_roots))
    server.start()
    return runtime, server, worker


def _env(tmp: Path, authority: DevAuthority, **kw) -> Iterator[Env]:
    runtime, server, worker = start_am(tmp, authority, **kw)
    d = authority.dir
    try:
        yield Env(url=f"https://127.0.0.1:{server.port}/", authority_dir=d,
                  ca=d / "ca-cert.pem", cert=d / "alice-cert.pem", key=d / "alice-key.pem",
                  user_cred=d / "alice-cred.xml", runtime=runtime, worker=worker)
    finally:
        server.stop()
        worker.stop()
        runtime.close()


@pytest.fixture(scope="module")
def am_env(tmp_path_factory, dev_authority) -> Iterator[Env]:
    """A healthy AM (fresh per test module, so call counts are the module's own)."""
    yield from _env(tmp_path_factory.mktemp("am"), dev_authority)


@pytest.fixture(scope="module")
def failing_am(tmp_path_factory, dev_authority) -> Iterator[Env]:
    """An AM whose fake driver fails every provision."""
    yield from _env(tmp_path_factory.mktemp("failing-am"), dev_authority, failure_rate=1.0)


@pytest.fixture(scope="module")
def notready_am(tmp_path_factory, dev_authority) -> Iterator[Env]:
    """An AM with start_on_provision off: provisioned slivers rest in geni_notready until
    geni_start (what `wait` must explain, and what `wait --start` is for)."""
    yield from _env(tmp_path_factory.mktemp("notready-am"), dev_authority,
                    start_on_provision=False)


REQUEST = ('<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request">{}</rspec>')


def request_rspec(n: int) -> str:
    nodes = "".join(f'<node client_id="n{i}" component_manager_id='
                    f'"urn:publicid:IDN+{AM_AUTHORITY}+authority+am" exclusive="false">'
                    '<sliver_type name="xen-vm"/></node>' for i in range(n))
    return REQUEST.format(nodes)
