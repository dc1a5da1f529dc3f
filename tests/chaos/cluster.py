"""A whole AM deployment on one machine for the chaos suite: a private PostgreSQL cluster and a
private Redis (both restartable on their ports), two `geni-am serve` processes and two
`geni-am worker` processes over one fake substrate. `geni-am worker` supervises its Celery
worker itself (am/worker_supervisor.py): a worker fault kills that Celery process and its pool,
and the supervisor starts a new one. For the API processes the test plays the supervisor:
`Cluster.supervise()` restarts whatever died, and counts deaths it did not cause."""
from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from am.client import AMClient, ClientError
from am.config import Settings
from credentials.authority import DevAuthority
from tests import support
from tests.interop.stack import free_port
from tests.jobs.conftest import REPO, stop_process, worker_process
from tests.services import PostgresCluster, RedisProcess

AUTHORITY = "geni-am:chaos"
GENI_AM = Path(sys.executable).with_name("geni-am")
KINDS = ("api", "worker", "redis", "postgres")


@dataclass
class Managed:
    """One AM process the supervisor keeps running."""

    name: str
    start: Callable[[], subprocess.Popen]
    log: Path
    proc: subprocess.Popen | None = None
    down: bool = False          # held down on purpose (between a kill and its restart)
    starts: int = 0
    log_from: int = 0           # where this run's output begins in the (appended) log

    def launch(self) -> None:
        self.log_from = self.log.stat().st_size if self.log.exists() else 0
        self.proc = self.start()
        self.starts += 1

    def output(self) -> str:
        """What the current (or last) run of the process wrote."""
        with self.log.open("rb") as fh:
            fh.seek(self.log_from)
            return fh.read().decode("utf-8", "replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Counts:
    kills: Counter = field(default_factory=Counter)          # kind -> times killed/restarted
    unexpected_deaths: list[tuple[str, str]] = field(default_factory=list)   # (what, output)
    restarts: int = 0


class Cluster:
    def __init__(self, tmp: Path, *, nodes: int, latency_s: float = 0.05):
        self.tmp = tmp
        self.counts = Counts()
        self.lock = threading.Lock()
        self.dev = DevAuthority.init(tmp / "authority", authority="geni-am")
        self.user = self.dev.user("carol")
        self.dev.server_cert(AUTHORITY, ["localhost", "127.0.0.1"])
        self.trust = tmp / "trust"
        self.trust.mkdir()
        (self.trust / "dev-ca-cert.pem").write_bytes(self.dev.files["ca_cert"].read_bytes())
        # PostgreSQL's data directory must be reachable by the postgres user
        self.pg = PostgresCluster(tempfile.mkdtemp(prefix="geniam-chaos-pg-"))
        self.redis = RedisProcess(str(tmp))
        self.inventory = tmp / "inventory.toml"
        self.inventory.write_text(f'[site]\nname = "chaos"\n\n[drivers.fake]\nnodes = {nodes}\n'
                                  f'latency_s = {latency_s}\n'
                                  f'state_dir = "{tmp / "substrate"}"\n')
        self.ports = [free_port(), free_port()]
        self.urls = [f"https://localhost:{p}/" for p in self.ports]
        self.apis: list[Managed] = []
        self.workers: list[Managed] = []
        self.settings: Settings | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # ---- start and stop -------------------------------------------------------------------
    def start(self) -> None:
        import psycopg

        self.pg.create()
        self.pg.start()
        with psycopg.connect(self.pg.base_url, autocommit=True) as conn:
            conn.execute('CREATE DATABASE "geniam_chaos"')
        database = self.pg.base_url.replace("postgresql://", "postgresql+psycopg://", 1) \
            .rsplit("/", 1)[0] + "/geniam_chaos"
        self.redis.start()
        self.settings = Settings(state_dir=str(self.tmp / "workers"), database_url=database,
                                 broker_url=self.redis.url, authority=AUTHORITY,
                                 inventory=str(self.inventory))
        from am.store import open_store
        open_store(database, migrate=True).close()     # once, before anyone races to do it
        for i in range(2):
            api = Managed(f"api{i}", lambda i=i: self._serve(i), self.tmp / f"api{i}.log")
            api.launch()
            self.apis.append(api)
            self.wait_api(i)      # one after the other: the first syncs the capacity rows
        for i in range(2):
            log = self.tmp / f"worker{i}.log"
            worker = Managed(f"worker{i}", lambda log=log: worker_process(
                self.settings, log, concurrency=2), log)
            worker.launch()
            self.workers.append(worker)

    def _serve(self, i: int) -> subprocess.Popen:
        assert self.settings is not None
        port = self.ports[i]
        env = {**os.environ, "GENI_AM_AUTHORITY": AUTHORITY,
               "GENI_AM_PUBLIC_URL": f"https://localhost:{port}/"}
        cmd = [str(GENI_AM), "serve", "--host", "127.0.0.1", "--port", str(port),
               "--cert", str(self.dev.dir / "am-cert.pem"),
               "--key", str(self.dev.dir / "am-key.pem"), "--trust-roots", str(self.trust),
               "--state-dir", str(self.tmp / f"serve{i}"), "--threads", "8",
               "--database", self.settings.database_url, "--broker", self.settings.broker_url,
               "--inventory", str(self.inventory)]
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=(self.tmp / f"api{i}.log").open("ab"),
                                stderr=subprocess.STDOUT, start_new_session=True)

    def client(self, url: str, credential: Path | None = None, timeout: float = 30.0) -> AMClient:
        return AMClient(url, self.user.cert, self.user.key, ca=self.dev.files["ca_cert"],
                        credentials=[credential] if credential else [], timeout=timeout)

    def wait_api(self, i: int, timeout: float = 60.0) -> None:
        api = self.apis[i]

        def answers() -> bool:
            if not api.alive():
                raise AssertionError(f"{api.name} exited: {api.log.read_text()[-3000:]}")
            with self.client(self.urls[i], timeout=5) as c:
                with contextlib.suppress(ClientError):
                    c.get_version()
                    return True
            return False
        support.wait_until(answers, f"{api.name} to answer", timeout, 0.1,
                           detail=lambda: api.log.read_text()[-3000:])

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)
        for m in self.apis + self.workers:
            if m.proc is not None:
                stop_process(m.proc)
        self.redis.stop()
        self.pg.destroy()

    # ---- the supervisor -------------------------------------------------------------------
    def supervise(self) -> None:
        """Restart dead AM processes (as systemd or supervisord would); a death that no
        chaos action caused is recorded with the end of its log."""
        def loop() -> None:
            while not self._stop.wait(0.2):
                for m in self.apis + self.workers:
                    with self.lock:
                        if m.down or m.alive():
                            continue
                        code = m.proc.returncode if m.proc else None
                        self.counts.unexpected_deaths.append(
                            (f"{m.name} exited with {code} (log {m.log})", m.output()))
                        m.launch()
                        self.counts.restarts += 1
        self._spawn(loop)

    def _spawn(self, fn: Callable[[], None]) -> None:
        t = threading.Thread(target=fn, daemon=True)
        t.start()
        self._threads.append(t)

    # ---- chaos ----------------------------------------------------------------------------
    def chaos(self, rounds: int, gap_s: tuple[float, float], seed: int) -> threading.Event:
        """In a thread: every kind of fault `rounds` times in a shuffled order, a random gap
        between two faults. The event is set once the last fault has been repaired."""
        rng = random.Random(seed)
        plan = [k for k in KINDS for _ in range(rounds)]
        rng.shuffle(plan)
        done = threading.Event()

        def loop() -> None:
            for kind in plan:
                if self._stop.wait(rng.uniform(*gap_s)):
                    break
                getattr(self, f"_fault_{kind}")(rng, rng.uniform(0.2, 1.5))
                with self.lock:
                    self.counts.kills[kind] += 1
            done.set()
        self._spawn(loop)
        return done

    def _kill_managed(self, m: Managed, down_s: float) -> None:
        with self.lock:
            m.down = True
            if m.proc is not None and m.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(m.proc.pid, signal.SIGKILL)    # with its pool children
                m.proc.wait(10)
        time.sleep(down_s)
        with self.lock:
            m.launch()
            m.down = False

    def _fault_api(self, rng: random.Random, down_s: float) -> None:
        self._kill_managed(rng.choice(self.apis), down_s)

    def _fault_worker(self, rng: random.Random, down_s: float) -> None:
        """SIGKILL the Celery worker under a `geni-am worker` (its main process and its pool,
        as the OOM killer or a crash would); the supervisor starts a new one."""
        m = rng.choice(self.workers)
        assert m.proc is not None
        for pid in descendants(m.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _fault_redis(self, rng: random.Random, down_s: float) -> None:
        self.redis.kill()
        time.sleep(down_s)
        self.redis.start()

    def _fault_postgres(self, rng: random.Random, down_s: float) -> None:
        self.pg.stop("immediate")       # a crash, as far as every connection can tell
        time.sleep(down_s)
        self.pg.start()

    def workers_alive(self) -> list[str]:
        """The `geni-am worker`s running with a Celery worker under them."""
        return [m.name for m in self.workers if m.alive() and any(
            "--no-supervise" in _cmdline(pid) for pid in descendants(m.proc.pid))]


def descendants(pid: int) -> list[int]:
    try:
        kids = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return kids + [g for k in kids for g in descendants(k)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
