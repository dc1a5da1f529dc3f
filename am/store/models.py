"""The AM's durable state as SQLAlchemy 2.x typed declarative models.

Invariants live in the schema, not only in code: capacity `used <= capacity` is a CHECK, claims
are UNIQUE per (component, token), sliver URNs are unique forever, and a slice URN is unique among
live slices (`incarnation` is 0 for the live record and the row id once retired). The audit log
is append-only: the migration installs triggers that reject UPDATE and DELETE.
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

if TYPE_CHECKING:
    from sqlalchemy import Table

from am.store.types import UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

URN = String(512)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    if TYPE_CHECKING:   # each model here maps one Table (no joins or subqueries)
        __table__: ClassVar[Table]


class Slice(Base):
    __tablename__ = "slices"
    __table_args__ = (UniqueConstraint("urn_key", "incarnation"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    urn: Mapped[str] = mapped_column(URN)                     # as first given
    urn_key: Mapped[str] = mapped_column(URN)                 # normalized for matching
    incarnation: Mapped[int] = mapped_column(Integer, default=0)   # 0 = live; row id once retired
    owner_urn: Mapped[str] = mapped_column(URN, default="")
    shutdown: Mapped[bool] = mapped_column(Boolean, default=False)
    shutdown_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    shutdown_by: Mapped[str | None] = mapped_column(URN, nullable=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    slivers: Mapped[list[Sliver]] = relationship(back_populates="slice")


class Sliver(Base):
    __tablename__ = "slivers"
    __table_args__ = (
        Index(None, "slice_id"),
        Index(None, "allocation_state", "expires"),
        Index(None, "component_id"),
        # usage in a future window (Capacities.usage_between): the slivers whose time
        # overlaps it, from the index alone (no read of the rows' wide spec JSON)
        Index("ix_slivers_window", "expires", "starts", "created", "allocation_state",
              "slice_id", "component_id", "version", "urn"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    urn: Mapped[str] = mapped_column(URN, unique=True)
    slice_id: Mapped[int] = mapped_column(ForeignKey("slices.id"))
    client_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))                   # node | link | flowspace
    driver: Mapped[str] = mapped_column(String(64))
    component_id: Mapped[str] = mapped_column(URN)
    sliver_type: Mapped[str | None] = mapped_column(String(128), nullable=True)
    allocation_state: Mapped[str] = mapped_column(String(32))
    operational_state: Mapped[str | None] = mapped_column(String(32), nullable=True)
    expires: Mapped[datetime] = mapped_column(UTCDateTime)
    error: Mapped[str] = mapped_column(Text, default="")
    resource_status: Mapped[str] = mapped_column(Text, default="")
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)              # am.store.codec of SliverSpec
    element_xml: Mapped[str] = mapped_column(Text, default="")      # the request element, for manifests
    facts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)   # MACs, logins, handle ...
    # An Update waiting for Provision (am.service.update.Pending as JSON): the new spec and
    # element, or a removal, with what the sliver holds before and after; None when none.
    pending: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    pending_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # An advance reservation (geni_start_time): its window is [starts, expires). `waiting`
    # while the window has not begun: it holds capacity only in its window (its reservations
    # are not in `Capacity.used`, its claims only in `holds`); the reaper starts it.
    starts: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    waiting: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_provision: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    # optimistic concurrency: a write based on a stale read fails instead of overwriting
    __mapper_args__ = {"version_id_col": version}

    slice: Mapped[Slice] = relationship(back_populates="slivers")


class Capacity(Base):
    """What each component has and what live reservations use, per resource."""

    __tablename__ = "capacity"
    __table_args__ = (
        CheckConstraint("used <= capacity + 0.000001", name="used_within_capacity"),
        CheckConstraint("used >= -0.000001", name="used_not_negative"),
    )

    component_id: Mapped[str] = mapped_column(URN, primary_key=True)
    resource: Mapped[str] = mapped_column(String(64), primary_key=True)
    capacity: Mapped[float] = mapped_column(Float)
    used: Mapped[float] = mapped_column(Float, default=0.0)


class Reservation(Base):
    __tablename__ = "reservations"
    __table_args__ = (Index(None, "sliver_id"), Index(None, "component_id", "resource"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sliver_id: Mapped[int] = mapped_column(ForeignKey("slivers.id"))
    component_id: Mapped[str] = mapped_column(URN)
    resource: Mapped[str] = mapped_column(String(64))
    amount: Mapped[float] = mapped_column(Float)


class Claim(Base):
    """A unique token on a component held by one live sliver (VLAN tag, slot, exclusive use)."""

    __tablename__ = "claims"
    __table_args__ = (UniqueConstraint("component_id", "token"), Index(None, "sliver_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    component_id: Mapped[str] = mapped_column(URN)
    token: Mapped[str] = mapped_column(String(255))
    sliver_id: Mapped[int] = mapped_column(ForeignKey("slivers.id"))


class Hold(Base):
    """A sliver's hold on a component over time: a claim token (VLAN tag, slot) or the node's
    use (shared, or exclusive). Two holds with one `key` (a hash of component and token) whose
    times overlap conflict unless both are shared. On PostgreSQL an exclusion constraint on
    (key, holder, tsrange(starts, ends)) enforces it (migration h18_windows); on SQLite
    `Store.reserve` checks it under the database lock."""

    __tablename__ = "holds"
    __table_args__ = (Index(None, "key", "starts"), Index(None, "sliver_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sliver_id: Mapped[int] = mapped_column(ForeignKey("slivers.id"))
    component_id: Mapped[str] = mapped_column(URN)
    token: Mapped[str] = mapped_column(String(255))
    key: Mapped[int] = mapped_column(BigInteger)
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    starts: Mapped[datetime] = mapped_column(UTCDateTime)
    ends: Mapped[datetime] = mapped_column(UTCDateTime)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index(None, "state"), Index(None, "sliver_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sliver_id: Mapped[int] = mapped_column(ForeignKey("slivers.id"))
    action: Mapped[str] = mapped_column(String(32))      # provision|start|stop|restart|update_users|delete
    state: Mapped[str] = mapped_column(String(16), default="queued")   # queued|running|done|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    lease_owner: Mapped[str | None] = mapped_column(String(255), nullable=True)
    heartbeat: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class SliverLease(Base):
    """The per-sliver lock: at most one worker acts on a sliver; an expired lease may be taken."""

    __tablename__ = "sliver_leases"

    sliver_id: Mapped[int] = mapped_column(ForeignKey("slivers.id"), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    expires: Mapped[datetime] = mapped_column(UTCDateTime)


class UserKey(Base):
    __tablename__ = "user_keys"
    __table_args__ = (Index(None, "slice_id", "user_urn"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slice_id: Mapped[int] = mapped_column(ForeignKey("slices.id"))
    user_urn: Mapped[str] = mapped_column(URN)
    key: Mapped[str] = mapped_column(Text)


class AuditEntry(Base):
    """Append-only record of API calls (written by the API layer through Store.audit)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index(None, "ts"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    caller_urn: Mapped[str] = mapped_column(URN, default="")
    tool_urn: Mapped[str | None] = mapped_column(URN, nullable=True)
    method: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[int] = mapped_column(Integer)        # geni_code
    message: Mapped[str] = mapped_column(Text, default="")
    duration_ms: Mapped[float] = mapped_column(Float, default=0.0)


class UsageGeneration(Base):
    """One row whose `generation` goes up in every transaction that changes what the
    advertisement derives from (capacity, reservations, claims, the set of live slivers).
    Processes sharing the database compare it with the generation of their cached
    advertisement: one primary-key read instead of rebuilding the advertisement."""

    __tablename__ = "usage_generation"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
