"""`geni-am calibrate forwarding`: measure on this host how many guest-forwarding virtual
routers forward at once before their forwarding degrades, and print the `guest_router_limit`
setting of [drivers.xen] (docs/xen.md, "guest_router_limit: how the figure is obtained").

It boots router VMs on a private libvirtd (QEMU; the image from the download cache's store,
built if missing), pushes a UDP load through N of them at once for each N in --counts and
takes the knee (drivers/xen/forwarding.py, shared with bench/bench_forwarding.py). Root and
iperf3 are needed; everything it makes is removed when it ends.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="measure this host's limits for the site inventory")
    csub = p.add_subparsers(dest="calibrate_command", metavar="WHAT", required=True)
    f = csub.add_parser(
        "forwarding", help="guest-forwarding routers per host before forwarding degrades",
        description="Boot N router VMs (QEMU, private libvirtd), push --rate-mbit of UDP "
                    "through each of them at once for every N in --counts, and print "
                    "guest_router_limit: the largest N up to which every router delivered at "
                    "least (100 - --knee-loss) % of its load. Needs root and iperf3.")
    f.add_argument("--counts", type=counts, default=counts("1,2,4,8"),
                   help="router counts to measure, comma-separated (default 1,2,4,8)")
    f.add_argument("--rate-mbit", type=bounded(0.1, 10_000), default=10.0,
                   help="offered UDP load per router in Mbit/s (default 10)")
    f.add_argument("--seconds", type=bounded(1, 600), default=5.0,
                   help="length of each load run (default 5)")
    f.add_argument("--knee-loss", type=bounded(0, 99.9), default=10.0,
                   help="loss in %% beyond which a router counts as degraded (default 10)")
    f.add_argument("--memory-mb", type=int_at_least(96), default=160,
                   help="memory of each router VM in MiB (default 160)")
    f.add_argument("--json", metavar="FILE", help="also write the measured points here")
    f.set_defaults(func=_forwarding)


def counts(text: str) -> list[int]:
    """"1,2,4,8" -> [1, 2, 4, 8] (sorted, once each); each between 1 and 64."""
    try:
        values = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"counts must be whole numbers separated by commas, "
                                         f"not {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one router count")
    bad = [v for v in values if not 1 <= v <= 64]
    if bad:
        raise argparse.ArgumentTypeError(f"router counts must be 1-64, not {bad[0]}")
    return values


def bounded(lo: float, hi: float):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be between {lo:g} and {hi:g}, not {value:g}")
        return value
    return parse


def int_at_least(lo: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo}, not {value}")
        return value
    return parse


def missing() -> list[str]:
    """What this host lacks for the measurement (empty: it can run)."""
    out = [] if os.geteuid() == 0 else ["root (namespaces, bridges, a libvirtd)"]
    for tool, package in (("iperf3", "iperf3"), ("libvirtd", "libvirt-daemon-system"),
                          ("qemu-system-x86_64", "qemu-system-x86"), ("ip", "iproute2")):
        if shutil.which(tool) is None:
            out.append(f"{tool} (apt-get install {package})")
    return out


def _forwarding(args: argparse.Namespace) -> int:
    lacking = missing()
    if lacking:
        print("geni-am calibrate forwarding: this host lacks " + ", ".join(lacking),
              file=sys.stderr)
        return 1
    from drivers.xen import forwarding

    guests = forwarding.GuestRouters(max(args.counts), args.memory_mb)
    mode = forwarding.Mode("guest", "guest", guests.setup, guests.teardown_ends)
    try:
        results = forwarding.run_modes({"guest": mode}, args.counts, args.rate_mbit,
                                        args.seconds,
                                        lambda p: print(forwarding.describe(p), flush=True))
    finally:
        guests.close()
    limit = forwarding.knee(results["guest"], args.knee_loss)
    if args.json:
        forwarding.write_json(results, Path(args.json), rate_mbit_per_router=args.rate_mbit,
                              seconds=args.seconds, knee_loss_pct=args.knee_loss,
                              guest_router_limit=limit)
    print(f"guest_router_limit = {limit}    # [drivers.xen]: guest routers per host before a "
          f"router delivers less than {100 - args.knee_loss:g} % of {args.rate_mbit:g} Mbit/s")
    if limit == max(args.counts):
        print(f"# no degradation up to N = {limit}: measure larger counts to find the knee")
    return 0


__all__ = ["counts", "missing", "register"]
