"""The register-level interface to a NetFPGA card, modelled on the reference router.

Software sees a card as 32-bit registers at byte addresses. Tables are not memory-mapped: an
entry is written by loading the entry registers and then writing its index to the table's
WR_ADDR register, and read by writing the index to RD_ADDR and then reading the entry
registers (the reference router's ROUTER_OP_LUT_ROUTE_TABLE_*, DST_IP_FILTER_TABLE_* and
ARP_TABLE_* registers work this way). Each port has its MAC address and rx/tx counters.
Virtualisation adds one register block per virtual data plane (slot): its control word, its
ports and VLAN, its own route, filter and ARP tables, and its forwarding and drop counters.
Counters are read-only: the card's pipeline counts.

Anything that implements `NetFPGARegisters` can sit behind the driver: the `SimulatedCard`
here, or a real card through its kernel driver's register ioctl.
"""
from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

# ---- global registers ----------------------------------------------------------------------
REG_CARD_ID = 0x0000
REG_NUM_PORTS = 0x0004
REG_NUM_SLOTS = 0x0008
REG_ROUTE_DEPTH = 0x000C       # entries per slot's route table
REG_FILTER_DEPTH = 0x0010      # entries per slot's destination-IP filter table
REG_ARP_DEPTH = 0x0014         # entries per slot's ARP (next hop -> MAC) table
REG_CONFIG_GEN = 0x0018        # bumped by the card on every configuration write (read-only)
REG_PIPELINE_PID = 0x001C      # the emulated card's pipeline process, 0 = none (read-only)
REG_PIPELINE_GEN = 0x0020      # the configuration generation the pipeline runs (read-only)
REG_PIPELINE_BEAT = 0x0024     # the pipeline's last heartbeat, Unix seconds (read-only)
CARD_ID = 0x4E464741           # "NFGA"

# ---- per-port register block (MAC address and counters) ------------------------------------
PORT_BASE = 0x0800
PORT_STRIDE = 0x40
MAX_PORTS = 32
PORT_MAC_HI = 0x00             # upper 16 bits of the port's MAC address
PORT_MAC_LO = 0x04             # lower 32 bits
PORT_RX_PKTS = 0x08            # 64-bit counters as LO, HI words (read-only)
PORT_RX_BYTES = 0x10
PORT_TX_PKTS = 0x18
PORT_TX_BYTES = 0x20
PORT_COUNTERS = {"rx_packets": PORT_RX_PKTS, "rx_bytes": PORT_RX_BYTES,
                 "tx_packets": PORT_TX_PKTS, "tx_bytes": PORT_TX_BYTES}

# ---- per-slot register block ---------------------------------------------------------------
SLOT_BASE = 0x1000
SLOT_STRIDE = 0x100
MAX_SLOTS = 16
SLOT_CTRL = 0x00               # bit 0: data plane enabled
SLOT_PORT_MASK = 0x04          # one bit per physical port the slot owns (or shares by VLAN)
SLOT_VLAN = 0x08               # 0: untagged; else the VLAN id that selects this slot
RT_ENTRY_IP = 0x10
RT_ENTRY_MASK = 0x14
RT_ENTRY_NEXT_HOP = 0x18
RT_ENTRY_PORT = 0x1C           # one-hot output port; 0 = entry unused
RT_RD_ADDR = 0x20
RT_WR_ADDR = 0x24
FILTER_ENTRY_IP = 0x30         # destination IPs punted to the control plane (router's own)
FILTER_RD_ADDR = 0x34
FILTER_WR_ADDR = 0x38
ARP_ENTRY_IP = 0x40            # next hop address; 0 = entry unused
ARP_ENTRY_MAC_HI = 0x44
ARP_ENTRY_MAC_LO = 0x48
ARP_RD_ADDR = 0x4C
ARP_WR_ADDR = 0x50
SLOT_RX_PKTS = 0x60            # 64-bit counters as LO, HI words (read-only)
SLOT_FWD_PKTS = 0x68
SLOT_CPU_PKTS = 0x70
SLOT_DROP_NOROUTE = 0x78
SLOT_DROP_TTL = 0x80
SLOT_DROP_ARPMISS = 0x88
SLOT_COUNTERS = {"rx_packets": SLOT_RX_PKTS, "forwarded": SLOT_FWD_PKTS,
                 "to_cpu": SLOT_CPU_PKTS, "dropped_no_route": SLOT_DROP_NOROUTE,
                 "dropped_ttl": SLOT_DROP_TTL, "dropped_arp_miss": SLOT_DROP_ARPMISS}
REGISTER_SPACE = SLOT_BASE + MAX_SLOTS * SLOT_STRIDE

CTRL_ENABLE = 0x1


def port_reg(port: int, offset: int) -> int:
    return PORT_BASE + port * PORT_STRIDE + offset


def slot_reg(slot: int, offset: int) -> int:
    return SLOT_BASE + slot * SLOT_STRIDE + offset


class RegisterError(Exception):
    """An access the card does not accept (unmapped or misaligned address, index out of range)."""


class NetFPGARegisters(Protocol):
    """32-bit register access to one card; `locked()` serialises multi-register sequences."""

    def read(self, address: int) -> int: ...
    def write(self, address: int, value: int) -> None: ...
    def locked(self) -> AbstractContextManager[None]: ...


@dataclass(frozen=True)
class RouteEntry:
    """One route table entry as the hardware holds it (longest prefix match, one-hot port)."""

    prefix: str
    next_hop: str | None
    port: int                  # port index 0..3

    @classmethod
    def from_words(cls, ip: int, mask: int, next_hop: int, port_mask: int) -> RouteEntry:
        plen = mask.bit_count()
        return cls(prefix=f"{_dotted(ip & mask)}/{plen}",
                   next_hop=_dotted(next_hop) if next_hop else None,
                   port=port_mask.bit_length() - 1)

    def words(self) -> tuple[int, int, int, int]:
        """The four entry registers. Entries come from normalised routes, so the prefix is
        canonical; parsed with socket.inet_aton (a 10,000-route sync writes 10,000 of them)."""
        addr, _, plen = self.prefix.partition("/")
        length = int(plen) if plen else 32
        if not 0 <= length <= 32:
            raise RegisterError(f"{self.prefix!r} is not an IPv4 prefix")
        mask = (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF
        return (_word_of(addr) & mask, mask, _word_of(self.next_hop) if self.next_hop else 0,
                1 << self.port)


def _word_of(address: str) -> int:
    try:
        return int.from_bytes(socket.inet_aton(address), "big") if address.count(".") == 3 \
            else int(ipaddress.IPv4Address(address))
    except (OSError, ValueError):
        raise RegisterError(f"{address!r} is not an IPv4 address") from None


def _dotted(word: int) -> str:
    return socket.inet_ntoa(word.to_bytes(4, "big"))


class CardTables:
    """Table-level access to one card over its registers (the driver's only way in)."""

    def __init__(self, regs: NetFPGARegisters):
        self.regs = regs
        if regs.read(REG_CARD_ID) != CARD_ID:
            raise RegisterError("device does not identify as a NetFPGA virtual router card")
        self.ports = regs.read(REG_NUM_PORTS)
        self.slots = regs.read(REG_NUM_SLOTS)
        self.route_depth = regs.read(REG_ROUTE_DEPTH)
        self.filter_depth = regs.read(REG_FILTER_DEPTH)
        self.arp_depth = regs.read(REG_ARP_DEPTH)

    # ---- slot control ---------------------------------------------------------------------------
    def configure_slot(self, slot: int, *, enabled: bool, port_mask: int, vlan: int) -> None:
        self.regs.write(slot_reg(slot, SLOT_PORT_MASK), port_mask)
        self.regs.write(slot_reg(slot, SLOT_VLAN), vlan)
        self.regs.write(slot_reg(slot, SLOT_CTRL), CTRL_ENABLE if enabled else 0)

    def slot_config(self, slot: int) -> tuple[bool, int, int]:
        return (bool(self.regs.read(slot_reg(slot, SLOT_CTRL)) & CTRL_ENABLE),
                self.regs.read(slot_reg(slot, SLOT_PORT_MASK)),
                self.regs.read(slot_reg(slot, SLOT_VLAN)))

    # ---- route table ----------------------------------------------------------------------------
    def write_route(self, slot: int, index: int, entry: RouteEntry | None) -> None:
        ip, mask, nh, port = entry.words() if entry else (0, 0, 0, 0)
        w = self.regs.write
        w(slot_reg(slot, RT_ENTRY_IP), ip)
        w(slot_reg(slot, RT_ENTRY_MASK), mask)
        w(slot_reg(slot, RT_ENTRY_NEXT_HOP), nh)
        w(slot_reg(slot, RT_ENTRY_PORT), port)
        w(slot_reg(slot, RT_WR_ADDR), index)

    def read_route(self, slot: int, index: int) -> RouteEntry | None:
        self.regs.write(slot_reg(slot, RT_RD_ADDR), index)
        r = self.regs.read
        port = r(slot_reg(slot, RT_ENTRY_PORT))
        if port == 0:
            return None
        return RouteEntry.from_words(r(slot_reg(slot, RT_ENTRY_IP)), r(slot_reg(slot, RT_ENTRY_MASK)),
                                     r(slot_reg(slot, RT_ENTRY_NEXT_HOP)), port)

    def routes(self, slot: int) -> dict[int, RouteEntry]:
        return {i: e for i in range(self.route_depth)
                if (e := self.read_route(slot, i)) is not None}

    # ---- filter table ---------------------------------------------------------------------------
    def write_filter(self, slot: int, index: int, address: str | None) -> None:
        self.regs.write(slot_reg(slot, FILTER_ENTRY_IP),
                        int(ipaddress.IPv4Address(address)) if address else 0)
        self.regs.write(slot_reg(slot, FILTER_WR_ADDR), index)

    def filters(self, slot: int) -> dict[int, str]:
        out = {}
        for i in range(self.filter_depth):
            self.regs.write(slot_reg(slot, FILTER_RD_ADDR), i)
            v = self.regs.read(slot_reg(slot, FILTER_ENTRY_IP))
            if v:
                out[i] = str(ipaddress.IPv4Address(v))
        return out

    # ---- ARP (next hop -> MAC) table -----------------------------------------------------------
    def write_arp(self, slot: int, index: int, entry: ArpEntry | None) -> None:
        w = self.regs.write
        hi, lo = mac_words(entry.mac) if entry else (0, 0)
        w(slot_reg(slot, ARP_ENTRY_IP), int(ipaddress.IPv4Address(entry.ip)) if entry else 0)
        w(slot_reg(slot, ARP_ENTRY_MAC_HI), hi)
        w(slot_reg(slot, ARP_ENTRY_MAC_LO), lo)
        w(slot_reg(slot, ARP_WR_ADDR), index)

    def arp_table(self, slot: int) -> dict[int, ArpEntry]:
        out = {}
        r = self.regs.read
        for i in range(self.arp_depth):
            self.regs.write(slot_reg(slot, ARP_RD_ADDR), i)
            ip = r(slot_reg(slot, ARP_ENTRY_IP))
            if ip:
                out[i] = ArpEntry(str(ipaddress.IPv4Address(ip)),
                                  mac_text(r(slot_reg(slot, ARP_ENTRY_MAC_HI)),
                                           r(slot_reg(slot, ARP_ENTRY_MAC_LO))))
        return out

    def clear_arp(self, slot: int) -> None:
        for i in self.arp_table(slot):
            self.write_arp(slot, i, None)

    # ---- ports -------------------------------------------------------------------------------
    def port_mac(self, port: int) -> str:
        return mac_text(self.regs.read(port_reg(port, PORT_MAC_HI)),
                        self.regs.read(port_reg(port, PORT_MAC_LO)))

    def set_port_mac(self, port: int, mac: str) -> None:
        hi, lo = mac_words(mac)
        self.regs.write(port_reg(port, PORT_MAC_HI), hi)
        self.regs.write(port_reg(port, PORT_MAC_LO), lo)

    # ---- counters (read-only; the card's pipeline counts) -------------------------------------
    def _counter(self, address: int) -> int:
        return self.regs.read(address) | self.regs.read(address + 4) << 32

    def port_counters(self, port: int) -> dict[str, int]:
        with self.regs.locked():
            return {name: self._counter(port_reg(port, off)) for name, off in PORT_COUNTERS.items()}

    def slot_counters(self, slot: int) -> dict[str, int]:
        with self.regs.locked():
            return {name: self._counter(slot_reg(slot, off)) for name, off in SLOT_COUNTERS.items()}

    # ---- the pipeline behind the registers ----------------------------------------------------
    def pipeline(self) -> PipelineStatus:
        with self.regs.locked():
            return PipelineStatus(pid=self.regs.read(REG_PIPELINE_PID),
                                  generation=self.regs.read(REG_PIPELINE_GEN),
                                  config_generation=self.regs.read(REG_CONFIG_GEN),
                                  heartbeat=self.regs.read(REG_PIPELINE_BEAT))

    def iter_slots(self) -> Iterator[int]:
        return iter(range(self.slots))


@dataclass(frozen=True)
class ArpEntry:
    """One ARP table entry: the MAC address a next hop (or directly connected host) has."""

    ip: str
    mac: str


@dataclass(frozen=True)
class PipelineStatus:
    """What the card says about the packet pipeline that executes its registers."""

    pid: int                   # 0: no pipeline has attached to this card
    generation: int            # configuration generation the pipeline has compiled
    config_generation: int     # generation of the registers now
    heartbeat: int             # Unix seconds of the pipeline's last heartbeat

    @property
    def current(self) -> bool:
        return self.pid != 0 and self.generation == self.config_generation


def mac_words(mac: str) -> tuple[int, int]:
    """A MAC address as (upper 16 bits, lower 32 bits)."""
    parts = mac.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise RegisterError(f"{mac!r} is not a MAC address")
    try:
        value = int("".join(parts), 16)
    except ValueError:
        raise RegisterError(f"{mac!r} is not a MAC address") from None
    return value >> 32, value & 0xFFFFFFFF


def mac_text(hi: int, lo: int) -> str:
    value = (hi & 0xFFFF) << 32 | lo
    return ":".join(f"{(value >> s) & 0xFF:02x}" for s in range(40, -1, -8))
