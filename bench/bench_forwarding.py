"""The background article's Figure 7 on this substrate: N virtual routers forwarding at once.

For each mode and each N, N routers are set up on this host, each between its own subnet in a
source namespace and its own subnet in a sink namespace; iperf3 pushes a UDP load through all
N at once (one client and one server per router), and the bench reports the aggregate rate
delivered and the loss against N:

  guest  each router is a QEMU VM booted by the Xen driver (guest forwarding: the packets go
         through the VM's virtio NICs and its kernel), on a private libvirtd
  dom0   each router is a routing table of its own in a namespace standing in for Dom0, entered
         by policy rules from its interfaces (the driver's Dom0 plane, drivers/xen/dom0.py)

The plot goes to docs/figures/forwarding.png (with the numbers in forwarding.json), and the
bench prints `guest_router_limit`: the largest N up to which every guest router still delivers
at least (100 - --knee-loss) % of its offered load. The measurement itself (modes dom0 and
guest, the load, the knee) is drivers/xen/forwarding.py, shared with
`geni-am calibrate forwarding`, which measures the guest mode alone and prints the setting.

  netfpga  each router is a slot of one emulated NetFPGA card (drivers/netfpga: its registers
         compiled into an OVS userspace pipeline by the card process; bench_netfpga.NetFPGASlots)

Another forwarding mode joins the same table and plot by adding a `Mode` to MODES: `setup(n)` returns the n `Path`s (a source address, the sink address and
port to send to) with the routers in place, `teardown()` removes them.

Run as root (about 5-10 minutes on 2 cores):
    .venv/bin/python bench/bench_forwarding.py [--counts 1,2,4,8,12,16] [--rate-mbit 10]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from drivers.xen.forwarding import (DST, PREFIX, SRC, GuestRouters, Mode,  # noqa: E402
                                    Path_, describe, dom0_setup, dom0_teardown, dst_net,
                                    ends_down, ends_up, knee, plot, run_modes, src_net,
                                    write_json)

ROOT = Path(__file__).resolve().parents[1]


# ---- the registry, the run and the plot -------------------------------------------------------------

def netfpga_mode(most: int) -> Mode:
    """N slots of one emulated NetFPGA card (at most 16: a card's slot count)."""
    from bench_netfpga import NetFPGASlots

    slots: list[NetFPGASlots] = []

    def setup(n: int) -> list[Path_]:
        if not slots:
            slots.append(NetFPGASlots(min(most, 16), SRC, DST, src_net, dst_net,
                                      prefix=f"{PREFIX}nf"))
        ends_up()
        return [Path_(a, b) for a, b in slots[0].setup(n)]

    def teardown() -> None:
        if slots:
            slots[0].teardown()
        ends_down()

    return Mode("netfpga", "NetFPGA slots (emulated card: OVS userspace pipeline)", setup,
                teardown)


def modes(most: int, memory_mb: int) -> dict[str, Mode]:
    guests = GuestRouters(most, memory_mb)
    return {
        "netfpga": netfpga_mode(most),
        "dom0": Mode("dom0", "dom0 (forwarding in Dom0, per-router tables)", dom0_setup,
                     dom0_teardown),
        "guest": Mode("guest", "guest (forwarding inside QEMU VMs)", guests.setup,
                      guests.teardown_ends),
        "_close_guest": Mode("_close_guest", "", lambda n: [], guests.close),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="1,2,4,8,12,16")
    ap.add_argument("--modes", default="dom0,guest,netfpga")
    ap.add_argument("--rate-mbit", type=float, default=10.0, help="offered load per router")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--memory-mb", type=int, default=160, help="memory of each guest router")
    ap.add_argument("--knee-loss", type=float, default=10.0,
                    help="loss (%%) beyond which guest forwarding counts as degraded")
    ap.add_argument("--out", default=str(ROOT / "docs/figures/forwarding.png"))
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("run as root (namespaces, bridges, libvirtd)")
    counts = sorted({int(c) for c in args.counts.split(",")})
    registry = modes(max(counts), args.memory_mb)
    wanted = [m for m in args.modes.split(",") if m]
    unknown = [m for m in wanted if m not in registry or m.startswith("_")]
    if unknown:
        raise SystemExit(f"unknown mode(s) {unknown}; modes: "
                         f"{', '.join(m for m in registry if not m.startswith('_'))}")
    try:
        results = run_modes({name: registry[name] for name in wanted}, counts, args.rate_mbit,
                            args.seconds, lambda point: print(describe(point), flush=True))
    finally:
        for mode in registry.values():
            try:
                mode.teardown()
            except Exception as exc:   # noqa: BLE001 - cleanup goes on
                print(f"cleanup {mode.name}: {exc}", file=sys.stderr)
    limit = knee(results["guest"], args.knee_loss) if "guest" in results else 0
    out = Path(args.out)
    plot(results, {k: registry[k].label for k in results}, limit, out)
    write_json(results, out.with_suffix(".json"), rate_mbit_per_router=args.rate_mbit,
               seconds=args.seconds, knee_loss_pct=args.knee_loss, guest_router_limit=limit)
    print(f"plot: {out}")
    if "guest" in results:
        print(f"guest_router_limit = {limit}    # [drivers.xen] setting: guest routers per host "
              f"before loss passes {args.knee_loss:g} % at {args.rate_mbit:g} Mbit/s each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
