"""Real Redis and PostgreSQL for the suite.

Use the machine's servers on 127.0.0.1 when they answer; otherwise start private ones on free
loopback ports under a temporary directory and stop them at the end. A missing server binary is
a failure, never a skip: CI must not go green without the services the suite claims to test.
"""
from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator


class ServiceUnavailable(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def _redis_pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Yield a redis:// URL (the machine's on 6379, or a private one)."""
    if os.environ.get("GENI_AM_TEST_REDIS_URL"):
        yield os.environ["GENI_AM_TEST_REDIS_URL"]
        return
    if _redis_pings(6379):
        yield "redis://127.0.0.1:6379/0"
        return
    with tempfile.TemporaryDirectory(prefix="geniam-redis-") as d:
        server = RedisProcess(d)
        server.start()
        try:
            yield server.url
        finally:
            server.stop()


class RedisProcess:
    """A private redis-server (no persistence) on one loopback port, which a test may kill and
    start again on the same port (the chaos suite does)."""

    def __init__(self, directory: str, port: int | None = None):
        binary = shutil.which("redis-server")
        if not binary:
            raise ServiceUnavailable("redis-server is not installed (apt-get install redis-server)")
        self.binary, self.directory = binary, directory
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.directory],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: _redis_pings(self.port), "private redis-server", self.proc)

    def kill(self) -> None:
        """SIGKILL: every queued message and connection is lost at once."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                                                   reverse=True)), None)
    if not found:
        raise ServiceUnavailable(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
    return found


def _psql_ok(url: str) -> bool:
    try:
        import psycopg
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("select 1")
        return True
    except Exception:
        return False


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a SQLAlchemy URL of a fresh, empty database, dropped afterwards."""
    import psycopg

    base = os.environ.get("GENI_AM_TEST_POSTGRES_URL")
    proc_dir = None
    if not base:
        if _port_open(5432) and _psql_ok("postgresql://postgres@127.0.0.1:5432/postgres"):
            base = "postgresql://postgres@127.0.0.1:5432/postgres"
        else:
            proc_dir = tempfile.mkdtemp(prefix="geniam-pg-")
            base = _start_private_postgres(proc_dir)
    dbname = f"geniam_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        root = base.rsplit("/", 1)[0]
        yield f"{root.replace('postgresql://', 'postgresql+psycopg://', 1)}/{dbname}"
    finally:
        with contextlib.suppress(Exception):
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        if proc_dir:
            _stop_private_postgres(proc_dir)


def _run_as_postgres(cmd: list[str]) -> None:
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        def demote() -> None:
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
        subprocess.run(cmd, check=True, preexec_fn=demote, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    else:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _start_private_postgres(d: str) -> str:
    cluster = PostgresCluster(d)
    cluster.create()
    cluster.start()
    return cluster.base_url


def _stop_private_postgres(d: str) -> None:
    PostgresCluster(d).destroy()


class PostgresCluster:
    """A private PostgreSQL cluster (initdb) in `directory`, on a free loopback port, that a
    test may stop and start again (the chaos suite restarts it under load). fsync is off: the
    data need not survive the machine, only the server. Commits stay synchronous: with
    `synchronous_commit=off` a crash of the server (`stop("immediate")`) loses the last
    commits that clients were told had succeeded, which the chaos suite rightly reports."""

    def __init__(self, directory: str, port: int | None = None):
        self.directory = directory
        self.data = os.path.join(directory, "data")
        self.sock = os.path.join(directory, "sock")
        self.port = port or free_port()

    @property
    def base_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def create(self) -> None:
        os.makedirs(self.sock, exist_ok=True)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for path in (self.directory, self.sock):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        _run_as_postgres([_pg_bin("initdb"), "-D", self.data, "-A", "trust", "-U", "postgres",
                          "--no-sync"])

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c full_page_writes=off -c max_connections=200")
        _run_as_postgres([_pg_bin("pg_ctl"), "-D", self.data, "-l",
                          os.path.join(self.directory, "log"), "-o", opts, "-w", "start"])
        _wait(lambda: _psql_ok(self.base_url), "private PostgreSQL")

    def stop(self, mode: str = "fast") -> None:
        """`immediate` is a crash as far as clients can tell (no goodbye, recovery at start)."""
        _run_as_postgres([_pg_bin("pg_ctl"), "-D", self.data, "-m", mode, "-w", "stop"])

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


def _wait(ok, what: str, proc: subprocess.Popen | None = None, timeout: float = 20.0) -> None:
    from tests.support import exited, wait_until
    try:
        wait_until(ok, f"{what} to come up", timeout,
                   give_up=exited(proc) if proc is not None else None)
    except AssertionError as exc:       # the fixtures turn this into a failure, never a skip
        raise ServiceUnavailable(str(exc)) from None
