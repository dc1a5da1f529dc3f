"""Scale-out: two `geni-am serve` processes and two `geni-am worker` processes share one
PostgreSQL database, one Redis and one (fake) substrate. Several clients run life cycles
(Allocate, Provision, wait for geni_ready, Delete) against both API processes; mid-run one API
process and one worker are SIGKILLed. Clients retry on the surviving API process. At the end
every slice is in a correct state (each live sliver geni_ready, the rest deleted), the
reservations equal exactly what the live slivers need (none lost, none doubled, claims unique),
no job is stuck, and the substrate holds exactly the live slivers."""
from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from am.client import AMClient, ClientError
from am.client.errors import AMError
from am.config import Settings
from am.store import Capacity, Claim, Job, Reservation, Sliver, SliverLease, open_store
from credentials.authority import DevAuthority
from tests import support
from tests.interop.stack import free_port, node, request
from tests.jobs.conftest import REPO, stop_process, worker_process

AUTHORITY = "geni-am:scale"
CLIENTS = 4
CYCLES = 4                 # per client; the last one leaves its slivers running
SLIVERS = 2                # per life cycle
OP_S = 0.1                 # fake substrate latency per operation: jobs are in flight to kill
GENI_AM = Path(sys.executable).with_name("geni-am")


class Api:
    """The API processes a client may use; a dead one is skipped after a connection error."""

    def __init__(self, urls: list[str], make: Callable[[str], AMClient]):
        self.urls = urls
        self.make = make
        self.dead: set[str] = set()
        self.lock = threading.Lock()
        self.failovers = 0

    def call(self, start: int, fn: Callable[[AMClient], Any],
             after_lost: Callable[[AMClient, AMError], Any] | None = None) -> Any:
        """`fn` on the API process `start` (alternating), on the other one after a connection
        error. `after_lost` decides what an AMError on a retry means (the first try may have
        done the work before its process died)."""
        retried = False
        for attempt in range(8):
            with self.lock:
                alive = [u for u in self.urls if u not in self.dead] or self.urls
            url = alive[(start + attempt) % len(alive)]
            client = self.make(url)
            try:
                return fn(client)
            except AMError as exc:
                if retried and after_lost is not None:
                    return after_lost(client, exc)
                raise
            except ClientError:
                with self.lock:
                    self.dead.add(url)
                    self.failovers += 1
                retried = True
                time.sleep(0.2)
            finally:
                client.close()
        raise AssertionError("no API process answered")


def _serve(port: int, state: Path, settings: Settings, authority: Path, trust: Path,
           log: Path) -> subprocess.Popen:
    env = {**os.environ, "GENI_AM_AUTHORITY": AUTHORITY,
           "GENI_AM_PUBLIC_URL": f"https://localhost:{port}/"}
    cmd = [str(GENI_AM), "serve", "--host", "127.0.0.1", "--port", str(port),
           "--cert", str(authority / "am-cert.pem"), "--key", str(authority / "am-key.pem"),
           "--trust-roots", str(trust), "--state-dir", str(state), "--threads", "8",
           "--database", settings.database_url, "--broker", settings.broker_url,
           "--inventory", settings.inventory]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _wait_up(make: Callable[[], AMClient], proc: subprocess.Popen, log: Path) -> None:
    def answers() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"geni-am serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with make() as client:
            try:
                client.get_version()
                return True
            except ClientError:
                return False
    support.wait_until(answers, "geni-am serve to answer", 40, 0.1,
                       detail=lambda: log.read_text()[-3000:])


def _statuses(client: AMClient, slice_urn: str) -> dict[str, str]:
    try:
        value = client.status(slice_urn)
    except AMError as exc:
        if exc.code == 12:        # SEARCHFAILED: nothing live in the slice
            return {}
        raise
    return {s["geni_sliver_urn"]: s["geni_operational_status"] for s in value["geni_slivers"]}


def _life_cycles(api: Api, index: int, slice_urn: str, started: threading.Event,
                 report: dict) -> None:
    rspec = request(*(node(f"c{index}n{i}") for i in range(SLIVERS)))
    done = 0
    for cycle in range(CYCLES):
        turn = index + cycle
        api.call(turn, lambda c: c.allocate(slice_urn, rspec))
        # by slice URN, so a retry also provisions what a lost first Allocate left allocated
        api.call(turn + 1, lambda c: c.provision([slice_urn]),
                 after_lost=lambda c, exc: None if exc.code in (3, 12, 13) else _raise(exc))
        started.set()
        def ready() -> bool:
            states = api.call(turn, lambda c: _statuses(c, slice_urn))
            assert "geni_failed" not in states.values(), states
            return bool(states) and all(s == "geni_ready" for s in states.values())
        support.wait_until(ready, f"{slice_urn} to be ready", 45, 0.1)
        if cycle < CYCLES - 1:
            api.call(turn + 1, lambda c: c.delete([slice_urn]),
                     after_lost=lambda c, exc: None if exc.code == 12 else _raise(exc))
            assert api.call(turn, lambda c: _statuses(c, slice_urn)) == {}
        done += 1
    report[slice_urn] = done


def _raise(exc: BaseException):
    raise exc


def test_two_apis_two_workers_survive_losing_one_of_each(tmp_path: Path, postgres_url: str,
                                                         redis_db: str):
    dev = DevAuthority.init(tmp_path / "authority", authority="geni-am")
    user = dev.user("carol")
    dev.server_cert(AUTHORITY, ["localhost", "127.0.0.1"])
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "dev-ca-cert.pem").write_bytes(dev.files["ca_cert"].read_bytes())
    slices = {f"urn:publicid:IDN+geni-am+slice+so{i}": dev.slice(f"so{i}", owner="carol")
              for i in range(CLIENTS)}

    inventory = tmp_path / "inventory.toml"
    inventory.write_text(f'[site]\nname = "scale-out"\n\n[drivers.fake]\nnodes = 6\n'
                         f'latency_s = {OP_S}\nstate_dir = "{tmp_path / "substrate"}"\n')
    settings = Settings(state_dir=str(tmp_path / "workers"), database_url=postgres_url,
                        broker_url=redis_db, authority=AUTHORITY, inventory=str(inventory))
    store = open_store(postgres_url, migrate=True)     # once, before anyone races to do it

    ports = [free_port(), free_port()]
    urls = [f"https://localhost:{p}/" for p in ports]
    serve_logs = [tmp_path / f"serve{i}.log" for i in range(2)]
    worker_logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    procs: list[subprocess.Popen] = []

    def client_for(url: str, cred: Path | None = None) -> AMClient:
        return AMClient(url, user.cert, user.key, ca=dev.files["ca_cert"],
                        credentials=[cred] if cred else [], timeout=15)

    try:
        serves = []
        for i in range(2):      # one after the other: the first syncs the inventory's capacity
            proc = _serve(ports[i], tmp_path / f"serve{i}", settings, dev.dir, trust,
                          serve_logs[i])
            procs.append(proc)
            serves.append(proc)
            _wait_up(lambda: client_for(urls[i]), proc, serve_logs[i])
        workers = [worker_process(settings, log, concurrency=2) for log in worker_logs]
        procs.extend(workers)

        report: dict[str, int] = {}
        errors: list[BaseException] = []
        started = threading.Event()
        apis: list[Api] = []

        def run(index: int, slice_urn: str, cred: Path) -> None:
            api = Api(urls, lambda url: client_for(url, cred))
            apis.append(api)
            try:
                _life_cycles(api, index, slice_urn, started, report)
            except BaseException as exc:   # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i, urn, cred), daemon=True)
                   for i, (urn, cred) in enumerate(slices.items())]
        for t in threads:
            t.start()
        assert started.wait(40), "no life cycle got going"
        # mid-run, while the first worker is inside a job: kill it with its pool, and one API
        interrupted = _wait_for_job_held_by(store, workers[0].pid)
        stop_process(workers[0], signal.SIGKILL)
        with store.read() as session:
            # the worker may finish that job between our look and the kill (a loaded machine)
            cut_off = session.get(Job, interrupted).state != "done"
        stop_process(serves[0], signal.SIGKILL)
        assert len(report) < CLIENTS, "the clients were done before anything was killed"
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "a client hung"
        assert not errors, errors
        assert report == {urn: CYCLES for urn in slices}
        assert sum(api.failovers for api in apis) >= 1, "no client noticed the dead API process"

        _wait_for_quiet_jobs(store)
        with store.read() as session:
            job = session.get(Job, interrupted)
            assert job.state == "done", job.state
            if cut_off:        # killed inside it: another worker ran it again to the end
                assert job.attempts >= 2, job.attempts
        _assert_consistent(store, settings, slices)
    finally:
        for proc in procs:
            stop_process(proc)
        store.close()


def _wait_for_job_held_by(store, process_group: int, timeout: float = 20.0) -> int:
    """The id of a job running under a lease owned by a process of `process_group` (lease
    owners are `<host>:<pid>:<thread>`)."""
    def held_by_group() -> int | None:
        with store.read() as session:
            held = session.execute(select(SliverLease.owner, SliverLease.job_id)
                                   .where(SliverLease.job_id.is_not(None))).all()
        for owner, job_id in held:
            try:
                if os.getpgid(int(owner.split(":")[1])) == process_group:
                    return job_id
            except (ProcessLookupError, ValueError, IndexError):
                continue
        return None
    return support.wait_until(held_by_group, "the first worker to hold a job", timeout, 0.01)


def _wait_for_quiet_jobs(store, timeout: float = 30.0) -> None:
    """Every job finished: the reconciler re-sent what the faults (a dead worker) held."""
    support.wait_jobs_quiet(store, timeout)


def _assert_consistent(store, settings: Settings, slices: dict[str, Path]) -> None:
    from drivers.registry import load_site

    with store.read() as session:
        slivers = session.execute(select(Sliver.id, Sliver.urn, Sliver.component_id,
                                         Sliver.allocation_state, Sliver.operational_state)).all()
        reservations = session.execute(select(Reservation.sliver_id, Reservation.component_id,
                                              Reservation.resource, Reservation.amount)).all()
        used = {(c.component_id, c.resource): c.used
                for c in session.scalars(select(Capacity))}
        claims = session.execute(select(Claim.sliver_id, Claim.component_id, Claim.token)).all()
        failed_jobs = session.execute(select(Job.sliver_id).where(Job.state == "failed")).all()
    # the session's PostgreSQL database is shared with other tests: judge this site's rows only
    ours = f"+{settings.authority}+"
    slivers = [s for s in slivers if ours in s.urn]
    mine = {s.id for s in slivers}
    reservations = [r for r in reservations if r.sliver_id in mine]
    claims = [c for c in claims if c.sliver_id in mine]
    used = {key: amount for key, amount in used.items() if ours in key[0]}
    failed_jobs = sum(1 for j in failed_jobs if j.sliver_id in mine)
    live = {s.id: s for s in slivers if s.allocation_state != "geni_unallocated"}
    # each slice ends with its last life cycle running: SLIVERS ready slivers per client
    assert len(live) == CLIENTS * SLIVERS, [(s.urn, s.allocation_state) for s in live.values()]
    for s in live.values():
        assert (s.allocation_state, s.operational_state) == ("geni_provisioned", "geni_ready"), s
    assert failed_jobs == 0

    # reservations: only live slivers hold any, each exactly one cpu + memory reservation, and
    # every component's used amount is exactly the sum of its reservations
    per_sliver = collections.Counter((r.sliver_id, r.resource) for r in reservations)
    assert {sid for sid, _ in per_sliver} == set(live), "a reservation lost or left behind"
    assert all(n == 1 for n in per_sliver.values()), f"reservation doubled: {per_sliver}"
    sums: dict[tuple[str, str], float] = collections.defaultdict(float)
    for r in reservations:
        sums[(r.component_id, r.resource)] += r.amount
        assert r.component_id == live[r.sliver_id].component_id
    for key, amount in used.items():
        assert abs(amount - sums.get(key, 0.0)) < 1e-6, (key, amount, sums.get(key))
    assert all(c.sliver_id in live for c in claims)
    assert len({(c.component_id, c.token) for c in claims}) == len(claims)

    # the substrate holds exactly the live slivers, each created once
    site = load_site(settings.inventory, authority=settings.authority,
                     state_dir=str(settings.state_path))
    try:
        fake = site.drivers["fake"]
        # the reconciler frees what a killed worker's delete left behind
        observed = lambda: sorted(o.sliver_urn or o.handle for o in fake.observed())  # noqa: E731
        support.wait_until(lambda: observed() == sorted(s.urn for s in live.values()),
                           "the substrate to hold exactly the live slivers", 15, 0.2,
                           detail=lambda: (observed(), sorted(s.urn for s in live.values())))
        for s in live.values():
            assert fake.counters(s.urn).created == 1
    finally:
        site.close()
