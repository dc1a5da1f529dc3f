"""The SSH gate and its sessions run inside the sliver's pids cgroup, and the default limit
leaves room for the most sessions the gate allows (real sshd, as root)."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from drivers.base import UserKeys
from drivers.vserver.logins import MAX_SESSIONS
from tests.drivers.vserver.conftest import make_driver
from tests.drivers.vserver.helpers import node
from tests.drivers.vserver.sshclient import keypair, ssh


@pytest.fixture
def sdriver():
    """SSH on, state under a 0755 directory (login uids must reach their homes)."""
    assert os.access("/usr/sbin/sshd", os.X_OK), "openssh-server is not installed"
    assert shutil.which("ssh"), "openssh-client is not installed"
    path = Path(tempfile.mkdtemp(prefix="geni-am-pids-"))
    path.chmod(0o755)
    drv = make_driver(path, ssh=True)
    yield drv
    for item in drv.observed():
        try:
            drv.release(item.handle)
        except Exception:   # noqa: BLE001 - best effort cleanup after a failed test
            pass
    drv.close()
    shutil.rmtree(path, ignore_errors=True)


def test_gate_and_sessions_fit_under_the_default_pids_max(sdriver, tmp_path):
    key = keypair(tmp_path, "alice")
    spec = node("gated", [], users=(UserKeys("urn:publicid:IDN+geni-am:vstest+user+alice",
                                             (key.public,)),))
    res = sdriver.provision(spec)
    handle = sdriver.node_handle(spec.sliver_urn)
    gate = sdriver.state.read(handle)["ssh"]["gate_pid"]
    pids_cgroup = sdriver.cgroups.dir("pids", handle)
    assert str(gate) in (pids_cgroup / "cgroup.procs").read_text().split()
    limit = sdriver.settings.default_pids_max
    assert sdriver.cgroups.limits(handle)["pids_max"] == limit == 1024
    port = res.logins[0].port
    with ThreadPoolExecutor(MAX_SESSIONS) as pool:
        runs = list(pool.map(lambda _: ssh(key, "alice", port, "cat /proc/self/cgroup; sleep 3",
                                           timeout=60), range(MAX_SESSIONS)))
    assert [r.returncode for r in runs] == [0] * MAX_SESSIONS, [r.stderr for r in runs]
    where = f"/{sdriver.settings.cgroup_parent}/{handle}"
    assert all(any(line.endswith(f":pids:{where}") for line in r.stdout.splitlines())
               for r in runs), runs[0].stdout
    events = (pids_cgroup / "pids.events").read_text().split()
    assert events[events.index("max") + 1] == "0", "a fork in the sliver hit pids.max"
    peak_file = pids_cgroup / "pids.peak"
    if peak_file.exists():
        peak = int(peak_file.read_text())
        print(f"\ngate + {MAX_SESSIONS} concurrent SSH sessions: peak {peak} tasks "
              f"(default pids_max {limit})")
        assert peak <= limit // 4, "the default limit leaves too little room beside the sessions"
    deadline = time.monotonic() + 20
    while sdriver.cgroups.pids_current(handle) > 1:      # sessions gone, the gate stays
        assert time.monotonic() < deadline, "finished sessions left tasks behind"
        time.sleep(0.05)
