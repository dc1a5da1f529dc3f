"""The register-level interface to a NetFPGA card, modelled on the reference router.

Software sees a card as 32-bit registers at byte addresses. Tables are not memory-mapped: an
entry is written by loading the entry registers and then writing its index to the table's
WR_ADDR register, and read by writing the index to RD_ADDR and then reading the entry
registers (the reference router's ROUTER_OP_LUT_ROUTE_TABLE_* and DST_IP_FILTER_TABLE_*
registers work this way). Virtualisation adds one register block per virtual data plane
(slot): its control word, its ports and VLAN, and its own route and filter tables.

Anything that implements `NetFPGARegisters` can sit behind the driver: the `SimulatedCard`
here, or a real card through its kernel driver's register ioctl.
"""
from __future__ import annotations

import ipaddress
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
CARD_ID = 0x4E464741           # "NFGA"

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
REGISTER_SPACE = SLOT_BASE + MAX_SLOTS * SLOT_STRIDE

CTRL_ENABLE = 0x1


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
    def from_words(cls, ip: int, mask: int, next_hop: int, port_mask: int) -> "RouteEntry":
        plen = bin(mask).count("1")
        net = ipaddress.IPv4Network((ip & mask, plen))
        return cls(prefix=str(net), next_hop=str(ipaddress.IPv4Address(next_hop)) if next_hop else None,
                   port=port_mask.bit_length() - 1)

    def words(self) -> tuple[int, int, int, int]:
        net = ipaddress.IPv4Network(self.prefix)
        nh = int(ipaddress.IPv4Address(self.next_hop)) if self.next_hop else 0
        return int(net.network_address), int(net.netmask), nh, 1 << self.port


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

    def iter_slots(self) -> Iterator[int]:
        return iter(range(self.slots))
