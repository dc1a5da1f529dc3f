"""NetFPGA cards as hardware virtual data planes (sliver type `netfpga-vdp`).

Each card has physical ports (nf0..nf3) and a fixed number of virtual data plane slots, each
with fixed-size route and filter tables. A sliver takes one slot, its ports (untagged: the
port is its alone) or a VLAN on them, and its routes. Admission is pure and refuses what the
hardware cannot hold: no slot left, more routes than a route table has entries, more own
addresses than the filter table has, a port already taken.

Slots are counted as the capacity `vdp_slots` (so the store's CHECK constraint stops two
racing requests from taking the last slot); the slot *number* is bound at provision under the
card lock, because admission cannot know which number a concurrent allocation will free.
Ports are claims (`port:nf0`, `port:nf0:vlan:100`).

There is no NetFPGA hardware here: each card is emulated (`drivers.netfpga.card`), a process
that compiles the card's registers into an Open vSwitch userspace pipeline whose ports are real
interfaces. The driver only ever reads and writes registers; it learns whether the pipeline
runs, and which configuration it runs, from the card's pipeline registers, so a card whose
process is gone reports its slivers `geni_failed` with the reason (`card_process = true`, the
default; `false` leaves a register-only card that forwards nothing, for unit tests).
"""
from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from drivers.base import (
    Action,
    Admission,
    Capabilities,
    Component,
    DriverError,
    ForwardingMode,
    InterfaceSpec,
    IsolationClass,
    ObservedSliver,
    OperationalState,
    ProvisionResult,
    ResourceKind,
    SliverSpec,
    SubstrateDriver,
    Usage,
)
from drivers.inventory import InventoryError, build_component
from drivers.netfpga.card import CardNames, EmulatedCard, check_prefix
from drivers.netfpga.pipeline import MAX_ACCESS_PORT
from drivers.netfpga.plane import NetFPGAPlane, port_name
from drivers.netfpga.registers import CardTables, RegisterError
from drivers.netfpga.simulated import Geometry, SimulatedCard
from drivers.routesync import (
    SYNC_ROUTES_ACTION,
    ControlPlaneRoutes,
    FibEntry,
    RouteError,
    RouteTableFull,
    SyncResult,
    normalise_all,
    sync_plane,
)
from rspec.model import Route

SLIVER_TYPE = "netfpga-vdp"
SYNC_ROUTES = SYNC_ROUTES_ACTION

CONFIG_DEFAULTS: dict[str, Any] = {
    "state_dir": None,
    "ports": 4,
    "slots": 4,
    "route_table_size": 32,
    "filter_table_size": 8,
    "arp_table_size": 32,
    "card_process": True,          # an emulated card process runs each card's pipeline
    "apply_timeout_s": 5.0,        # how long a change waits for the pipeline to run it
    "heartbeat_stale_s": 5.0,      # a pipeline silent for longer is reported down
}
EMULATION = ("emulated NetFPGA card: its registers drive an Open vSwitch userspace pipeline "
             "(no NetFPGA hardware on this host)")


class NetFPGADriver(SubstrateDriver):
    kind: ClassVar[str] = "netfpga"
    capabilities: ClassVar[Capabilities] = Capabilities(
        routes=True,
        isolation=IsolationClass.HARDWARE,
        sliver_types=(SLIVER_TYPE,),
        actions=(Action.START.value, Action.STOP.value, Action.RESTART.value,
                 Action.UPDATE_USERS.value, SYNC_ROUTES),
        forwarding_modes=(ForwardingMode.HARDWARE,),
        cpu_ports=True,              # an emulated card's slot punts to <prefix>h<slot>
    )

    def __init__(self, config: Mapping[str, Any], components: list[Mapping[str, Any]],
                 *, authority: str):
        super().__init__(config, components, authority=authority)
        self.settings = _validate_config(config)
        s = self.settings
        if s["state_dir"]:
            self.state_dir = Path(s["state_dir"]).expanduser()
            self._owns_state_dir = False
        else:
            self.state_dir = Path(tempfile.mkdtemp(prefix="geni-am-netfpga-"))
            self._owns_state_dir = True
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.routes = ControlPlaneRoutes(self.state_dir / "routes")
        self.geometry = Geometry(ports=s["ports"], slots=s["slots"],
                                 route_depth=s["route_table_size"],
                                 filter_depth=s["filter_table_size"],
                                 arp_depth=s["arp_table_size"])
        try:
            self.geometry.validate()
        except RegisterError as exc:
            raise InventoryError(str(exc), table="drivers.netfpga") from None
        self._components = [self._component(t) for t in components]
        self._cards: dict[str, tuple[SimulatedCard, CardTables]] = {}
        self._lock = threading.Lock()

    # ---- inventory ------------------------------------------------------------------------------
    def _component(self, table: Mapping[str, Any]) -> Component:
        t = dict(table)
        where = t.get("_table", "components")
        if "ports" in t:
            raise InventoryError("a NetFPGA card's ports are nf0..nf{n-1} (set [drivers.netfpga] "
                                 "ports)", table=where, key="ports")
        t["ports"] = tuple({"name": port_name(i), "num": i, "capacity_kbps": 1_000_000}
                           for i in range(self.geometry.ports))
        t.setdefault("hardware_types", ("netfpga-card", "netfpga-card-emulated")
                     if self.settings["card_process"] else ("netfpga-card",))
        extra = dict(t.get("extra", {}))
        card_file = extra.get("card_file", str(self.state_dir / f"{t['name']}.card"))
        if not isinstance(card_file, str) or not card_file:
            raise InventoryError("must be a path string", table=where, key="extra.card_file")
        prefix = extra.get("iface_prefix", "".join(ch for ch in str(t["name"]).lower()
                                                    if ch.isalnum())[:9])
        try:
            check_prefix(prefix)
        except DriverError as exc:
            raise InventoryError(str(exc), table=where, key="extra.iface_prefix") from None
        rundir = extra.get("card_rundir", str(self.state_dir / f"{t['name']}.run"))
        if not isinstance(rundir, str) or not rundir:
            raise InventoryError("must be a path string", table=where, key="extra.card_rundir")
        g = self.geometry
        t["extra"] = {**extra, "card_file": card_file, "slots": g.slots,
                      "route_table_size": g.route_depth, "filter_table_size": g.filter_depth,
                      "arp_table_size": g.arp_depth, "iface_prefix": prefix,
                      "card_rundir": rundir,
                      # the card's ports are host interfaces another driver may take (links)
                      **({"wires": {port_name(i): CardNames(prefix).wire(i)
                                    for i in range(g.ports)},
                          # a VLAN of a port, tag popped (the card's breakout): str.format(vlan=)
                          "vlan_wires": {port_name(i): CardNames(prefix).access_pattern(i)
                                         for i in range(min(g.ports, MAX_ACCESS_PORT + 1))}}
                         if self.settings["card_process"] else {}),
                      "emulation": EMULATION if self.settings["card_process"] else
                      "register model only: no pipeline, forwards nothing"}
        comp = build_component(t, authority=self.authority, driver=self.kind,
                               default_isolation=IsolationClass.HARDWARE,
                               default_sliver_types=(SLIVER_TYPE,),
                               default_capacity={"vdp_slots": float(g.slots)},
                               default_forwarding=(ForwardingMode.HARDWARE,))
        if comp.isolation is not IsolationClass.HARDWARE:
            raise InventoryError("a NetFPGA card isolates as hardware", table=where,
                                 key="isolation")
        return comp

    def inventory(self) -> list[Component]:
        return list(self._components)

    # ---- admission (pure) -----------------------------------------------------------------------
    def admit_component(self, comp: Component, spec: SliverSpec, usage: Usage) -> Admission:
        card = comp.name
        g = self.geometry
        if spec.kind is not ResourceKind.NODE:
            return Admission.refuse(f"NetFPGA card {card} realises data plane nodes, not "
                                    f"{spec.kind.value}s", "UNSUPPORTED")
        if spec.sliver_type and spec.sliver_type.lower() != SLIVER_TYPE:
            return Admission.refuse(f"NetFPGA card {card} runs sliver type {SLIVER_TYPE}, not "
                                    f"{spec.sliver_type!r}", "UNSUPPORTED")
        if spec.exclusive:
            return Admission.refuse(f"NetFPGA card {card} is shared by slot; it is not given "
                                    "exclusively", "UNSUPPORTED")
        if spec.forwarding not in (None, ForwardingMode.HARDWARE):
            return Admission.refuse(f"NetFPGA card {card} forwards in hardware, not "
                                    f"{spec.forwarding.value}", "UNSUPPORTED")
        try:
            routes = self._check_routes(spec)
            ports, vlan = self._ports(comp, spec)
        except (RouteError, DriverError) as exc:
            return Admission.refuse(f"node {spec.client_id} on card {card}: {exc}", "BADARGS")
        if len(routes) > g.route_depth:
            return Admission.refuse(f"node {spec.client_id} has {len(routes)} routes; a data "
                                    f"plane's route table on card {card} holds {g.route_depth}",
                                    "TOOBIG")
        own = _own_addresses(spec.interfaces)
        if len(own) > g.filter_depth:
            return Admission.refuse(f"node {spec.client_id} has {len(own)} addresses; a data "
                                    f"plane's filter table on card {card} holds {g.filter_depth}",
                                    "TOOBIG")
        used = max(float(usage.used.get("vdp_slots", 0.0)), float(len(usage.slivers)))
        if used + 1 > g.slots:
            return Admission.refuse(f"card {card} has all {g.slots} virtual data plane slots "
                                    "taken", "INSUFFICIENT_NODES")
        for other in usage.slivers:
            try:
                o_ports, o_vlan = self._ports(comp, other)
            except DriverError:
                continue
            for p in sorted(ports & o_ports):
                if vlan == 0 or o_vlan == 0:
                    return Admission.refuse(f"port {p} of card {card} is taken by another data "
                                            f"plane{' (untagged)' if o_vlan == 0 else ''}",
                                            "INSUFFICIENT_NODES")
                if vlan == o_vlan:
                    return Admission.refuse(f"VLAN {vlan} on port {p} of card {card} is taken "
                                            "by another data plane", "VLAN_UNAVAILABLE")
        claims = tuple(f"port:{p}" if vlan == 0 else f"port:{p}:vlan:{vlan}"
                       for p in sorted(ports))
        return Admission.accept({"vdp_slots": 1.0}, claims)

    def _ports(self, comp: Component, spec: SliverSpec) -> tuple[set[str], int]:
        """The card ports a sliver uses (bound interface port, else nf<i> for its i-th
        interface) and its VLAN (0 = untagged). Pure, so any process computes the same."""
        by_urn = {p.component_id.lower(): p.name for p in comp.ports}
        names = {p.name for p in comp.ports}
        if len(spec.interfaces) > len(comp.ports):
            raise DriverError(f"{len(spec.interfaces)} interfaces, the card has "
                              f"{len(comp.ports)} ports")
        ports: list[str] = []
        for i, iface in enumerate(spec.interfaces):
            if iface.port:
                name = by_urn.get(iface.port.lower())
                if name is None:
                    raise DriverError(f"interface {iface.client_id} names port {iface.port}, "
                                      f"not one of {', '.join(sorted(names))}")
            else:
                name = port_name(i)
            if name in ports:
                raise DriverError(f"two interfaces on port {name}")
            ports.append(name)
        vlans = {iface.vlan_tag or 0 for iface in spec.interfaces}
        if len(vlans) > 1:
            raise DriverError("a data plane slot is selected by one VLAN; its interfaces ask "
                              f"for {', '.join(str(v) for v in sorted(vlans))}")
        vlan = vlans.pop() if vlans else 0
        if not 0 <= vlan <= 4094:
            raise DriverError(f"VLAN {vlan} is outside 1..4094")
        return set(ports), vlan

    @staticmethod
    def _check_routes(spec: SliverSpec) -> tuple[Route, ...]:
        routes = normalise_all(spec.routes)
        names = {i.client_id for i in spec.interfaces}
        for r in routes:
            if r.interface and r.interface not in names:
                raise RouteError(f"route to {r.destination} names interface {r.interface!r}, "
                                 "which the node does not have")
        if routes and not spec.interfaces:
            raise RouteError("a data plane with routes needs at least one interface (port)")
        return routes

    # ---- cards and slot ownership ---------------------------------------------------------------
    def card(self, comp: Component) -> tuple[SimulatedCard, CardTables]:
        with self._lock:
            found = self._cards.get(comp.name)
            if found is None:
                try:
                    sim = SimulatedCard(comp.extra["card_file"], self.geometry)
                    found = (sim, CardTables(sim))
                except (RegisterError, OSError) as exc:
                    raise DriverError(f"card {comp.name}: {exc}") from None
                self._cards[comp.name] = found
            return found

    def emulated_card(self, comp: Component) -> EmulatedCard:
        """The handle that starts and stops this card's emulation process (tests, site helper);
        the driver itself never starts it, as it would not power a real card on. The card file
        is created here first, with the configured geometry."""
        self.card(comp)
        return EmulatedCard(comp.extra["card_file"], comp.extra["card_rundir"],
                            comp.extra["iface_prefix"])

    def names(self, comp: Component) -> CardNames:
        return CardNames(comp.extra["iface_prefix"])

    def control_port(self, spec: SliverSpec) -> str | None:
        """The host interface of the slot's CPU port (`<prefix>h<slot>`), where a hybrid
        router's control plane is plugged in; None without a card process or a bound slot."""
        comp = self._comp(spec)
        slot = self.slot_of(spec)
        if slot is None or not self.settings["card_process"]:
            return None
        return self.names(comp).control(slot)

    def pipeline_problem(self, comp: Component) -> str | None:
        """Why the card's pipeline is not forwarding, read from its registers (None: it runs)."""
        if not self.settings["card_process"]:
            return None
        _sim, tables = self.card(comp)
        st = tables.pipeline()
        if st.pid == 0:
            return (f"emulated NetFPGA card {comp.name} has no pipeline process (start it: "
                    f"python -m drivers.netfpga.card start --card-file {comp.extra['card_file']} "
                    f"--rundir {comp.extra['card_rundir']} --prefix {comp.extra['iface_prefix']})")
        try:
            cmdline = Path(f"/proc/{st.pid}/cmdline").read_bytes()
        except OSError:
            cmdline = b""
        if b"drivers.netfpga.card" not in cmdline:
            return (f"emulated NetFPGA card {comp.name}: its pipeline process (pid {st.pid}) is "
                    "gone; the card forwards nothing until it is restarted")
        silent = time.time() - st.heartbeat
        if st.heartbeat and silent > self.settings["heartbeat_stale_s"]:
            return (f"emulated NetFPGA card {comp.name}: its pipeline process (pid {st.pid}) "
                    f"has not reported for {silent:.0f} s")
        return None

    def wait_applied(self, comp: Component, timeout: float | None = None) -> bool:
        """Wait until the card's pipeline runs the registers as they are now (a route change
        is in force when the job that made it ends). False: no pipeline, or it did not catch
        up in time."""
        if not self.settings["card_process"] or self.pipeline_problem(comp):
            return False
        _sim, tables = self.card(comp)
        deadline = time.monotonic() + (self.settings["apply_timeout_s"] if timeout is None
                                       else timeout)
        while not tables.pipeline().current:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def live_status(self, spec: SliverSpec) -> str | None:
        """geni_resource_status now: the slot, its ports, and its counters (or why the card
        is down)."""
        comp = self._component_by_urn(spec.component_id)
        if comp is None or spec.kind is not ResourceKind.NODE:
            return None
        slot = self.slot_of(spec)
        if slot is None:
            return None
        return self._describe(comp, slot)

    def _describe(self, comp: Component, slot: int) -> str:
        _sim, tables = self.card(comp)
        enabled, mask, vlan = tables.slot_config(slot)
        names = self.names(comp)
        ports = ", ".join(f"{port_name(p)} ({names.wire(p)})" for p in range(tables.ports)
                          if mask >> p & 1)
        where = (f"emulated NetFPGA card {comp.name} slot {slot}"
                 if self.settings["card_process"] else
                 f"NetFPGA card {comp.name} slot {slot} (register model only, forwards nothing)")
        text = (f"{where}, {'enabled' if enabled else 'disabled'}; ports {ports or 'none'}"
                f"{f' on VLAN {vlan}' if vlan else ' untagged'}")
        if not self.settings["card_process"]:
            return text
        problem = self.pipeline_problem(comp)
        if problem:
            return f"{text}; FAILED: {problem}"
        c = tables.slot_counters(slot)
        return (f"{text}; CPU port {names.control(slot)}; packets: {c['rx_packets']} in, "
                f"{c['forwarded']} forwarded, {c['to_cpu']} to CPU, dropped {c['dropped_no_route']} "
                f"no route, {c['dropped_ttl']} TTL expired, {c['dropped_arp_miss']} ARP miss")

    def _owners_path(self, comp: Component) -> Path:
        return Path(comp.extra["card_file"]).with_suffix(".owners.json")

    def _owners(self, comp: Component) -> dict[int, str]:
        try:
            return {int(k): v for k, v in json.loads(self._owners_path(comp).read_text()).items()}
        except FileNotFoundError:
            return {}

    def _save_owners(self, comp: Component, owners: dict[int, str]) -> None:
        path = self._owners_path(comp)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({str(k): v for k, v in sorted(owners.items())}))
        os.replace(tmp, path)

    def slot_of(self, spec: SliverSpec) -> int | None:
        comp = self._comp(spec)
        return next((s for s, u in self._owners(comp).items() if u == spec.sliver_urn), None)

    def _comp(self, spec: SliverSpec) -> Component:
        comp = self._component_by_urn(spec.component_id)
        if comp is None:
            raise DriverError(f"no NetFPGA card {spec.component_id}")
        return comp

    # ---- life cycle -----------------------------------------------------------------------------
    def provision(self, spec: SliverSpec) -> ProvisionResult:
        comp = self._comp(spec)
        sim, tables = self.card(comp)
        try:
            routes = self._check_routes(spec)
            ports, vlan = self._ports(comp, spec)
        except RouteError as exc:
            raise DriverError(str(exc)) from None
        with sim.locked():
            owners = self._owners(comp)
            slot = next((s for s, u in owners.items() if u == spec.sliver_urn), None)
            if slot is None:
                free = [s for s in range(tables.slots)
                        if s not in owners and not tables.slot_config(s)[0]]
                if not free:
                    raise DriverError(f"card {comp.name} has no free data plane slot",
                                      transient=True)
                slot = free[0]
                owners[slot] = spec.sliver_urn
                self._save_owners(comp, owners)
                mask = 0
                for p in ports:
                    mask |= 1 << int(p[2:])
                tables.configure_slot(slot, enabled=False, port_mask=mask, vlan=vlan)
                own = _own_addresses(spec.interfaces)
                for i in range(tables.filter_depth):
                    tables.write_filter(slot, i, own[i] if i < len(own) else None)
                NetFPGAPlane(tables, slot).clear()
                self.routes.put(_handle(comp, spec), routes)
                tables.clear_arp(slot)
        self.wait_applied(comp)
        return ProvisionResult(state=self._state(comp, tables, slot),
                               resource_status=self._describe(comp, slot),
                               handle=f"{comp.name}:slot{slot}")

    def perform(self, spec: SliverSpec, action: str) -> OperationalState:
        comp = self._comp(spec)
        sim, tables = self.card(comp)
        slot = self.slot_of(spec)
        if slot is None:
            raise DriverError(f"sliver {spec.sliver_urn} holds no slot on card {comp.name}")
        with sim.locked():
            enabled, mask, vlan = tables.slot_config(slot)
            if action in (Action.START.value, Action.RESTART.value):
                self._sync(comp, tables, slot, spec)
                tables.configure_slot(slot, enabled=True, port_mask=mask, vlan=vlan)
            elif action == Action.STOP.value:
                tables.configure_slot(slot, enabled=False, port_mask=mask, vlan=vlan)
                NetFPGAPlane(tables, slot).clear()
            elif action == SYNC_ROUTES:
                if enabled:
                    self._sync(comp, tables, slot, spec)
            elif action != Action.UPDATE_USERS.value:
                raise DriverError(f"action {action!r} is not supported by the NetFPGA driver "
                                  f"(supported: {', '.join(self.capabilities.actions)})")
        problem = self.pipeline_problem(comp)
        if problem and action != Action.STOP.value:
            raise DriverError(problem)     # the registers hold it; a restarted card runs it
        self.wait_applied(comp)
        return self._state(comp, tables, slot)

    def status(self, spec: SliverSpec) -> OperationalState:
        comp = self._comp(spec)
        _sim, tables = self.card(comp)
        slot = self.slot_of(spec)
        return OperationalState.FAILED if slot is None else self._state(comp, tables, slot)

    def delete(self, spec: SliverSpec) -> None:
        comp = self._component_by_urn(spec.component_id)
        if comp is None:
            return
        sim, tables = self.card(comp)
        with sim.locked():
            owners = self._owners(comp)
            for slot in [s for s, u in owners.items() if u == spec.sliver_urn]:
                self._wipe(tables, slot)
                del owners[slot]
            self._save_owners(comp, owners)
        self.routes.drop(_handle(comp, spec))

    def observed(self) -> list[ObservedSliver]:
        out = []
        for comp in self._components:
            _sim, tables = self.card(comp)
            owners = self._owners(comp)
            for slot in range(tables.slots):
                enabled, mask, vlan = tables.slot_config(slot)
                if slot not in owners and not enabled and not mask:
                    continue
                state = self._state(comp, tables, slot)
                problem = self.pipeline_problem(comp) if state is OperationalState.FAILED else None
                out.append(ObservedSliver(
                    handle=f"{comp.name}:slot{slot}", sliver_urn=owners.get(slot), state=state,
                    detail=problem or f"NetFPGA {comp.name} slot {slot}, port mask {mask:#x}, "
                                      f"vlan {vlan}"))
        return out

    def release(self, handle: str) -> None:
        name, _, slot_s = handle.partition(":slot")
        comp = next((c for c in self._components if c.name == name), None)
        if comp is None or not slot_s.isdigit():
            return
        sim, tables = self.card(comp)
        slot = int(slot_s)
        if slot >= tables.slots:
            return
        with sim.locked():
            self._wipe(tables, slot)
            owners = self._owners(comp)
            owners.pop(slot, None)
            self._save_owners(comp, owners)

    def close(self) -> None:
        with self._lock:
            for sim, _t in self._cards.values():
                sim.close()
            self._cards.clear()
        if self._owns_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self._owns_state_dir = False

    # ---- routes ---------------------------------------------------------------------------------
    def set_routes(self, spec: SliverSpec, routes: Iterable[Route]) -> SyncResult | None:
        """Replace the control plane's routes; if the slot is enabled, sync its table now."""
        comp = self._comp(spec)
        sim, tables = self.card(comp)
        try:
            routes = self.check_routes(spec, routes)
        except RouteError as exc:
            raise DriverError(str(exc)) from None
        slot = self.slot_of(spec)
        if slot is None:
            raise DriverError(f"sliver {spec.sliver_urn} holds no slot on card {comp.name}")
        self.routes.put(_handle(comp, spec), routes)
        result = None
        with sim.locked():
            if tables.slot_config(slot)[0]:
                result = self._sync(comp, tables, slot, spec)
        self.wait_applied(comp)
        return result

    def check_routes(self, spec: SliverSpec, routes: Iterable[Route]) -> tuple[Route, ...]:
        """Pure: the routes normalised, or RouteError (malformed, unknown interface) /
        RouteTableFull (more than a slot's route table holds)."""
        comp = self._comp(spec)
        routes = self._check_routes(dataclasses.replace(spec, routes=tuple(routes)))
        depth = self.geometry.route_depth
        if len(routes) > depth:
            raise RouteTableFull(f"{len(routes)} routes do not fit a data plane's route table "
                                 f"on card {comp.name} ({depth} entries)")
        return routes

    def control_routes(self, spec: SliverSpec) -> tuple[Route, ...]:
        return self.routes.get(_handle(self._comp(spec), spec)) or ()

    def plane(self, spec: SliverSpec) -> NetFPGAPlane | None:
        slot = self.slot_of(spec)
        return None if slot is None else NetFPGAPlane(self.card(self._comp(spec))[1], slot)

    def _sync(self, comp: Component, tables: CardTables, slot: int,
              spec: SliverSpec) -> SyncResult:
        routes = self.routes.get(_handle(comp, spec)) or ()
        ports, _vlan = self._ports(comp, spec)
        by_client = {}
        for i, iface in enumerate(spec.interfaces):
            by_client[iface.client_id] = next(
                (p.name for p in comp.ports if iface.port and p.component_id.lower() == iface.port.lower()),
                port_name(i))
        default = sorted(ports)[0] if ports else None
        fib = {FibEntry(prefix=r.destination, gateway=r.gateway,
                        device=by_client.get(r.interface or "", default)) for r in routes}
        return sync_plane(NetFPGAPlane(tables, slot, one_pass=True), fib)

    @staticmethod
    def _wipe(tables: CardTables, slot: int) -> None:
        NetFPGAPlane(tables, slot).clear()
        for i in range(tables.filter_depth):
            tables.write_filter(slot, i, None)
        tables.clear_arp(slot)
        tables.configure_slot(slot, enabled=False, port_mask=0, vlan=0)

    def _state(self, comp: Component, tables: CardTables, slot: int) -> OperationalState:
        if self.pipeline_problem(comp):
            return OperationalState.FAILED
        return OperationalState.READY if tables.slot_config(slot)[0] else OperationalState.NOTREADY


def _handle(comp: Component, spec: SliverSpec) -> str:
    return f"{comp.name}-" + hashlib.sha256(spec.sliver_urn.encode()).hexdigest()[:16]


def _own_addresses(interfaces: Iterable[InterfaceSpec]) -> list[str]:
    out: list[str] = []
    for iface in interfaces:
        for addr, _mask in iface.ips:
            a = str(ipaddress.IPv4Address(addr)) if _is_v4(addr) else None
            if a and a not in out:
                out.append(a)
    return out


def _is_v4(addr: str) -> bool:
    try:
        ipaddress.IPv4Address(addr)
        return True
    except ValueError:
        return False


def _validate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    table = "drivers.netfpga"
    unknown = set(config) - set(CONFIG_DEFAULTS)
    if unknown:
        raise InventoryError(f"unknown key (allowed: {', '.join(sorted(CONFIG_DEFAULTS))})",
                             table=table, key=sorted(unknown)[0])
    s = {**CONFIG_DEFAULTS, **config}
    for key in ("ports", "slots", "route_table_size", "filter_table_size", "arp_table_size"):
        v = s[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InventoryError(f"must be an integer >= 1, not {v!r}", table=table, key=key)
    if not isinstance(s["card_process"], bool):
        raise InventoryError(f"must be true or false, not {s['card_process']!r}", table=table,
                             key="card_process")
    for key in ("apply_timeout_s", "heartbeat_stale_s"):
        v = s[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 3600:
            raise InventoryError(f"must be a number of seconds in (0, 3600), not {v!r}",
                                 table=table, key=key)
    if s["state_dir"] is not None and (not isinstance(s["state_dir"], str) or not s["state_dir"]):
        raise InventoryError("must be a path string", table=table, key="state_dir")
    return s


__all__ = ["NetFPGADriver", "SLIVER_TYPE", "SYNC_ROUTES"]
