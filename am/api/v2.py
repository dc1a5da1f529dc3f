"""GENI AM API v2, composed from the same service calls as v3 (the v2 mapping in docs/api.md).

v2 names a slice, never slivers; credentials are bare XML strings (structs tolerated).
CreateSliver = Allocate + Provision with start, undone if Provision fails: the service's
`am.service.create_sliver` does it; this module only parses arguments and maps answers.
"""
from __future__ import annotations

import logging
from typing import Any

from am.api import args, values
from am.api.dispatch import Answer, AuditSink, Call, MethodTable
from am.api.version import version_v2
from am.auth import Authorizer
from am.config import Settings
from am.errors import GeniCode, GeniError
from am.service.contract import AggregateService, Options, Principal, SliverInfo
from am.service.create_sliver import create_sliver

log = logging.getLogger("am.api")

# v2 sliver status vocabulary: configuring | ready | failed | unknown
_V2_STATUS = {
    "geni_ready": "ready",
    "geni_ready_busy": "ready",
    "geni_failed": "failed",
    "geni_pending_allocation": "configuring",
    "geni_configuring": "configuring",
    "geni_updating_users": "configuring",
}

# Every method is in exactly one of these (MethodTable checks); see am/api/v3.py. ListResources
# with geni_slice_urn (v2's Describe) is read-only too.
STATE_CHANGING = frozenset({"CreateSliver", "RenewSliver", "DeleteSliver", "Shutdown"})
READ_ONLY = frozenset({"GetVersion", "ListResources", "SliverStatus"})


def v2_status(info: SliverInfo) -> str:
    if info.allocation_status == "geni_allocated":
        return "configuring"
    return _V2_STATUS.get(info.operational_status or "", "unknown")


def slice_status(statuses: list[str]) -> str:
    """Aggregate per-sliver status the way v2 clients expect."""
    if not statuses:
        return "unknown"
    if "failed" in statuses:
        return "failed"
    if all(s == "ready" for s in statuses):
        return "ready"
    if "configuring" in statuses:
        return "configuring"
    return "unknown"


class V2:
    def __init__(self, settings: Settings, service: AggregateService, authorizer: Authorizer):
        self.settings = settings
        self.service = service
        self.authorizer = authorizer
        self._version = version_v2(settings)

    def table(self, audit: AuditSink | None = None) -> MethodTable:
        return MethodTable("v2", {
            "GetVersion": self.get_version,
            "ListResources": self.list_resources,
            "CreateSliver": self.create_sliver,
            "SliverStatus": self.sliver_status,
            "RenewSliver": self.renew_sliver,
            "DeleteSliver": self.delete_sliver,
            "Shutdown": self.shutdown,
        }, state_changing=STATE_CHANGING, read_only=READ_ONLY, audit=audit,
            envelope_extra={"geni_api": 2})

    def _principal(self, call: Call, method: str, credentials: list, options: Options,
                   target: str | None) -> Principal:
        call.target = target or ""
        call.caller_urn = self.authorizer.identify(call.caller_pem).urn   # audited if refused
        principal = self.authorizer.authorize(method, call.caller_pem, credentials,
                                              target_urn=target,
                                              speaking_for=args.speaking_for(options))
        call.caller_urn, call.tool_urn = principal.urn, principal.tool_urn
        return principal

    def get_version(self, call: Call, params: tuple[Any, ...]) -> Any:
        args.check_arity("GetVersion", params, ("options",), optional_last=True)
        if params:
            args.require_struct(params[0], "options")
        call.caller_urn = self.authorizer.identify(call.caller_pem).urn
        return self._version

    def list_resources(self, call: Call, params: tuple[Any, ...]) -> Any:
        args.check_arity("ListResources", params, ("credentials", "options"))
        credentials = args.credentials_arg(params[0])
        options = args.options_arg(params[1])
        args.rspec_version_option(options)
        compressed = args.compressed_option(options)
        slice_urn = options.extra.get("geni_slice_urn")
        if slice_urn is not None:
            slice_urn = args.slice_urn_arg(slice_urn, "option geni_slice_urn")
            principal = self._principal(call, "SliverStatus", credentials, options, slice_urn)
            manifest = self.service.describe(principal, [slice_urn], options).manifest
            return values.compress(manifest) if compressed else manifest
        self._principal(call, "ListResources", credentials, options, None)
        advertisement = self.service.advertisement(options)
        return values.compress(advertisement) if compressed else advertisement

    def create_sliver(self, call: Call, params: tuple[Any, ...]) -> Any:
        args.check_arity("CreateSliver", params,
                         ("slice_urn", "credentials", "rspec", "users", "options"))
        slice_urn = args.slice_urn_arg(params[0])
        credentials = args.credentials_arg(params[1])
        rspec = args.require_string(params[2], "rspec")
        if not rspec.strip():
            raise args.badargs("rspec is empty")
        users = args.users_option(params[3], "users")
        options = args.options_arg(params[4])
        principal = self._principal(call, "CreateSliver", credentials, options, slice_urn)
        return create_sliver(self.service, principal, slice_urn, rspec, users, options)

    def sliver_status(self, call: Call, params: tuple[Any, ...]) -> Any:
        args.check_arity("SliverStatus", params, ("slice_urn", "credentials", "options"))
        slice_urn = args.slice_urn_arg(params[0])
        credentials = args.credentials_arg(params[1])
        options = args.options_arg(params[2])
        principal = self._principal(call, "SliverStatus", credentials, options, slice_urn)
        result = self.service.status(principal, [slice_urn], options)
        resources = []
        for sliver in result.slivers:
            resources.append({"geni_urn": sliver.sliver_urn, "geni_status": v2_status(sliver),
                              "geni_error": sliver.error or ""})
        value: dict[str, Any] = {
            "geni_urn": result.slice_urn,
            "geni_status": slice_status([r["geni_status"] for r in resources]),
            "geni_resources": resources,
        }
        if result.slivers:
            value["geni_expires"] = values.format_time(min(s.expires for s in result.slivers))
        return value

    def renew_sliver(self, call: Call, params: tuple[Any, ...]) -> Any:
        args.check_arity("RenewSliver", params,
                         ("slice_urn", "credentials", "expiration_time", "options"))
        slice_urn = args.slice_urn_arg(params[0])
        credentials = args.credentials_arg(params[1])
        expiration = values.parse_time(params[2], "expiration_time")
        options = args.options_arg(params[3])
        principal = self._principal(call, "RenewSliver", credentials, options, slice_urn)
        slivers = self.service.renew(principal, [slice_urn], expiration, options)
        failed = [s for s in slivers if s.error]
        if failed:
            raise GeniError(GeniCode.ERROR, "; ".join(f"{s.sliver_urn}: {s.error}" for s in failed))
        granted = min((s.expires for s in slivers), default=expiration)
        return Answer(True, output=values.format_time(granted))

    def delete_sliver(self, call: Call, params: tuple[Any, ...]) -> Any:
        args.check_arity("DeleteSliver", params, ("slice_urn", "credentials", "options"))
        slice_urn = args.slice_urn_arg(params[0])
        credentials = args.credentials_arg(params[1])
        options = args.options_arg(params[2])
        principal = self._principal(call, "DeleteSliver", credentials, options, slice_urn)
        self.service.delete(principal, [slice_urn], options)
        return True

    def shutdown(self, call: Call, params: tuple[Any, ...]) -> Any:
        args.check_arity("Shutdown", params, ("slice_urn", "credentials", "options"))
        slice_urn = args.slice_urn_arg(params[0])
        credentials = args.credentials_arg(params[1])
        options = args.options_arg(params[2])
        principal = self._principal(call, "Shutdown", credentials, options, slice_urn)
        if not self.service.shutdown(principal, slice_urn, options):
            raise GeniError(GeniCode.ERROR, f"shutdown of {slice_urn} did not complete")
        return True
