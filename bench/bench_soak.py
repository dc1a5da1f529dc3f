"""Soak: mixed AM API calls for N minutes against a served AM, with the memory (RSS) and open
file descriptors of the server and the worker sampled throughout, and their growth reported.

Starts a private redis-server, `geni-am serve` (development authority, fake nodes, SQLite in a
temporary state directory, Redis as broker) and one `geni-am worker` process, then runs client
threads that each repeat a whole life cycle (GetVersion, ListResources plain and compressed,
Allocate, Provision, Status until geni_ready, Describe, Renew, PerformOperationalAction
geni_restart, Delete), every other cycle on a new TLS connection per call, paced to --rate
calls per second in all. Every --sample-s seconds it samples the server's and the worker's
RSS (the worker with its pool processes) and open fds.

The summary gives, per process, the first sample, the sample after warm-up (the first tenth of
the run), the last sample, and the least-squares slope over the last third of the run (growth
that is still going on at the end is a leak; a step during warm-up is caches filling).
Ctrl-C ends the run early and still prints the summary.

    .venv/bin/python bench/bench_soak.py [--minutes 30] [--clients 4] [--rate 20] [--sample-s 10]
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_api import free_port, stop_server  # noqa: E402


@dataclass(frozen=True)
class Sample:
    t: float                  # seconds since the start
    calls: int
    rss_kib: dict[str, int]   # "server" / "worker" -> KiB
    fds: dict[str, int]


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    kids = [int(p) for p in text.split()]
    return kids + [g for k in kids for g in _children(k)]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def measure(pid: int, with_children: bool) -> tuple[int, int]:
    """(RSS KiB, open fds) of `pid`, plus its descendants when `with_children`."""
    pids = [pid] + (_children(pid) if with_children else [])
    rss = fds = 0
    for p in pids:
        try:
            rss += _rss_kib(p)
            fds += _fds(p)
        except OSError:       # a pool process replaced between listing and reading
            continue
    return rss, fds


def slope_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mx) * (v - my) for t, v in points) / var * 60.0


class Pacer:
    """At most `rate` calls per second across all client threads."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate
        self.next = time.monotonic()
        self.lock = threading.Lock()

    def wait(self, stop: threading.Event) -> bool:
        with self.lock:
            now = time.monotonic()
            at = max(self.next, now)
            self.next = at + self.interval
        return not stop.wait(max(0.0, at - now))


class Load:
    """Client threads running life cycles; counts calls and unexpected answers by method."""

    def __init__(self, url: str, files: dict, cred_paths: list[Path], slices: list[str],
                 rate: float):
        self.url, self.files = url, files
        self.creds, self.slices = cred_paths, slices
        self.pacer = Pacer(rate)
        self.stop = threading.Event()
        self.calls: Counter = Counter()
        self.errors: Counter = Counter()
        self.last_error = ""
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(len(slices))]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def total(self) -> int:
        with self.lock:
            return sum(self.calls.values())

    def _client(self, i: int):
        from am.client import AMClient
        return AMClient(self.url, self.files["cert"], self.files["key"], ca=self.files["ca"],
                        credentials=[self.creds[i]], timeout=60)

    def _call(self, name: str, fn, client_box: list, i: int, fresh: bool):
        from am.client import ClientError
        if not self.pacer.wait(self.stop):
            raise _Stopped()
        if fresh:             # a new TLS connection (and handshake) for this call
            client_box[0].close()
            client_box[0] = self._client(i)
        try:
            return fn(client_box[0])
        except ClientError as exc:
            with self.lock:
                self.errors[name] += 1
                self.last_error = f"{name}: {exc}"
            raise _Failed() from None
        finally:
            with self.lock:
                self.calls[name] += 1

    def _run(self, i: int) -> None:
        from am.client.errors import AMError
        slice_urn = self.slices[i]
        rspec = ('<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request">'
                 f'<node client_id="s{i}a" exclusive="false"/>'
                 f'<node client_id="s{i}b" exclusive="false"/></rspec>')
        box = [self._client(i)]
        cycle = 0
        try:
            while not self.stop.is_set():
                fresh = cycle % 2 == 1
                cycle += 1
                try:
                    c = lambda name, fn: self._call(name, fn, box, i, fresh)  # noqa: E731
                    c("GetVersion", lambda a: a.get_version())
                    c("ListResources", lambda a: a.list_resources())
                    c("ListResources/compressed", lambda a: a.list_resources(compressed=True))
                    c("Allocate", lambda a: a.allocate(slice_urn, rspec))
                    c("Provision", lambda a: a.provision([slice_urn]))
                    deadline = time.monotonic() + 60
                    while True:
                        st = c("Status", lambda a: a.status([slice_urn]))
                        ops = {s["geni_operational_status"] for s in st["geni_slivers"]}
                        if ops == {"geni_ready"} or time.monotonic() > deadline:
                            break
                    c("Describe", lambda a: a.describe([slice_urn]))
                    until = datetime.now(timezone.utc) + timedelta(hours=1)
                    c("Renew", lambda a: a.renew([slice_urn], until))
                    c("PerformOperationalAction",
                      lambda a: a.perform_operational_action([slice_urn], "geni_restart"))
                    c("Delete", lambda a: a.delete([slice_urn]))
                except _Failed:
                    try:                       # start the next cycle from an empty slice
                        box[0].delete([slice_urn])
                    except AMError:
                        pass
                    except Exception:          # noqa: BLE001 - the soak goes on
                        pass
        except _Stopped:
            pass
        finally:
            box[0].close()


class _Stopped(Exception):
    pass


class _Failed(Exception):
    pass


def start_processes(state: Path, port: int, redis_port: int, dev, fake_nodes: int):
    env = dict(os.environ, GENI_AM_FAKE_NODES=str(fake_nodes), GENI_AM_STATE_DIR=str(state))
    broker = f"redis://127.0.0.1:{redis_port}/0"
    logs = {name: (state / f"{name}.log").open("wb") for name in ("redis", "server", "worker")}
    # each in its own session: Ctrl-C stops the soak, which then stops them
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", str(state)],
                             stdout=logs["redis"], stderr=subprocess.STDOUT,
                             start_new_session=True)
    common = ["--state-dir", str(state), "--broker", broker]
    server = subprocess.Popen([sys.executable, "-m", "am", "serve", *common, "--port", str(port),
                               "--threads", "16"], env=env, stdout=logs["server"],
                              stderr=subprocess.STDOUT, cwd=str(REPO), start_new_session=True)
    worker = subprocess.Popen([sys.executable, "-m", "am", "worker", *common, "--concurrency",
                               "2"], env=env, stdout=logs["worker"], stderr=subprocess.STDOUT,
                              cwd=str(REPO), start_new_session=True)
    files = {"ca": str(dev.trust_roots / "ca-cert.pem"), "cert": str(dev.user_cert),
             "key": str(dev.user_key)}
    return redis, server, worker, files


def wait_serving(url: str, files: dict, procs: dict[str, subprocess.Popen], state: Path) -> None:
    from am.client import AMClient, ClientError
    deadline = time.monotonic() + 90
    while True:
        for name, proc in procs.items():
            if proc.poll() is not None:
                tail = (state / f"{name}.log").read_text(errors="replace")[-3000:]
                raise SystemExit(f"{name} exited with {proc.returncode}:\n{tail}")
        try:
            with AMClient(url, files["cert"], files["key"], ca=files["ca"], timeout=5) as c:
                c.get_version()
            return
        except ClientError:
            if time.monotonic() > deadline:
                raise SystemExit("the AM did not answer within 90 s") from None
            time.sleep(0.3)


def summary(samples: list[Sample], load: Load, elapsed: float, interrupted: bool) -> str:
    lines = [f"soak {'interrupted after' if interrupted else 'ran'} {elapsed / 60:.1f} min: "
             f"{load.total()} calls ({load.total() / max(elapsed, 1e-9):.1f}/s), "
             f"{sum(load.errors.values())} failed"]
    lines.append("  calls: " + ", ".join(f"{k} {v}" for k, v in sorted(load.calls.items())))
    if load.errors:
        lines.append("  failed: " + ", ".join(f"{k} {v}" for k, v in sorted(load.errors.items()))
                     + f"; last: {load.last_error[:300]}")
    if len(samples) < 2:
        lines.append("  (fewer than two samples: no growth to report)")
        return "\n".join(lines)
    end = samples[-1].t
    warm = next((s for s in samples if s.t >= end / 10), samples[0])
    third = [s for s in samples if s.t >= end * 2 / 3]
    lines.append(f"  {len(samples)} samples; warm-up sample at {warm.t / 60:.1f} min; slope over "
                 f"the last third ({len(third)} samples, from {third[0].t / 60:.1f} min)")
    lines.append(f"  {'':<8}{'':<5}{'first':>10}{'warm':>10}{'last':>10}{'last-warm':>11}"
                 f"{'slope/min':>11}{'slope/h':>10}")
    for who in ("server", "worker"):
        for what, get, unit in (("RSS", lambda s, w=who: s.rss_kib[w] / 1024, "MiB"),
                                ("fds", lambda s, w=who: float(s.fds[w]), "")):
            slope = slope_per_min([(s.t, get(s)) for s in third])
            fmt = (lambda v: f"{v:.1f}") if unit else (lambda v: f"{v:.0f}")
            lines.append(f"  {who:<8}{what:<5}{fmt(get(samples[0])):>10}{fmt(get(warm)):>10}"
                         f"{fmt(get(samples[-1])):>10}{get(samples[-1]) - get(warm):>+11.1f}"
                         f"{slope:>+11.2f}{slope * 60:>+10.1f}  {unit}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the soak (30)")
    parser.add_argument("--clients", type=int, default=4, help="client threads (4)")
    parser.add_argument("--rate", type=float, default=20.0,
                        help="calls per second, all clients together (20)")
    parser.add_argument("--sample-s", type=float, default=10.0, help="sampling interval (10)")
    parser.add_argument("--fake-nodes", type=int, default=20)
    args = parser.parse_args(argv)
    if min(args.minutes, args.clients, args.rate, args.sample_s) <= 0:
        parser.error("every number must be positive")
    if not shutil.which("redis-server"):
        parser.error("redis-server is not installed (apt-get install redis-server)")

    from am.bootstrap import ensure_dev_authority
    from am.config import Settings
    from credentials.authority import DevAuthority

    state = Path(tempfile.mkdtemp(prefix="geniam-soak-"))
    port, redis_port = free_port(), free_port()
    settings, dev = ensure_dev_authority(Settings(state_dir=str(state), port=port))
    authority = DevAuthority(dev.authority_dir)
    top = settings.authority.split(":", 1)[0]
    slices = [f"urn:publicid:IDN+{top}+slice+soak{i}" for i in range(args.clients)]
    creds = [authority.slice(f"soak{i}", owner="alice") for i in range(args.clients)]
    redis, server, worker, files = start_processes(state, port, redis_port, dev, args.fake_nodes)
    url = f"https://127.0.0.1:{port}/"
    samples: list[Sample] = []
    load = Load(url, files, creds, slices, args.rate)
    interrupted = False
    started = time.monotonic()
    try:
        wait_serving(url, files, {"redis": redis, "server": server, "worker": worker}, state)
        print(f"soak: {args.minutes:g} min, {args.clients} clients, {args.rate:g} calls/s, "
              f"sample every {args.sample_s:g} s; server pid {server.pid}, worker pid "
              f"{worker.pid}; state {state}", flush=True)
        started = time.monotonic()
        load.start()
        end = started + args.minutes * 60
        while True:
            now = time.monotonic()
            s_rss, s_fds = measure(server.pid, with_children=False)
            w_rss, w_fds = measure(worker.pid, with_children=True)
            samples.append(Sample(now - started, load.total(), {"server": s_rss, "worker": w_rss},
                                  {"server": s_fds, "worker": w_fds}))
            print(f"  {(now - started) / 60:6.1f} min {load.total():>8} calls  server "
                  f"{s_rss / 1024:7.1f} MiB {s_fds:4} fds  worker {w_rss / 1024:7.1f} MiB "
                  f"{w_fds:4} fds", flush=True)
            for name, proc in (("server", server), ("worker", worker)):
                if proc.poll() is not None:
                    raise SystemExit(f"the {name} exited with {proc.returncode}; see "
                                     f"{state / (name + '.log')}")
            if now >= end:
                break
            time.sleep(min(args.sample_s, max(0.0, end - now)))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)   # a second Ctrl-C must not cut the summary
        elapsed = time.monotonic() - started
        load.stop.set()
        for t in load.threads:
            t.join(70)
        for proc in (server, worker):
            stop_server(proc)
        redis.terminate()
        redis.wait(10)
        print(summary(samples, load, elapsed, interrupted), flush=True)
        shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
