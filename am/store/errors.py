"""The store's exceptions: a conflict a caller can explain to the experimenter."""
from __future__ import annotations

from datetime import datetime


class StoreError(Exception):
    """Something in the store failed in a way the caller can explain."""


class ReservationConflict(StoreError):
    """A reservation or claim lost to a concurrent (or earlier) one; nothing was written."""

    def __init__(self, component_id: str, what: str, kind: str):
        self.component_id, self.what, self.kind = component_id, what, kind   # kind: capacity|claim
        super().__init__(f"{what} on {component_id} was taken by a concurrent request")



class WindowConflict(ReservationConflict):
    """A reservation that would overlap another's window on the same component; `at` is when
    the other window starts (the latest time this one could end instead)."""

    def __init__(self, component_id: str, what: str, kind: str, starts: datetime,
                 ends: datetime, at: datetime):
        super().__init__(component_id, what, kind)
        self.starts, self.ends, self.at = starts, ends, at
        self.args = (f"{what} on {component_id} is reserved from {_iso(starts)} to "
                     f"{_iso(ends)} by another reservation",)

    def __str__(self) -> str:
        return self.args[0]


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")

