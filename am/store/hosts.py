"""The site's hosts in the database: heartbeats, and the components each host owns.

Each `geni-am worker --host NAME` beats into its row every `host_heartbeat_s`; a host whose
last beat is older than `host_down_after_s` is **down** (a host that never beat is
`unknown`, treated as down by placement once the site has hosts). The row also remembers
the components the inventory put on the host when its worker last started, so a host that
later disappears from the inventory while it still holds live slivers can be named with
them (`HostRepository.orphaned_slivers`).

The database is the source of truth: "down" is decided from the beat times, never guessed
by a process. A repository per concern (this module), not more methods on the big Store.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, Float, Integer, String, delete, func, select
from sqlalchemy.orm import Mapped, mapped_column

from am.store.models import Base, Sliver
from am.store.types import UTCDateTime, utcnow

if TYPE_CHECKING:
    from am.store.store import Store

UP, DOWN, UNKNOWN = "up", "down", "unknown"


class HostRow(Base):
    """One machine of the site, as its worker last reported it."""

    __tablename__ = "hosts"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    heartbeat: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    started: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    worker: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    load: Mapped[float] = mapped_column(Float, default=0.0)          # 1-minute load average
    running_jobs: Mapped[int] = mapped_column(Integer, default=0)
    components: Mapped[list[Any]] = mapped_column(JSON, default=list)   # URNs it owns
    down_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


@dataclass(frozen=True)
class HostView:
    """A host's row judged at `now`."""

    name: str
    state: str                      # up | down | unknown
    heartbeat: datetime | None
    since: datetime | None          # down: when it was last heard of (its last beat)
    worker: str
    load: float
    running_jobs: int
    components: tuple[str, ...]

    def why(self) -> str:
        """The sentence Status and ListResources give for a host that is not up."""
        if self.state == UP:
            return ""
        if self.since is None:
            return f"host {self.name} unreachable (its worker has never reported)"
        return f"host {self.name} unreachable since {_iso(self.since)}"


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class HostRepository:
    """Heartbeats and host rows over a `Store` (its engine and sessions)."""

    def __init__(self, store: Store, *, down_after_s: float = 20.0) -> None:
        self.store = store
        self.down_after_s = down_after_s

    def register(self, name: str, components: list[str], *, worker: str, pid: int) -> None:
        """A host's worker starts: remember what it owns (no beat yet: it reconciles first)."""
        with self.store.write() as session:
            row = session.get(HostRow, name, with_for_update=True)
            if row is None:
                row = HostRow(name=name)
                session.add(row)
            row.components = sorted(components)
            row.worker, row.pid, row.started = worker, pid, utcnow()

    def beat(self, name: str, *, load: float = 0.0, running_jobs: int = 0,
             worker: str = "", pid: int = 0) -> None:
        """One heartbeat (an upsert of the beat time and the host's load)."""
        now = utcnow()
        with self.store.write() as session:
            row = session.get(HostRow, name)
            if row is None:
                row = HostRow(name=name, started=now, components=[])
                session.add(row)
            row.heartbeat, row.load, row.running_jobs, row.down_since = now, load, running_jobs, None
            if worker:
                row.worker, row.pid = worker, pid

    def forget(self, name: str) -> None:
        with self.store.write() as session:
            session.execute(delete(HostRow).where(HostRow.name == name))

    def views(self, names: list[str] | None = None, *,
              now: datetime | None = None) -> dict[str, HostView]:
        """Every host's state at `now`: those named (the inventory's, `unknown` if never
        seen) and every row in the database."""
        now = now or utcnow()
        with self.store.read() as session:
            rows = {r.name: r for r in session.scalars(select(HostRow))}
        out: dict[str, HostView] = {}
        for name in sorted(set(rows) | set(names or ())):
            row = rows.get(name)
            if row is None or row.heartbeat is None:
                out[name] = HostView(name, UNKNOWN, None, None, row.worker if row else "",
                                     0.0, 0, tuple(row.components or ()) if row else ())
                continue
            up = now - row.heartbeat <= timedelta(seconds=self.down_after_s)
            out[name] = HostView(name, UP if up else DOWN, row.heartbeat,
                                 None if up else row.heartbeat, row.worker, row.load,
                                 row.running_jobs, tuple(row.components or ()))
        return out

    def orphaned_slivers(self, inventory_hosts: set[str], components: dict[str, str | None]
                         ) -> dict[str, list[str]]:
        """Hosts the database knows that the inventory no longer names, with the live
        slivers on the components they owned: host -> sliver URNs. `components` maps each
        inventory component URN (lower case) to its host now; a component that moved to
        another host, or left the inventory, with live slivers counts as still on the old one."""
        from am.store.models import Slice   # noqa: F401 - mapped with Sliver

        with self.store.read() as session:
            rows = [r for r in session.scalars(select(HostRow))
                    if r.name not in inventory_hosts]
            out: dict[str, list[str]] = {}
            for row in rows:
                owned = [c.lower() for c in (row.components or ())
                         if components.get(c.lower(), row.name) not in inventory_hosts]
                if not owned:
                    continue
                urns = session.scalars(
                    select(Sliver.urn).where(func.lower(Sliver.component_id).in_(owned),
                                             Sliver.allocation_state != "geni_unallocated")
                    .order_by(Sliver.urn)).all()
                if urns:
                    out[row.name] = list(urns)
            return out

    def forget_removed(self, inventory_hosts: set[str]) -> list[str]:
        """Drop rows of hosts the inventory no longer names (call after `orphaned_slivers`
        found none of them holding slivers)."""
        with self.store.write() as session:
            gone = [r.name for r in session.scalars(select(HostRow))
                    if r.name not in inventory_hosts]
            if gone:
                session.execute(delete(HostRow).where(HostRow.name.in_(gone)))
        return gone


__all__ = ["DOWN", "HostRepository", "HostRow", "HostView", "UNKNOWN", "UP"]
