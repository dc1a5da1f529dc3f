"""GENI AM API v3: argument checking, authorization and result shaping around the service.

Order of checks in every method (documented in docs/api.md): argument count and types
(BADARGS), option values (BADARGS / BADVERSION), the target slice (BADARGS for a bad URN mix;
SEARCHFAILED for sliver URNs this AM never issued, since their slice cannot be known),
credentials (FORBIDDEN or 20-23), then the service (which reports unknown slices, shut-down
slices, capacity, ...).
"""
from __future__ import annotations

from typing import Any

from am.api import args, values
from am.api.dispatch import Answer, AuditSink, Call, MethodTable
from am.api.version import version_v3
from am.auth import Authorizer
from am.config import Settings
from am.errors import GeniCode, GeniError
from am.service.contract import AggregateService, ManifestResult, Options, Principal
from am.service.images import Images


# Every method is in exactly one of these (MethodTable checks). A state-changing call, refused
# or not, is answered only once its audit entry is committed (am/api/audit.py); read-only calls
# are audited without waiting.
STATE_CHANGING = frozenset({"Allocate", "Renew", "Provision", "PerformOperationalAction",
                            "Delete", "Shutdown", "Update", "CreateImage", "DeleteImage"})
READ_ONLY = frozenset({"GetVersion", "ListResources", "Describe", "Status", "ListImages",
                       "geniam_Calendar", "geniam_FindSlot"})


class V3:
    """Handlers of the ten v3 methods, bound to one service and one authorizer."""

    def __init__(self, settings: Settings, service: AggregateService, authorizer: Authorizer):
        self.settings = settings
        self.service = service
        self.authorizer = authorizer
        stitching = getattr(service, "stitching_version", None)
        actions = getattr(service, "operational_actions", None)
        self._version = version_v3(settings, stitching() if callable(stitching) else None,
                                   actions() if callable(actions) else None)

    def table(self, audit: AuditSink | None = None) -> MethodTable:
        return MethodTable("v3", {
            "GetVersion": self.get_version,
            "ListResources": self.list_resources,
            "Describe": self.describe,
            "Allocate": self.allocate,
            "Renew": self.renew,
            "Provision": self.provision,
            "Status": self.status,
            "PerformOperationalAction": self.perform_operational_action,
            "Delete": self.delete,
            "Shutdown": self.shutdown,
            "Update": self.update,
            "CreateImage": self.create_image,
            "ListImages": self.list_images,
            "DeleteImage": self.delete_image,
            "geniam_Calendar": self.calendar,
            "geniam_FindSlot": self.find_slot,
        }, state_changing=STATE_CHANGING, read_only=READ_ONLY, audit=audit,
            envelope_extra={"geni_api": 3})

    # -- helpers ----------------------------------------------------------------------------
    def _principal(self, call: Call, credentials: list, options: Options,
                   target: str | None) -> Principal:
        call.target = target or ""
        call.caller_urn = self.authorizer.identify(call.caller_pem).urn   # audited if refused
        principal = self.authorizer.authorize(
            call.method, call.caller_pem, credentials, target_urn=target,
            speaking_for=args.speaking_for(options))
        call.caller_urn, call.tool_urn = principal.urn, principal.tool_urn
        return principal

    def _target_of(self, call: Call, urns: args.UrnSet) -> str:
        """The slice a `urns` argument is about (the service checks sliver membership)."""
        call.target = urns.slice_urn or ",".join(urns.urns)
        if urns.slice_urn is not None:
            return urns.slice_urn
        return self.service.resolve_slice(list(urns.urns))

    def _identify(self, call: Call) -> None:
        call.caller_urn = self.authorizer.identify(call.caller_pem).urn

    @staticmethod
    def _manifest(result: ManifestResult, *, compressed: bool = False,
                  with_urn: bool = False) -> dict[str, Any]:
        value: dict[str, Any] = {
            "geni_rspec": values.compress(result.manifest) if compressed else result.manifest,
            "geni_slivers": [values.sliver_struct(s) for s in result.slivers],
        }
        if with_urn:
            value["geni_urn"] = result.slice_urn
        return value

    # -- methods ----------------------------------------------------------------------------
    def get_version(self, call: Call, params: tuple[Any, ...]) -> Any:
        args.check_arity("GetVersion", params, ("options",), optional_last=True)
        if params:
            args.require_struct(params[0], "options")
        self._identify(call)
        return self._version

    def list_resources(self, call: Call, params: tuple[Any, ...]) -> Any:
        args.check_arity("ListResources", params, ("credentials", "options"))
        credentials = args.credentials_arg(params[0])
        options = args.options_arg(params[1])
        if "geni_slice_urn" in options.extra:
            raise args.badargs("geni_slice_urn is not valid in AM API v3 ListResources: "
                               "use Describe")
        args.rspec_version_option(options)
        self._principal(call, credentials, options, None)
        advertisement = self.service.advertisement(options)
        if args.compressed_option(options):
            return values.compress(advertisement)
        return advertisement

    def describe(self, call: Call, params: tuple[Any, ...]) -> Any:
        args.check_arity("Describe", params, ("urns", "credentials", "options"))
        urns = args.urns_arg(params[0])
        credentials = args.credentials_arg(params[1])
        options = args.options_arg(params[2])
        args.rspec_version_option(options)
        principal = self._principal(call, credentials, options, self._target_of(call, urns))
        result = self.service.describe(principal, list(urns.urns), options)
        return self._manifest(result, compressed=args.compressed_option(options), with_urn=True)

    def allocate(self, call: Call, params: tuple[Any, ...]) -> Any:
        args.check_arity("Allocate", params, ("slice_urn", "credentials", "rspec", "options"))
        slice_urn = args.slice_urn_arg(params[0])
        credentials = args.credentials_arg(params[1])
        rspec = args.rspec_arg(params[2])
        options = args.options_arg(params[3])
        principal = self._principal(call, credentials, options, slice_urn)
        result = self.service.allocate(principal, slice_urn, rspec, options)
        return self._manifest(result)

    def update(self, call: Call, params: tuple[Any, ...]) -> Any:
        """Update (optional in v3, adopted by v4): the slice, or the named slivers, changed to
        a new request RSpec; answers like Allocate (manifest + geni_slivers)."""
        args.check_arity("Update", params, ("urns", "credentials", "rspec", "options"))
        urns = args.urns_arg(params[0])
        credentials = args.credentials_arg(params[1])
        rspec = args.rspec_arg(params[2])
        options = args.options_arg(params[3])
        principal = self._principal(call, credentials, options, self._target_of(call, urns))
        result = self.service.update(principal, list(urns.urns), rspec, options)
        if result.output:
            return Answer(self._manifest(result), output=result.output)
        return self._manifest(result)

    def calendar(self, call: Call, params: tuple[Any, ...]) -> Any:
        """Extension: free capacity per component and resource per hour (docs/reservations.md).
        Options: geni_start_time (default the next hour), geniam_hours (default 24)."""
        args.check_arity("geniam_Calendar", params, ("credentials", "options"))
        credentials = args.credentials_arg(params[0])
        options = args.options_arg(params[1])
        self._principal(call, credentials, options, None)
        value = self.service.calendar(options.start_time, options.extra.get("geniam_hours", 24))
        return {**value, "start": values.format_time(value["start"])}

    def find_slot(self, call: Call, params: tuple[Any, ...]) -> Any:
        """Extension: the earliest window (whole hours) in which the request fits. Options:
        geniam_duration_s (required), geni_start_time, geniam_hours (default 720)."""
        args.check_arity("geniam_FindSlot", params, ("credentials", "rspec", "options"))
        credentials = args.credentials_arg(params[0])
        rspec = args.rspec_arg(params[1])
        options = args.options_arg(params[2])
        duration = options.extra.get("geniam_duration_s")
        if not isinstance(duration, (int, float)) or isinstance(duration, bool):
            raise args.badargs("option geniam_duration_s (seconds) is required")
        principal = self._principal(call, credentials, options, None)
        found = self.service.find_slot(principal, rspec, float(duration), options.start_time,
                                       options.extra.get("geniam_hours", 720))
        if found is None:
            return {}
        return {"geni_start_time": values.format_time(found[0]),
                "geni_end_time": values.format_time(found[1])}

    def renew(self, call: Call, params: tuple[Any, ...]) -> Any:
        args.check_arity("Renew", params, ("urns", "credentials", "expiration_time", "options"))
        urns = args.urns_arg(params[0])
        credentials = args.credentials_arg(params[1])
        expiration = values.parse_time(params[2], "expiration_time")
        options = args.options_arg(params[3])
        principal = self._principal(call, credentials, options, self._target_of(call, urns))
        slivers = self.service.renew(principal, list(urns.urns), expiration, options)
        return [values.sliver_struct(s) for s in slivers]

    def provision(self, call: Call, params: tuple[Any, ...]) -> Any:
        args.check_arity("Provision", params, ("urns", "credentials", "options"))
        urns = args.urns_arg(params[0])
        credentials = args.credentials_arg(params[1])
        options = args.options_arg(params[2])
        args.rspec_version_option(options)
        principal = self._principal(call, credentials, options, self._target_of(call, urns))
        return self._manifest(self.service.provision(principal, list(urns.urns), options))

    def status(self, call: Call, params: tuple[Any, ...]) -> Any:
        args.check_arity("Status", params, ("urns", "credentials", "options"))
        urns = args.urns_arg(params[0])
        credentials = args.credentials_arg(params[1])
        options = args.options_arg(params[2])
        principal = self._principal(call, credentials, options, self._target_of(call, urns))
        result = self.service.status(principal, list(urns.urns), options)
        return {"geni_urn": result.slice_urn,
                "geni_slivers": [values.sliver_struct(s, with_error=True)
                                 for s in result.slivers]}

    def perform_operational_action(self, call: Call, params: tuple[Any, ...]) -> Any:
        args.check_arity("PerformOperationalAction", params,
                         ("urns", "credentials", "action", "options"))
        urns = args.urns_arg(params[0])
        credentials = args.credentials_arg(params[1])
        action = args.require_string(params[2], "action").strip()
        if not action:
            raise args.badargs("action is empty")
        options = args.options_arg(params[3])
        if action == "geni_update_users" and not options.users:
            raise args.badargs("geni_update_users needs the geni_users option")
        principal = self._principal(call, credentials, options, self._target_of(call, urns))
        slivers = self.service.perform_action(principal, list(urns.urns), action, options)
        return [values.sliver_struct(s) for s in slivers]

    def delete(self, call: Call, params: tuple[Any, ...]) -> Any:
        args.check_arity("Delete", params, ("urns", "credentials", "options"))
        urns = args.urns_arg(params[0])
        credentials = args.credentials_arg(params[1])
        options = args.options_arg(params[2])
        principal = self._principal(call, credentials, options, self._target_of(call, urns))
        slivers = self.service.delete(principal, list(urns.urns), options)
        return [values.sliver_struct(s) for s in slivers]

    # -- the ProtoGENI image extension (same names and arguments) ---------------------------
    def create_image(self, call: Call, params: tuple[Any, ...]) -> Any:
        args.check_arity("CreateImage", params,
                         ("slice_urn", "image_name", "sliver_urn", "credentials", "options"))
        slice_urn = args.slice_urn_arg(params[0])
        name = args.require_string(params[1], "image_name")
        sliver_urn = args.require_string(params[2], "sliver_urn")
        credentials = args.credentials_arg(params[3])
        options = args.options_arg(params[4])
        principal = self._principal(call, credentials, options, slice_urn)
        ref = Images(self.service).create(principal, slice_urn, name, sliver_urn)
        return [ref.urn, ref.url]

    def list_images(self, call: Call, params: tuple[Any, ...]) -> Any:
        args.check_arity("ListImages", params, ("creator_urn", "credentials", "options"))
        creator = args.require_string(params[0], "creator_urn")
        credentials = args.credentials_arg(params[1])
        options = args.options_arg(params[2])
        principal = self._principal(call, credentials, options, None)
        return [{"urn": r.urn, "url": r.url, "name": r.name, "owner": r.owner,
                 "creator": r.creator, "size": r.size}
                for r in Images(self.service).list(principal, creator)]

    def delete_image(self, call: Call, params: tuple[Any, ...]) -> Any:
        args.check_arity("DeleteImage", params, ("image_urn", "credentials", "options"))
        image_urn = args.require_string(params[0], "image_urn")
        credentials = args.credentials_arg(params[1])
        options = args.options_arg(params[2])
        principal = self._principal(call, credentials, options, None)
        Images(self.service).delete(principal, image_urn)
        return True

    def shutdown(self, call: Call, params: tuple[Any, ...]) -> Any:
        args.check_arity("Shutdown", params, ("slice_urn", "credentials", "options"))
        slice_urn = args.slice_urn_arg(params[0])
        credentials = args.credentials_arg(params[1])
        options = args.options_arg(params[2])
        principal = self._principal(call, credentials, options, slice_urn)
        if not self.service.shutdown(principal, slice_urn, options):
            raise GeniError(GeniCode.ERROR, f"shutdown of {slice_urn} did not complete")
        return True
