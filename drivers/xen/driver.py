"""Xen VM slivers through libvirt, with the guest / Dom0 forwarding modes of virtual routers.

Production talks to `xen:///system`; tests and the bench use libvirt's in-process test driver
(`test:///default`), which accepts `<domain type='xen'>`. Admission models the host: vCPUs,
memory, and the forwarding limit measured for guest-forwarding virtual routers (about 10 per
host before everyone's forwarding falls, background.md); dom0-mode routers do not count
against it, and their routes are installed into Dom0's forwarding table (`drivers.xen.dom0`).

Cross-process honesty: the test driver's domains live in the memory of the process that made
them. So the driver keeps a record per sliver (`drivers.xen.records`) and, with a `test:` URI,
re-creates the domain in the local libvirt from the record before each operation. Status,
observed and actions then agree in every process (API server, workers). With a real URI
libvirtd holds the domains and the records only carry what libvirt cannot (Dom0 tables).
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import shutil
import tempfile
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import libvirt

from drivers.base import (
    CPU_MILLI,
    MEMORY_MB,
    Action,
    Admission,
    Capabilities,
    Component,
    DiskImage,
    DriverError,
    ForwardingMode,
    IsolationClass,
    Login,
    ObservedSliver,
    OperationalState,
    ProvisionResult,
    ResourceKind,
    SliverSpec,
    SubstrateDriver,
    Usage,
    milli,
    units,
)
from drivers.inventory import InventoryError, build_component, parse_forwarding
from drivers.routesync import (
    SYNC_ROUTES_ACTION,
    ControlPlaneRoutes,
    FibEntry,
    RouteError,
    SyncResult,
    normalise_all,
    sync_plane,
)
from drivers.xen.dom0 import Dom0Plane, IpCommand, ensure_stand_in_vifs, remove_stand_in_vifs
from drivers.xen.domain import (
    DOMAIN_PREFIX,
    DomainPlan,
    VifPlan,
    build_xml,
    deterministic_mac,
    handle_for,
    read_xml,
    vif_name,
)
from drivers.xen.records import DomainRecord, RecordStore
from rspec.model import Route

SYNC_ROUTES = SYNC_ROUTES_ACTION
XEN_SLIVER_TYPES = ("xen-vm", "emulab-xen", "default-vm")
TABLE_BASE = 0x10000          # Dom0 table ids: far above the ones people configure by hand
TABLE_SPAN = 0x7FFF0000

CONFIG_DEFAULTS: dict[str, Any] = {
    "uri": "test:///default",
    "state_dir": None,
    "dom0_netns": None,        # namespace standing in for Dom0 (tests); None = this namespace
    "simulate_vifs": None,     # None: on with a test: URI (its domains have no devices)
    "guest_router_limit": 10,
    "vcpus": 8,
    "memory_mb": 16384,
    "default_vcpus": 1,
    "default_memory_mb": 512,
    "bridge": "xenbr0",
    "image_dir": "/var/lib/geni-am/xen-images",
    "disk_images": [{"name": "debian-12", "os": "Linux", "version": "12", "default": True}],
    "forwarding_modes": ["dom0", "guest"],   # order = preference when a request leaves it open
}

_LIBVIRT_STATE = {
    libvirt.VIR_DOMAIN_RUNNING: OperationalState.READY,
    libvirt.VIR_DOMAIN_BLOCKED: OperationalState.READY,
    libvirt.VIR_DOMAIN_PAUSED: OperationalState.NOTREADY,
    libvirt.VIR_DOMAIN_SHUTDOWN: OperationalState.STOPPING,
    libvirt.VIR_DOMAIN_SHUTOFF: OperationalState.NOTREADY,
    libvirt.VIR_DOMAIN_CRASHED: OperationalState.FAILED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: OperationalState.NOTREADY,
}


def _quiet_libvirt(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; ours are raised as DriverError."""


libvirt.registerErrorHandler(_quiet_libvirt, None)


class XenDriver(SubstrateDriver):
    kind: ClassVar[str] = "xen"
    cpu_unit: ClassVar[str] = "vCPUs"
    capabilities: ClassVar[Capabilities] = Capabilities(
        routes=True,
        isolation=IsolationClass.HYPERVISOR,
        sliver_types=XEN_SLIVER_TYPES,
        actions=(Action.START.value, Action.STOP.value, Action.RESTART.value,
                 Action.UPDATE_USERS.value, SYNC_ROUTES),
        forwarding_modes=(ForwardingMode.DOM0, ForwardingMode.GUEST),
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
            self.state_dir = Path(tempfile.mkdtemp(prefix="geni-am-xen-"))
            self._owns_state_dir = True
        self.records = RecordStore(self.state_dir / "domains")
        self.routes = ControlPlaneRoutes(self.state_dir / "routes")
        self._components = [self._component(t) for t in components]
        self._conns: dict[str, libvirt.virConnect] = {}
        self._lock = threading.RLock()

    # ---- inventory ------------------------------------------------------------------------------
    def _component(self, table: Mapping[str, Any]) -> Component:
        s = self.settings
        t = dict(table)
        t.setdefault("disk_images", s["disk_images"])
        t.setdefault("hardware_types", ("xen-host",))
        extra = dict(t.get("extra", {}))
        for key in ("uri", "dom0_netns", "bridge"):
            if key in extra and (extra[key] is not None and not isinstance(extra[key], str)):
                raise InventoryError("must be a string", table=t.get("_table", "components"),
                                     key=f"extra.{key}")
        t["extra"] = {"uri": s["uri"], "dom0_netns": s["dom0_netns"], "bridge": s["bridge"],
                      **extra}
        comp = build_component(
            t, authority=self.authority, driver=self.kind,
            default_isolation=IsolationClass.HYPERVISOR, default_sliver_types=("xen-vm",),
            default_capacity={"cpu": float(s["vcpus"]), "memory_mb": float(s["memory_mb"]),
                              "guest_routers": float(s["guest_router_limit"])},
            default_forwarding=s["forwarding_modes"])
        bad = [m for m in comp.forwarding_modes
               if m not in (ForwardingMode.DOM0, ForwardingMode.GUEST)]
        if bad:
            raise InventoryError(f"a Xen host forwards in guest or dom0, not {bad[0].value}",
                                 table=t.get("_table", "components"), key="forwarding_modes")
        return comp

    def inventory(self) -> list[Component]:
        return list(self._components)

    # ---- admission (pure) -----------------------------------------------------------------------
    def admit_component(self, comp: Component, spec: SliverSpec, usage: Usage) -> Admission:
        host = comp.name
        if spec.kind is not ResourceKind.NODE:
            return Admission.refuse(f"Xen host {host} realises nodes, not {spec.kind.value}s",
                                    "UNSUPPORTED")
        if spec.sliver_type and spec.sliver_type.lower() not in XEN_SLIVER_TYPES:
            return Admission.refuse(f"Xen host {host} runs sliver types "
                                    f"{', '.join(XEN_SLIVER_TYPES)}, not {spec.sliver_type!r}",
                                    "UNSUPPORTED")
        wanted_iso = spec.params.get("isolation")
        if wanted_iso == IsolationClass.HARDWARE.value:
            return Admission.refuse(f"Xen host {host} isolates as hypervisor, weaker than the "
                                    "hardware isolation required", "UNSUPPORTED")
        if spec.exclusive:
            return Admission.refuse(f"Xen host {host} is shared between VMs; it is not given "
                                    "exclusively", "UNSUPPORTED")
        try:
            _image_for(comp, spec.disk_image)
        except DriverError as exc:
            return Admission.refuse(str(exc), "BADARGS")
        vcpus, memory = self._size(spec)
        demand: dict[str, int] = {CPU_MILLI: milli(vcpus), MEMORY_MB: units(memory)}
        if spec.router and spec.params.get("forwarding_plane") and \
                spec.forwarding in (ForwardingMode.HARDWARE, ForwardingMode.OPENFLOW):
            # a hybrid router's control plane: forwarding runs in a sliver of its own
            # (`forwarding_plane`), so neither the guest limit nor a Dom0 table applies here
            try:
                self._check_routes(spec)
            except RouteError as exc:
                return Admission.refuse(f"node {spec.client_id}: {exc}", "BADARGS")
        elif spec.router:
            mode = spec.forwarding or ForwardingMode.GUEST
            if mode not in comp.forwarding_modes:
                return Admission.refuse(
                    f"Xen host {host} does not offer {mode.value} forwarding (offers "
                    f"{', '.join(m.value for m in comp.forwarding_modes) or 'none'})",
                    "UNSUPPORTED")
            try:
                self._check_routes(spec)
            except RouteError as exc:
                return Admission.refuse(f"node {spec.client_id}: {exc}", "BADARGS")
            if mode is ForwardingMode.DOM0 and not spec.interfaces:
                return Admission.refuse(f"node {spec.client_id}: a dom0-forwarding router needs "
                                        "at least one interface for Dom0 to forward on",
                                        "BADARGS")
            if mode is ForwardingMode.GUEST:
                limit = units(comp.capacity.get("guest_routers",
                                                self.settings["guest_router_limit"]))
                counted = sum(1 for s in usage.slivers if s.router
                              and (s.forwarding or ForwardingMode.GUEST) is ForwardingMode.GUEST)
                used = max(units(usage.used.get("guest_routers", 0)), counted)
                if used + 1 > limit:
                    return Admission.refuse(
                        f"host {host} already forwards for {used:g} guest-forwarding virtual "
                        f"routers, its limit is {limit:g} (beyond it per-router and whole-host "
                        f"forwarding performance fall); ask for dom0 forwarding instead",
                        "INSUFFICIENT_NODES")
                demand["guest_routers"] = 1
        return Admission.accept(demand)   # the capacity check follows (SubstrateDriver.admit)

    def _size(self, spec: SliverSpec) -> tuple[int, int]:
        s = self.settings
        vcpus = math.ceil(spec.cpu) if spec.cpu else s["default_vcpus"]
        memory = int(spec.memory_mb) if spec.memory_mb else s["default_memory_mb"]
        return max(1, vcpus), memory

    @staticmethod
    def _check_routes(spec: SliverSpec) -> tuple[Route, ...]:
        routes = normalise_all(spec.routes)
        names = {i.client_id for i in spec.interfaces}
        for r in routes:
            if r.interface and r.interface not in names:
                raise RouteError(f"route to {r.destination} names interface {r.interface!r}, "
                                 "which the node does not have")
        return routes

    # ---- libvirt --------------------------------------------------------------------------------
    def _conn(self, comp: Component) -> libvirt.virConnect:
        uri = comp.extra["uri"]
        with self._lock:
            conn = self._conns.get(uri)
            if conn is None:
                try:
                    conn = libvirt.open(uri)
                except libvirt.libvirtError as exc:
                    raise DriverError(f"cannot connect to libvirt at {uri}: "
                                      f"{exc.get_error_message()}", transient=True) from None
                self._conns[uri] = conn
            return conn

    @staticmethod
    def _is_test(comp: Component) -> bool:
        return str(comp.extra["uri"]).startswith("test:")

    def _lookup(self, comp: Component, handle: str) -> libvirt.virDomain | None:
        try:
            return self._conn(comp).lookupByName(handle)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise DriverError(f"libvirt lookup of {handle} failed: {exc.get_error_message()}",
                              transient=True) from None

    def _converge(self, comp: Component, rec: DomainRecord | None, handle: str
                  ) -> libvirt.virDomain | None:
        """The domain as libvirt has it; with the test driver, first rebuilt from the record."""
        dom = self._lookup(comp, handle)
        if not self._is_test(comp):
            return dom
        with self._lock:
            if rec is None:
                if dom is not None:                 # deleted by another process
                    _destroy_and_undefine(dom)
                return None
            if dom is None:
                dom = self._define(comp, rec.xml)
            if rec.running and not dom.isActive():
                _call(dom.create, "start", handle)
            elif not rec.running and dom.isActive():
                _call(dom.destroy, "stop", handle)
            return dom

    def _define(self, comp: Component, xml: str) -> libvirt.virDomain:
        try:
            return self._conn(comp).defineXML(xml)
        except libvirt.libvirtError as exc:
            raise DriverError(f"libvirt refused the domain: {exc.get_error_message()}") from None

    # ---- life cycle -----------------------------------------------------------------------------
    def _comp(self, spec: SliverSpec) -> Component:
        comp = self._component_by_urn(spec.component_id)
        if comp is None:
            raise DriverError(f"no Xen host {spec.component_id}")
        return comp

    def provision(self, spec: SliverSpec) -> ProvisionResult:
        comp = self._comp(spec)
        handle = handle_for(spec.sliver_urn)
        rec = self.records.get(handle)
        if rec is None:
            rec = self._new_record(comp, spec, handle)
            self.records.put(rec)                   # record first: a crash leaves it to converge
            if self.routes.get(handle) is None:
                self.routes.put(handle, self._check_routes(spec))
        dom = self._lookup(comp, handle)
        if dom is None:
            dom = self._define(comp, rec.xml)
        self._converge(comp, rec, handle)
        logins = tuple(Login(hostname=_login_host(spec, comp), port=22, username=u.login)
                       for u in spec.users)
        status = f"Xen domain {handle} on {comp.name}"
        if spec.params.get("forwarding_sliver"):
            status += (f", control plane of a router forwarding in {rec.forwarding} "
                       f"({spec.params['forwarding_sliver']})")
        elif rec.forwarding:
            status += f", virtual router forwarding in {rec.forwarding}"
        return ProvisionResult(state=self._state(dom), macs=dict(rec.macs), logins=logins,
                               resource_status=status, handle=handle)

    def _new_record(self, comp: Component, spec: SliverSpec, handle: str) -> DomainRecord:
        image = _image_for(comp, spec.disk_image)
        vcpus, memory = self._size(spec)
        bridge = comp.extra["bridge"]
        vifs = tuple(VifPlan(client_id=i.client_id,
                             mac=(i.mac or deterministic_mac(handle, i.client_id)).lower(),
                             bridge=bridge, device=vif_name(handle, n))
                     for n, i in enumerate(spec.interfaces))
        plan = DomainPlan(name=handle, sliver_urn=spec.sliver_urn, host=comp.name, vcpus=vcpus,
                          memory_mb=memory,
                          disk_path=str(Path(self.settings["image_dir"]) / f"{_short(image.name)}.img"),
                          vifs=vifs)
        mode = (spec.forwarding or ForwardingMode.GUEST) if spec.router else None
        table = self._free_table(handle) if mode is ForwardingMode.DOM0 else None
        return DomainRecord(handle=handle, sliver_urn=spec.sliver_urn, host=comp.name,
                            xml=build_xml(plan), forwarding=mode.value if mode else None,
                            table=table, vifs=[v.device for v in vifs],
                            macs={v.client_id: v.mac for v in vifs},
                            vif_by_client={v.client_id: v.device for v in vifs})

    def _free_table(self, handle: str) -> int:
        used = self.records.tables_in_use()
        n = int(hashlib.sha256(handle.encode()).hexdigest(), 16) % TABLE_SPAN
        while TABLE_BASE + n in used:
            n = (n + 1) % TABLE_SPAN
        return TABLE_BASE + n

    def perform(self, spec: SliverSpec, action: str) -> OperationalState:
        comp = self._comp(spec)
        handle = handle_for(spec.sliver_urn)
        rec = self.records.get(handle)
        if rec is None:
            raise DriverError(f"sliver {spec.sliver_urn} has no Xen domain (not provisioned)")
        dom = self._converge(comp, rec, handle) or self._define(comp, rec.xml)
        if action == Action.START.value:
            if not dom.isActive():
                _call(dom.create, "start", handle)
            rec.running = True
            self.records.put(rec)
            self._sync_forwarding(comp, rec)
        elif action == Action.STOP.value:
            self._clear_forwarding(comp, rec)
            rec.running = False
            self.records.put(rec)
            if dom.isActive():
                _call(dom.shutdown, "shut down", handle)
        elif action == Action.RESTART.value:
            if dom.isActive():
                _call(dom.reboot, "reboot", handle)
            else:
                _call(dom.create, "start", handle)
            rec.running = True
            self.records.put(rec)
            self._sync_forwarding(comp, rec)
        elif action == SYNC_ROUTES:
            if rec.running:
                self._sync_forwarding(comp, rec)
        elif action != Action.UPDATE_USERS.value:
            raise DriverError(f"action {action!r} is not supported by the Xen driver "
                              f"(supported: {', '.join(self.capabilities.actions)})")
        return self._state(dom)

    def status(self, spec: SliverSpec) -> OperationalState:
        comp = self._comp(spec)
        handle = handle_for(spec.sliver_urn)
        rec = self.records.get(handle)
        dom = self._converge(comp, rec, handle)
        return self._state(dom) if dom is not None else OperationalState.FAILED

    def delete(self, spec: SliverSpec) -> None:
        comp = self._component_by_urn(spec.component_id)
        handle = handle_for(spec.sliver_urn)
        rec = self.records.get(handle)
        if comp is not None:
            if rec is not None:
                self._clear_forwarding(comp, rec, remove_vifs=True)
            dom = self._lookup(comp, handle)
            if dom is not None:
                _destroy_and_undefine(dom)
        self.records.drop(handle)
        self.routes.drop(handle)

    def observed(self) -> list[ObservedSliver]:
        out: list[ObservedSliver] = []
        records = {r.handle: r for r in self.records.all()}
        seen_uris: set[str] = set()
        for comp in self._components:
            uri = comp.extra["uri"]
            if uri in seen_uris:
                continue
            seen_uris.add(uri)
            if self._is_test(comp):
                for rec in records.values():
                    owner = self._by_host(rec.host)
                    if owner is not None and owner.extra["uri"] == uri:
                        self._converge(owner, rec, rec.handle)
            try:
                doms = self._conn(comp).listAllDomains()
            except libvirt.libvirtError as exc:
                raise DriverError(f"libvirt at {uri} cannot list domains: "
                                  f"{exc.get_error_message()}", transient=True) from None
            for dom in doms:
                name = dom.name()
                if not name.startswith(DOMAIN_PREFIX):
                    continue
                if self._is_test(comp) and name not in records:
                    _destroy_and_undefine(dom)      # deleted by another process
                    continue
                facts = read_xml(dom.XMLDesc())
                out.append(ObservedSliver(handle=name, sliver_urn=facts.sliver_urn,
                                          state=self._state(dom),
                                          detail=f"Xen domain on {facts.host or '?'}, "
                                                 f"{facts.vcpus} vCPU, {facts.memory_kib // 1024} MiB"))
        return out

    def release(self, handle: str) -> None:
        rec = self.records.get(handle)
        for comp in self._components:
            if rec is not None and comp.name != rec.host:
                continue
            if rec is not None:
                self._clear_forwarding(comp, rec, remove_vifs=True)
            dom = self._lookup(comp, handle)
            if dom is not None:
                _destroy_and_undefine(dom)
        self.records.drop(handle)
        self.routes.drop(handle)

    def close(self) -> None:
        with self._lock:
            for conn in self._conns.values():
                try:
                    conn.close()
                except libvirt.libvirtError:
                    pass
            self._conns.clear()
        if self._owns_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self._owns_state_dir = False

    # ---- routes (hybrid routers) ----------------------------------------------------------------
    def set_routes(self, spec: SliverSpec, routes: Iterable[Route]) -> SyncResult | None:
        """Replace the route set the router's control plane holds and, if the router forwards
        in Dom0 and is running, bring Dom0's table in step. None when nothing was synced."""
        comp = self._comp(spec)
        handle = handle_for(spec.sliver_urn)
        rec = self.records.get(handle)
        if rec is None:
            raise DriverError(f"sliver {spec.sliver_urn} has no Xen domain (not provisioned)")
        try:
            routes = self.check_routes(spec, routes)
        except RouteError as exc:
            raise DriverError(str(exc)) from None
        self.routes.put(handle, routes)
        if rec.running:
            return self._sync_forwarding(comp, rec)
        return None

    def check_routes(self, spec: SliverSpec, routes: Iterable[Route]) -> tuple[Route, ...]:
        """Pure: the routes normalised, or RouteError (malformed, unknown interface). Dom0's
        tables have no fixed size, so nothing is too big here."""
        return self._check_routes(dataclasses.replace(spec, routes=tuple(routes)))

    def control_routes(self, spec: SliverSpec) -> tuple[Route, ...]:
        return self.routes.get(handle_for(spec.sliver_urn)) or ()

    def dom0_plane(self, spec: SliverSpec) -> Dom0Plane | None:
        """The Dom0 forwarding plane of a dom0-mode router (None for other slivers)."""
        comp = self._comp(spec)
        rec = self.records.get(handle_for(spec.sliver_urn))
        return self._plane(comp, rec) if rec is not None else None

    def _plane(self, comp: Component, rec: DomainRecord) -> Dom0Plane | None:
        if rec.forwarding != ForwardingMode.DOM0.value or rec.table is None:
            return None
        return Dom0Plane(IpCommand(comp.extra["dom0_netns"]), rec.table, rec.vifs)

    def _fib(self, rec: DomainRecord) -> set[FibEntry]:
        routes = self.routes.get(rec.handle) or ()
        default_dev = rec.vifs[0] if rec.vifs else None
        return {FibEntry(prefix=r.destination, gateway=r.gateway,
                         device=rec.vif_by_client.get(r.interface or "", default_dev))
                for r in routes}

    def _sync_forwarding(self, comp: Component, rec: DomainRecord) -> SyncResult | None:
        plane = self._plane(comp, rec)
        if plane is None:
            return None
        plane.ip.check_namespace()
        if self._simulate_vifs(comp):
            ensure_stand_in_vifs(plane.ip, rec.vifs)
        plane.bind()
        return sync_plane(plane, self._fib(rec))

    def _clear_forwarding(self, comp: Component, rec: DomainRecord, *,
                          remove_vifs: bool = False) -> None:
        plane = self._plane(comp, rec)
        if plane is None:
            return
        try:
            plane.ip.check_namespace()
        except DriverError:
            return                                  # Dom0 stand-in gone: nothing left to clear
        plane.clear()
        if remove_vifs and self._simulate_vifs(comp):
            remove_stand_in_vifs(plane.ip, rec.vifs)

    def _simulate_vifs(self, comp: Component) -> bool:
        flag = self.settings["simulate_vifs"]
        return self._is_test(comp) if flag is None else bool(flag)

    def _by_host(self, name: str) -> Component | None:
        return next((c for c in self._components if c.name == name), None)

    @staticmethod
    def _state(dom: libvirt.virDomain) -> OperationalState:
        try:
            state, _reason = dom.state()
        except libvirt.libvirtError:
            return OperationalState.FAILED
        return _LIBVIRT_STATE.get(state, OperationalState.FAILED)

    # ---- test helpers ---------------------------------------------------------------------------
    def domain_xml(self, spec: SliverSpec) -> str | None:
        """The domain XML libvirt holds for this sliver (None when it has none)."""
        comp = self._comp(spec)
        handle = handle_for(spec.sliver_urn)
        dom = self._converge(comp, self.records.get(handle), handle)
        return dom.XMLDesc() if dom is not None else None


# ---- helpers ---------------------------------------------------------------------------------

def _call(fn, what: str, handle: str) -> None:
    try:
        fn()
    except libvirt.libvirtError as exc:
        raise DriverError(f"cannot {what} domain {handle}: {exc.get_error_message()}") from None


def _destroy_and_undefine(dom: libvirt.virDomain) -> None:
    try:
        if dom.isActive():
            dom.destroy()
        dom.undefine()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise DriverError(f"cannot remove domain: {exc.get_error_message()}") from None


def _short(name: str) -> str:
    """An image's short name: the last part of a URN or path."""
    return name.rsplit("+", 1)[-1].rsplit("/", 1)[-1].rsplit("//", 1)[-1]


def _image_for(comp: Component, wanted: str | None) -> DiskImage:
    images = [img for st in comp.sliver_types for img in st.disk_images]
    if not images:
        raise DriverError(f"host {comp.name} advertises no disk images")
    if not wanted:
        return next((i for i in images if i.default), images[0])
    for img in images:
        if wanted == img.name or _short(wanted) == _short(img.name):
            return img
    raise DriverError(f"disk image {wanted!r} is not offered on host {comp.name} (offered: "
                      f"{', '.join(sorted({i.name for i in images}))})")


def _login_host(spec: SliverSpec, comp: Component) -> str:
    for iface in spec.interfaces:
        for addr, _mask in iface.ips:
            return addr
    return comp.name


def _validate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    table = "drivers.xen"
    unknown = set(config) - set(CONFIG_DEFAULTS)
    if unknown:
        raise InventoryError(f"unknown key (allowed: {', '.join(sorted(CONFIG_DEFAULTS))})",
                             table=table, key=sorted(unknown)[0])
    s = {**CONFIG_DEFAULTS, **config}
    for key in ("guest_router_limit", "vcpus", "memory_mb", "default_vcpus", "default_memory_mb"):
        v = s[key]
        low = 0 if key == "guest_router_limit" else 1
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise InventoryError(f"must be an integer >= {low}, not {v!r}", table=table, key=key)
    for key in ("uri", "bridge", "image_dir"):
        if not isinstance(s[key], str) or not s[key]:
            raise InventoryError("must be a non-empty string", table=table, key=key)
    for key in ("state_dir", "dom0_netns"):
        if s[key] is not None and (not isinstance(s[key], str) or not s[key]):
            raise InventoryError("must be a non-empty string", table=table, key=key)
    if s["simulate_vifs"] is not None and not isinstance(s["simulate_vifs"], bool):
        raise InventoryError("must be true or false", table=table, key="simulate_vifs")
    if not isinstance(s["forwarding_modes"], (list, tuple)) or not s["forwarding_modes"]:
        raise InventoryError("must be a non-empty list of forwarding modes", table=table,
                             key="forwarding_modes")
    modes = tuple(parse_forwarding(m, table, "forwarding_modes") for m in s["forwarding_modes"])
    if any(m not in (ForwardingMode.DOM0, ForwardingMode.GUEST) for m in modes):
        raise InventoryError("a Xen host forwards in guest or dom0 only", table=table,
                             key="forwarding_modes")
    s["forwarding_modes"] = modes
    images = s["disk_images"]
    if not isinstance(images, list) or not images:
        raise InventoryError("must be a non-empty list of images", table=table, key="disk_images")
    s["disk_images"] = tuple(_parse_image(img, table, i) for i, img in enumerate(images))
    return s


def _parse_image(img: Any, table: str, i: int) -> DiskImage:
    if isinstance(img, DiskImage):
        return img
    if isinstance(img, str):
        img = {"name": img}
    if not isinstance(img, dict) or not isinstance(img.get("name"), str) or not img["name"]:
        raise InventoryError("must be an image name or {name=..., os=..., version=...}",
                             table=table, key=f"disk_images[{i}]")
    return DiskImage(name=img["name"], os=str(img.get("os", "Linux")),
                     version=str(img.get("version", "")),
                     description=str(img.get("description", "")),
                     default=bool(img.get("default", False)))


__all__ = ["SYNC_ROUTES", "XEN_SLIVER_TYPES", "XenDriver"]
