"""Links carried through an OpenFlow switch (`LinkSpec.mode == "switch"`).

A request link asking for a switch (`<geniam:link switch="..."/>`) is placed as one link
sliver on the switch plus, per end host, a *wire* link sliver (am/engine/links.py). This is
the switch's part. Each *attachment* of the link (a VM host's link bridge, or one container
interface) gets a veth pair: its switch end `<prefix>l<tag><n>` is a port of the physical
bridge (moved into the namespace ovs-vswitchd runs in, `ovs_netns`), its host end
`<prefix>w<tag><n>` stays in the root namespace as the wire the end's host driver takes (a
VM host joins it to the link's bridge beside the VM taps; a container takes it as its
interface). The ports are plain access ports: untagged, so no 802.1Q device is needed on
the host (this kernel has none).

The physical bridge's table belongs to the AM (fail-secure): the link forwards by flows of
its own (cookie `Naming.link_cookie(tag)`, priority 300): what comes in on one of its ports
goes out of its other ports, nothing else. A link capacity is enforced on the switch: one
OpenFlow drop meter per port of the link at the capacity, applied by that port's flow
(`actions=meter:<id>,output:...`), so each attachment sends at most the capacity into the
switch (a two-port link: the capacity each way). Provision sets the meters, an Update re-sets
them (or removes them with the capacity), Delete removes them; their ids are recorded in the
bridge's `external_ids` (`geni-meters-<tag>`). Its ports are never a flowspace's (they are not in
the inventory), so no slice's controller sees them. The sliver is recorded in the bridge's
`external_ids` (`geni-link-<tag>=<sliver URN>`) so observed() and release() work from OVS
alone.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from drivers import hostnet
from drivers.base import DriverError, ObservedSliver, OperationalState
from drivers.openflow.naming import Naming, cookie_match
from drivers.ovs import OVSClient, OVSError

SWITCH_MODE = "switch"
LINK_IDS = "geni-link-"          # physical bridge external_ids key prefix: link tag -> sliver URN
METER_IDS = "geni-meters-"       # ... link tag -> its meters' ids ("3,4")
METER_SLOTS = 30000              # meter ids 1..60000, two per slot, a slot from the link's tag
LINK_PRIORITY = 300
IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")


def link_flows(naming: Naming, tag: str, ofports: Sequence[int],
               meters: Sequence[int] = ()) -> list[str]:
    """Each of the link's ports forwards to all its others (a two-port link: a wire), through
    its meter when the link has a capacity (`meters`: one id per port, in order)."""
    cookie = naming.link_cookie(tag)
    out = []
    for i, port in enumerate(ofports):
        others = [p for p in ofports if p != port]
        actions = ",".join(f"output:{p}" for p in others) or "drop"
        if meters and others:
            actions = f"meter:{meters[i]},{actions}"
        out.append(f"cookie={cookie},priority={LINK_PRIORITY},in_port={port},actions={actions}")
    return out


class SwitchLinks:
    """Build, check and remove the links of one driver's switches."""

    def __init__(self, ovs: OVSClient, naming: Naming, netns: str | None):
        self.ovs, self.naming, self.netns = ovs, naming, netns

    def wires(self, slice_urn: str, link_client_id: str, count: int) -> list[str]:
        tag = self.naming.link_tag(slice_urn, link_client_id)
        return [self.naming.link_wire(tag, n) for n in range(count)]

    def build(self, phys: str, tag: str, sliver_urn: str, count: int,
              cabled: Sequence[str] = (), kbps: int | None = None) -> list[int]:
        """Make (or complete) the link's ports, meters (for a capacity of `kbps`) and flows;
        their OpenFlow numbers. The same call re-shapes a running link (Update). `cabled`:
        switch ports a site cable plugs in (a NetFPGA card port), on the link as they are
        (never made or removed here)."""
        ports = [self.naming.link_port(tag, n) for n in range(count)]
        try:
            for n, port in enumerate(ports):
                if hostnet.find_link(self.netns, port) is None:
                    wire = self.naming.link_wire(tag, n)
                    hostnet.link_delete(None, wire)       # a half-made pair of a lost attempt
                    hostnet.link_delete(None, port)
                    hostnet.veth_add(port, wire)
                    for dev in (port, wire):   # the userspace datapath needs software checksums
                        hostnet.run(["ethtool", "-K", dev, "tx", "off"], missing_ok=True)
                    if self.netns:
                        hostnet.link_move(port, self.netns)
                    hostnet.link_set(None, wire, up=True)
                hostnet.link_set(self.netns, port, up=True)
            args: list[str] = []
            for port in ports:
                args += ["--", "--may-exist", "add-port", phys, port, "--", "set", "interface",
                         port, f"external_ids:geni-sliver={ovs_quote(sliver_urn)}"]
            self.ovs.vsctl("set", "bridge", phys,
                           f"external_ids:{LINK_IDS}{tag}={ovs_quote(sliver_urn)}", *args)
            ofports = self.ovs.ofports(phys)
        except OVSError as exc:
            raise DriverError(f"link through switch {phys}: {exc}",
                              transient=exc.transient) from None
        missing = [p for p in ports if ofports.get(p, -1) < 0]
        if missing:
            raise DriverError(f"port {missing[0]} has no OpenFlow number on {phys} yet",
                              transient=True)
        gone = [p for p in cabled if ofports.get(p, -1) < 0]
        if gone:
            raise DriverError(f"the site cable into {phys} port {gone[0]} is not plugged in")
        nums = [ofports[p] for p in (*ports, *cabled)]
        old = self.meters(phys).get(tag, [])
        meters = self._meter_ids(phys, tag, len(nums)) if kbps else []
        if meters:
            self.ovs.vsctl("set", "bridge", phys, f"external_ids:{METER_IDS}{tag}="
                                                  f"{','.join(map(str, meters))}")
            for mid in meters:
                self.ovs.set_meter(phys, mid, int(kbps or 0))
        self.ovs.del_flows(phys, cookie_match(self.naming.link_cookie(tag)))
        self.ovs.add_flows(phys, link_flows(self.naming, tag, nums, meters))
        self._drop_meters(phys, tag, sorted(set(old) - set(meters)), forget=not meters)
        return nums

    # ---- meters (a link's capacity) -------------------------------------------------------------
    def meters(self, phys: str) -> dict[str, list[int]]:
        """Link tag -> its meters' ids, from the bridge's external_ids."""
        ids = self.ovs.external_ids("Bridge", phys)
        return {k[len(METER_IDS):]: [int(m) for m in v.split(",") if m.isdigit()]
                for k, v in ids.items() if k.startswith(METER_IDS)}

    def _meter_ids(self, phys: str, tag: str, count: int) -> list[int]:
        """`count` meter ids for link `tag`: the ones it has, else a free run from a slot its
        tag picks (ids other links on the bridge hold are skipped)."""
        held = self.meters(phys)
        if len(held.get(tag, [])) == count:
            return held[tag]
        taken = {m for t, ms in held.items() if t != tag for m in ms}
        start = (int(tag, 16) % METER_SLOTS) * 2
        free = (mid for step in range(2 * METER_SLOTS)
                if (mid := (start + step) % (2 * METER_SLOTS) + 1) not in taken)
        out = [mid for _, mid in zip(range(count), free)]
        if len(out) < count:
            raise DriverError(f"no free meter ids on {phys}")
        return out

    def _drop_meters(self, phys: str, tag: str, ids: Sequence[int], *, forget: bool) -> None:
        for mid in ids:
            self.ovs.del_meter(phys, mid)
        if forget and tag in self.meters(phys):
            self.ovs.vsctl("remove", "bridge", phys, "external_ids", f"{METER_IDS}{tag}")

    def rates(self, phys: str, tag: str) -> list[int]:
        """The kbit/s rate of each of the link's meters now, as the switch has them."""
        ids = set(self.meters(phys).get(tag, []))
        out, meter = [], None
        for word in self.ovs.ofctl("dump-meters", phys).replace(",", " ").split():
            key, _, value = word.partition("=")
            if key == "meter" and value.isdigit():     # "meter=3 kbps burst ... type=drop rate=N"
                meter = int(value)
            elif key == "rate" and value.isdigit() and meter in ids:
                out.append(int(value))
        return sorted(out)

    def state(self, phys: str, tag: str, count: int,
              cabled: Sequence[str] = ()) -> tuple[OperationalState, str]:
        if phys not in self.ovs.bridges():
            return OperationalState.FAILED, f"switch {phys} is gone"
        if tag not in self.owners(phys):
            return OperationalState.FAILED, f"the link is not on {phys}"
        ofports = self.ovs.ofports(phys)
        ports = [self.naming.link_port(tag, n) for n in range(count)] + list(cabled)
        lost = [p for p in ports if ofports.get(p, -1) < 0]
        if lost:
            return OperationalState.FAILED, f"port {lost[0]} is gone from {phys}"
        flows = self.ovs.dump_flows(phys, cookie_match(self.naming.link_cookie(tag)))
        if len(flows) < len(ports):
            return OperationalState.NOTREADY, f"the link's flows are not on {phys}"
        nums = ", ".join(str(ofports[p]) for p in ports)
        rates = self.rates(phys, tag)
        metered = f", metered at {rates[0]} kbit/s per port" if rates else ""
        cables = f" ({', '.join(cabled)}: a site cable's)" if cabled else ""
        return OperationalState.READY, (f"link through {phys}: OpenFlow ports {nums}{cables}"
                                        f"{metered}")

    def stop(self, phys: str, tag: str) -> None:
        self.ovs.del_flows(phys, cookie_match(self.naming.link_cookie(tag)))

    def teardown(self, phys_bridges: Sequence[str], tag: str) -> None:
        """Remove the link's flows, ports, veths and record wherever they are (idempotent)."""
        bridges = self.ovs.bridges()
        for phys in phys_bridges:
            if phys not in bridges:
                continue
            self.stop(phys, tag)
            self._drop_meters(phys, tag, self.meters(phys).get(tag, []), forget=True)
            args: list[str] = []
            for port in self.ovs.ports(phys):
                if self.naming.tag_of_link_port(port) == tag:
                    args += ["--", "--if-exists", "del-port", phys, port]
            if tag in self.owners(phys):
                args += ["--", "remove", "bridge", phys, "external_ids", f"{LINK_IDS}{tag}"]
            if args:
                self.ovs.vsctl(*args[1:])
        for space in dict.fromkeys((self.netns, None)):
            for li in hostnet.links(space):
                if self.naming.tag_of_link_port(li.name) == tag:
                    hostnet.link_delete(space, li.name)

    def owners(self, phys: str) -> dict[str, str]:
        """Link tag -> sliver URN, from the bridge's external_ids."""
        ids = self.ovs.external_ids("Bridge", phys)
        return {k[len(LINK_IDS):]: v for k, v in ids.items() if k.startswith(LINK_IDS)}

    def handle(self, tag: str) -> str:
        return f"{self.naming.prefix}link{tag}"

    def tag_of_handle(self, handle: str) -> str | None:
        m = re.fullmatch(rf"{self.naming.prefix}link([0-9a-f]{{8}})", handle)
        return m.group(1) if m else None

    def observed(self, phys: str) -> list[ObservedSliver]:
        """Every link on `phys`: recorded ones, and ports or flows nobody recorded (debris)."""
        owners = self.owners(phys)
        tags = set(owners)
        tags |= {t for p in self.ovs.ports(phys) if (t := self.naming.tag_of_link_port(p))}
        tags |= {t for f in self.ovs.dump_flows(phys)
                 if (t := self.naming.link_tag_of_cookie(f.cookie))}
        out = []
        for tag in sorted(tags):
            ports = [p for p in self.ovs.ports(phys) if self.naming.tag_of_link_port(p) == tag]
            state = OperationalState.READY if tag in owners else OperationalState.FAILED
            out.append(ObservedSliver(handle=self.handle(tag), sliver_urn=owners.get(tag),
                                      state=state, detail=f"link through {phys}: "
                                                          f"{len(ports)} port(s)"))
        return out


def ovs_quote(value: str) -> str:
    """A value for an ovs-vsctl map column (URNs hold characters the parser would split on)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

__all__ = ["LINK_IDS", "METER_IDS", "SWITCH_MODE", "SwitchLinks", "link_flows", "ovs_quote"]
