"""Many small guests on one node: fair CPU shares reserve nothing, so a 2-core host holds 100.

Provisions N container slivers that ask for no CPU (64 MiB each) with `--workers` threads,
checks each is ready and answers inside its guest, then prints the time to all-ready, the
admission's CPU demand (none), the host memory the guests' inits take (RSS), the time one
guest's `sh -c true` takes among them, and the delete time.

Run as root: .venv/bin/python bench/bench_many_guests.py [--guests 100] [--workers 2]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drivers.base import OperationalState, Usage                          # noqa: E402
from drivers.vserver import VServerDriver                                 # noqa: E402
from tests.drivers.vserver.conftest import release_all                    # noqa: E402
from tests.drivers.vserver.helpers import AUTH, COMPONENT, node, guest_test_image  # noqa: E402


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--guests", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    images, image = guest_test_image()
    work = Path(tempfile.mkdtemp(prefix="bench-many-"))
    drv = VServerDriver({"name_prefix": "bm", "state_dir": str(work / "state"), "cpu": 2,
                         "memory_mb": 8192, "images_dir": str(images), "default_image": image,
                         "build_default_image": False},
                        [{"name": "vs1", "driver": "vserver"}], authority=AUTH)
    specs = [node(f"g{i}", [], memory_mb=64) for i in range(args.guests)]
    demand = drv.admit(specs[0], Usage(component_id=COMPONENT)).demand
    try:
        t0 = time.monotonic()
        with ThreadPoolExecutor(args.workers) as pool:
            results = list(pool.map(drv.provision, specs))
        up = time.monotonic() - t0
        assert all(r.state is OperationalState.READY for r in results)
        assert all(drv.status(s) is OperationalState.READY for s in specs)
        inits = [drv.state.read(drv.node_handle(s.sliver_urn))["guest"]["pid"] for s in specs]
        rss = sum(rss_kib(p) for p in inits)
        t1 = time.monotonic()
        out = subprocess.run(drv.sliver_argv(specs[-1].sliver_urn, ["sh", "-c", "true"]),
                             timeout=30)
        one = time.monotonic() - t1
        assert out.returncode == 0
        t2 = time.monotonic()
        with ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(drv.delete, specs))
        down = time.monotonic() - t2
        assert drv.observed() == []
    finally:
        release_all(drv)
        drv.close()
    print(f"{args.guests} guests (no CPU asked, 64 MiB each), {args.workers} workers: "
          f"admission demand per guest {demand}; all ready in {up:.1f} s "
          f"({up / args.guests * 1000:.0f} ms each); inits' RSS {rss / 1024:.0f} MiB "
          f"({rss / args.guests / 1024:.1f} MiB each); a command in one of them "
          f"{one * 1000:.0f} ms; deleted in {down:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
