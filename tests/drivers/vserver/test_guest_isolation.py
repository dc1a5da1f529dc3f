"""A hostile experimenter against the guest: what an execute or a login can reach (issue 12).

Each test is a way out that the namespace-only containers left open: an execute reading a
host file, leaving its cgroups or network namespace, or outliving Delete; a login reading the
AM's database, another sliver's files or processes, or a host Unix socket; a long execute
holding up readiness; an install of a host file.
"""
from __future__ import annotations

import os
import socket
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest

from drivers.base import DriverError, OperationalState, UserKeys, Usage
from rspec.model import Execute, Install
from tests.drivers.vserver.conftest import driven
from tests.drivers.vserver.helpers import COMPONENT, guest_read, guest_run, node
from tests.drivers.vserver.sshclient import keypair, ssh
from tests.support import wait_until

pytestmark = pytest.mark.root


@pytest.fixture
def secrets():
    """Host files a guest must never see: a root-only key, a world-readable 'database' and a
    listening Unix socket anybody may connect to, under a 0755 directory."""
    d = Path(tempfile.mkdtemp(prefix="gam12a-host-"))
    d.chmod(0o755)
    key = d / "ca-key.pem"
    key.write_text("HOST-PRIVATE-KEY\n")
    key.chmod(0o600)
    db = d / "am.sqlite"
    db.write_text("DB-CONTENT-7731\n")
    db.chmod(0o644)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(d / "db.sock"))
    os.chmod(d / "db.sock", 0o777)
    sock.listen(8)
    try:
        yield d
    finally:
        sock.close()
        for p in d.iterdir():
            p.unlink()
        d.rmdir()


def _netns_inode(name: str) -> int:
    return os.stat(f"/run/netns/{name}").st_ino


def _sleepers(drv, handle: str) -> set[int]:
    """Host pids of the sliver's `sleep 100x` processes."""
    out = set()
    for pid in drv.cgroups.pids(handle):
        try:
            if b"sleep\x00100" in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.add(pid)
        except OSError:
            pass
    return out


ESCAPE = """
cat {key} > /report 2>&1; echo "key rc=$?" >> /report
cat /proc/1/environ >> /report 2>&1; echo "environ rc=$?" >> /report
echo $$ > /sys/fs/cgroup/cpu/tasks 2>> /report; echo "cgroup rc=$?" >> /report
nsenter --net=/proc/1/ns/net true 2>> /report; echo "nsenter rc=$?" >> /report
ls /run/netns >> /report 2>&1; echo "netns rc=$?" >> /report
setsid sh -c 'sleep 1000 & sleep 1001' < /dev/null > /dev/null 2>&1 &
echo done >> /report
"""


def test_an_execute_reads_no_host_file_stays_in_its_cgroups_and_netns_and_dies_with_delete(
        tmp_path, secrets):
    spec = node("hostile", [], executes=(Execute("sh", ESCAPE.format(key=secrets / "ca-key.pem")),))
    with driven(tmp_path) as drv:
        drv.provision(spec)
        handle = drv.node_handle(spec.sliver_urn)
        report = wait_until(lambda: (t := guest_read(drv, spec, "/report")) and "done" in t and t,
                            "the escape script's report", 15)
        assert "HOST-PRIVATE-KEY" not in report
        for step in ("key", "cgroup", "nsenter", "netns"):
            assert f"{step} rc=0" not in report, report
        assert "environ rc=0" not in report            # init is not dumpable: no peeking
        wait_until(lambda: len(_sleepers(drv, handle)) == 2, "two sleepers", 15)
        pids = drv.cgroups.pids(handle)
        netns = _netns_inode(handle)
        init = drv.state.read(handle)["guest"]["pid"]
        for pid in pids:                                # every process stayed where it was put
            assert os.stat(f"/proc/{pid}/ns/net").st_ino == netns
            cg = Path(f"/proc/{pid}/cgroup").read_text()
            for ctrl in ("cpu", "pids"):
                assert f":{ctrl}:/geni-am/{handle}\n" in cg
            # the init stays out of the memory limit (an OOM never takes it, and with it the
            # guest); everything it starts is in
            assert (f":memory:/geni-am/{handle}\n" in cg) == (pid != init)
            status = Path(f"/proc/{pid}/status").read_text()
            uid_line = next(l for l in status.splitlines() if l.startswith("Uid:"))
            assert min(int(u) for u in uid_line.split()[1:]) >= drv.settings.guest_id_base
            cap_eff = next(l for l in status.splitlines() if l.startswith("CapEff:"))
            # capabilities, if any, are the guest user namespace's, never the host's
            assert os.stat(f"/proc/{pid}/ns/user").st_ino != os.stat("/proc/self/ns/user").st_ino \
                or int(cap_eff.split()[1], 16) == 0
        drv.delete(spec)
        for pid in pids:                                # nothing outlived Delete, escaped or not
            assert not Path(f"/proc/{pid}").exists() or \
                Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] == "Z"
        assert not drv.cgroups.exists(handle)


def test_stop_ends_every_process_of_the_guest_and_start_brings_it_back(tmp_path):
    spec = node("stopper", [], executes=(Execute(
        "sh", "setsid sh -c 'sleep 1000 & sleep 1001' < /dev/null > /dev/null 2>&1 & sleep 1002"),))
    with driven(tmp_path) as drv:
        drv.provision(spec)
        handle = drv.node_handle(spec.sliver_urn)
        wait_until(lambda: len(_sleepers(drv, handle)) == 3, "three sleepers", 15)
        pids = drv.cgroups.pids(handle)
        assert drv.perform(spec, "geni_stop") is OperationalState.NOTREADY
        assert drv.cgroups.pids(handle) == set()
        assert not any(Path(f"/proc/{p}/cmdline").exists() and b"sleep" in
                       Path(f"/proc/{p}/cmdline").read_bytes() for p in pids)
        assert drv.perform(spec, "geni_start") is OperationalState.READY
        assert wait_until(lambda: len(_sleepers(drv, handle)) == 3, "three sleepers", 15)


def test_a_login_reads_no_database_no_other_sliver_and_no_host_socket(tmp_path, secrets):
    key = keypair(tmp_path, "mallory")
    users = (UserKeys("urn:publicid:IDN+x+user+mallory", (key.public,)),)
    a = node("la", [], users=users)
    b = node("lb", [], executes=(Execute("sh", "echo B-CONTENT-5521 > /b-secret; sleep 1000"),))
    with driven(tmp_path, ssh=True) as drv:
        port = drv.provision(a).logins[0].port
        drv.provision(b)
        hb = drv.node_handle(b.sliver_urn)
        wait_until(lambda: guest_read(drv, b, "/b-secret"), "b's secret file", 15)
        b_upper = drv.guests.upper(hb)
        assert (b_upper / "b-secret").exists()           # it is there, on the host
        probe = (f"cat {secrets / 'am.sqlite'}; cat {b_upper / 'b-secret'}; "
                 f"python3 -c \"import socket; s = socket.socket(socket.AF_UNIX); "
                 f"s.connect('{secrets / 'db.sock'}'); print('CONNECT' + 'ED')\"")
        out = ssh(key, "mallory", port, probe)
        assert "DB-CONTENT" not in out.stdout and "B-CONTENT" not in out.stdout, out.stdout
        assert "CONNECTED" not in out.stdout
        assert out.stderr.count("No such file") >= 3, out.stderr
        assert "sleep" not in ssh(key, "mallory", port, "ps").stdout  # b's are not in a's PID ns
        # the same socket answers from the host, so the guest is what stops the login
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(secrets / "db.sock"))
        # and the login is an ordinary account, not the guest's root
        assert ssh(key, "mallory", port, "id -u; cat /etc/ssh/ssh_host_ed25519_key"
                   ).stdout.split()[0] == "1000"


def test_a_60s_execute_leaves_the_sliver_ready_and_exit_codes_show_in_the_status(tmp_path):
    spec = node("slow", [], executes=(Execute("sh", "sleep 60; echo late"),
                                      Execute("sh", "echo hello from execute; exit 3")))
    with driven(tmp_path) as drv:
        started = time.monotonic()
        res = drv.provision(spec)
        took = time.monotonic() - started
        assert res.state is OperationalState.READY and took < 15, took
        assert drv.status(spec) is OperationalState.READY
        text = wait_until(lambda: (t := drv.live_status(spec)) and "exited 3" in t and t,
                          "the execute to exit 3", 15)
        assert "execute-0: running" in text
        assert "execute-1: exited 3 (hello from execute)" in text


def test_file_urls_outside_the_install_dir_are_refused_naming_the_url(tmp_path):
    allowed = tmp_path / "installs"
    allowed.mkdir()
    (allowed / "shadow-link").symlink_to("/etc/shadow")
    with driven(tmp_path, install_dir=str(allowed)) as drv:
        for url in ("file:///etc/shadow", f"file://{allowed}/shadow-link",
                    f"file://{allowed}/../../../etc/shadow"):
            spec = node("inst", [], installs=(Install(url, "/local"),))
            adm = drv.admit(spec, Usage(component_id=COMPONENT))
            assert not adm.ok and adm.reason_code == "BADARGS" and url in adm.reason
            with pytest.raises(DriverError, match="outside the directory"):
                drv.provision(spec)
            drv.delete(spec)
    with driven(tmp_path / "none") as drv:                   # no install_dir: no file:// at all
        spec = node("inst", [], installs=(Install("file:///etc/shadow", "/local"),))
        adm = drv.admit(spec, Usage(component_id=COMPONENT))
        assert adm.reason_code == "BADARGS" and "file:///etc/shadow" in adm.reason


def test_guest_root_is_an_unprivileged_host_uid_with_its_own_proc(tmp_path):
    spec = node("who", [])
    with driven(tmp_path) as drv:
        drv.provision(spec)
        out = guest_run(drv, spec, "sh", "-c", "id -u; cat /proc/self/uid_map; ls /proc | "
                                               "grep -c '^[0-9]'; hostname")
        uid, lo, host, count, nprocs, hostname = out.stdout.split()
        assert (uid, lo, count) == ("0", "0", "65536")
        assert int(host) >= drv.settings.guest_id_base
        assert int(nprocs) < 10                              # its own PID namespace
        assert hostname == "who"
        # what the guest writes lands in its own layer, owned by its unprivileged host uid
        assert guest_run(drv, spec, "sh", "-c", "echo x > /marker").returncode == 0
        upper = drv.guests.upper(drv.node_handle(spec.sliver_urn))
        assert (upper / "marker").stat().st_uid == int(host)
        assert guest_read(drv, replace(spec), "/marker") == "x\n"
        # no host path in what the guest sees of its mounts: not the state directory (the
        # sliver's layer), the image store, the sliver's handle, nor the host's tree
        mounts = guest_read(drv, spec, "/proc/self/mountinfo")
        handle = drv.node_handle(spec.sliver_urn)
        for secret in (str(tmp_path), str(drv.images.root), handle, drv.settings.state_dir):
            assert secret not in mounts, (secret, mounts)
        root = next(line for line in mounts.splitlines() if line.split()[4] == "/")
        assert "lowerdir=mnt/lower,upperdir=layer/upper,workdir=layer/work" in root, root


def test_installs_are_bounded_in_size(tmp_path):
    allowed = tmp_path / "installs"
    allowed.mkdir()
    (allowed / "big.bin").write_bytes(b"\0" * (2 * 2**20 + 1))
    (allowed / "small.bin").write_bytes(b"ok\n")
    with driven(tmp_path, install_dir=str(allowed), install_max_mb=2) as drv:
        big = node("big", [], installs=(Install(f"file://{allowed}/big.bin", "/opt"),))
        with pytest.raises(DriverError, match="at most 2 MiB"):
            drv.provision(big)
        drv.delete(big)
        small = node("small", [], installs=(Install(f"file://{allowed}/small.bin", "/opt"),))
        drv.provision(small)
        assert guest_read(drv, small, "/opt/small.bin") == "ok\n"
