"""SSH login into container slivers with geni_users keys: OpenSSH's sshd from the guest's
image, one `sshd -i` per connection started by the guest's init inside the guest."""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from lxml import etree

from drivers import hostnet
from drivers.base import DriverError, OperationalState, UserKeys
from drivers.inventory import InventoryError
from drivers.vserver.config import parse_settings
from drivers.vserver.guest import INIT
from drivers.vserver.guestinit import MAX_SESSIONS
from tests.api.conftest import ALICE, BOB, RSPEC_V, SLICE, code_of
from tests.api.conftest import base_settings, fx, trust_dir  # noqa: F401 - fixtures
from tests.drivers.vserver.conftest import driven, make_driver, release_all
from tests.drivers.vserver.helpers import chain, guest_read, node
from tests.drivers.vserver.sshclient import banner, keypair, port_open, refused, ssh
from tests.drivers.vserver.test_through_am import GA, _node, start_am
from tests.support import wait_until

pytestmark = pytest.mark.root



@pytest.fixture(autouse=True)
def _ssh_installed():
    """The suite fails, never skips, without its tools (./dev.sh installs them)."""
    assert shutil.which("ssh"), "openssh-client is not installed"


def user(login: str, *keys: str) -> UserKeys:
    return UserKeys(f"urn:publicid:IDN+geni-am:vstest+user+{login}", tuple(keys))


@pytest.fixture
def open_dir():
    path = Path(tempfile.mkdtemp(prefix="geni-am-ssh-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sdriver(open_dir):
    with driven(open_dir, ssh=True) as drv:
        yield drv


@pytest.fixture
def keys(tmp_path):
    return {n: keypair(tmp_path, n) for n in ("alice", "alice2", "bob", "carol")}


def gate_pid(drv, spec) -> int:
    """The guest's init: it holds the SSH port and starts the sessions."""
    return drv.state.read(drv.node_handle(spec.sliver_urn))["guest"]["pid"]


def alive(pid: int) -> bool:
    try:
        return INIT.name in Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return False


def host_uid(drv, spec, login: str) -> int:
    rec = drv.state.read(drv.node_handle(spec.sliver_urn))
    return drv.guests.host_id(rec, rec["ssh"]["uids"][login])


def digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_login_into_a_sliver_through_its_whole_life(sdriver, keys):
    drv = sdriver
    c = chain()
    h1 = replace(c.h1, users=(user("alice", keys["alice"].public), user("bob", keys["bob"].public)))
    host_files = {p: digest(p) for p in ("/etc/passwd", "/etc/group", "/var/log/wtmp",
                                         "/var/log/lastlog") if os.path.exists(p)}
    res = drv.provision(h1)
    for spec in (c.r1, c.l1):
        drv.provision(spec)
    handle = drv.node_handle(h1.sliver_urn)
    root = drv.state.root_dir(handle)
    upper = drv.guests.upper(handle)
    assert [(l.hostname, l.username) for l in res.logins] == [("127.0.0.1", "alice"),
                                                              ("127.0.0.1", "bob")]
    port = res.logins[0].port
    assert {l.port for l in res.logins} == {port} and 32200 <= port <= 32999
    assert f"ssh -p {port} alice@127.0.0.1" in res.resource_status
    gate = gate_pid(drv, h1)
    assert gate in drv.cgroups.pids(handle)
    host_key = drv.guests.dir(handle) / "ssh_host_ed25519_key"
    host_key_digest = digest(str(host_key))
    assert host_key.stat().st_mode & 0o777 == 0o600 and host_key.stat().st_uid == 0

    out = ssh(keys["alice"], "alice", port, "id -un; cat /proc/self/cgroup; ip -o addr; pwd")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "alice"
    assert f"cpu:/geni-am/{handle}" in out.stdout and f"memory:/geni-am/{handle}" in out.stdout
    assert "10.201.1.2/24" in out.stdout                       # the sliver's interface
    host_addrs = {a.split("/")[0] for a in hostnet.run(["ip", "-o", "addr"]).split()
                  if "/" in a and not a.startswith(("127.", "::1"))}
    assert host_addrs and not any(a in out.stdout for a in host_addrs)
    assert lines[-1] == "/home/alice"
    assert (upper / "home" / "alice").stat().st_uid == host_uid(drv, h1, "alice") \
        >= drv.settings.guest_id_base

    assert refused(ssh(keys["bob"], "alice", port, "true"))    # bob's key is not alice's
    assert ssh(keys["bob"], "bob", port, "id -un").stdout.strip() == "bob"
    assert refused(ssh(keys["carol"], "carol", port, "true"))  # no such user
    assert refused(ssh(keys["alice"], "root", port, "true"))   # never root
    assert ssh(keys["alice"], "alice", port, "true", tty=True).returncode == 0

    # the host's accounts and login records are untouched; the sliver has its own records
    assert {p: digest(p) for p in host_files} == host_files
    assert "alice" not in Path("/etc/passwd").read_text()
    assert "alice:x:1000:1000:" in guest_read(drv, h1, "/etc/passwd")

    # provisioning again keeps the gate and the port
    again = drv.provision(h1)
    assert again.logins == res.logins and gate_pid(drv, h1) == gate

    # geni_update_users: alice's key replaced, takes effect on the next login
    new = replace(h1, users=(user("alice", keys["alice2"].public), user("bob", keys["bob"].public)))
    assert drv.perform(new, "geni_update_users") is OperationalState.READY
    assert refused(ssh(keys["alice"], "alice", port, "true"))
    assert ssh(keys["alice2"], "alice", port, "id -un").stdout.strip() == "alice"

    # stop closes the port (the gate dies with the sliver's processes); start opens it again
    assert drv.perform(new, "geni_stop") is OperationalState.NOTREADY
    assert not port_open(port) and not alive(gate)
    assert drv.perform(new, "geni_start") is OperationalState.READY
    assert ssh(keys["alice2"], "alice", port, "id -un").stdout.strip() == "alice"
    assert drv.perform(new, "geni_restart") is OperationalState.READY
    assert ssh(keys["alice2"], "alice", port, "id -un").stdout.strip() == "alice"

    assert digest(str(host_key)) == host_key_digest            # made once per sliver
    gate = gate_pid(drv, h1)
    for spec in (c.l1, c.r1, h1):
        drv.delete(spec)
    assert not port_open(port) and not alive(gate)
    assert str(root) not in Path("/proc/self/mountinfo").read_text()
    assert not any(str(root) in _mountinfo(pid) for pid in _pids())
    assert not root.exists()
    assert drv.observed() == []


def _pids() -> list[str]:
    return [p for p in os.listdir("/proc") if p.isdigit()]


def _mountinfo(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/mountinfo").read_text()
    except OSError:
        return ""


def test_accounts_are_per_sliver_with_uids_unique_across_slivers(sdriver, keys):
    drv = sdriver
    a = node("ua", [], users=(user("alice", keys["alice"].public),))
    b = node("ub", [], users=(user("alice", keys["alice"].public),))
    ra, rb = drv.provision(a), drv.provision(b)
    assert ra.logins[0].port != rb.logins[0].port
    uids = []
    for spec, res in ((a, ra), (b, rb)):
        out = ssh(keys["alice"], "alice", res.logins[0].port, "id -u; id -g; echo $HOME")
        assert out.returncode == 0, out.stderr
        uid, gid, home = out.stdout.split()
        assert uid == gid == "1000" and home == "/home/alice"
        passwd = guest_read(drv, spec, "/etc/passwd")
        assert f"alice:x:{uid}:{uid}:" in passwd and "daemon" not in passwd
        uids.append(host_uid(drv, spec, "alice"))
    # the same guest uid is a different unprivileged host uid in each sliver
    assert uids[0] != uids[1] and min(uids) >= drv.settings.guest_id_base
    # a user dropped by geni_update_users can no longer log in; the port stays while bob has it
    drv.perform(replace(a, users=(user("bob", keys["bob"].public),)), "geni_update_users")
    assert refused(ssh(keys["alice"], "alice", ra.logins[0].port, "true"))
    assert ssh(keys["bob"], "bob", ra.logins[0].port, "id -un").stdout.strip() == "bob"


def test_bad_logins_are_refused_before_anything_is_made(sdriver, keys):
    drv = sdriver
    pub = keys["alice"].public
    for users, word in (((user("root", pub),), "root"),
                        ((user("sshd", pub),), "sshd"),            # the image's account
                        ((user("bad name", pub),), "'bad name'"),
                        ((UserKeys("urn:publicid:IDN+a+user+alice", (pub,)),
                          UserKeys("urn:publicid:IDN+b+user+alice", (pub,))), "two users")):
        spec = node("bad", [], users=users)
        with pytest.raises(DriverError, match=word):
            drv.provision(spec)
        assert drv.observed() == []
    ok = node("good", [], users=(user("alice", pub),))
    drv.provision(ok)
    with pytest.raises(DriverError, match="root"):
        drv.perform(replace(ok, users=(user("root", pub),)), "geni_update_users")
    assert guest_read(drv, ok, "/etc/ssh/authorized_keys/alice") == pub + "\n"  # unchanged


def test_no_users_or_ssh_off_means_no_gate_and_no_logins(sdriver, open_dir, keys):
    res = sdriver.provision(node("nousers", []))
    handle = sdriver.node_handle(node("nousers", []).sliver_urn)
    assert res.logins == () and "operator shell" in res.resource_status
    assert sdriver.cgroups.pids(handle) == {gate_pid(sdriver, node("nousers", []))}  # init only
    assert not sdriver.guests.status(handle)["listening"]
    off = make_driver(open_dir / "off", ssh=False)
    try:
        spec = node("off", [], users=(user("alice", keys["alice"].public),))
        res = off.provision(spec)
        assert res.logins == () and "operator shell" in res.resource_status
        assert guest_read(off, spec, "/etc/ssh/sshd_config_geni") is None
        assert not off.guests.status(off.node_handle(spec.sliver_urn))["listening"]
        with pytest.raises(DriverError, match="'../x' is not a valid account name"):
            off.provision(node("trav", [], users=(user("../x", keys["alice"].public),)))
    finally:
        release_all(off)
        off.close()


def test_sessions_beyond_the_cap_are_closed_and_finished_ones_reaped(sdriver, keys):
    res = sdriver.provision(node("cap", [], users=(user("alice", keys["alice"].public),)))
    port = res.logins[0].port
    conns = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(MAX_SESSIONS)]
    try:
        assert all(banner(s).startswith(b"SSH-2.0-") for s in conns)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
            assert banner(extra) == b""                       # closed unanswered
    finally:
        for s in conns:
            s.close()
    def answered() -> bool:                                   # the sessions see EOF and exit
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            return banner(s).startswith(b"SSH-2.0-")
    wait_until(answered, "finished sessions to be reaped (a new one answered)", 20, 0.1)
    assert ssh(keys["alice"], "alice", port, "id -un").stdout.strip() == "alice"


def _busy_port_before_a_free_one() -> tuple[socket.socket, int]:
    """A listening socket on port p where p + 1 is free right now (the suite's other servers
    take ephemeral ports too, so a neighbour is checked rather than assumed)."""
    for _ in range(50):
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        p = busy.getsockname()[1]
        with socket.socket() as probe:
            try:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(("127.0.0.1", p + 1))
                return busy, p
            except OSError:
                busy.close()
    raise AssertionError("found no free port next to a busy one in 50 tries")


def test_ports_skip_busy_ones_and_exhaustion_is_an_error(open_dir, keys):
    busy, p = _busy_port_before_a_free_one()
    drv = make_driver(open_dir, ssh=True, ssh_port_min=p, ssh_port_max=p + 1)
    try:
        first = drv.provision(node("p1", [], users=(user("alice", keys["alice"].public),)))
        assert first.logins[0].port == p + 1                  # p is held by another program
        with pytest.raises(DriverError, match=f"no free SSH port in {p}-{p + 1}"):
            drv.provision(node("p2", [], users=(user("alice", keys["alice"].public),)))
    finally:
        busy.close()
        release_all(drv)
        drv.close()


def test_ssh_settings_are_validated(open_dir):
    good = parse_settings({})
    assert (good.ssh, good.ssh_address, good.ssh_port_min, good.ssh_port_max,
            good.guest_id_base) == ("auto", "127.0.0.1", 32200, 32999, 1_000_000_000)
    for key, value, words in (("ssh", "yes", 'true, false or "auto"'),
                              ("ssh", 1, 'true, false or "auto"'),
                              ("sshd_path", "sbin/sshd", "absolute path"),
                              ("ssh_address", "localhost", "IPv4 or IPv6"),
                              ("ssh_address", 7, "IPv4 or IPv6"),
                              ("ssh_hostname", "a b", "host name"),
                              ("ssh_hostname", "", "host name"),
                              ("ssh_port_min", 0, "in 1..65535"),
                              ("ssh_port_max", 70000, "in 1..65535"),
                              ("ssh_port_min", True, "an integer"),
                              ("guest_id_base", 10, "an integer in 65536.."),
                              ("guest_id_base", 2**31, "an integer in 65536..")):
        with pytest.raises(InventoryError, match=words) as err:
            parse_settings({key: value})
        assert err.value.key == key
    with pytest.raises(InventoryError, match="ssh_port_min") as err:
        parse_settings({"ssh_port_min": 33000, "ssh_port_max": 32000})
    assert err.value.key == "ssh_port_max"
    with pytest.raises(InventoryError, match="must be set") as err:
        parse_settings({"ssh_address": "0.0.0.0"})
    assert err.value.key == "ssh_hostname"
    v6 = parse_settings({"ssh_address": "::", "ssh_hostname": "am.example.org"})
    assert v6.ssh_address == "::"
    keyed = (user("alice", "ssh-ed25519 AAAA alice"),)
    strict = make_driver(open_dir / "strict", ssh=True, sshd_path="/nonexistent/sshd")
    try:                              # sshd comes from the image: a guest without it, no login
        with pytest.raises(DriverError, match="has no /nonexistent/sshd"):
            strict.provision(node("nosshd", [], users=keyed))
    finally:
        release_all(strict)
    lax = make_driver(open_dir / "lax", ssh="auto", sshd_path="/nonexistent/sshd")
    try:
        assert lax.provision(node("nosshd", [], users=keyed)).logins == ()
    finally:
        release_all(lax)
    assert make_driver(open_dir / "on").ssh.enabled


def test_login_through_the_am_api(base_settings, tmp_path, gcf_fixtures, fx, open_dir, keys):
    client, rt, prefix = start_am(base_settings, tmp_path, gcf_fixtures,
                                  vserver_state=open_dir / "vs", vserver_keys="ssh = true\n")
    try:
        cred = [fx.cred("slice-cred-alice")]
        request = (f'<rspec xmlns="http://www.geni.net/resources/rspec/3" xmlns:ga="{GA}" '
                   f'type="request">{_node("h1", [], [])}</rspec>')
        assert code_of(client.call("Allocate", SLICE, cred, request, {})) == 0
        # a login containers refuse (root is root on the shared kernel) is BADARGS at the API,
        # before anything is written: the sliver stays allocated
        root = ALICE.rsplit("+", 1)[0] + "+root"
        refusal = client.call("Provision", [SLICE], cred, {
            "geni_rspec_version": RSPEC_V, "geni_users": [{"urn": root, "keys": ["k"]}]})
        assert code_of(refusal) == 1 and "login 'root' is refused" in refusal["output"], refusal
        status = client.call("Status", [SLICE], cred, {})
        assert [s["geni_allocation_status"] for s in status["value"]["geni_slivers"]] \
            == ["geni_allocated"]
        prov = client.call("Provision", [SLICE], cred, {
            "geni_rspec_version": RSPEC_V,
            "geni_users": [{"urn": ALICE, "keys": [keys["alice"].public]}]})
        assert code_of(prov) == 0, prov
        desc = client.call("Describe", [SLICE], cred, {"geni_rspec_version": RSPEC_V})
        assert code_of(desc) == 0, desc
        manifest = etree.fromstring(desc["value"]["geni_rspec"].encode())
        (login,) = manifest.iter("{http://www.geni.net/resources/rspec/3}login")
        assert (login.get("authentication"), login.get("hostname"), login.get("username")) \
            == ("ssh-keys", "127.0.0.1", "alice")
        port = int(login.get("port"))
        out = ssh(keys["alice"], "alice", port, "id -un; cat /proc/self/cgroup")
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[0] == "alice" and f"/geni-am/{prefix}-n" in out.stdout
        assert refused(ssh(keys["bob"], "alice", port, "true"))
        refusal = client.call("PerformOperationalAction", [SLICE], cred, "geni_update_users",
                              {"geni_users": [{"urn": root, "keys": ["k"]}]})
        assert code_of(refusal) == 1 and "root" in refusal["output"], refusal
        status = client.call("Status", [SLICE], cred, {})
        assert [s["geni_operational_status"] for s in status["value"]["geni_slivers"]] \
            == ["geni_ready"]
        # geni_update_users adds bob: his account and his login in the manifest, same port
        poa = client.call("PerformOperationalAction", [SLICE], cred, "geni_update_users", {
            "geni_users": [{"urn": ALICE, "keys": [keys["alice"].public]},
                           {"urn": BOB, "keys": [keys["bob"].public]}]})
        assert code_of(poa) == 0, poa
        desc = client.call("Describe", [SLICE], cred, {"geni_rspec_version": RSPEC_V})
        manifest = etree.fromstring(desc["value"]["geni_rspec"].encode())
        logins = {l.get("username"): int(l.get("port"))
                  for l in manifest.iter("{http://www.geni.net/resources/rspec/3}login")}
        assert logins == {"alice": port, "bob": port}
        assert ssh(keys["bob"], "bob", port, "id -un").stdout.strip() == "bob"
        assert code_of(client.call("Delete", [SLICE], cred, {})) == 0
        assert not port_open(port)
        assert rt.site.drivers["vserver"].observed() == []
    finally:
        release_all(rt.site.drivers["vserver"])
        rt.close()


def test_a_dead_guest_is_restarted_on_its_port_by_provision(sdriver, keys):
    spec = node("dead", [], users=(user("alice", keys["alice"].public),))
    port = sdriver.provision(spec).logins[0].port
    gate = gate_pid(sdriver, spec)
    os.kill(gate, 9)
    wait_until(lambda: not port_open(port), "the kernel to close the dead gate's socket", 10)
    assert sdriver.provision(spec).logins[0].port == port
    assert gate_pid(sdriver, spec) != gate
    assert ssh(keys["alice"], "alice", port, "id -un").stdout.strip() == "alice"


def test_an_address_the_host_lacks_is_a_clear_error(open_dir, keys):
    drv = make_driver(open_dir, ssh=True, ssh_address="192.0.2.123")
    try:
        with pytest.raises(DriverError, match="cannot listen for SSH on 192.0.2.123") as err:
            drv.provision(node("noaddr", [], users=(user("alice", keys["alice"].public),)))
        assert not err.value.transient
    finally:
        release_all(drv)
        drv.close()


def test_concurrent_provisions_get_distinct_ports_and_uids(sdriver, keys):
    specs = [node(f"cc{i}", [], users=(user("alice", keys["alice"].public),
                                       user("bob", keys["bob"].public))) for i in range(6)]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(sdriver.provision, specs))
    ports = [r.logins[0].port for r in results]
    assert len(set(ports)) == len(specs)
    uids = [host_uid(sdriver, s, login) for s in specs for login in ("alice", "bob")]
    assert len(set(uids)) == 2 * len(specs)
    assert ssh(keys["bob"], "bob", ports[-1], "id -un").stdout.strip() == "bob"


def test_gate_and_sessions_fit_under_the_default_pids_max(sdriver, tmp_path):
    key = keypair(tmp_path, "alice")
    spec = node("gated", [], users=(user("alice", key.public),))
    res = sdriver.provision(spec)
    handle = sdriver.node_handle(spec.sliver_urn)
    gate = gate_pid(sdriver, spec)
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
    wait_until(lambda: sdriver.cgroups.pids_current(handle) <= 1,    # the gate stays
               "finished sessions to leave no task behind", 20,
               detail=lambda: sdriver.cgroups.pids_current(handle))
