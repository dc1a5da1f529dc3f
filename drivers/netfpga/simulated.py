"""A simulated NetFPGA virtual-router card behind the register interface.

The card's state lives in a file mapped into memory (`mmap`, shared): its register file and
the SRAM holding every slot's route, filter and ARP tables. Several processes (API server, job
workers, the card's pipeline process, tests) therefore see one card, as they would see one
piece of hardware; `locked()` takes an advisory lock on the file so a multi-register table
write from one process is never interleaved with another's.

Two sides, as on real hardware: software (the driver) goes through `read`/`write` of 32-bit
registers only; the card's own pipeline (`drivers.netfpga.card`, the emulated hardware) uses
the `hw_*` methods, which read table memory directly, count packets into the read-only counter
registers, learn ARP entries and report its heartbeat. Every configuration write bumps
`REG_CONFIG_GEN`, so the pipeline knows when to recompile and the driver can wait until a change
is in force (`REG_PIPELINE_GEN`). docs/netfpga.md lists what is modelled and what is not.
"""
from __future__ import annotations

import fcntl
import ipaddress
import mmap
import os
import struct
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from drivers.netfpga.registers import (
    ARP_ENTRY_IP,
    ARP_RD_ADDR,
    ARP_WR_ADDR,
    CARD_ID,
    CTRL_ENABLE,
    FILTER_ENTRY_IP,
    FILTER_RD_ADDR,
    FILTER_WR_ADDR,
    MAX_PORTS,
    MAX_SLOTS,
    PORT_BASE,
    PORT_COUNTERS,
    PORT_MAC_HI,
    PORT_MAC_LO,
    PORT_STRIDE,
    REG_ARP_DEPTH,
    REG_CARD_ID,
    REG_CONFIG_GEN,
    REG_FILTER_DEPTH,
    REG_NUM_PORTS,
    REG_NUM_SLOTS,
    REG_PIPELINE_BEAT,
    REG_PIPELINE_GEN,
    REG_PIPELINE_PID,
    REG_ROUTE_DEPTH,
    REGISTER_SPACE,
    RT_ENTRY_IP,
    RT_ENTRY_MASK,
    RT_ENTRY_NEXT_HOP,
    RT_ENTRY_PORT,
    RT_RD_ADDR,
    RT_WR_ADDR,
    SLOT_BASE,
    SLOT_COUNTERS,
    SLOT_CTRL,
    SLOT_PORT_MASK,
    SLOT_STRIDE,
    SLOT_VLAN,
    ArpEntry,
    RegisterError,
    RouteEntry,
    mac_text,
    mac_words,
    port_reg,
    slot_reg,
)

_GEOMETRY = (REG_NUM_PORTS, REG_NUM_SLOTS, REG_ROUTE_DEPTH, REG_FILTER_DEPTH, REG_ARP_DEPTH)
_STATUS = (REG_CONFIG_GEN, REG_PIPELINE_PID, REG_PIPELINE_GEN, REG_PIPELINE_BEAT)
_GLOBALS = (REG_CARD_ID, *_GEOMETRY, *_STATUS)
_PORT_RW = (PORT_MAC_HI, PORT_MAC_LO)
_PORT_RO = tuple(o + w for o in PORT_COUNTERS.values() for w in (0, 4))
_SLOT_RW = (SLOT_CTRL, SLOT_PORT_MASK, SLOT_VLAN, RT_ENTRY_IP, RT_ENTRY_MASK, RT_ENTRY_NEXT_HOP,
            RT_ENTRY_PORT, RT_RD_ADDR, RT_WR_ADDR, FILTER_ENTRY_IP, FILTER_RD_ADDR,
            FILTER_WR_ADDR, ARP_ENTRY_IP, ARP_ENTRY_IP + 4, ARP_ENTRY_IP + 8, ARP_RD_ADDR,
            ARP_WR_ADDR)
_SLOT_RO = tuple(o + w for o in SLOT_COUNTERS.values() for w in (0, 4))
_WORD = struct.Struct("<I")
_ROUTE = struct.Struct("<IIII")
_ARP = struct.Struct("<III")
_TABLES = {  # index register -> (entry registers' offset, entry size, table)
    RT_WR_ADDR: (RT_ENTRY_IP, 16, "route"), RT_RD_ADDR: (RT_ENTRY_IP, 16, "route"),
    FILTER_WR_ADDR: (FILTER_ENTRY_IP, 4, "filter"), FILTER_RD_ADDR: (FILTER_ENTRY_IP, 4, "filter"),
    ARP_WR_ADDR: (ARP_ENTRY_IP, 12, "arp"), ARP_RD_ADDR: (ARP_ENTRY_IP, 12, "arp"),
}
_READS = (RT_RD_ADDR, FILTER_RD_ADDR, ARP_RD_ADDR)


@dataclass(frozen=True)
class Geometry:
    ports: int = 4
    slots: int = 4
    route_depth: int = 32
    filter_depth: int = 8
    arp_depth: int = 32

    def validate(self) -> None:
        if not 1 <= self.ports <= MAX_PORTS:
            raise RegisterError(f"a card has 1..{MAX_PORTS} ports, not {self.ports}")
        if not 1 <= self.slots <= MAX_SLOTS:
            raise RegisterError(f"a card has 1..{MAX_SLOTS} slots, not {self.slots}")
        for name in ("route_depth", "filter_depth", "arp_depth"):
            v = getattr(self, name)
            if not 1 <= v <= 1 << 20:
                raise RegisterError(f"{name} must be 1..{1 << 20}, not {v}")


@dataclass(frozen=True)
class SlotState:
    """One slot's configuration as the pipeline reads it from table memory."""

    slot: int
    enabled: bool
    port_mask: int
    vlan: int
    routes: tuple[RouteEntry, ...]
    filters: tuple[str, ...]
    arp: tuple[ArpEntry, ...]

    @property
    def ports(self) -> tuple[int, ...]:
        return tuple(p for p in range(32) if self.port_mask >> p & 1)


@dataclass(frozen=True)
class CardState:
    """Everything the pipeline needs, read at one configuration generation."""

    generation: int
    port_macs: tuple[str, ...]
    slots: tuple[SlotState, ...]


class SimulatedCard:
    """`NetFPGARegisters` over a memory-mapped card file, plus the hardware side (`hw_*`)."""

    def __init__(self, path: str | Path, geometry: Geometry | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self._fd = fd
        self._tlock = threading.RLock()
        self._depth = 0
        with self._file_lock():
            size = os.fstat(fd).st_size
            if size == 0:
                g = geometry or Geometry()
                g.validate()
                os.ftruncate(fd, _file_size(g))
                self._map = mmap.mmap(fd, 0)
                for addr, value in zip((REG_CARD_ID, *_GEOMETRY),
                                       (CARD_ID, g.ports, g.slots, g.route_depth,
                                        g.filter_depth, g.arp_depth)):
                    _WORD.pack_into(self._map, addr, value)
                serial = os.urandom(2)
                for p in range(g.ports):   # 02:4e:46 ("NF", locally administered) + serial + port
                    _WORD.pack_into(self._map, port_reg(p, PORT_MAC_HI), 0x024E)
                    _WORD.pack_into(self._map, port_reg(p, PORT_MAC_LO),
                                    0x46 << 24 | serial[0] << 16 | serial[1] << 8 | p)
            else:
                self._map = mmap.mmap(fd, 0)
        try:
            self.geometry = Geometry(*(self._word(a) for a in _GEOMETRY))
        except (TypeError, ValueError, struct.error):
            self.geometry = Geometry(0, 0, 0, 0, 0)
        if self._word(REG_CARD_ID) != CARD_ID or os.fstat(fd).st_size != _file_size(self.geometry):
            self.close()
            raise RegisterError(f"{self.path} is not a simulated NetFPGA card file (or one of "
                                "an older layout: remove it)")
        if geometry is not None and geometry != self.geometry:
            raise RegisterError(f"card {self.path} has {self.geometry}, configuration says "
                                f"{geometry}")

    # ---- NetFPGARegisters -----------------------------------------------------------------------
    def read(self, address: int) -> int:
        self._check(address)
        return self._word(address)

    def write(self, address: int, value: int) -> None:
        self._check(address)
        if not 0 <= value <= 0xFFFFFFFF:
            raise RegisterError(f"value {value:#x} does not fit a 32-bit register")
        if address < PORT_BASE:
            raise RegisterError(f"register {address:#06x} is read-only")
        if address < SLOT_BASE:
            if (address - PORT_BASE) % PORT_STRIDE not in _PORT_RW:
                raise RegisterError(f"register {address:#06x} is a read-only counter")
            if (address - PORT_BASE) % PORT_STRIDE == PORT_MAC_HI and value > 0xFFFF:
                raise RegisterError(f"a MAC address's upper word holds 16 bits, not {value:#x}")
            with self._file_lock():
                _WORD.pack_into(self._map, address, value)
                self._bump()
            return
        slot, off = divmod(address - SLOT_BASE, SLOT_STRIDE)
        if off in _SLOT_RO:
            raise RegisterError(f"register {address:#06x} is a read-only counter")
        with self._file_lock():
            table = _TABLES.get(off)
            if table is not None:
                regs_off, size, name = table
                depth = self._depth_of(name)
                if value >= depth:
                    raise RegisterError(f"{name} table index {value} beyond depth {depth}")
                at = self._entry_at(name, slot, value)
                regs = SLOT_BASE + slot * SLOT_STRIDE + regs_off
                if off in _READS:
                    self._map[regs:regs + size] = self._map[at:at + size]
                else:
                    self._map[at:at + size] = self._map[regs:regs + size]
            _WORD.pack_into(self._map, address, value)
            if off not in _READS:
                self._bump()

    @contextmanager
    def locked(self) -> Iterator[None]:
        with self._file_lock():
            yield

    # ---- the hardware side: what the card's pipeline does -------------------------------------
    def hw_state(self) -> CardState:
        """The configuration the pipeline executes, read from registers and table memory."""
        g = self.geometry
        with self._file_lock():
            macs = tuple(mac_text(self._word(port_reg(p, PORT_MAC_HI)),
                                  self._word(port_reg(p, PORT_MAC_LO))) for p in range(g.ports))
            slots = []
            for s in range(g.slots):
                routes = []
                for i in range(g.route_depth):
                    ip, mask, nh, out = _ROUTE.unpack_from(self._map, self._entry_at("route", s, i))
                    if out:
                        routes.append(RouteEntry.from_words(ip, mask, nh, out))
                filters = []
                for i in range(g.filter_depth):
                    v = _WORD.unpack_from(self._map, self._entry_at("filter", s, i))[0]
                    if v:
                        filters.append(str(ipaddress.IPv4Address(v)))
                arp = []
                for i in range(g.arp_depth):
                    ip, hi, lo = _ARP.unpack_from(self._map, self._entry_at("arp", s, i))
                    if ip:
                        arp.append(ArpEntry(str(ipaddress.IPv4Address(ip)), mac_text(hi, lo)))
                ctrl = self._word(slot_reg(s, SLOT_CTRL))
                slots.append(SlotState(s, bool(ctrl & CTRL_ENABLE),
                                       self._word(slot_reg(s, SLOT_PORT_MASK)),
                                       self._word(slot_reg(s, SLOT_VLAN)), tuple(routes),
                                       tuple(filters), tuple(arp)))
            return CardState(self._word(REG_CONFIG_GEN), macs, tuple(slots))

    def hw_learn_arp(self, slot: int, ip: str, mac: str) -> bool:
        """Record what an ARP packet told the card (as the reference router's software fills
        its ARP table); True when the table changed. A full table replaces entry 0 onwards in
        turn, as a small hardware cache would."""
        want = int(ipaddress.IPv4Address(ip))
        hi, lo = mac_words(mac)
        with self._file_lock():
            free = None
            for i in range(self.geometry.arp_depth):
                at = self._entry_at("arp", slot, i)
                e_ip, e_hi, e_lo = _ARP.unpack_from(self._map, at)
                if e_ip == want:
                    if (e_hi, e_lo) == (hi, lo):
                        return False
                    free = i
                    break
                if not e_ip and free is None:
                    free = i
            if free is None:
                free = self._word(REG_CONFIG_GEN) % self.geometry.arp_depth
            _ARP.pack_into(self._map, self._entry_at("arp", slot, free), want, hi, lo)
            self._bump()
            return True

    def hw_attach(self, pid: int) -> None:
        with self._file_lock():
            _WORD.pack_into(self._map, REG_PIPELINE_PID, pid)
            _WORD.pack_into(self._map, REG_PIPELINE_GEN, 0)
            _WORD.pack_into(self._map, REG_PIPELINE_BEAT, int(time.time()) & 0xFFFFFFFF)

    def hw_detach(self, pid: int) -> None:
        with self._file_lock():
            if self._word(REG_PIPELINE_PID) == pid:
                _WORD.pack_into(self._map, REG_PIPELINE_PID, 0)

    def hw_report(self, *, generation: int | None = None, heartbeat: int | None = None,
                  ports: Mapping[int, Mapping[str, int]] | None = None,
                  slots: Mapping[int, Mapping[str, int]] | None = None) -> None:
        """The pipeline's report: the generation now in force, a heartbeat and counters."""
        with self._file_lock():
            if generation is not None:
                _WORD.pack_into(self._map, REG_PIPELINE_GEN, generation & 0xFFFFFFFF)
            if heartbeat is not None:
                _WORD.pack_into(self._map, REG_PIPELINE_BEAT, heartbeat & 0xFFFFFFFF)
            for p, counts in (ports or {}).items():
                for name, value in counts.items():
                    self._put64(port_reg(p, PORT_COUNTERS[name]), value)
            for s, counts in (slots or {}).items():
                for name, value in counts.items():
                    self._put64(slot_reg(s, SLOT_COUNTERS[name]), value)

    # ---- the data plane's decision (what forwarding would do) ----------------------------------
    def forward(self, port: int, vlan: int, destination: str) -> str | int | None:
        """Where the card would send a packet arriving on `port` (tagged `vlan`, 0 = none) for
        `destination`: "cpu" when the slot's filter table holds it (the router's own address),
        the output port of the longest matching route, or None (no slot or no route: dropped)."""
        dst = int(ipaddress.IPv4Address(destination))
        for s in self.hw_state().slots:
            if not s.enabled or not (s.port_mask >> port) & 1 or s.vlan != vlan:
                continue
            if destination in s.filters:
                return "cpu"
            best: tuple[int, int] | None = None
            for r in s.routes:
                net = ipaddress.IPv4Network(r.prefix)
                if dst & int(net.netmask) == int(net.network_address) and \
                        (best is None or net.prefixlen > best[0]):
                    best = (net.prefixlen, r.port)
            return best[1] if best else None
        return None

    def close(self) -> None:
        if self._fd >= 0:
            if getattr(self, "_map", None) is not None:
                self._map.close()
            os.close(self._fd)
            self._fd = -1

    # ---- internals ------------------------------------------------------------------------------
    def _word(self, address: int) -> int:
        return _WORD.unpack_from(self._map, address)[0]

    def _put64(self, address: int, value: int) -> None:
        _WORD.pack_into(self._map, address, value & 0xFFFFFFFF)
        _WORD.pack_into(self._map, address + 4, (value >> 32) & 0xFFFFFFFF)

    def _bump(self) -> None:
        _WORD.pack_into(self._map, REG_CONFIG_GEN, (self._word(REG_CONFIG_GEN) + 1) & 0xFFFFFFFF)

    def _check(self, address: int) -> None:
        if address % 4:
            raise RegisterError(f"misaligned register address {address:#06x}")
        if address in _GLOBALS:
            return
        if PORT_BASE <= address < SLOT_BASE:
            port, off = divmod(address - PORT_BASE, PORT_STRIDE)
            if port < self.geometry.ports and (off in _PORT_RW or off in _PORT_RO):
                return
        if SLOT_BASE <= address < REGISTER_SPACE:
            slot, off = divmod(address - SLOT_BASE, SLOT_STRIDE)
            if slot < self.geometry.slots and (off in _SLOT_RW or off in _SLOT_RO):
                return
        raise RegisterError(f"no register at {address:#06x}")

    def _depth_of(self, table: str) -> int:
        g = self.geometry
        return {"route": g.route_depth, "filter": g.filter_depth, "arp": g.arp_depth}[table]

    def _entry_at(self, table: str, slot: int, index: int) -> int:
        g = self.geometry
        base = REGISTER_SPACE + slot * _slot_bytes(g)
        if table == "route":
            return base + index * 16
        if table == "filter":
            return base + g.route_depth * 16 + index * 4
        return base + g.route_depth * 16 + g.filter_depth * 4 + index * 12

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        with self._tlock:
            if self._depth == 0:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)


def _slot_bytes(g: Geometry) -> int:
    return g.route_depth * 16 + g.filter_depth * 4 + g.arp_depth * 12


def _file_size(g: Geometry) -> int:
    return REGISTER_SPACE + g.slots * _slot_bytes(g)
