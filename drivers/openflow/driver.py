"""The OpenFlow driver: OVS switches sliced by flowspace (FlowVisor / FOAM tradition).

Inventory: each `[[components]]` table with `driver = "openflow"` names an OVS bridge
(`extra.bridge`); its dpid and ports are read from the switch. Admission refuses a flowspace
overlapping another sliver's on the same datapath, naming the conflict (`drivers.openflow.
flowspace`). Provisioning builds the slice bridge, patches and steering flows
(`drivers.openflow.slicing`). Everything this driver makes carries its name prefix or cookie
mark, so `observed()` finds it and `release()` removes what belongs to no sliver.

Config (`[drivers.openflow]`): `ovs_db` ("unix:/path/db.sock", required), `ovs_rundir`
(default: the socket's directory), `name_prefix` (default "gof"), `max_matches` (default 4096),
and for hybrid routers' forwarding planes (`openflow-fib` slivers, `drivers.openflow.fib`):
`fib_flows` (route flows per datapath, default 4096), `fib_routes` (the table size each router
reserves, default 256), `state_dir` (the routers' route sets; default `<ovs_rundir>/geni-fib`,
or /var/lib/geni-am/openflow-fib when OVS is reached over TCP).
A datapath's `extra.neighbours` table (IPv4 = MAC) gives the FIBs their next hops' MACs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Iterable
from pathlib import Path
from collections.abc import Mapping
from typing import Any, ClassVar

from drivers.base import (
    Action,
    Admission,
    Capabilities,
    Component,
    ComponentPort,
    DriverError,
    ForwardingMode,
    IsolationClass,
    ObservedSliver,
    OperationalState,
    ProvisionResult,
    ResourceKind,
    SliverSpec,
    SubstrateDriver,
    Usage,
)
from drivers.inventory import InventoryError, build_component, interface_urn, node_urn
from drivers.openflow.flowspace import (
    MAX_MATCHES,
    Flowspace,
    FlowspaceError,
    check_dpid,
    flowspace_for,
)
from drivers.openflow.fib import (
    DEFAULT_FIB_FLOWS,
    DEFAULT_FIB_ROUTES,
    FIB_CAPACITY,
    FIB_TYPE,
    admit_fib,
    check_fib_routes,
    fib_entries,
    parse_neighbours,
    ports_in_use,
    router_ports,
)
from drivers.openflow.links import SWITCH_MODE, SwitchLinks, ovs_quote as _q
from drivers.openflow.naming import Naming, cookie_match
from drivers.openflow.plane import FibLayout, OpenFlowPlane, RouterPort
from drivers.openflow.slicing import (
    ControllerError,
    SlicePlan,
    base_flows,
    check_controller,
    steering_flows,
)
from drivers.ovs import OF_PROTOCOLS, OVSClient, OVSError
from drivers.routesync import (
    SYNC_ROUTES_ACTION,
    ControlPlaneRoutes,
    RouteError,
    SyncResult,
    sync_plane,
)
from rspec.model import Route

log = logging.getLogger(__name__)

FLOWSPACE_TYPE = "openflow-flowspace"
FOREIGN = "foreign-flows:"       # handle of flows on a physical bridge nobody here installed
CONFIG_KEYS = frozenset({"ovs_db", "ovs_rundir", "name_prefix", "max_matches", "state_dir",
                         "fib_flows", "fib_routes", "ovs_netns"})
FIB_IDS = "geni-fib-"            # physical bridge external_ids key prefix: FIB tag -> sliver URN
CABLE_IDS = "geni-cable-"        # ... cable link tag -> sliver URN
STITCH_IDS = "geni-stitch-"      # ... stitched link (switch half) tag -> sliver URN
STITCH_PRIORITY = 300            # above slice steering (100) and FIB ingress (200)


class OpenFlowDriver(SubstrateDriver):
    kind: ClassVar[str] = "openflow"
    capabilities: ClassVar[Capabilities] = Capabilities(
        routes=True,
        isolation=IsolationClass.FLOWSPACE,
        sliver_types=(FLOWSPACE_TYPE, FIB_TYPE),
        actions=(Action.START.value, Action.STOP.value, Action.RESTART.value,
                 SYNC_ROUTES_ACTION),
        forwarding_modes=(ForwardingMode.OPENFLOW,),
        first_state=OperationalState.READY,
        link_properties=("capacity",),    # links through the switch: OpenFlow meters
        links_through_switch=True,
    )

    def __init__(self, config: Mapping[str, Any], components: list[Mapping[str, Any]],
                 *, authority: str):
        super().__init__(config, components, authority=authority)
        for key in self.config:
            if key not in CONFIG_KEYS:
                raise InventoryError(f"unknown key (allowed: {', '.join(sorted(CONFIG_KEYS))})",
                                     table="drivers.openflow", key=key)
        db = self.config.get("ovs_db")
        if not isinstance(db, str) or not db.startswith(("unix:", "tcp:127.0.0.1:")):
            raise InventoryError('must be the OVS database socket, e.g. "unix:/run/ovs/db.sock"',
                                 table="drivers.openflow", key="ovs_db")
        try:
            self.naming = Naming(str(self.config.get("name_prefix", "gof")))
        except ValueError as exc:
            raise InventoryError(str(exc), table="drivers.openflow", key="name_prefix") from None
        max_matches = self.config.get("max_matches", MAX_MATCHES)
        if isinstance(max_matches, bool) or not isinstance(max_matches, int) or max_matches < 1:
            raise InventoryError(f"must be a positive integer, not {max_matches!r}",
                                 table="drivers.openflow", key="max_matches")
        self.max_matches = max_matches
        for key, default in (("fib_flows", DEFAULT_FIB_FLOWS), ("fib_routes", DEFAULT_FIB_ROUTES)):
            v = self.config.get(key, default)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InventoryError(f"must be a positive integer, not {v!r}",
                                     table="drivers.openflow", key=key)
        self.fib_flows = int(self.config.get("fib_flows", DEFAULT_FIB_FLOWS))
        self.fib_routes = int(self.config.get("fib_routes", DEFAULT_FIB_ROUTES))
        if self.fib_routes > self.fib_flows:
            raise InventoryError(f"fib_routes ({self.fib_routes}) exceeds fib_flows "
                                 f"({self.fib_flows})", table="drivers.openflow", key="fib_routes")
        self.ovs = OVSClient(db, self.config.get("ovs_rundir"))
        netns = self.config.get("ovs_netns")
        if netns is not None and (not isinstance(netns, str) or not netns):
            raise InventoryError("must be the name of the network namespace ovs-vswitchd runs "
                                 "in", table="drivers.openflow", key="ovs_netns")
        self.switch_links = SwitchLinks(self.ovs, self.naming, netns)
        state_dir = self.config.get("state_dir") or (
            str(Path(self.ovs.rundir) / "geni-fib") if self.ovs.rundir
            else "/var/lib/geni-am/openflow-fib")
        if not isinstance(state_dir, str):
            raise InventoryError("must be a directory path", table="drivers.openflow",
                                 key="state_dir")
        self._state_dir = Path(state_dir).expanduser()
        self._routes: ControlPlaneRoutes | None = None
        self._bridges: dict[str, str] = {}          # component URN (lower) -> physical bridge
        for table in self.component_configs:
            where = table.get("_table", "components")
            bridge = dict(table.get("extra", {})).get("bridge")
            if not isinstance(bridge, str) or not bridge:
                raise InventoryError("an openflow component needs extra.bridge (the OVS bridge)",
                                     table=where, key="extra.bridge")
            if self.naming.is_ours(bridge):
                raise InventoryError(f"bridge {bridge!r} has this driver's slice-bridge prefix",
                                     table=where, key="extra.bridge")
            try:
                parse_neighbours(dict(table.get("extra", {})).get("neighbours", {}))
            except ValueError as exc:
                raise InventoryError(str(exc), table=where, key="extra.neighbours") from None
            self._bridges[node_urn(authority, table["name"]).lower()] = bridge
        self._components: list[Component] | None = None

    # ---- inventory ------------------------------------------------------------------------------
    def inventory(self) -> list[Component]:
        if self._components is None:
            self._components = [self._read_component(t) for t in self.component_configs]
        return list(self._components)

    def _read_component(self, table: Mapping[str, Any]) -> Component:
        where = table.get("_table", "components")
        bridge = table["extra"]["bridge"]
        try:
            if bridge not in self.ovs.bridges():
                raise InventoryError(f"OVS ({self.ovs.db}) has no bridge {bridge!r}",
                                     table=where, key="extra.bridge")
            dpid = self.ovs.dpid(bridge)
            live = {n: p for n, p in self.ovs.ofports(bridge).items() if not self.naming.is_ours(n)}
        except OVSError as exc:
            raise InventoryError(f"cannot read switch {bridge!r}: {exc}", table=where) from None
        if table.get("dpid") and table["dpid"] != dpid:
            raise InventoryError(f"bridge {bridge!r} has dpid {dpid}, not {table['dpid']}",
                                 table=where, key="dpid")
        declared = [p["name"] for p in table.get("ports", ())]
        for name in declared:
            if name not in live:
                raise InventoryError(f"bridge {bridge!r} has no port {name!r} (it has "
                                     f"{', '.join(sorted(live)) or 'none'})", table=where,
                                     key="ports")
        names = declared or sorted(live, key=live.__getitem__)
        caps = {p["name"]: p.get("capacity_kbps") for p in table.get("ports", ())}
        comp = build_component({**table, "ports": ()}, authority=self.authority, driver=self.kind,
                               default_isolation=IsolationClass.FLOWSPACE,
                               default_sliver_types=(FLOWSPACE_TYPE, FIB_TYPE),
                               default_capacity={FIB_CAPACITY: float(self.fib_flows)},
                               default_forwarding=(ForwardingMode.OPENFLOW,))
        ports = tuple(ComponentPort(interface_urn(self.authority, comp.name, n), n, live[n],
                                    caps.get(n)) for n in names)
        return dataclasses.replace(comp, dpid=dpid, ports=ports,
                                   hardware_types=comp.hardware_types or ("openflow-switch",),
                                   extra={**comp.extra, "bridge": bridge, "neighbours":
                                          parse_neighbours(comp.extra.get("neighbours", {}))})

    # ---- admission (pure) -------------------------------------------------------------------------
    def available(self, comp: Component, usage: Usage | None) -> bool:
        """Never: a datapath is a shared switch. Slices get flowspace (and route tables) on it
        through their requests; the switch itself is not a node anyone is handed."""
        return False

    def admit_component(self, comp: Component, spec: SliverSpec, usage: Usage) -> Admission:
        if _is_cable(spec):
            return self._admit_cable(comp, spec)
        if _is_stitch(spec):
            return self._admit_stitch(comp, spec, usage)
        if _is_switch_link(spec):
            wires = spec.params.get("attachments")
            cabled = spec.params.get("cable_ports") or []
            live = {p.name for p in comp.ports}
            if not isinstance(cabled, list) or any(c not in live for c in cabled):
                return Admission.refuse(f"link {spec.client_id}: a cable's port is not a port "
                                        f"of {comp.name}", "BADARGS")
            cabled_nums = _cable_port_nums(comp, spec)
            stitched = next((o for o in usage.slivers if cabled_nums & _stitch_ports(comp, o)),
                            None)
            if stitched is not None:
                return Admission.refuse(f"link {spec.client_id}: a cable's port of {comp.name} "
                                        f"carries stitched link {stitched.client_id} of slice "
                                        f"{stitched.slice_urn}", "UNAVAILABLE")
            if not isinstance(wires, list) or not (wires or cabled) or \
                    wires != self.switch_wires(spec.slice_urn, spec.client_id, len(wires)):
                return Admission.refuse(f"link {spec.client_id}: a link through {comp.name} "
                                        "names its attachments' wires", "BADARGS")
            nums = [p.num for p in comp.ports if p.num is not None]
            for other in usage.slivers:      # a cable's port is this link's alone
                busy = sorted(_cable_port_nums(comp, spec) & ports_in_use(comp, other, nums))
                if busy:
                    return Admission.refuse(
                        f"link {spec.client_id}: port {busy[0]} of {comp.name} (a site cable) "
                        f"is in the flowspace or router of slice {other.slice_urn}",
                        "UNAVAILABLE")
            return Admission.accept()
        if _is_fib(spec):
            if FIB_TYPE not in {t.name.lower() for t in comp.sliver_types}:
                return Admission.refuse(f"datapath {comp.name} does not offer {FIB_TYPE} slivers",
                                        "UNSUPPORTED")
            return admit_fib(comp, spec, usage, self.fib_routes)
        if spec.kind is not ResourceKind.FLOWSPACE:
            return Admission.refuse(
                f"{comp.component_id} is an OpenFlow switch: it takes openflow:sliver "
                f"flowspace, not {spec.kind.value} slivers", "UNSUPPORTED")
        if spec.openflow is None:
            return Admission.refuse("flowspace sliver without an openflow:sliver", "BADARGS")
        try:
            fs = self._flowspace(spec, comp)
        except (FlowspaceError, ControllerError) as exc:
            return Admission.refuse(str(exc), exc.code)
        nums = [p.num for p in comp.ports if p.num is not None]
        count = fs.match_count(len(nums))
        if count > self.max_matches:
            return Admission.refuse(f"the flowspace on {comp.component_id} expands to {count} "
                                    f"matches; at most {self.max_matches} per datapath", "TOOBIG")
        lo, hi = comp.extra.get("vlan_range", (0, 4095))
        for cell in fs.cells:
            outside = sorted(v for v in cell.dl_vlan or () if not lo <= v <= hi)
            if outside:
                return Admission.refuse(f"dl_vlan {','.join(map(str, outside))} is outside "
                                        f"{comp.name}'s VLAN range {lo}-{hi}", "VLAN_UNAVAILABLE")
        mine = fs.ports(nums)
        for other in usage.slivers:
            stitched = sorted(mine & _stitch_ports(comp, other))
            if stitched:
                return Admission.refuse(
                    f"port {stitched[0]} of datapath {comp.component_id} carries a stitched "
                    f"link (sliver {other.sliver_urn or other.client_id}, slice "
                    f"{other.slice_urn}); a flowspace cannot include it", "UNAVAILABLE")
            if _is_switch_link(other):
                cabled = sorted(mine & _cable_port_nums(comp, other))
                if cabled:
                    return Admission.refuse(
                        f"port {cabled[0]} of datapath {comp.component_id} is a site cable on "
                        f"link {other.client_id} of slice {other.slice_urn}; a flowspace "
                        "cannot include it", "UNAVAILABLE")
                continue
            if _is_fib(other):
                routed = sorted(mine & ports_in_use(comp, other, nums))
                if routed:
                    return Admission.refuse(
                        f"port {routed[0]} of datapath {comp.component_id} forwards for a "
                        f"virtual router (sliver {other.sliver_urn or other.client_id}, slice "
                        f"{other.slice_urn}); a flowspace cannot include it", "UNAVAILABLE")
                continue
            if other.kind is not ResourceKind.FLOWSPACE or other.openflow is None:
                continue
            if other.sliver_urn and other.sliver_urn == spec.sliver_urn:
                continue
            try:
                theirs = flowspace_for(other.openflow, comp.component_id, nums)
            except FlowspaceError:
                continue      # admitted under another inventory; cannot overlap what it can't name
            clashes = fs.conflicts(theirs)
            if clashes:
                mine, their = clashes[0]
                vlan = mine.dl_vlan is not None and their.dl_vlan is not None
                who = other.sliver_urn or f"{other.client_id} of this request"
                return Admission.refuse(
                    f"flowspace {mine.describe()} on datapath {comp.component_id} overlaps "
                    f"slice {other.slice_urn} (sliver {who}, match {their.describe()})",
                    "VLAN_UNAVAILABLE" if vlan else "UNAVAILABLE")
        return Admission.accept(claims=fs.claims())

    def _flowspace(self, spec: SliverSpec, comp: Component) -> Flowspace:
        of = spec.openflow
        assert of is not None
        if not of.controllers:
            raise ControllerError("an OpenFlow sliver needs at least one openflow:controller")
        for c in of.controllers:
            check_controller(c.url, c.type)
        check_dpid(of, comp.component_id, comp.dpid)
        return flowspace_for(of, comp.component_id, [p.num for p in comp.ports if p.num is not None])

    # ---- stitched links: a host's wire to the edge port, on the link's VLAN ---------------------
    def _admit_stitch(self, comp: Component, spec: SliverSpec, usage: Usage) -> Admission:
        """The switch half of a stitched link (am.engine.stitch): the port a host's wire is
        plugged into, joined to the edge port on the link's VLAN. Neither port may be in a
        flowspace or a router's forwarding plane, and the wire's port carries one link."""
        port = spec.params.get("switch_port")
        nums = {p.name: p.num for p in comp.ports}
        if port not in nums:
            return Admission.refuse(f"datapath {comp.name} has no port {port!r} for stitched "
                                    f"link {spec.client_id}", "BADARGS")
        tag = spec.link.vlan_tag if spec.link else None
        if tag is None or not 1 <= tag <= 4094:
            return Admission.refuse(f"stitched link {spec.client_id} has no VLAN tag", "BADARGS")
        ours = _stitch_ports(comp, spec)
        every = [n for n in nums.values() if n is not None]
        for other in usage.slivers:
            if other.sliver_urn and other.sliver_urn == spec.sliver_urn:
                continue
            who = f"sliver {other.sliver_urn or other.client_id}, slice {other.slice_urn}"
            if _is_stitch(other) and other.params.get("switch_port") == port:
                return Admission.refuse(f"port {port} of datapath {comp.name} already carries "
                                        f"a stitched link ({who})", "UNAVAILABLE")
            if _is_fib(other):
                taken = ours & ports_in_use(comp, other, every)
            elif _is_switch_link(other):
                taken = ours & _cable_port_nums(comp, other)
            elif other.kind is ResourceKind.FLOWSPACE and other.openflow is not None:
                try:
                    taken = ours & flowspace_for(other.openflow, comp.component_id,
                                                 every).ports(every)
                except FlowspaceError:
                    continue
            else:
                continue
            if taken:
                return Admission.refuse(f"port {min(taken)} of datapath {comp.name} is in "
                                        f"another slice's flowspace or forwarding plane ({who});"
                                        f" stitched link {spec.client_id} cannot use it",
                                        "UNAVAILABLE")
        return Admission.accept(claims=(f"stitch:{port}",))

    def _stitch_handle(self, tag: str) -> str:
        return f"{self.naming.prefix}stitch{tag}"

    def _stitch_owners(self, phys: str) -> dict[str, str]:
        """Stitched link tag -> sliver URN, from the physical bridge's external_ids."""
        ids = self.ovs.external_ids("Bridge", phys)
        return {k[len(STITCH_IDS):]: v for k, v in ids.items() if k.startswith(STITCH_IDS)}

    def _stitch_flows(self, spec: SliverSpec, phys: str, tag: str) -> None:
        """Two flows: what comes in on the wire's port leaves the edge port with the link's
        VLAN pushed; what comes in on the edge port with that VLAN goes to the wire popped."""
        ofports = self.ovs.ofports(phys)
        port, edge = spec.params.get("switch_port"), spec.params.get("edge_port")
        missing = [p for p in (port, edge) if p not in ofports]
        if missing:
            raise DriverError(f"stitched link {spec.client_id}: switch {phys} has no port "
                              f"{missing[0]}", transient=True)
        vlan = int(spec.link.vlan_tag)   # type: ignore[union-attr]
        head = f"cookie=0x{self.naming.stitch_cookie(tag):016x},priority={STITCH_PRIORITY}"
        self.ovs.add_flows(phys, [
            f"{head},in_port={ofports[port]},actions=push_vlan:0x8100,"
            f"set_field:{4096 + vlan}->vlan_vid,output:{ofports[edge]}",
            f"{head},in_port={ofports[edge]},dl_vlan={vlan},actions=pop_vlan,"
            f"output:{ofports[port]}"])

    def _provision_stitch(self, spec: SliverSpec) -> ProvisionResult:
        comp, phys, tag = self._fib_resolve(spec)
        if phys not in self.ovs.bridges():
            raise DriverError(f"switch {phys} is gone", transient=True)
        self._ensure_base(phys)
        self.ovs.vsctl("set", "bridge", phys,
                       f"external_ids:{STITCH_IDS}{tag}={_q(spec.sliver_urn)}")
        self._stitch_flows(spec, phys, tag)
        return ProvisionResult(
            state=OperationalState.READY, handle=self._stitch_handle(tag),
            resource_status=f"stitched link on datapath {comp.name}: port "
                            f"{spec.params.get('switch_port')} <-> edge port "
                            f"{spec.params.get('edge_port')} on VLAN {spec.link.vlan_tag}")  # type: ignore[union-attr]

    def _stitch_state(self, phys: str, tag: str) -> OperationalState:
        if phys not in self.ovs.bridges() or tag not in self._stitch_owners(phys):
            return OperationalState.FAILED
        flows = self.ovs.dump_flows(phys, cookie_match(self.naming.stitch_cookie(tag)))
        return OperationalState.READY if flows else OperationalState.NOTREADY

    def _teardown_stitch(self, tag: str) -> None:
        for phys in sorted(set(self._bridges.values())):
            if phys in self.ovs.bridges():
                self.ovs.del_flows(phys, cookie_match(self.naming.stitch_cookie(tag)))
                self.ovs.vsctl("remove", "bridge", phys, "external_ids", f"{STITCH_IDS}{tag}")

    # ---- cables: a site cable from another component's port into a datapath port --------------
    def _admit_cable(self, comp: Component, spec: SliverSpec) -> Admission:
        """A link sliver over a cable the site declares (a NetFPGA card port into the port a
        hybrid router's forwarding plane owns): nothing to build, only the cable to claim.
        Any other link on a datapath is refused: OpenFlow links are flowspace."""
        port = spec.params.get("switch_port")
        if port not in {p.name for p in comp.ports}:
            return Admission.refuse(f"datapath {comp.name} has no port {port!r} for link "
                                    f"{spec.client_id}", "BADARGS")
        return Admission.accept(claims=(f"cable:{spec.params.get('card')}:"
                                        f"{spec.params.get('port')}",))

    def _cable_state(self, comp: Component, spec: SliverSpec) -> tuple[OperationalState, str]:
        phys, port = comp.extra["bridge"], spec.params.get("switch_port")
        if phys not in self.ovs.bridges():
            return OperationalState.FAILED, f"switch {phys} is gone"
        num = self.ovs.ofports(phys).get(port)
        if num is None or num < 0:
            return OperationalState.FAILED, (f"the cable from {spec.params.get('card')} port "
                                             f"{spec.params.get('port')} is no longer in "
                                             f"{phys} (port {port})")
        card_is = spec.params.get("card_is")
        return OperationalState.READY, (f"cable {spec.params.get('card')}:"
                                        f"{spec.params.get('port')} - {comp.name}:{port} "
                                        f"(OpenFlow port {num}), forwarded by the router's "
                                        "forwarding plane" + (f"; card end: {card_is} port "
                                                              f"{spec.params.get('port')}"
                                                              if card_is else ""))

    def _cable(self, spec: SliverSpec) -> tuple[Component, str, str]:
        comp = self._component_by_urn(spec.component_id)
        if comp is None:
            raise DriverError(f"no OpenFlow datapath {spec.component_id}")
        return comp, comp.extra["bridge"], self.naming.tag(spec.sliver_urn)

    def _provision_cable(self, spec: SliverSpec) -> ProvisionResult:
        comp, phys, tag = self._cable(spec)
        state, text = self._cable_state(comp, spec)
        if state is OperationalState.FAILED:
            raise DriverError(text)
        self.ovs.vsctl("set", "bridge", phys, f"external_ids:{CABLE_IDS}{tag}="
                                              f"{_q(spec.params['switch_port'] + ' ' + spec.sliver_urn)}")
        return ProvisionResult(state=state, handle=self._cable_handle(tag), resource_status=text)

    def _cable_handle(self, tag: str) -> str:
        return f"{self.naming.prefix}cable{tag}"

    def _cables(self, phys: str) -> dict[str, tuple[str, str]]:
        """Cable link tag -> (datapath port, sliver URN), from the bridge's external_ids."""
        ids = self.ovs.external_ids("Bridge", phys)
        return {k[len(CABLE_IDS):]: tuple(v.split(" ", 1))   # type: ignore[misc]
                for k, v in ids.items() if k.startswith(CABLE_IDS) and " " in v}

    def _forget_cable(self, tag: str) -> None:
        for phys in sorted(set(self._bridges.values())):
            if phys in self.ovs.bridges() and tag in self._cables(phys):
                self.ovs.vsctl("remove", "bridge", phys, "external_ids", f"{CABLE_IDS}{tag}")

    def _observed_cables(self, phys: str) -> list[ObservedSliver]:
        ports = self.ovs.ofports(phys)
        return [ObservedSliver(handle=self._cable_handle(tag), sliver_urn=urn,
                               state=OperationalState.READY if port in ports
                               else OperationalState.FAILED,
                               detail=f"site cable into {phys} port {port}"
                                      + ("" if port in ports else ": the port is gone"))
                for tag, (port, urn) in sorted(self._cables(phys).items())]

    # ---- links carried through the switch (drivers/openflow/links.py) ---------------------------
    def switch_wires(self, slice_urn: str, link_client_id: str, count: int) -> list[str]:
        """The host ends of the `count` attachments of a link through a switch of this driver:
        what the ends' host drivers take as wires (known at Allocate)."""
        return self.switch_links.wires(slice_urn, link_client_id, count)

    def _switch_link(self, spec: SliverSpec) -> tuple[str, str, int, tuple[str, ...]]:
        """(bridge, link tag, attachments, ports of site cables on the link: a NetFPGA card
        port cabled into the switch is on the link as that switch port)."""
        comp = self._component_by_urn(spec.component_id)
        if comp is None:
            raise DriverError(f"no OpenFlow datapath {spec.component_id}")
        return (comp.extra["bridge"], self.naming.link_tag(spec.slice_urn, spec.client_id),
                len(spec.params.get("attachments") or ()),
                tuple(spec.params.get("cable_ports") or ()))

    def _provision_switch_link(self, spec: SliverSpec) -> ProvisionResult:
        phys, tag, count, cabled = self._switch_link(spec)
        self._ensure_base(phys)
        self.switch_links.build(phys, tag, spec.sliver_urn, count, cabled, _kbps(spec))
        state, text = self.switch_links.state(phys, tag, count, cabled)
        cable_from = spec.params.get("cable_from") or {}
        if cable_from:
            text += "; " + ", ".join(f"{p} is the cable from {what}"
                                     for p, what in sorted(cable_from.items()))
        return ProvisionResult(state=state, handle=self.switch_links.handle(tag),
                               resource_status=text)

    def check_update(self, old: SliverSpec, new: SliverSpec) -> None:
        """A link through the switch keeps its switch and attachments; its capacity may
        change (its meters are re-set, added or removed). Nothing else is updated in place."""
        if not (_is_switch_link(old) and _is_switch_link(new)):
            raise DriverError(f"{new.client_id}: OpenFlow slivers other than links through "
                              "the switch are not reconfigured in place")
        for what in ("component_id", "slice_urn", "client_id"):
            if getattr(old, what) != getattr(new, what):
                raise DriverError(f"link {new.client_id}: its {what} would change")
        if old.params.get("attachments") != new.params.get("attachments"):
            raise DriverError(f"link {new.client_id}: its attachments would change; add a link "
                              "with a new client_id instead")

    def update(self, old: SliverSpec, new: SliverSpec) -> ProvisionResult:
        """Re-shape a running link through the switch (Provision after an Update)."""
        self.check_update(old, new)
        return self._provision_switch_link(new)

    # ---- substrate operations ---------------------------------------------------------------------
    def provision(self, spec: SliverSpec) -> ProvisionResult:
        if _is_cable(spec):
            return self._provision_cable(spec)
        if _is_stitch(spec):
            return self._provision_stitch(spec)
        if _is_switch_link(spec):
            return self._provision_switch_link(spec)
        if _is_fib(spec):
            return self._provision_fib(spec)
        comp, fs, phys = self._resolve(spec)
        tag = self.naming.tag(spec.sliver_urn)
        ports = self._slice_ports(comp, fs, phys)
        self._ensure_base(phys)
        existing = self._slice_port_nums(tag)
        plan = SlicePlan(
            tag=tag, bridge=self.naming.bridge(tag), phys_bridge=phys,
            dpid=(comp.dpid or "").replace(":", ""), ports=ports,
            controllers=tuple(c.url for c in spec.openflow.controllers),   # type: ignore[union-attr]
            external_ids={"geni-sliver": spec.sliver_urn, "geni-slice": spec.slice_urn,
                          "geni-datapath": phys})
        self.ovs.vsctl(*plan.vsctl_args(self.naming, tuple(sorted(existing - set(ports)))))
        self._install(spec, comp, fs, phys, tag, ports)
        return ProvisionResult(state=OperationalState.READY, handle=plan.bridge,
                               resource_status=self._status_text(plan.bridge, ports))

    def perform(self, spec: SliverSpec, action: str) -> OperationalState:
        if _is_cable(spec):
            return self.status(spec)
        if _is_stitch(spec):
            _comp, phys, tag = self._fib_resolve(spec)
            if action in (Action.START.value, Action.RESTART.value):
                self._stitch_flows(spec, phys, tag)
            elif action == Action.STOP.value:
                self.ovs.del_flows(phys, cookie_match(self.naming.stitch_cookie(tag)))
            return self._stitch_state(phys, tag)
        if _is_switch_link(spec):
            phys, tag, count, cabled = self._switch_link(spec)
            if action == Action.STOP.value:
                self.switch_links.stop(phys, tag)
            elif action in (Action.START.value, Action.RESTART.value):
                self.switch_links.build(phys, tag, spec.sliver_urn, count, cabled,
                                        _kbps(spec))
            return self.switch_links.state(phys, tag, count, cabled)[0]
        if _is_fib(spec):
            return self._perform_fib(spec, action)
        if action == SYNC_ROUTES_ACTION:          # a slice-wide route sync: nothing to do here
            return self.status(spec)
        comp, fs, phys = self._resolve(spec)
        tag = self.naming.tag(spec.sliver_urn)
        if self.naming.bridge(tag) not in self.ovs.bridges():
            raise DriverError(f"sliver {spec.sliver_urn} is not provisioned on {phys}")
        if action == Action.STOP.value:
            self.ovs.del_flows(phys, cookie_match(self.naming.cookie(tag)))
            return OperationalState.NOTREADY
        if action in (Action.START.value, Action.RESTART.value):
            self._install(spec, comp, fs, phys, tag, self._slice_ports(comp, fs, phys))
            return OperationalState.READY
        raise DriverError(f"action {action!r} is not supported by OpenFlow slivers "
                          f"({', '.join(self.capabilities.actions)})")

    def status(self, spec: SliverSpec) -> OperationalState:
        comp = self._component_by_urn(spec.component_id)
        if comp is None:
            return OperationalState.FAILED
        phys = comp.extra["bridge"]
        if _is_stitch(spec):
            return self._stitch_state(phys, self.naming.tag(spec.sliver_urn))
        if _is_switch_link(spec):
            return self.switch_links.state(*self._switch_link(spec))[0]
        if _is_cable(spec):
            if self.naming.tag(spec.sliver_urn) not in self._cables(phys):
                return OperationalState.FAILED
            return self._cable_state(comp, spec)[0]
        if _is_fib(spec):
            tag = self.naming.tag(spec.sliver_urn)
            if phys not in self.ovs.bridges() or tag not in self._fib_owners(phys):
                return OperationalState.FAILED
            flows = self.ovs.dump_flows(phys, cookie_match(self.naming.fib_cookie(tag)))
            return OperationalState.READY if flows else OperationalState.NOTREADY
        tag = self.naming.tag(spec.sliver_urn)
        if self.naming.bridge(tag) not in self.ovs.bridges():
            return OperationalState.FAILED
        flows = self.ovs.dump_flows(phys, cookie_match(self.naming.cookie(tag)))
        return OperationalState.READY if flows else OperationalState.NOTREADY

    def delete(self, spec: SliverSpec) -> None:
        if _is_stitch(spec):
            self._teardown_stitch(self.naming.tag(spec.sliver_urn))
            return
        if _is_switch_link(spec):
            self.switch_links.teardown(sorted(set(self._bridges.values())),
                                       self.naming.link_tag(spec.slice_urn, spec.client_id))
            return
        if _is_cable(spec):
            self._forget_cable(self.naming.tag(spec.sliver_urn))
            return
        if _is_fib(spec):
            self._teardown_fib(self.naming.tag(spec.sliver_urn))
            return
        self._teardown(self.naming.tag(spec.sliver_urn))

    def observed(self) -> list[ObservedSliver]:
        found: dict[str, dict[str, Any]] = {}

        def entry(tag: str) -> dict[str, Any]:
            return found.setdefault(tag, {"urn": None, "bridge": False, "ports": 0, "flows": 0})

        for row in self.ovs.find("Bridge", ["name", "external_ids"]):
            tag = self.naming.tag_of_bridge(row["name"])
            if tag is not None:
                e = entry(tag)
                e["bridge"] = True
                e["urn"] = e["urn"] or row["external_ids"].get("geni-sliver")
        for row in self.ovs.find("Interface", ["name", "external_ids"]):
            tag = self.naming.tag_of_port(row["name"])
            if tag is not None:
                e = entry(tag)
                e["ports"] += 1
                e["urn"] = e["urn"] or row["external_ids"].get("geni-sliver")
        out: list[ObservedSliver] = []
        for phys in sorted(set(self._bridges.values())):
            if phys not in self.ovs.bridges():
                continue
            out.extend(self._observed_cables(phys))
            out.extend(self.switch_links.observed(phys))
            foreign = 0
            owners = self._fib_owners(phys)
            fib_flows: dict[str, int] = {}
            stitches = self._stitch_owners(phys)
            stitch_flows: dict[str, int] = {}
            for flow in self.ovs.dump_flows(phys):
                stitch_tag = self.naming.stitch_tag_of_cookie(flow.cookie)
                if stitch_tag is not None:
                    stitch_flows[stitch_tag] = stitch_flows.get(stitch_tag, 0) + 1
                    continue
                if self.naming.link_tag_of_cookie(flow.cookie) is not None:
                    continue                   # a link's: reported by switch_links.observed
                fib_tag = self.naming.fib_tag_of_cookie(flow.cookie)
                if fib_tag is not None:
                    fib_flows[fib_tag] = fib_flows.get(fib_tag, 0) + 1
                    continue
                tag = self.naming.tag_of_cookie(flow.cookie)
                if tag is None:
                    foreign += 1
                elif tag:
                    entry(tag)["flows"] += 1
            out += _marked_slivers(self._fib_handle, owners, fib_flows,
                                   f"router forwarding plane on {phys}")
            out += _marked_slivers(self._stitch_handle, stitches, stitch_flows,
                                   f"stitched link on {phys}")
            if foreign:
                out.append(ObservedSliver(handle=f"{FOREIGN}{phys}", sliver_urn=None,
                                          detail=f"{foreign} flow(s) on {phys} not installed "
                                                 "by this AM"))
        for tag, e in sorted(found.items()):
            if e["bridge"] and e["flows"]:
                state = OperationalState.READY
            elif e["bridge"]:
                state = OperationalState.NOTREADY
            else:
                state = OperationalState.FAILED
            out.append(ObservedSliver(
                handle=self.naming.bridge(tag), sliver_urn=e["urn"], state=state,
                detail=f"bridge={'yes' if e['bridge'] else 'no'} patch_ports={e['ports']} "
                       f"flows={e['flows']}"))
        return out

    def release(self, handle: str) -> None:
        if handle.startswith(FOREIGN):
            phys = handle[len(FOREIGN):]
            if phys in self._bridges.values():
                self._drop_foreign_flows(phys)
            return
        head = f"{self.naming.prefix}stitch"
        if handle.startswith(head):
            self._teardown_stitch(handle[len(head):])
            return
        link_tag = self.switch_links.tag_of_handle(handle)
        if link_tag is not None:
            self.switch_links.teardown(sorted(set(self._bridges.values())), link_tag)
            return
        head = f"{self.naming.prefix}cable"
        if handle.startswith(head):
            self._forget_cable(handle[len(head):])
            return
        fib_tag = self._fib_tag_of_handle(handle)
        if fib_tag is not None:
            self._teardown_fib(fib_tag)
            return
        tag = self.naming.tag_of_bridge(handle)
        if tag is None:
            raise DriverError(f"{handle!r} is not a handle of this OpenFlow driver")
        self._teardown(tag)

    # ---- helpers ----------------------------------------------------------------------------------
    def _resolve(self, spec: SliverSpec) -> tuple[Component, Flowspace, str]:
        comp = self._component_by_urn(spec.component_id)
        if comp is None:
            raise DriverError(f"no OpenFlow datapath {spec.component_id}")
        if spec.openflow is None:
            raise DriverError("flowspace sliver without an openflow:sliver")
        if not spec.sliver_urn:
            raise DriverError("flowspace sliver without a sliver URN")
        try:
            fs = self._flowspace(spec, comp)
        except (FlowspaceError, ControllerError) as exc:
            raise DriverError(str(exc)) from None
        return comp, fs, comp.extra["bridge"]

    def _slice_ports(self, comp: Component, fs: Flowspace, phys: str) -> dict[int, str]:
        """Physical port number -> name for every port in the slice's flowspace, as now."""
        live = {n: p for n, p in self.ovs.ofports(phys).items() if not self.naming.is_ours(n)}
        by_num = {num: name for name, num in live.items()}
        wanted = fs.ports(p.num for p in comp.ports if p.num is not None)
        missing = sorted(n for n in wanted if n not in by_num)
        if missing:
            raise DriverError(f"switch {phys} lost port(s) {', '.join(map(str, missing))}",
                              transient=True)
        return {n: by_num[n] for n in sorted(wanted)}

    def _slice_port_nums(self, tag: str) -> set[int]:
        bridge = self.naming.bridge(tag)
        if bridge not in self.ovs.bridges():
            return set()
        prefix = self.naming.slice_patch(tag, 0)[:-1]
        return {int(n[len(prefix):]) for n in self.ovs.ports(bridge) if n.startswith(prefix)}

    def _install(self, spec: SliverSpec, comp: Component, fs: Flowspace, phys: str, tag: str,
                 ports: Mapping[int, str]) -> None:
        ofports = self.ovs.ofports(phys)
        patch = {}
        for num in ports:
            name = self.naming.phys_patch(tag, num)
            if name not in ofports:
                raise DriverError(f"patch port {name} has no OpenFlow number on {phys} yet",
                                  transient=True)
            patch[num] = ofports[name]
        self.ovs.add_flows(phys, steering_flows(fs, self.naming, tag, ports, patch))

    def _ensure_base(self, phys: str) -> None:
        """The physical bridge's table is the AM's: secure fail mode, no controller, a default
        drop, and no flows anybody else installed (a fresh bridge's NORMAL flow would leak
        traffic between slices)."""
        self.ovs.vsctl("set", "bridge", phys, "fail_mode=secure", f"protocols={OF_PROTOCOLS}",
                       "--", "del-controller", phys)
        self._drop_foreign_flows(phys)
        self.ovs.add_flows(phys, base_flows(self.naming))

    def _drop_foreign_flows(self, phys: str) -> None:
        cookies = {f.cookie for f in self.ovs.dump_flows(phys)
                   if not self.naming.is_our_cookie(f.cookie)}
        if cookies:
            self.ovs.ofctl("add-flows", phys, "-",
                           input="".join(f"delete {cookie_match(c)}\n" for c in sorted(cookies)))

    def _teardown(self, tag: str) -> None:
        """Remove the slice bridge, its patch ports and its flows wherever they are."""
        bridge = self.naming.bridge(tag)
        args: list[str] = ["--if-exists", "del-br", bridge]
        for row in self.ovs.find("Port", ["name"]):
            if self.naming.tag_of_port(row["name"]) == tag:
                args += ["--", "--if-exists", "del-port", row["name"]]
        self.ovs.vsctl(*args)
        bridges = self.ovs.bridges()
        for phys in sorted(set(self._bridges.values())):
            if phys in bridges:
                self.ovs.del_flows(phys, cookie_match(self.naming.cookie(tag)))

    # ---- hybrid routers' forwarding planes (openflow-fib) ---------------------------------------
    @property
    def routes(self) -> ControlPlaneRoutes:
        if self._routes is None:           # lazily: ListResources never needs the directory
            try:
                self._routes = ControlPlaneRoutes(self._state_dir)
            except OSError as exc:
                raise DriverError(f"cannot use state_dir {self._state_dir}: {exc.strerror}") \
                    from None
        return self._routes

    def _fib_handle(self, tag: str) -> str:
        return f"{self.naming.prefix}fib{tag}"

    def _fib_tag_of_handle(self, handle: str) -> str | None:
        head = f"{self.naming.prefix}fib"
        tag = handle[len(head):] if handle.startswith(head) else ""
        return tag if len(tag) == 8 and all(c in "0123456789abcdef" for c in tag) else None

    def _fib_owners(self, phys: str) -> dict[str, str]:
        """FIB tag -> sliver URN, from the physical bridge's external_ids (OVSDB is the one
        store every AM process shares with the switch)."""
        ids = self.ovs.external_ids("Bridge", phys)
        return {k[len(FIB_IDS):]: v for k, v in ids.items() if k.startswith(FIB_IDS)}

    def _fib_resolve(self, spec: SliverSpec) -> tuple[Component, str, str]:
        comp = self._component_by_urn(spec.component_id)
        if comp is None:
            raise DriverError(f"no OpenFlow datapath {spec.component_id}")
        if not spec.sliver_urn:
            raise DriverError("forwarding plane sliver without a sliver URN")
        return comp, comp.extra["bridge"], self.naming.tag(spec.sliver_urn)

    def fib_plane(self, spec: SliverSpec) -> OpenFlowPlane:
        """The router's `ForwardingPlane` on its datapath."""
        comp, phys, tag = self._fib_resolve(spec)
        try:
            ports = router_ports(comp, spec)
        except ValueError as exc:
            raise DriverError(str(exc)) from None
        rports = []
        for iface, port in zip(spec.interfaces, ports):
            mac = iface.mac or _mac_for(spec.sliver_urn, iface.client_id)
            rports.append(RouterPort(name=port.name, ofport=int(port.num or 0), mac=mac.lower(),
                                     addresses=tuple(a for a, _m in iface.ips)))
        layout = FibLayout(cookie=self.naming.fib_cookie(tag), metadata=int(tag, 16),
                           ports=tuple(rports), neighbours=comp.extra.get("neighbours", {}))
        return OpenFlowPlane(self.ovs, phys, layout)

    def _provision_fib(self, spec: SliverSpec) -> ProvisionResult:
        comp, phys, tag = self._fib_resolve(spec)
        try:
            routes = check_fib_routes(comp, spec, spec.routes, self.fib_routes)
            ports = router_ports(comp, spec)
        except (RouteError, ValueError) as exc:
            raise DriverError(str(exc)) from None
        if phys not in self.ovs.bridges():
            raise DriverError(f"switch {phys} is gone", transient=True)
        self._ensure_base(phys)
        self.ovs.vsctl("set", "bridge", phys, f"external_ids:{FIB_IDS}{tag}={_q(spec.sliver_urn)}")
        if self.routes.get(self._fib_handle(tag)) is None:
            self.routes.put(self._fib_handle(tag), routes)
        return ProvisionResult(state=self.status(spec), handle=self._fib_handle(tag),
                               resource_status=f"router forwarding plane on datapath "
                                               f"{comp.name}, ports "
                                               f"{', '.join(f'{p.num}({p.name})' for p in ports)}")

    def _perform_fib(self, spec: SliverSpec, action: str) -> OperationalState:
        comp, phys, tag = self._fib_resolve(spec)
        if tag not in self._fib_owners(phys):
            raise DriverError(f"sliver {spec.sliver_urn} is not provisioned on {phys}")
        plane = self.fib_plane(spec)
        if action in (Action.START.value, Action.RESTART.value):
            plane.bind()
            self._sync_fib(comp, spec, plane)
        elif action == Action.STOP.value:
            plane.clear()
        elif action == SYNC_ROUTES_ACTION:
            if self.status(spec) is OperationalState.READY:
                self._sync_fib(comp, spec, plane)
        else:
            raise DriverError(f"action {action!r} is not supported by router forwarding planes "
                              f"({', '.join(self.capabilities.actions)})")
        return self.status(spec)

    def _sync_fib(self, comp: Component, spec: SliverSpec, plane: OpenFlowPlane) -> SyncResult:
        routes = self.routes.get(self._fib_handle(self.naming.tag(spec.sliver_urn))) or ()
        try:
            return sync_plane(plane, fib_entries(comp, spec, routes))
        except (RouteError, ValueError) as exc:
            raise DriverError(str(exc)) from None

    def _teardown_fib(self, tag: str) -> None:
        for phys in sorted(set(self._bridges.values())):
            if phys in self.ovs.bridges():
                self.ovs.del_flows(phys, cookie_match(self.naming.fib_cookie(tag)))
                self.ovs.vsctl("remove", "bridge", phys, "external_ids", f"{FIB_IDS}{tag}")
        self.routes.drop(self._fib_handle(tag))

    def set_routes(self, spec: SliverSpec, routes: Iterable[Route]) -> SyncResult | None:
        """Replace a router's route set; if its plane is forwarding, sync the flows now."""
        comp, phys, tag = self._fib_resolve(spec)
        try:
            routes = self.check_routes(spec, routes)
        except RouteError as exc:
            raise DriverError(str(exc)) from None
        if tag not in self._fib_owners(phys):
            raise DriverError(f"sliver {spec.sliver_urn} is not provisioned on {phys}")
        self.routes.put(self._fib_handle(tag), routes)
        if self.status(spec) is OperationalState.READY:
            return self._sync_fib(comp, spec, self.fib_plane(spec))
        return None

    def check_routes(self, spec: SliverSpec, routes: Iterable[Route]) -> tuple[Route, ...]:
        """Pure: normalised routes or RouteError / RouteTableFull (see drivers.openflow.fib)."""
        if not _is_fib(spec):
            raise RouteError(f"sliver {spec.client_id} is a slice flowspace, not a router")
        comp = self._component_by_urn(spec.component_id)
        if comp is None:
            raise RouteError(f"no OpenFlow datapath {spec.component_id}")
        return check_fib_routes(comp, spec, routes, self.fib_routes)

    def control_routes(self, spec: SliverSpec) -> tuple[Route, ...]:
        return self.routes.get(self._fib_handle(self.naming.tag(spec.sliver_urn))) or ()

    def _status_text(self, bridge: str, ports: Mapping[int, str]) -> str:
        return (f"slice bridge {bridge}; ports "
                f"{', '.join(f'{n}({name})' for n, name in sorted(ports.items()))}")


def _is_cable(spec: SliverSpec) -> bool:
    return spec.kind is ResourceKind.LINK and spec.link is not None and spec.link.mode == "cable"


def _kbps(spec: SliverSpec) -> int | None:
    return spec.link.capacity_kbps if spec.link is not None else None


def _marked_slivers(handle_of, owners: Mapping[str, str], flows: Mapping[str, int],
                    what: str) -> list[ObservedSliver]:
    """Slivers known by their flows' own cookie mark and an owner in the bridge's external_ids
    (FIBs, stitched links): ready with flows, not ready without, failed with no owner."""
    out = []
    for tag in sorted(set(owners) | set(flows)):
        n = flows.get(tag, 0)
        out.append(ObservedSliver(
            handle=handle_of(tag), sliver_urn=owners.get(tag),
            state=(OperationalState.READY if n else OperationalState.NOTREADY)
            if tag in owners else OperationalState.FAILED, detail=f"{what}: flows={n}"))
    return out


def _is_stitch(spec: SliverSpec) -> bool:
    return spec.kind is ResourceKind.LINK and spec.link is not None and spec.link.mode == "stitch"


def _stitch_ports(comp: Component, spec: SliverSpec) -> set[int]:
    """The datapath port numbers a stitched link's switch half uses (none for other slivers)."""
    if not _is_stitch(spec):
        return set()
    nums = {p.name: p.num for p in comp.ports}
    return {n for n in (nums.get(spec.params.get("switch_port")),
                        nums.get(spec.params.get("edge_port"))) if n is not None}


def _cable_port_nums(comp: Component, spec: SliverSpec) -> set[int]:
    """OpenFlow numbers of the site cables' ports a link through the switch carries."""
    names = set(spec.params.get("cable_ports") or ())
    return {p.num for p in comp.ports if p.name in names and p.num is not None}


def _is_switch_link(spec: SliverSpec) -> bool:
    return spec.kind is ResourceKind.LINK and spec.link is not None and \
        spec.link.mode == SWITCH_MODE


def _is_fib(spec: SliverSpec) -> bool:
    return spec.kind is ResourceKind.NODE and (spec.sliver_type or "").lower() == FIB_TYPE


def _mac_for(sliver_urn: str, client_id: str) -> str:
    """A locally administered unicast MAC for a router port the AM gave none."""
    h = hashlib.sha256(f"{sliver_urn}|{client_id}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *h[:5]))


__all__ = ["FIB_TYPE", "FLOWSPACE_TYPE", "OpenFlowDriver"]
