"""SSH login into a vserver container sliver: how long `ssh -p PORT alice@127.0.0.1 true` takes
(the OpenSSH client end to end: TCP, key exchange, public-key auth, the command, exit), and how
long provisioning a node with one geni_user takes. Runs as root on this host, needs sshd.

Run: .venv/bin/python bench/bench_vserver_ssh.py [--logins 20]
Each login goes through the sliver's gate: a fresh `sshd -i` inside the sliver's cgroups,
network namespace and a private mount namespace (docs/vserver.md, "SSH login").
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drivers.base import ResourceKind, SliverSpec, UserKeys                # noqa: E402
from drivers.vserver import VServerDriver                                 # noqa: E402
from tests.drivers.vserver.sshclient import SSH_OPTS, keypair             # noqa: E402

AUTH = "geni-am:bench"
COMP = f"urn:publicid:IDN+{AUTH}+node+vs1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=20)
    args = parser.parse_args()
    if args.logins < 1:
        parser.error("--logins must be at least 1")
    work = Path(tempfile.mkdtemp(prefix="bench-vserver-ssh-"))
    work.chmod(0o755)                      # login uids traverse it to their homes
    drv = VServerDriver({"name_prefix": "bs", "state_dir": str(work / "state"), "ssh": True},
                        [{"name": "vs1", "driver": "vserver"}], authority=AUTH)
    key = keypair(work, "alice")
    spec = SliverSpec(sliver_urn=f"urn:publicid:IDN+{AUTH}+sliver+ssh1",
                      slice_urn=f"urn:publicid:IDN+{AUTH}+slice+bench", client_id="ssh1",
                      kind=ResourceKind.NODE, component_id=COMP, sliver_type="vserver-container",
                      cpu=0.5, memory_mb=128,
                      users=(UserKeys(f"urn:publicid:IDN+{AUTH}+user+alice", (key.public,)),))
    try:
        t0 = time.perf_counter()
        port = drv.provision(spec).logins[0].port
        provision = time.perf_counter() - t0
        times = []
        for _ in range(args.logins):
            t0 = time.perf_counter()
            proc = subprocess.run(["ssh", "-i", str(key.private), "-p", str(port), *SSH_OPTS,
                                   "alice@127.0.0.1", "true"], capture_output=True, text=True,
                                  timeout=30, stdin=subprocess.DEVNULL)
            times.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                sys.exit(f"login failed: {proc.stderr.strip()}")
        print(f"provision a node with one geni_user (gate started): {provision:.3f} s")
        print(f"`ssh -p {port} alice@127.0.0.1 true` over {args.logins} logins: median "
              f"{statistics.median(times):.3f} s, min {min(times):.3f} s, max {max(times):.3f} s")
    finally:
        drv.delete(spec)
        leftover = drv.observed()
        shutil.rmtree(work, ignore_errors=True)
        if leftover:
            sys.exit(f"delete left {leftover}")


if __name__ == "__main__":
    main()
