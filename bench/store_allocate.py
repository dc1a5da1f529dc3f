"""Allocate/Provision/Delete latency over the store (SQLite file, or a URL as argv[1]).

    .venv/bin/python bench/store_allocate.py [N] [database-url]
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time

from am.config import Settings
from am.jobs.runner import run_job
from am.service.aggregate import Aggregate
from am.service.contract import Options, Principal
from am.store import open_store
from drivers.fake import make_fake_site

AUTH = "geni-am:bench"
AM = f"urn:publicid:IDN+{AUTH}+authority+am"
XML = ('<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request">'
       f'<node client_id="n" component_manager_id="{AM}"><sliver_type name="xen-vm"/></node></rspec>')


class Q:
    def __init__(self) -> None:
        self.ids: list[int] = []

    def submit(self, job_id: int) -> None:
        self.ids.append(job_id)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    tmp = tempfile.mkdtemp(prefix="geniam-bench-")
    url = sys.argv[2] if len(sys.argv) > 2 else f"sqlite:///{tmp}/am.sqlite"
    store = open_store(url, migrate=True)
    site = make_fake_site(100, authority=AUTH)
    q = Q()
    agg = Aggregate(Settings(authority=AUTH, state_dir=tmp), store, site, q)
    who = Principal(urn=f"urn:publicid:IDN+{AUTH}+user+bench")
    timings: dict[str, list[float]] = {"allocate": [], "provision": [], "job": [], "status": [],
                                       "delete": []}
    for i in range(n):
        s = f"urn:publicid:IDN+{AUTH}+slice+b{i}"
        for name, call in (("allocate", lambda: agg.allocate(who, s, XML, Options())),
                           ("provision", lambda: agg.provision(who, [s], Options())),
                           ("job", lambda: run_job(store, site, q.ids.pop(), worker_id="b")),
                           ("status", lambda: agg.status(who, [s], Options()))):
            t = time.perf_counter()
            call()
            timings[name].append((time.perf_counter() - t) * 1000)
    for i in range(n):
        s = f"urn:publicid:IDN+{AUTH}+slice+b{i}"
        t = time.perf_counter()
        agg.delete(who, [s], Options())
        timings["delete"].append((time.perf_counter() - t) * 1000)
    print(f"{url.split(':')[0]}, {n} slices of one node, {len(site.components)} components")
    for name, values in timings.items():
        values.sort()
        print(f"  {name:9s} median {statistics.median(values):6.2f} ms   "
              f"p95 {values[int(len(values) * 0.95) - 1]:6.2f} ms")
    site.close()
    store.close()


if __name__ == "__main__":
    main()
