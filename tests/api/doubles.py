"""An in-memory AggregateService for testing the API layer alone (tests only).

It keeps the contract's observable rules that the API layer relies on: slice/sliver URN
resolution, SEARCHFAILED for unknown slices, REFUSED on a shut-down slice, all-or-nothing
allocation.
"""
from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from am.errors import GeniCode, GeniError
from am.service.contract import ManifestResult, Options, Principal, SliverInfo, StatusResult

RSPEC3 = "http://www.geni.net/resources/rspec/3"
AM_AUTH = "geni-am:test"


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


class FakeService:
    def __init__(self, nodes: int = 3):
        self.nodes = [f"pc{i}" for i in range(nodes)]
        self.slivers: dict[str, dict] = {}    # sliver urn -> record
        self.shut_down: set[str] = set()
        self.calls: list[tuple[str, Principal | None]] = []
        self._ids = itertools.count(1)

    # -- helpers
    def _of_slice(self, slice_urn: str) -> list[str]:
        return [u for u, r in self.slivers.items() if r["slice"] == slice_urn]

    def _select(self, urns: Sequence[str]) -> tuple[str, list[str]]:
        slice_urn = self.resolve_slice(urns)
        if "+slice+" in urns[0]:
            chosen = self._of_slice(slice_urn)
            if not chosen:
                raise GeniError(GeniCode.SEARCHFAILED, f"no slivers in {slice_urn}")
            return slice_urn, chosen
        return slice_urn, list(urns)

    def _info(self, urn: str) -> SliverInfo:
        r = self.slivers[urn]
        return SliverInfo(sliver_urn=urn, allocation_status=r["alloc"], expires=r["expires"],
                          operational_status=r["op"], client_id=r["client_id"])

    def _manifest(self, urns: Sequence[str]) -> str:
        nodes = "".join(f'<node client_id="{self.slivers[u]["client_id"]}" sliver_id="{u}"/>'
                        for u in urns)
        return f'<rspec xmlns="{RSPEC3}" type="manifest">{nodes}</rspec>'

    def _writable(self, slice_urn: str) -> None:
        if slice_urn in self.shut_down:
            raise GeniError(GeniCode.REFUSED, f"slice {slice_urn} is shut down")

    # -- contract
    def resolve_slice(self, urns: Sequence[str]) -> str:
        if len(urns) == 1 and "+slice+" in urns[0]:
            return urns[0]
        slices = set()
        for urn in urns:
            if "+sliver+" not in urn:
                raise GeniError(GeniCode.BADARGS, f"{urn} is not a sliver URN")
            if urn not in self.slivers:
                raise GeniError(GeniCode.SEARCHFAILED, f"no sliver {urn} here")
            slices.add(self.slivers[urn]["slice"])
        if len(slices) != 1:
            raise GeniError(GeniCode.BADARGS, "slivers of more than one slice")
        return slices.pop()

    def advertisement(self, options: Options) -> str:
        self.calls.append(("advertisement", None))
        nodes = "".join(f'<node component_id="urn:publicid:IDN+{AM_AUTH}+node+{n}" '
                        f'component_name="{n}" exclusive="false"><available now="true"/></node>'
                        for n in self.nodes)
        return f'<rspec xmlns="{RSPEC3}" type="advertisement">{nodes}</rspec>'

    def describe(self, principal, urns, options) -> ManifestResult:
        self.calls.append(("describe", principal))
        slice_urn, chosen = self._select(urns)
        return ManifestResult(self._manifest(chosen), slice_urn,
                              tuple(self._info(u) for u in chosen))

    def allocate(self, principal, slice_urn, request_xml, options) -> ManifestResult:
        self.calls.append(("allocate", principal))
        self._writable(slice_urn)
        try:
            root = ET.fromstring(request_xml)
        except ET.ParseError as exc:
            raise GeniError(GeniCode.BADARGS, f"request RSpec is not XML: {exc}") from None
        if root.tag != f"{{{RSPEC3}}}rspec":
            raise GeniError(GeniCode.BADVERSION, f"request RSpec namespace {root.tag}")
        nodes = root.findall(f"{{{RSPEC3}}}node")
        if len(nodes) > len(self.nodes):
            raise GeniError(GeniCode.INSUFFICIENT_NODES, "not enough nodes")
        made = []
        expires = _now() + timedelta(minutes=10)
        if principal.credential_expires:
            expires = min(expires, principal.credential_expires)
        for node in nodes:
            urn = f"urn:publicid:IDN+{AM_AUTH}+sliver+s{next(self._ids)}"
            self.slivers[urn] = {"slice": slice_urn, "alloc": "geni_allocated",
                                 "op": "geni_pending_allocation", "expires": expires,
                                 "client_id": node.get("client_id", "")}
            made.append(urn)
        return ManifestResult(self._manifest(made), slice_urn,
                              tuple(self._info(u) for u in made))

    def renew(self, principal, urns, expiration, options) -> list[SliverInfo]:
        self.calls.append(("renew", principal))
        slice_urn, chosen = self._select(urns)
        self._writable(slice_urn)
        if expiration <= _now():
            raise GeniError(GeniCode.OUTOFRANGE, "expiration in the past")
        for u in chosen:
            self.slivers[u]["expires"] = expiration
        return [self._info(u) for u in chosen]

    def provision(self, principal, urns, options) -> ManifestResult:
        self.calls.append(("provision", principal))
        slice_urn, chosen = self._select(urns)
        self._writable(slice_urn)
        for u in chosen:
            # options.start: the real service then boots them (v2 CreateSliver always asks)
            self.slivers[u].update(alloc="geni_provisioned",
                                   op="geni_ready" if options.start else "geni_notready",
                                   expires=_now() + timedelta(days=1))
        return ManifestResult(self._manifest(chosen), slice_urn,
                              tuple(self._info(u) for u in chosen))

    def status(self, principal, urns, options) -> StatusResult:
        self.calls.append(("status", principal))
        slice_urn, chosen = self._select(urns)
        return StatusResult(slice_urn, tuple(self._info(u) for u in chosen))

    def perform_action(self, principal, urns, action, options) -> list[SliverInfo]:
        self.calls.append(("perform_action", principal))
        slice_urn, chosen = self._select(urns)
        self._writable(slice_urn)
        states = {"geni_start": "geni_ready", "geni_stop": "geni_notready",
                  "geni_restart": "geni_ready"}
        if action not in states:
            raise GeniError(GeniCode.UNSUPPORTED, f"action {action} is not supported")
        for u in chosen:
            if self.slivers[u]["alloc"] != "geni_provisioned":
                raise GeniError(GeniCode.UNSUPPORTED, f"{u} is not provisioned")
            self.slivers[u]["op"] = states[action]
        return [self._info(u) for u in chosen]

    def delete(self, principal, urns, options) -> list[SliverInfo]:
        self.calls.append(("delete", principal))
        slice_urn, chosen = self._select(urns)
        self._writable(slice_urn)
        out = []
        for u in chosen:
            info = self._info(u)
            out.append(SliverInfo(u, "geni_unallocated", info.expires))
            del self.slivers[u]
        return out

    def shutdown(self, principal, slice_urn, options) -> bool:
        self.calls.append(("shutdown", principal))
        self.shut_down.add(slice_urn)
        return True
