"""A simulated NetFPGA virtual-router card behind the register interface.

The card's state lives in a file mapped into memory (`mmap`, shared): its register file and
the SRAM holding every slot's route and filter tables. Several processes (API server, job
workers, tests) therefore see one card, as they would see one piece of hardware; `locked()`
takes an advisory lock on the file so a multi-register table write from one process is never
interleaved with another's. docs/netfpga.md lists what is modelled and what is not.
"""
from __future__ import annotations

import fcntl
import ipaddress
import mmap
import os
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from drivers.netfpga.registers import (
    CARD_ID,
    CTRL_ENABLE,
    FILTER_ENTRY_IP,
    FILTER_RD_ADDR,
    FILTER_WR_ADDR,
    MAX_SLOTS,
    REG_CARD_ID,
    REG_FILTER_DEPTH,
    REG_NUM_PORTS,
    REG_NUM_SLOTS,
    REG_ROUTE_DEPTH,
    REGISTER_SPACE,
    RT_ENTRY_IP,
    RT_ENTRY_MASK,
    RT_ENTRY_NEXT_HOP,
    RT_ENTRY_PORT,
    RT_RD_ADDR,
    RT_WR_ADDR,
    SLOT_BASE,
    SLOT_CTRL,
    SLOT_PORT_MASK,
    SLOT_STRIDE,
    SLOT_VLAN,
    RegisterError,
)

_GLOBALS = (REG_CARD_ID, REG_NUM_PORTS, REG_NUM_SLOTS, REG_ROUTE_DEPTH, REG_FILTER_DEPTH)
_SLOT_REGS = (SLOT_CTRL, SLOT_PORT_MASK, SLOT_VLAN, RT_ENTRY_IP, RT_ENTRY_MASK, RT_ENTRY_NEXT_HOP,
              RT_ENTRY_PORT, RT_RD_ADDR, RT_WR_ADDR, FILTER_ENTRY_IP, FILTER_RD_ADDR,
              FILTER_WR_ADDR)
_WORD = struct.Struct("<I")
_ROUTE = struct.Struct("<IIII")


@dataclass(frozen=True)
class Geometry:
    ports: int = 4
    slots: int = 4
    route_depth: int = 32
    filter_depth: int = 8

    def validate(self) -> None:
        if not 1 <= self.ports <= 32:
            raise RegisterError(f"a card has 1..32 ports, not {self.ports}")
        if not 1 <= self.slots <= MAX_SLOTS:
            raise RegisterError(f"a card has 1..{MAX_SLOTS} slots, not {self.slots}")
        for name in ("route_depth", "filter_depth"):
            v = getattr(self, name)
            if not 1 <= v <= 1 << 20:
                raise RegisterError(f"{name} must be 1..{1 << 20}, not {v}")


class SimulatedCard:
    """`NetFPGARegisters` over a memory-mapped card file."""

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
                for addr, value in zip(_GLOBALS, (CARD_ID, g.ports, g.slots, g.route_depth,
                                                  g.filter_depth)):
                    _WORD.pack_into(self._map, addr, value)
            else:
                self._map = mmap.mmap(fd, 0)
        self.geometry = Geometry(*(self._word(a) for a in _GLOBALS[1:]))
        if self._word(REG_CARD_ID) != CARD_ID or os.fstat(fd).st_size != _file_size(self.geometry):
            raise RegisterError(f"{self.path} is not a simulated NetFPGA card file")
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
        if address < SLOT_BASE:
            raise RegisterError(f"register {address:#06x} is read-only")
        slot, off = divmod(address - SLOT_BASE, SLOT_STRIDE)
        g = self.geometry
        if off == RT_WR_ADDR or off == RT_RD_ADDR:
            if value >= g.route_depth:
                raise RegisterError(f"route table index {value} beyond depth {g.route_depth}")
            at = self._route_at(slot, value)
            regs = SLOT_BASE + slot * SLOT_STRIDE + RT_ENTRY_IP
            if off == RT_WR_ADDR:
                self._map[at:at + 16] = self._map[regs:regs + 16]
            else:
                self._map[regs:regs + 16] = self._map[at:at + 16]
        elif off == FILTER_WR_ADDR or off == FILTER_RD_ADDR:
            if value >= g.filter_depth:
                raise RegisterError(f"filter table index {value} beyond depth {g.filter_depth}")
            at = self._filter_at(slot, value)
            reg = SLOT_BASE + slot * SLOT_STRIDE + FILTER_ENTRY_IP
            if off == FILTER_WR_ADDR:
                self._map[at:at + 4] = self._map[reg:reg + 4]
            else:
                self._map[reg:reg + 4] = self._map[at:at + 4]
        _WORD.pack_into(self._map, address, value)

    @contextmanager
    def locked(self) -> Iterator[None]:
        with self._file_lock():
            yield

    # ---- the data plane's decision (what forwarding would do) ----------------------------------
    def forward(self, port: int, vlan: int, destination: str) -> str | int | None:
        """Where the card would send a packet arriving on `port` (tagged `vlan`, 0 = none) for
        `destination`: "cpu" when the slot's filter table holds it (the router's own address),
        the output port of the longest matching route, or None (no slot or no route: dropped)."""
        dst = int(ipaddress.IPv4Address(destination))
        for slot in range(self.geometry.slots):
            base = SLOT_BASE + slot * SLOT_STRIDE
            if not self._word(base + SLOT_CTRL) & CTRL_ENABLE:
                continue
            if not (self._word(base + SLOT_PORT_MASK) >> port) & 1 or \
                    self._word(base + SLOT_VLAN) != vlan:
                continue
            for i in range(self.geometry.filter_depth):
                if _WORD.unpack_from(self._map, self._filter_at(slot, i))[0] == dst:
                    return "cpu"
            best: tuple[int, int] | None = None
            for i in range(self.geometry.route_depth):
                ip, mask, _nh, out = _ROUTE.unpack_from(self._map, self._route_at(slot, i))
                if out and dst & mask == ip & mask:
                    plen = bin(mask).count("1")
                    if best is None or plen > best[0]:
                        best = (plen, out.bit_length() - 1)
            return best[1] if best else None
        return None

    def close(self) -> None:
        if self._fd >= 0:
            self._map.close()
            os.close(self._fd)
            self._fd = -1

    # ---- internals ------------------------------------------------------------------------------
    def _word(self, address: int) -> int:
        return _WORD.unpack_from(self._map, address)[0]

    def _check(self, address: int) -> None:
        if address % 4:
            raise RegisterError(f"misaligned register address {address:#06x}")
        if address in _GLOBALS:
            return
        if SLOT_BASE <= address < REGISTER_SPACE:
            slot, off = divmod(address - SLOT_BASE, SLOT_STRIDE)
            if slot < self.geometry.slots and off in _SLOT_REGS:
                return
        raise RegisterError(f"no register at {address:#06x}")

    def _route_at(self, slot: int, index: int) -> int:
        g = self.geometry
        return REGISTER_SPACE + slot * _slot_bytes(g) + index * 16

    def _filter_at(self, slot: int, index: int) -> int:
        g = self.geometry
        return REGISTER_SPACE + slot * _slot_bytes(g) + g.route_depth * 16 + index * 4

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
    return g.route_depth * 16 + g.filter_depth * 4


def _file_size(g: Geometry) -> int:
    return REGISTER_SPACE + g.slots * _slot_bytes(g)
