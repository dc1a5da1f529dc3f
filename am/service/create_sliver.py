"""AM API v2 CreateSliver as a service operation: Allocate, then Provision with start, and the
allocation deleted again if Provision fails, so a failed CreateSliver leaves nothing behind.

Written against the `AggregateService` protocol (the same three calls v3 exposes one by one), so
the API layer only parses arguments and maps the answer.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

from am.errors import GeniError
from am.service.contract import AggregateService, Options, Principal
from drivers.base import UserKeys

log = logging.getLogger("am.service")


def create_sliver(service: AggregateService, principal: Principal, slice_urn: str, rspec: str,
                  users: Sequence[UserKeys], options: Options) -> str:
    """The manifest of the slivers made (the allocation's, if the request named none)."""
    allocated = service.allocate(principal, slice_urn, rspec, options)
    sliver_urns = [s.sliver_urn for s in allocated.slivers]
    if not sliver_urns:
        return allocated.manifest
    # v2 has no operational actions: CreateSliver always boots, whatever start_on_provision
    provision_options = Options(best_effort=False, end_time=options.end_time,
                                users=tuple(users) or options.users, start=True,
                                extra=options.extra)
    try:
        return service.provision(principal, sliver_urns, provision_options).manifest
    except GeniError:
        _undo(service, principal, sliver_urns)
        raise


def _undo(service: AggregateService, principal: Principal, sliver_urns: list[str]) -> None:
    try:
        service.delete(principal, sliver_urns, Options(best_effort=True))
    except GeniError as exc:
        log.warning("CreateSliver: could not release the allocation: %s", exc.message)


__all__ = ["create_sliver"]
