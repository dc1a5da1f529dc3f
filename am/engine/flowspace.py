"""OpenFlow slivers: one FLOWSPACE spec per datapath the request names.

The datapath's driver does the real checks in `admit` (flowspace overlap, controller URL);
the engine only resolves the datapaths and keeps an OpenFlow sliver all-or-nothing across them.
"""
from __future__ import annotations

from dataclasses import dataclass

from am.engine.ledger import Ledger
from am.engine.plan import Refusal
from drivers.base import Admission, Component, ResourceKind, SliverSpec
from drivers.registry import Site
from rspec.model import OFDatapath, OpenFlowSliver

FLOWSPACE_TYPE = "openflow-flowspace"


@dataclass
class FlowspaceRecord:
    component: Component
    driver: str
    spec: SliverSpec
    admission: Admission


def openflow_client_id(index: int) -> str:
    """How refusals and slivers name the index-th OpenFlow sliver of a request."""
    return f"openflow{index}"


def datapaths(sliver: OpenFlowSliver) -> list[OFDatapath]:
    """Distinct datapaths named by the sliver's groups and matches, in document order."""
    seen: dict[str, OFDatapath] = {}
    for group in sliver.groups:
        for dp in group.datapaths:
            seen.setdefault(dp.component_id.lower(), dp)
    for match in sliver.matches:
        for dp in match.datapaths:
            seen.setdefault(dp.component_id.lower(), dp)
    return list(seen.values())


def place_openflow(index: int, sliver: OpenFlowSliver, site: Site, ledger: Ledger,
                   slice_urn: str) -> list[FlowspaceRecord] | Refusal:
    cid = openflow_client_id(index)
    dps = datapaths(sliver)
    if not dps:
        return Refusal(cid, "BADARGS", "the OpenFlow sliver names no datapath")
    records: list[FlowspaceRecord] = []
    for dp in dps:
        comp = site.component(dp.component_id)
        if comp is None:
            return Refusal(cid, "BADARGS", f"no component {dp.component_id} at this AM")
        if FLOWSPACE_TYPE not in {t.name.lower() for t in comp.sliver_types}:
            return Refusal(cid, "UNSUPPORTED",
                           f"component {comp.component_id} is not an OpenFlow datapath")
        spec = SliverSpec(sliver_urn="", slice_urn=slice_urn, client_id=f"{cid}:{comp.name}",
                          kind=ResourceKind.FLOWSPACE, component_id=comp.component_id,
                          sliver_type=FLOWSPACE_TYPE, openflow=sliver)
        adm = site.drivers[comp.driver].admit(spec, ledger.usage(comp))
        if not adm.ok:
            return Refusal(cid, adm.reason_code or "UNSUPPORTED",
                           adm.reason or f"datapath {comp.component_id} refused the flowspace")
        records.append(FlowspaceRecord(comp, comp.driver, spec, adm))
    for rec in records:
        ledger.commit(rec.component, rec.spec, rec.admission.demand)
    return records
