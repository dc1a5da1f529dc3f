"""Compiling a card's register state into OpenFlow rules for an OVS userspace bridge (pure).

The emulated card (`drivers.netfpga.card`) runs one bridge per card; this module says what its
flow table must be for a given `CardState`, so the same registers always give the same
pipeline and a restarted card rebuilds exactly what it ran. Tables, per slot (metadata = slot):

  0  classify   ingress port + VLAN -> slot (pop the slot's VLAN tag); CPU and card-software
                ports enter their slot here; nothing else passes
  1  filter     ARP for the slot's own addresses answered with the port's MAC (and the asker
                learned); ARP replies to the card learned; IPv4 to an own address -> the slot's
                CPU port; TTL <= 1 not forwarded (counted) but sent to the CPU port, whose
                control plane answers with ICMP time-exceeded; else TTL decremented
  2  route      longest-prefix match (priority = 1000 + prefix length): next hop -> reg0, out
                port -> reg1, source MAC = the out port's; no match: not forwarded (counted),
                sent to the CPU port (ICMP unreachable comes from the control plane) unless it
                came from there
  3  arp        next hop -> destination MAC from the slot's ARP table; a miss goes to the
                card's software (which sends an ARP request) and is counted
  4  output     out port, tagged with the slot's VLAN when it has one (counted as forwarded);
                a tagged slot's port also has an access wire (the VLAN breakout): the same
                frame goes out of it untagged, and what comes in on it enters as that
                port's VLAN (reg4 = 1 marks it)

Counting is by cookie: `cookie(kind, slot)`; the card process sums flow counters per cookie
into the slot's counter registers.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from drivers.netfpga.simulated import CardState, SlotState

COOKIE_BASE = 0x4E46 << 48
KINDS = {"rx_packets": 1, "to_cpu": 2, "dropped_ttl": 3, "dropped_no_route": 4,
         "dropped_arp_miss": 5, "forwarded": 6}
NO_INGRESS = 0xFFFF        # reg3 of packets from the control plane (no ingress port)


def cookie(kind: str, slot: int) -> int:
    return COOKIE_BASE | KINDS[kind] << 8 | slot


def kind_of(value: int) -> tuple[str, int] | None:
    """(counter name, slot) of a cookie this module made, else None."""
    if value >> 48 != COOKIE_BASE >> 48:
        return None
    code, slot = value >> 8 & 0xFF, value & 0xFF
    name = next((k for k, v in KINDS.items() if v == code), None)
    return (name, slot) if name else None


def port_ofport(port: int) -> int:
    return port + 1


def cpu_ofport(slot: int) -> int:
    return 100 + slot


def soft_ofport(slot: int) -> int:
    return 200 + slot


MAX_ACCESS_PORT = 14       # access wires exist for ports 0..14 (their OpenFlow numbers fit)


def access_ofport(port: int, vlan: int) -> int:
    """OpenFlow port of the access wire of `port`'s VLAN `vlan` (below OFPP_MAX 0xff00)."""
    return 1024 + (port << 12 | vlan)


def access_wires(state: CardState) -> list[tuple[int, int]]:
    """(port, VLAN) of every slot's tagged port: each gets an access wire."""
    return sorted({(p, s.vlan) for s in state.slots if s.vlan and s.port_mask
                   for p in s.ports if p <= MAX_ACCESS_PORT and p < len(state.port_macs)})


def cpu_macs(port0_mac: str, slot: int) -> tuple[str, str]:
    """(card side, control-plane side) MACs of a slot's CPU port, derived from the card's."""
    head = port0_mac.rsplit(":", 1)[0]
    return f"{head}:{0xC0 + slot:02x}", f"{head}:{0x80 + slot:02x}"


@dataclass(frozen=True)
class _Slot:
    s: SlotState
    macs: tuple[str, ...]

    @property
    def meta(self) -> str:
        return f"metadata={self.s.slot}"

    def tag(self) -> str:
        v = self.s.vlan
        return f"push_vlan:0x8100,set_field:{4096 | v}->vlan_vid," if v else ""

    def access(self, port: int) -> int | None:
        """The access wire's OpenFlow port of a tagged slot's port (None: untagged slot)."""
        v = self.s.vlan
        return access_ofport(port, v) if v and port <= MAX_ACCESS_PORT else None

    def out(self, port: int) -> str:
        """Actions sending a packet out of `port` as this slot: untagged on the access wire
        (if any), then tagged on the port (in that order: the tag is pushed last)."""
        a = self.access(port)
        return f"{f'output:{a},' if a else ''}{self.tag()}output:{port_ofport(port)}"


def _responder(mac: str, *, own: str | None) -> str:
    """Turn an ARP request into the reply from `mac` (for `own`, or proxy for any target)."""
    swap = (f"move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:{own}->arp_spa" if own else
            "move:NXM_OF_ARP_TPA[]->NXM_NX_REG2[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],"
            "move:NXM_NX_REG2[]->NXM_OF_ARP_SPA[]")
    return (f"move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:{mac}->eth_src,"
            f"load:0x2->NXM_OF_ARP_OP[],move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],"
            f"set_field:{mac}->arp_sha,{swap}")


def compile_flows(state: CardState) -> list[str]:
    """The bridge's whole flow table (ovs-ofctl add-flows syntax, OpenFlow 1.3 + NXM)."""
    flows = ["table=0,priority=0,actions=drop"]
    for s in state.slots:
        if s.enabled and s.port_mask:
            flows += _slot_flows(_Slot(s, state.port_macs))
    return flows


def _slot_flows(x: _Slot) -> list[str]:
    s, macs, meta = x.s, x.macs, x.meta
    n = s.slot
    ports = [p for p in s.ports if p < len(macs)]
    cpu_card_mac, cpu_host_mac = cpu_macs(macs[0], n)
    out: list[str] = []
    c = cookie
    # 0: classify
    for p in ports:
        sel = f"dl_vlan={s.vlan},actions=pop_vlan," if s.vlan else \
            "vlan_tci=0x0000/0x1fff,actions="
        out.append(f"table=0,priority=100,cookie={c('rx_packets', n):#x},in_port={port_ofport(p)},"
                   f"{sel}set_field:{n}->metadata,load:{p}->NXM_NX_REG3[],goto_table:1")
        out.append(f"table=0,priority=100,in_port={soft_ofport(n)},dl_src={macs[p]},"
                   f"actions={x.out(p)}")
        if x.access(p):     # the access wire: this port's VLAN with the tag already popped
            out.append(f"table=0,priority=100,cookie={c('rx_packets', n):#x},"
                       f"in_port={x.access(p)},vlan_tci=0x0000/0x1fff,actions="
                       f"set_field:{n}->metadata,load:{p}->NXM_NX_REG3[],"
                       f"load:1->NXM_NX_REG4[],goto_table:1")
    out.append(f"table=0,priority=100,in_port={cpu_ofport(n)},arp,arp_op=1,"
               f"actions={_responder(cpu_card_mac, own=None)},IN_PORT")
    out.append(f"table=0,priority=90,in_port={cpu_ofport(n)},ip,actions=set_field:{n}->metadata,"
               f"load:{NO_INGRESS:#x}->NXM_NX_REG3[],goto_table:2")
    # 1: filter
    for p in ports:
        for own in s.filters:
            learn = f"clone(set_field:{macs[p]}->eth_dst,output:{soft_ofport(n)})"
            out.append(f"table=1,priority=300,{meta},reg3={p},arp,arp_op=1,arp_tpa={own},"
                       f"actions={learn},{_responder(macs[p], own=own)},{x.tag()}IN_PORT")
            if x.access(p):                  # asked on the access wire: answered untagged
                out.append(f"table=1,priority=301,{meta},reg3={p},reg4=1,arp,arp_op=1,"
                           f"arp_tpa={own},actions={learn},{_responder(macs[p], own=own)},"
                           "IN_PORT")
        out.append(f"table=1,priority=250,{meta},reg3={p},arp,arp_op=2,"
                   f"actions=set_field:{macs[p]}->eth_dst,output:{soft_ofport(n)}")
    out.append(f"table=1,priority=200,{meta},arp,actions=drop")
    for own in s.filters:
        out.append(f"table=1,priority=200,cookie={c('to_cpu', n):#x},{meta},ip,nw_dst={own},"
                   f"actions=set_field:{cpu_host_mac}->eth_dst,output:{cpu_ofport(n)}")
    to_cpu = f"set_field:{cpu_host_mac}->eth_dst,output:{cpu_ofport(n)}"
    for ttl in (0, 1):     # expired: not forwarded; the control plane sends time-exceeded
        out.append(f"table=1,priority=150,cookie={c('dropped_ttl', n):#x},{meta},ip,"
                   f"nw_ttl={ttl},actions={to_cpu}")
    out.append(f"table=1,priority=100,{meta},ip,actions=dec_ttl,goto_table:2")
    out.append(f"table=1,priority=0,{meta},actions=drop")
    # 2: route (longest prefix first)
    for r in s.routes:
        if r.port not in ports:
            continue
        net = ipaddress.IPv4Network(r.prefix)
        nh = (f"load:{int(ipaddress.IPv4Address(r.next_hop)):#x}->NXM_NX_REG0[]" if r.next_hop
              else "move:NXM_OF_IP_DST[]->NXM_NX_REG0[]")
        match = f",nw_dst={net}" if net.prefixlen else ""
        out.append(f"table=2,priority={1000 + net.prefixlen},{meta},ip{match},"
                   f"actions={nh},set_field:{macs[r.port]}->eth_src,"
                   f"load:{r.port}->NXM_NX_REG1[],goto_table:3")
    # no route: not forwarded; from a port it goes to the control plane (which sends
    # destination-unreachable), from the control plane itself it is dropped (no loop)
    out.append(f"table=2,priority=2,cookie={c('dropped_no_route', n):#x},{meta},"
               f"reg3={NO_INGRESS:#x},actions=drop")
    out.append(f"table=2,priority=1,cookie={c('dropped_no_route', n):#x},{meta},ip,"
               f"actions={to_cpu}")
    out.append(f"table=2,priority=0,{meta},actions=drop")
    # 3: next hop MAC
    for e in s.arp:
        out.append(f"table=3,priority=100,{meta},reg0={int(ipaddress.IPv4Address(e.ip)):#x},"
                   f"actions=set_field:{e.mac}->eth_dst,goto_table:4")
    out.append(f"table=3,priority=1,cookie={c('dropped_arp_miss', n):#x},{meta},ip,"
               f"actions=move:NXM_NX_REG0[]->NXM_OF_IP_SRC[],output:{soft_ofport(n)}")
    # 4: output
    for p in ports:
        a = x.access(p)
        fwd = f"cookie={c('forwarded', n):#x},{meta},reg1={p}"
        if a:            # back out of the port it came in by: IN_PORT for that wire
            out.append(f"table=4,priority=120,{fwd},reg3={p},reg4=1,"
                       f"actions=IN_PORT,{x.tag()}output:{port_ofport(p)}")
            out.append(f"table=4,priority=110,{fwd},reg3={p},"
                       f"actions=output:{a},{x.tag()}IN_PORT")
        else:
            out.append(f"table=4,priority=110,{fwd},reg3={p},actions={x.tag()}IN_PORT")
        out.append(f"table=4,priority=100,{fwd},actions={x.out(p)}")
    return out


__all__ = ["COOKIE_BASE", "KINDS", "access_ofport", "access_wires", "compile_flows", "cookie", "cpu_macs", "cpu_ofport",
           "kind_of", "port_ofport", "soft_ofport"]
