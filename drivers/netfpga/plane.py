"""One virtual data plane slot of a NetFPGA card as a forwarding plane (`ForwardingPlane`).

Entries are written through the card's table registers; which index holds which prefix is
read back from the card each time, so the card is the only truth (no shadow copy to drift).
Devices are port names ("nf0".."nf3"): the one-hot output port in the hardware entry.
"""
from __future__ import annotations

from drivers.base import DriverError
from drivers.netfpga.registers import CardTables, RouteEntry
from drivers.routesync import FibEntry


def port_name(index: int) -> str:
    return f"nf{index}"


def port_index(name: str) -> int:
    if not name.startswith("nf") or not name[2:].isdigit():
        raise DriverError(f"{name!r} is not a NetFPGA port name (nf0, nf1, ...)")
    return int(name[2:])


class NetFPGAPlane:
    """`one_pass=True`: the table is read from the card once and kept in step with this
    plane's own writes (for one sync under the card lock: a 10,000-entry table is then read
    once, not once per step)."""

    def __init__(self, tables: CardTables, slot: int, *, one_pass: bool = False):
        self.tables = tables
        self.slot = slot
        self._one_pass = one_pass
        self._index: dict[int, RouteEntry] | None = None

    def _indexed(self) -> dict[int, RouteEntry]:
        if not self._one_pass:
            return self.tables.routes(self.slot)
        if self._index is None:
            self._index = self.tables.routes(self.slot)
        return self._index

    def _write(self, index: int, entry: RouteEntry | None) -> None:
        self.tables.write_route(self.slot, index, entry)
        if self._index is not None:
            if entry is None:
                self._index.pop(index, None)
            else:
                self._index[index] = entry

    def install(self, entries: list[FibEntry]) -> None:
        with self.tables.regs.locked():
            used = self._indexed()
            by_prefix = {e.prefix: i for i, e in used.items()}
            free = (i for i in range(self.tables.route_depth) if i not in used)
            for e in entries:
                if e.device is None:
                    raise DriverError(f"route to {e.prefix} has no output port")
                index = by_prefix.get(e.prefix)
                if index is None:
                    index = next(free, None)
                    if index is None:
                        raise DriverError(f"slot {self.slot}'s route table is full "
                                          f"({self.tables.route_depth} entries)")
                self._write(index, RouteEntry(prefix=e.prefix, next_hop=e.gateway,
                                              port=port_index(e.device)))

    def remove(self, entries: list[FibEntry]) -> None:
        with self.tables.regs.locked():
            gone = {(e.prefix, e.gateway, e.device) for e in entries}
            for i, e in list(self._indexed().items()):
                if (e.prefix, e.next_hop, port_name(e.port)) in gone:
                    self._write(i, None)

    def read(self) -> set[FibEntry]:
        return {FibEntry(prefix=e.prefix, gateway=e.next_hop, device=port_name(e.port))
                for e in self._indexed().values()}

    def clear(self) -> None:
        with self.tables.regs.locked():
            for i in list(self._indexed()):
                self._write(i, None)
