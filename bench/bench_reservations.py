"""Advance reservations: admission among many windows, and find-slot over a month.

    .venv/bin/python bench/bench_reservations.py [--database URL] [--reservations 10000]
        [--days 30] [--components 100] [--samples 200]

Prints, on the store given (a fresh SQLite file by default; a PostgreSQL URL names a database
that is dropped and re-created):
  * Allocate p50/p99 (ms): a plain one-node Allocate on an empty store, a one-node Allocate
    with a 2 h window on an empty store, and the same among N reservations spread over D days
    (the target: the last at most 2x the first);
  * find-slot for a 20-node request over D days of hourly slots: the time to the first fit,
    and a request that fits only after the reservations end (D days of exclusive use), each
    twice: the first call decodes the slivers' specs it needs, the store keeps them for the
    next (as in a running AM, where Allocate and ListResources keep them warm).
The N reservations are written in bulk (one transaction), as N Allocates with windows would
leave them: waiting slivers with their reservations and holds.
"""
from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import timedelta

from sqlalchemy import insert

from am.config import Settings
from am.service.aggregate import Aggregate
from am.service.contract import Options, Principal
from am.store import Reservation, Slice, Sliver, open_store, spec_to_dict, utcnow
from am.store.models import Hold
from am.store.store import USE_TOKEN, hold_key
from drivers.base import ResourceKind, SliverSpec
from drivers.fake import make_fake_site

AUTH = "geni-am:bench"
AM = f"urn:publicid:IDN+{AUTH}+authority+am"
WHO = Principal(urn=f"urn:publicid:IDN+{AUTH}+user+bench")


def request(n: int, *, exclusive: bool = False) -> str:
    nodes = "".join(f'<node client_id="n{i}" component_manager_id="{AM}" '
                    f'exclusive="{str(exclusive).lower()}"><sliver_type name="xen-vm"/></node>'
                    for i in range(n))
    return f'<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request">{nodes}</rspec>'


class Q:
    def submit(self, job_id: int) -> None:
        pass


def fill(store, site, n: int, days: int, rng: random.Random) -> None:
    """n waiting one-node reservations (1 cpu, 1 GiB, 1-8 h) at random hours in `days`."""
    now = utcnow()
    comps = [c for c in site.components if "cpu_milli" in c.capacity]
    with store.write() as session:
        slc = Slice(urn=f"urn:publicid:IDN+{AUTH}+slice+filler", urn_key="filler", incarnation=0,
                    owner_urn=WHO.urn)
        session.add(slc)
        session.flush()
        slivers, reservations, holds = [], [], []
        for i in range(n):
            comp = rng.choice(comps).component_id
            start = now + timedelta(hours=1 + rng.randrange(days * 24))
            end = start + timedelta(hours=rng.randint(1, 8))
            urn = f"urn:publicid:IDN+{AUTH}+sliver+fill{i}"
            spec = SliverSpec(sliver_urn=urn, slice_urn=slc.urn, client_id=f"f{i}",
                              kind=ResourceKind.NODE, component_id=comp, sliver_type="xen-vm",
                              cpu=1, memory_mb=1024)
            slivers.append({"id": i + 1, "urn": urn, "slice_id": slc.id, "client_id": f"f{i}",
                            "kind": "node", "driver": "fake", "component_id": comp,
                            "sliver_type": "xen-vm", "allocation_state": "geni_allocated",
                            "operational_state": "geni_pending_allocation", "expires": end,
                            "error": "", "resource_status": "", "spec": spec_to_dict(spec),
                            "element_xml": "", "facts": {}, "version": 1, "created": now,
                            "updated": now, "starts": start, "waiting": True,
                            "auto_provision": False})
            for res, amount in (("cpu_milli", 1000.0), ("memory_mb", 1024.0)):
                reservations.append({"sliver_id": i + 1, "component_id": comp, "resource": res,
                                     "amount": amount})
            holds.append({"sliver_id": i + 1, "component_id": comp, "token": USE_TOKEN,
                          "key": hold_key(comp, USE_TOKEN), "shared": True, "starts": start,
                          "ends": end})
        session.execute(insert(Sliver), slivers)
        session.execute(insert(Reservation), reservations)
        session.execute(insert(Hold), holds)
        if store.dialect == "postgresql":     # ids were given: move the sequence past them
            from sqlalchemy import text
            session.execute(text("SELECT setval(pg_get_serial_sequence('slivers', 'id'), "
                                 "(SELECT max(id) FROM slivers))"))


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def allocations(agg, samples: int, days: int, rng: random.Random, *, window: bool,
                tag: str) -> list[float]:
    xml = request(1)
    times = []
    for i in range(samples):
        opts = Options()
        if window:
            start = utcnow() + timedelta(hours=1 + rng.randrange(days * 24))
            opts = Options(start_time=start, end_time=start + timedelta(hours=2))
        t = time.perf_counter()
        agg.allocate(WHO, f"urn:publicid:IDN+{AUTH}+slice+{tag}{i}", xml, opts)
        times.append((time.perf_counter() - t) * 1000)
    return times


def fresh(url: str | None, tmp: str, name: str):
    if url is None:
        return open_store(f"sqlite:///{tmp}/{name}.sqlite", migrate=True)
    from bench_provision import _fresh_postgres   # bench/ is on sys.path as the script's folder
    _fresh_postgres(url)
    return open_store(url, migrate=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--database", default=None, help="PostgreSQL URL (default: SQLite file)")
    ap.add_argument("--reservations", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--components", type=int, default=100)
    ap.add_argument("--samples", type=int, default=200)
    args = ap.parse_args()
    rng = random.Random(18)
    tmp = tempfile.mkdtemp(prefix="geniam-bench-res-")
    settings = Settings(authority=AUTH, state_dir=tmp, max_lease_s=(args.days + 2) * 86400)
    site = make_fake_site(args.components, authority=AUTH)
    kind = "postgresql" if args.database else "sqlite"
    print(f"{kind}: {args.components} components, {args.reservations} reservations over "
          f"{args.days} days")

    store = fresh(args.database, tmp, "empty")
    agg = Aggregate(settings, store, site, Q())
    plain = allocations(agg, args.samples, args.days, rng, window=False, tag="p")
    empty_w = allocations(agg, args.samples, args.days, rng, window=True, tag="w")
    store.close()

    store = fresh(args.database, tmp, "full")
    agg = Aggregate(settings, store, site, Q())
    t = time.perf_counter()
    fill(store, site, args.reservations, args.days, rng)
    print(f"  filled in {time.perf_counter() - t:.1f} s")
    among = allocations(agg, args.samples, args.days, rng, window=True, tag="a")
    for name, values in (("Allocate, no window, empty store", plain),
                         ("Allocate with a window, empty store", empty_w),
                         (f"Allocate with a window among {args.reservations}", among)):
        print(f"  {name:48s} p50 {statistics.median(values):7.2f} ms  "
              f"p99 {pct(values, 0.99):7.2f} ms")
    print(f"  ratio p50 {statistics.median(among) / statistics.median(plain):.2f}x, "
          f"p99 {pct(among, 0.99) / pct(plain, 0.99):.2f}x (target <= 2x)")

    hours = args.days * 24
    for name, xml, duration in (
            ("find-slot 20 nodes x 2 h, first fit", request(20), 2 * 3600),
            ("find-slot 20 exclusive nodes x 2 h", request(20, exclusive=True), 2 * 3600),
            (f"find-slot 20 exclusive nodes x {args.days} d (fits at the end)",
             request(20, exclusive=True), args.days * 86400)):
        took = []
        for _ in range(2):      # the first decodes the specs it needs; the store keeps them
            t = time.perf_counter()
            found = agg.find_slot(WHO, xml, duration, None, hours)
            took.append(time.perf_counter() - t)
        where = f"from {found[0]:%Y-%m-%d %H:%M}" if found else "none"
        print(f"  {name:48s} {took[0]:6.3f} s, again {took[1]:6.3f} s  ({where})")
    store.close()


if __name__ == "__main__":
    main()
