"""Durable state of the AM (SQLAlchemy 2.x + Alembic). See docs/state.md."""
from am.store.codec import CodecError, spec_from_dict, spec_to_dict
from am.store.database import StoreURLError
from am.store.models import (
    AuditEntry,
    Capacity,
    Claim,
    Job,
    Reservation,
    Slice,
    Sliver,
    SliverLease,
    UserKey,
)
from am.store.store import (
    AuditRecord,
    JobState,
    ReservationConflict,
    Store,
    StoreError,
    open_store,
    slice_key,
)
from am.store.types import utcnow
from am.store import stitch_tags  # its table joins the metadata
from am.store import state_guard  # its rule table joins the metadata
from am.store import shared_lans  # its tables join the metadata
from am.store import hosts as _hosts   # noqa: F401 - its tables belong to the schema
from am.store import tunnels  # its table joins the metadata

__all__ = [
    "AuditEntry", "AuditRecord", "Capacity", "Claim", "CodecError", "Job", "JobState",
    "Reservation", "ReservationConflict", "Slice", "Sliver", "SliverLease", "Store", "StoreError",
    "StoreURLError", "UserKey", "open_store", "slice_key", "spec_from_dict", "spec_to_dict",
    "shared_lans", "state_guard", "stitch_tags", "tunnels", "utcnow",
]
