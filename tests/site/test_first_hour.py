"""The first hour, end to end, from a fresh clone (one module-scoped scenario, root).

`git clone` of this checkout into a temporary directory, `./dev.sh serve` there on a free port
with its own --state-dir (the venv running the tests is reused through GENI_AM_VENV, the clone's
code is the one imported), then:
* the printed snippets run as printed: the geni-lib script from the banner lists the site's
  components, and the dashboard's curl line gets the overview;
* a geni-lib script allocates the quick start's slice (docs/quickstart.md, "A walk through
  the real site": the request is read from the page): a container `h1`, a hybrid router `r1`
  (control plane in a container, forwarding in a slot of the emulated NetFPGA card), a
  container `h2` and a VM `vm1` linked to `h2`; `geni-am client` provisions it with an SSH key, waits for it, shows each
  client_id with its SSH command; over SSH h1 pings h2 across the NetFPGA slot (one hop), the
  VM answers a login, and the VM and h2 ping each other over their link; no status says it waits for a link; the client deletes the slice;
* stopping serve (SIGTERM) leaves no namespace, interface, cgroup, process, or directory named
  for the site outside the state directory.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from am.site import site_tag
from tests.services import free_port
from tests.site.test_default_site import PREFIX_LETTERS, leftovers
from tests.support import read_banner

pytestmark = [pytest.mark.root, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
AUTH = "geni-am:localhost"
SLICE = "urn:publicid:IDN+geni-am+slice+hour"


def quickstart_request() -> str:
    """The request of the quick start's walk through the real site, as the page shows it."""
    page = (REPO / "docs" / "quickstart.md").read_text(encoding="utf-8")
    walk = page.split("### A walk through the real site", 1)[1]
    return walk.split("```xml\n", 1)[1].split("```", 1)[0]


# what an experimenter would write with geni-lib: its AM API v3 calls, our request
GENILIB_ALLOCATE = '''
import sys, types, warnings
from importlib import metadata
try:
    import pkg_resources  # noqa: F401
except ImportError:   # geni-lib 0.9.9.4 needs it; setuptools >= 81 no longer ships it
    sys.modules["pkg_resources"] = types.SimpleNamespace(require=lambda name: [
        types.SimpleNamespace(project_name=name, version=metadata.version(name))])
warnings.simplefilter("ignore")
from geni.minigcf import amapi3

class Cred:
    def __init__(self, path):
        self.path, self.type, self.version = path, "geni_sfa", "3"

url, ca, cert, key, cred, slice_urn, request = sys.argv[1:8]
answer = amapi3.allocate(url, ca, cert, key, [Cred(cred)], slice_urn, open(request).read())
code = answer["code"]["geni_code"]
print("geni_code", code, answer.get("output", ""))
for sliver in answer["value"]["geni_slivers"] if code == 0 else ():
    print("sliver", sliver["geni_sliver_urn"], sliver["geni_allocation_status"])
sys.exit(code)
'''


class Clone:
    """A fresh clone serving its default site through ./dev.sh serve."""

    def __init__(self, top: Path):
        self.top = top
        self.dir = top / "geni-am"
        self.state = top / "state"
        subprocess.run(["git", "clone", "-q", str(REPO), str(self.dir)], check=True, timeout=120)
        venv = Path(sys.prefix)
        stamp = venv / ".geni-am-installed"
        assert stamp.exists(), f"{venv} is not a venv dev.sh made"
        # the clone's files are newer than the venv's stamp: say they are not, or dev.sh
        # would reinstall the shared venv from the clone
        old = stamp.stat().st_mtime - 1
        os.utime(self.dir / "setup.py", (old, old))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GENI_AM_")}
        self.env.update(GENI_AM_VENV=str(venv), PYTHONPATH=str(self.dir))
        self.venv_bin = venv / "bin"
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}/"
        self.proc = subprocess.Popen(
            ["./dev.sh", "serve", "--state-dir", str(self.state), "--port", str(self.port),
             "--threads", "4"], cwd=self.dir, env=self.env, text=True,
            stdout=subprocess.PIPE, stderr=open(top / "serve.err", "w"))
        self.banner = read_banner(self.proc, 300)     # the first start checks apt, too
        assert "--- end ---" in self.banner, (top / "serve.err").read_text()[-3000:]
        self.auth = self.state / "authority"

    def run(self, argv: list[str], timeout: float = 300, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(argv, capture_output=True, text=True, env=self.env,
                              cwd=self.top, timeout=timeout, **kw)

    def client(self, *args: str, cred: str | None = None, timeout: float = 300):
        a = self.auth
        flags = ["--url", self.url, "--cert", str(a / "alice-cert.pem"), "--key",
                 str(a / "alice-key.pem"), "--ca", str(a / "trust-roots" / "ca-cert.pem")]
        if cred:
            flags += ["--cred", cred]
        cmd, *rest = args
        return self.run([str(self.venv_bin / "geni-am"), "client", *flags, cmd, *rest],
                        timeout=timeout)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(120)
        self.proc.stdout.close()
        return rc


def site_names(state: Path) -> tuple[str, ...]:
    """Every name the site gives what it makes on the host (its drivers' prefixes, its cgroups):
    names made by other tests running on the machine meanwhile are not among them."""
    tag = site_tag(state)
    return (*(letter + tag for letter in PREFIX_LETTERS), f"geni-am-{tag}")


OUTSIDE = ("/run", "/var/run", "/var/lib", "/var/tmp", "/dev/shm", "/tmp", "/etc/netns",
           "/var/log")


def named_for_site(state: Path) -> set[str]:
    """Directory entries outside the state directory whose name is one of the site's."""
    names = site_names(state)
    found = set()
    for top in OUTSIDE:
        try:
            entries = os.listdir(top)
        except OSError:
            continue
        found.update(f"{top}/{e}" for e in entries
                     if any(n in e for n in names))
    return found


@pytest.fixture(scope="module")
def clone():
    top = Path(tempfile.mkdtemp(prefix="gh-", dir="/tmp"))     # short: guests' sockets
    before = named_for_site(top / "state")
    served = None
    try:
        served = Clone(top)
        served.before = before
        yield served
    finally:
        if served is not None and served.proc.poll() is None:
            served.stop()
        from am.site import DefaultSite
        DefaultSite(top / "state", AUTH).down()
        shutil.rmtree(top, ignore_errors=True)


def test_the_clone_runs_its_own_code(clone):
    out = clone.run([str(clone.venv_bin / "python"), "-c", "import am; print(am.__file__)"])
    assert out.stdout.strip() == str(clone.dir / "am" / "__init__.py"), out
    for name, driver, kind in (("vs1", "vserver", "real"), ("ovs1", "openflow", "real"),
                               ("nf1", "netfpga", "emulated"), ("vmhost1", "xen", "real")):
        assert re.search(rf"{name}\s+{driver}\s+{kind}", clone.banner), clone.banner


def test_printed_snippets_run_as_printed(clone):
    snippet = clone.banner.split("--- geni-lib context ---\n", 1)[1].split("--- end ---")[0]
    script = clone.top / "snippet.py"
    script.write_text(snippet)
    ran = clone.run([str(clone.venv_bin / "python"), str(script)], timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert "AM API versions:" in ran.stdout
    for name in ("vs1", "nf1", "vmhost1"):     # ovs1 is a datapath, not a geni-lib node
        assert re.search(rf"^node {name} urn:publicid:IDN\+", ran.stdout, re.M), ran.stdout
    # the script the banner names runs the same
    saved = re.search(r"^# python (\S+) runs the same script", snippet, re.M).group(1)
    again = clone.run([str(clone.venv_bin / "python"), saved], timeout=120)
    assert again.returncode == 0 and again.stdout == ran.stdout, again.stderr
    # the dashboard's login line, as printed
    curl = re.search(r"^\s+or: (curl .*)$", clone.banner, re.M).group(1)
    page = clone.run(shlex.split(curl) + ["--silent", "--show-error", "--fail"], timeout=60)
    assert page.returncode == 0, page.stderr
    assert "<h1>Overview</h1>" in page.stdout


def _ssh(key: Path, port: str, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", "-i", str(key), "-p", port, "-o", "StrictHostKeyChecking=no", "-o",
         "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20",
         "-o", "LogLevel=ERROR", "alice@127.0.0.1", *command],
        capture_output=True, text=True, timeout=120)


def test_a_slice_with_container_vm_and_netfpga_router(clone):
    auth = clone.auth
    made = clone.run([str(clone.venv_bin / "geni-am"), "authority", "slice", "hour", "--owner",
                      "alice", "--dir", str(auth)])
    assert made.returncode == 0, made.stderr
    cred = str(auth / "hour-slice-cred-alice.xml")
    key = clone.top / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)

    # geni-lib allocates
    (clone.top / "request.xml").write_text(quickstart_request())
    (clone.top / "allocate.py").write_text(GENILIB_ALLOCATE)
    alloc = clone.run([str(clone.venv_bin / "python"), str(clone.top / "allocate.py"),
                       clone.url, str(auth / "trust-roots" / "ca-cert.pem"),
                       str(auth / "alice-cert.pem"), str(auth / "alice-key.pem"), cred, SLICE,
                       str(clone.top / "request.xml")], timeout=120)
    assert alloc.returncode == 0, alloc.stdout + alloc.stderr
    assert alloc.stdout.count("geni_allocated") == 8, alloc.stdout    # 4 nodes, slot, 3 links

    # the client provisions with a key, waits, and shows who logs in where
    prov = clone.client("provision", "hour", "--ssh-key", f"{key}.pub", cred=cred)
    assert prov.returncode == 0, prov.stdout + prov.stderr
    waited = clone.client("wait", "hour", cred=cred, timeout=600)
    assert waited.returncode == 0 and "all 8 sliver(s) ready" in waited.stdout, \
        waited.stdout + waited.stderr
    status = clone.client("status", "hour", cred=cred)
    assert status.returncode == 0, status.stderr
    rows = {line.split()[0]: line for line in status.stdout.splitlines()[2:] if line.strip()}
    assert set(rows) == {"h1", "r1", "h2", "vm1", "r1:forwarding", "l1", "l2", "l3"}, status.stdout
    logins = {cid: re.search(r"ssh -p (\d+) alice@127\.0\.0\.1", rows[cid]).group(1)
              for cid in ("h1", "h2", "vm1")}
    as_json = clone.client("status", "hour", "--json", cred=cred)
    assert "waiting" not in as_json.stdout and "NetFPGA" in as_json.stdout, as_json.stdout

    # over SSH: h1 reaches h2 through the NetFPGA slot (one hop); the VM takes a login
    deadline = time.monotonic() + 60
    while True:
        ping = _ssh(key, logins["h1"], "/bin/ping", "-n", "-c", "1", "-W", "2", "10.77.2.2")
        if ping.returncode == 0 or time.monotonic() > deadline:
            break
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert "ttl=63" in ping.stdout, ping.stdout
    back = _ssh(key, logins["h2"], "/bin/ping", "-n", "-c", "1", "-W", "2", "10.77.1.2")
    assert back.returncode == 0 and "ttl=63" in back.stdout, back.stdout + back.stderr
    vm = _ssh(key, logins["vm1"], "cat", "/etc/hostname")
    assert vm.returncode == 0 and vm.stdout.strip() == "vm1", vm.stdout + vm.stderr
    # the VM and h2 share link l3 (the container's end on the VM's bridge): no hop between
    to_vm = _ssh(key, logins["h2"], "/bin/ping", "-n", "-c", "1", "-W", "5", "10.77.3.1")
    assert to_vm.returncode == 0 and "ttl=64" in to_vm.stdout, to_vm.stdout + to_vm.stderr
    from_vm = _ssh(key, logins["vm1"], "ping", "-c", "1", "-W", "5", "10.77.3.2")
    assert from_vm.returncode == 0 and "ttl=64" in from_vm.stdout, from_vm.stdout + from_vm.stderr

    described = clone.client("describe", "hour", cred=cred)
    assert described.returncode == 0 and "r1:forwarding" in described.stdout

    deleted = clone.client("delete", "hour", cred=cred)
    assert deleted.returncode == 0, deleted.stderr
    gone = clone.client("status", "hour", cred=cred)
    assert gone.returncode == 1 and "SEARCHFAILED" in gone.stderr + gone.stdout


def test_stopping_serve_leaves_nothing_outside_the_state_dir(clone):
    assert clone.stop() == 0
    assert leftovers(clone.state) == []
    assert named_for_site(clone.state) - clone.before == set()
    assert not (clone.state / "site" / "inventory.toml").exists()
