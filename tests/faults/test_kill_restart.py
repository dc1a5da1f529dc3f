"""`geni-am serve` (a real subprocess: SQLite in its state directory, the fake site, the
embedded worker) is SIGKILLed in the middle of a life cycle and started again on the same state
directory: no sliver is lost or duplicated, the life cycle completes, Delete frees capacity."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from am.client import AMClient, ClientError
from tests.support import exited, wait_until
from tests.interop.stack import (AM_AUTHORITY, GCF_SLICE, component_urn, free_port,
                                 make_dev_authority, node, request, trust_roots)

REPO = Path(__file__).resolve().parents[2]
GENI_AM = Path(sys.executable).with_name("geni-am")


@contextmanager
def serve(state: Path, port: int, authority_dir: Path, trust: Path, log: Path
          ) -> Iterator[subprocess.Popen]:
    env = {**os.environ, "GENI_AM_AUTHORITY": AM_AUTHORITY, "GENI_AM_FAKE_NODES": "4",
           "GENI_AM_PUBLIC_URL": f"https://localhost:{port}/"}
    cmd = [str(GENI_AM), "serve", "--host", "127.0.0.1", "--port", str(port),
           "--cert", str(authority_dir / "am-cert.pem"), "--key", str(authority_dir / "am-key.pem"),
           "--trust-roots", str(trust), "--state-dir", str(state), "--threads", "8"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def wait_up(client: AMClient, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    def answers() -> bool:
        try:
            client.get_version()
            return True
        except ClientError:
            client.close()
            raise
    wait_until(answers, "geni-am serve to answer", timeout, 0.1, ignoring=(ClientError,),
               give_up=exited(proc, lambda: log.read_text()[-3000:]),
               detail=lambda: log.read_text()[-3000:])


def sliver_view(client: AMClient) -> dict[str, str]:
    """sliver URN -> allocation state, from Status; asserting Describe agrees."""
    status = client.status(GCF_SLICE)["geni_slivers"]
    urns = [s["geni_sliver_urn"] for s in status]
    assert len(urns) == len(set(urns)), "duplicated sliver in Status"
    described = client.describe(GCF_SLICE)
    assert sorted(s["geni_sliver_urn"] for s in described["geni_slivers"]) == sorted(urns)
    for urn in urns:
        assert described["geni_rspec"].count(f'sliver_id="{urn}"') == 1
    return {s["geni_sliver_urn"]: s["geni_allocation_status"] for s in status}


@pytest.mark.slow
def test_sigkill_mid_life_cycle_loses_and_duplicates_nothing(tmp_path: Path, gcf_fixtures: Path):
    dev = make_dev_authority(tmp_path / "authority")
    trust = trust_roots(tmp_path / "trust", gcf_fixtures, dev)
    state, log, port = tmp_path / "state", tmp_path / "serve.log", free_port()

    def client() -> AMClient:
        return AMClient(f"https://localhost:{port}/", gcf_fixtures / "alice-cert.pem",
                        gcf_fixtures / "alice-key.pem", ca=dev.files["ca_cert"],
                        credentials=[gcf_fixtures / "slice-cred-alice.xml"], timeout=10)

    with serve(state, port, dev.dir, trust, log) as first:
        alice = client()
        wait_up(alice, first, log)
        alloc = alice.allocate(GCF_SLICE, request(node("k1"), node("k2"), node("k3")))
        slivers = sorted(s["geni_sliver_urn"] for s in alloc["geni_slivers"])
        # provision two of the three; the third stays allocated
        alice.provision(slivers[:2])
        before = sliver_view(alice)
        alice.close()
        first.send_signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL

    assert sorted(before) == slivers
    with serve(state, port, dev.dir, trust, log) as second:
        alice = client()
        wait_up(alice, second, log)
        after = sliver_view(alice)
        assert after == before                    # same slivers, same states, nothing new
        # the life cycle goes on: provision the rest, everything gets ready
        alice.provision(slivers[2:])
        done = alice.wait(GCF_SLICE, interval=0.1, timeout=30, start=True)
        assert not done.timed_out and done.all_ready, (done.progress.slivers,
                                                      log.read_text()[-2000:])
        assert sorted(s["geni_sliver_urn"] for s in done.progress.slivers) == slivers
        # exactly one substrate sliver per sliver URN on the fake site
        deleted = alice.delete(GCF_SLICE)
        assert sorted(s["geni_sliver_urn"] for s in deleted) == slivers
        # capacity is back: all four nodes can be taken exclusively at once
        whole = request(*(node(f"x{i}", component=component_urn(f"fake{i}"), exclusive=True)
                          for i in range(1, 5)))
        taken = alice.allocate(GCF_SLICE, whole)
        assert len(taken["geni_slivers"]) == 4
        alice.delete(GCF_SLICE)
        alice.close()
