"""The contract between the thin API adapters (`am.api`) and the aggregate (`am.service`).

The API layer parses XML-RPC arguments, authenticates the caller (`am.auth`) and calls these
methods with plain Python values (datetimes are timezone-aware UTC). The service raises
`am.errors.GeniError` for every refusal; it never sees XML-RPC. AM API v2 calls are composed
from the same methods by `am.api.v2`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from drivers.base import UserKeys


@dataclass(frozen=True)
class Principal:
    """Who is calling, after TLS and credential checks."""

    urn: str                                   # effective caller (the user when speaks-for applies)
    cert_pem: str = ""
    tool_urn: str | None = None                # the tool's URN when speaking for `urn`
    credential_expires: datetime | None = None # earliest expiry of the accepted credentials
    is_operator: bool = False


@dataclass(frozen=True)
class SliverInfo:
    sliver_urn: str
    allocation_status: str                     # geni_unallocated | geni_allocated | geni_provisioned
    expires: datetime
    operational_status: str | None = None
    error: str = ""
    resource_status: str = ""
    client_id: str = ""
    logins: tuple[str, ...] = ()               # "ssh -p PORT user@host", once provisioned
    start_time: datetime | None = None         # an advance reservation's geni_start_time


@dataclass(frozen=True)
class ManifestResult:
    """Allocate, Provision and Describe: a manifest plus the slivers it covers."""

    manifest: str
    slice_urn: str
    slivers: tuple[SliverInfo, ...] = ()
    output: str = ""                           # what a best-effort call left out, and why


@dataclass(frozen=True)
class StatusResult:
    slice_urn: str
    slivers: tuple[SliverInfo, ...] = ()


@dataclass(frozen=True)
class Options:
    """The GENI options the service cares about, already type-checked by the API layer."""

    best_effort: bool = False
    start_time: datetime | None = None         # Allocate/ListResources: geni_start_time
    end_time: datetime | None = None
    extend_alap: bool = False
    users: tuple[UserKeys, ...] = ()
    available_only: bool = False
    start: bool | None = None                  # Provision: also boot to geni_ready? None = the
                                               # AM's start_on_provision setting (v2 CreateSliver: True)
    extra: dict = field(default_factory=dict)


class AggregateService(Protocol):
    def resolve_slice(self, urns: Sequence[str]) -> str:
        """The slice URN a `urns` argument is about (for credential targeting).
        BADARGS for a bad mix (two slices, slice + sliver, wrong URN type), SEARCHFAILED for
        slivers this AM never made."""

    def advertisement(self, options: Options) -> str: ...
    def describe(self, principal: Principal, urns: Sequence[str], options: Options) -> ManifestResult: ...
    def allocate(self, principal: Principal, slice_urn: str, request_xml: str, options: Options) -> ManifestResult: ...
    def update(self, principal: Principal, urns: Sequence[str], request_xml: str, options: Options) -> ManifestResult: ...
    def renew(self, principal: Principal, urns: Sequence[str], expiration: datetime, options: Options) -> list[SliverInfo]: ...
    def provision(self, principal: Principal, urns: Sequence[str], options: Options) -> ManifestResult: ...
    def status(self, principal: Principal, urns: Sequence[str], options: Options) -> StatusResult: ...
    def perform_action(self, principal: Principal, urns: Sequence[str], action: str, options: Options) -> list[SliverInfo]: ...
    def delete(self, principal: Principal, urns: Sequence[str], options: Options) -> list[SliverInfo]: ...
    def shutdown(self, principal: Principal, slice_urn: str, options: Options) -> bool: ...
