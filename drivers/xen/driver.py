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
import ipaddress
import math
import re
import shutil
import socket
import tempfile
import threading
import time
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
    with_vif,
)
from drivers import hostnet
from drivers.images.store import Image, ImageError, ImageStore
from drivers.xen import guest as guestmod
from drivers.xen import plumbing
from drivers.xen.domain import BootPlan, domain_type_for
from drivers.xen.records import DomainRecord, RecordStore
from rspec.model import Route

SYNC_ROUTES = SYNC_ROUTES_ACTION
CPU_CLIENT = "geni-cpu"       # the control-plane VM's NIC on its forwarding plane's CPU port
CPU_NAME = "cpu0"             # its name in the guest (as in a control-plane container)
IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
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
    # real guests (any URI but test:): images, boot, logins, host interface names
    "image_store": None,       # the image store folder; VMs boot its `vm` images
    "default_image": "vm-initramfs",   # the store image a request naming none boots
    "domain_type": "auto",     # auto (kvm if the host offers it, else qemu) | kvm | qemu
    "ssh_address": "127.0.0.1",  # where each VM's SSH login is forwarded from
    "ssh_ports": [22000, 22999],  # ports handed to VM logins (inclusive)
    "boot_timeout_s": 120,     # a guest not up by then is geni_failed
    "ifname_prefix": "vt",     # guest taps <prefix><8 hex>.<n>, link bridges <prefix>b<10 hex>
    "tc_latency_ms": 50,
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
        links=True,
        wires=True,                  # a card port's wire joins the link's bridge, beside the tap
        bridge_ports=True,
        control_ports=True,          # a control-plane VM's cpu0 bridged to a slot's CPU port
        link_properties=hostnet.TC_LINK_PROPERTIES,   # tbf on the member taps; no netem here
    )
    shaping_note: ClassVar[str] = hostnet.NO_NETEM

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
        self.links = plumbing.LinkStore(self.state_dir / "links")
        self.images = ImageStore(s["image_store"]) if s["image_store"] else None
        self._components = [self._component(t) for t in components]
        self._conns: dict[str, libvirt.virConnect] = {}
        self._lock = threading.RLock()

    # ---- inventory ------------------------------------------------------------------------------
    def _component(self, table: Mapping[str, Any]) -> Component:
        s = self.settings
        t = dict(table)
        t.setdefault("disk_images", self._store_images() if self.images else s["disk_images"])
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

    def _store_images(self) -> tuple[DiskImage, ...]:
        """The store's VM images, advertised as the hosts' disk images (read at start-up)."""
        assert self.images is not None
        vms = [i for i in self.images.list() if i.kind == "vm"]
        if not vms:
            raise InventoryError(f"the image store {self.images.root} has no VM image; build "
                                 "one: geni-am image build vm-initramfs", table="drivers.xen",
                                 key="image_store")
        default = next((i.name for i in vms if i.name == self.settings["default_image"]),
                       vms[0].name)
        return tuple(DiskImage(name=i.name, os="Linux", version=i.meta.get("kernel_version", ""),
                               description=f"{i.description} ({i.digest[:19]})",
                               default=i.name == default) for i in vms)

    # ---- admission (pure) -----------------------------------------------------------------------
    def admit_component(self, comp: Component, spec: SliverSpec, usage: Usage) -> Admission:
        host = comp.name
        if spec.kind is ResourceKind.LINK and spec.link is not None:
            others = {e.component_id.lower() for e in spec.link.ends} - {comp.component_id.lower()}
            if spec.link.mode == "wire":
                wires = dict(spec.params.get("wires") or {})
                mine = {e.interface_client_id for e in spec.link.ends
                        if e.component_id.lower() == comp.component_id.lower()}
                if not wires or set(wires) != mine or len(set(wires.values())) != 1:
                    return Admission.refuse(f"link {spec.client_id}: a wire joins the link's "
                                            f"VM interfaces on {host}", "BADARGS")
                return Admission.accept({})
            if others:
                return Admission.refuse(f"Xen host {host} links only VMs on itself", "UNSUPPORTED")
            if spec.link.mode not in ("veth", "bridge"):
                return Admission.refuse(f"Xen host {host} makes links as bridges, not "
                                        f"{spec.link.mode}", "UNSUPPORTED")
            return Admission.accept({})
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
            if conn is not None and not self._is_test(comp):
                try:
                    alive = conn.isAlive()
                except libvirt.libvirtError:
                    alive = False
                if not alive:                       # libvirtd restarted or went away
                    self._conns.pop(uri, None)
                    conn = None
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
        if spec.kind is ResourceKind.LINK:
            return self._provision_link(comp, spec)
        if not self._is_test(comp):
            return self._provision_vm(comp, spec)
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
        if spec.kind is ResourceKind.LINK:
            return OperationalState.READY
        if not self._is_test(comp):
            return self._perform_vm(comp, spec, action)
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
        if spec.kind is ResourceKind.LINK:
            bridge = self._link_bridge(spec)
            return OperationalState.READY if self.links.get(bridge) else OperationalState.FAILED
        if not self._is_test(comp):
            return self._vm_status(comp, self.records.get(handle_for(spec.sliver_urn)))
        handle = handle_for(spec.sliver_urn)
        rec = self.records.get(handle)
        dom = self._converge(comp, rec, handle)
        return self._state(dom) if dom is not None else OperationalState.FAILED

    def delete(self, spec: SliverSpec) -> None:
        comp = self._component_by_urn(spec.component_id)
        if spec.kind is ResourceKind.LINK:
            self._delete_link(self._link_bridge(spec))
            return
        handle = handle_for(spec.sliver_urn)
        if comp is not None and not self._is_test(comp):
            self._delete_vm(comp, handle)
            return
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
        out: list[ObservedSliver] = [
            ObservedSliver(handle=lk.bridge, sliver_urn=lk.sliver_urn, state=OperationalState.READY,
                           detail=f"link bridge {lk.bridge}") for lk in self.links.all()]
        records = {r.handle: r for r in self.records.all()}
        seen_uris: set[str] = set()
        for comp in self._components:
            uri = comp.extra["uri"]
            if uri in seen_uris:
                continue
            seen_uris.add(uri)
            if not self._is_test(comp):
                out += self._observed_vms(comp, records)
                continue
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
        if self.links.get(handle) is not None:
            self._delete_link(handle)
            return
        rec = self.records.get(handle)
        real = self._by_host(rec.host) if rec is not None else None
        if real is not None and not self._is_test(real):
            self._delete_vm(real, handle)
            return
        if rec is None:
            for comp in self._components:
                if not self._is_test(comp):
                    dom = self._lookup(comp, handle)
                    if dom is not None:
                        _destroy_and_undefine(dom)
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


    # ---- real guests through libvirtd (qemu:///system, xen:///system) ---------------------------
    def _image(self, comp: Component, wanted: str | None) -> Image:
        img = _image_for(comp, wanted)
        if self.images is None:
            raise DriverError(f"host {comp.name} boots real VMs but the driver has no "
                              "image_store configured")
        try:
            return self.images.get(img.name)
        except ImageError as exc:
            raise DriverError(f"disk image {img.name!r}: {exc}") from None

    def _domain_type(self, comp: Component) -> str:
        try:
            caps = self._conn(comp).getCapabilities()
        except libvirt.libvirtError as exc:
            raise DriverError(f"libvirt at {comp.extra['uri']} cannot tell its capabilities: "
                              f"{exc.get_error_message()}", transient=True) from None
        return domain_type_for(comp.extra["uri"], caps, self.settings["domain_type"])

    def _files(self, handle: str) -> guestmod.GuestFiles:
        return guestmod.GuestFiles(self.state_dir / "vms" / handle)

    def _link_bridge(self, spec: SliverSpec) -> str:
        return plumbing.link_bridge(self.settings["ifname_prefix"], spec.slice_urn, spec.client_id)

    def shared_bridge(self, slice_urn: str, link_client_id: str) -> str | None:
        """A VM interface on a link is a tap on this bridge (dom0-mode routers: the host end of
        their Dom0 port); other drivers' nodes join it for links that leave the VM host."""
        return plumbing.link_bridge(self.settings["ifname_prefix"], slice_urn, link_client_id)

    def _iface_bridge(self, spec: SliverSpec, iface) -> str:
        return plumbing.link_bridge(self.settings["ifname_prefix"], spec.slice_urn,
                                    iface.link_client_id or f"iface:{spec.client_id}:{iface.client_id}")

    def _free_ssh_port(self, handle: str) -> int:
        lo, hi = self.settings["ssh_ports"]
        used = {r.ssh_port for r in self.records.all() if r.handle != handle}
        start = lo + int(hashlib.sha256(handle.encode()).hexdigest(), 16) % (hi - lo + 1)
        for n in range(hi - lo + 1):
            port = lo + (start - lo + n) % (hi - lo + 1)
            if port in used:
                continue
            with socket.socket() as probe:
                try:
                    probe.bind((self.settings["ssh_address"], port))
                except OSError:
                    continue
            return port
        raise DriverError(f"no free SSH port in {lo}-{hi} on {self.settings['ssh_address']}",
                          transient=True)

    def _new_vm_record(self, comp: Component, spec: SliverSpec, handle: str) -> DomainRecord:
        image = self._image(comp, spec.disk_image)
        vcpus, memory = self._size(spec)
        hexpart = handle[len(DOMAIN_PREFIX):]
        mode = (spec.forwarding or ForwardingMode.GUEST) if spec.router else None
        dom0 = mode is ForwardingMode.DOM0
        control = _hardware_control_plane(spec)
        vifs, ports, bridges = [], [], []
        for n, i in enumerate(spec.interfaces):
            if control:        # its links plug into the slot's ports, never into this VM
                break
            mac = (i.mac or deterministic_mac(handle, i.client_id)).lower()
            bridge = self._iface_bridge(spec, i)
            bridges.append(bridge)
            if dom0:
                cidr = _cidr(i.ips[0]) if i.ips else None
                ports.append(plumbing.Dom0Port(vif=vif_name(handle, n), mac=mac, cidr=cidr,
                                               bridge=bridge))
            else:
                vifs.append(VifPlan(client_id=i.client_id, mac=mac, bridge=bridge,
                                    device=plumbing.tap_name(self.settings["ifname_prefix"],
                                                             hexpart, n)))
        files = self._files(handle)
        port = self._free_ssh_port(handle)
        dtype = self._domain_type(comp)
        boot = BootPlan(kernel=str(image.data / image.meta.get("kernel", "vmlinuz")),
                        initrd=str(files.initrd), console_log=str(files.console),
                        agent_socket=str(files.agent),
                        agent_port=image.meta.get("agent_port", "org.geni.agent.0"),
                        ssh_address=self.settings["ssh_address"], ssh_port=port,
                        mgmt_mac=deterministic_mac(handle, "geni-mgmt"))
        plan = DomainPlan(name=handle, sliver_urn=spec.sliver_urn, host=comp.name, vcpus=vcpus,
                          memory_mb=memory, disk_path="", vifs=tuple(vifs), boot=boot)
        table = self._free_table(handle) if dom0 else None
        macs = {i.client_id: (i.mac or deterministic_mac(handle, i.client_id)).lower()
                for i in spec.interfaces}
        dev_by_client = {v.client_id: v.device for v in vifs}
        dev_by_client.update({i.client_id: p.vif for i, p in zip(spec.interfaces, ports)})
        return DomainRecord(handle=handle, sliver_urn=spec.sliver_urn, host=comp.name,
                            xml=build_xml(plan, dtype), forwarding=mode.value if mode else None,
                            table=table, vifs=[p.vif for p in ports] if dom0 else
                            [v.device for v in vifs], macs=macs, vif_by_client=dev_by_client,
                            domain_type=dtype, hostname=guestmod.hostname_for(spec.client_id),
                            image=image.name, image_digest=image.digest, ssh_port=port,
                            bridges=sorted(set(bridges)),
                            dom0_ports=[dataclasses.asdict(p) for p in ports],
                            control_plane=control)

    def _write_boot(self, comp: Component, spec: SliverSpec, rec: DomainRecord) -> None:
        """The sliver's initrd: the image's initramfs + its config (re-made at every boot, so
        a restart boots with the keys and routes the AM has now)."""
        image = self._image(comp, rec.image)
        if image.digest != rec.image_digest:
            # the name was rebuilt since (new guest scripts): boot the content the sliver was
            # provisioned with, as its domain XML's kernel is (content-addressed, kept while
            # the store is not swept)
            assert self.images is not None
            try:
                image = self.images.get(rec.image_digest or "")
            except ImageError:
                raise DriverError(f"image {rec.image} changed since this sliver was provisioned "
                                  f"({rec.image_digest[:19] if rec.image_digest else '?'} -> "
                                  f"{image.digest[:19]}) and its old content is gone from the "
                                  "store") from None
        dom0 = rec.forwarding == ForwardingMode.DOM0.value
        ifaces = [guestmod.GuestIface(mac=deterministic_mac(rec.handle, "geni-mgmt"),
                                      cidr=guestmod.MGMT_ADDRESS, name=guestmod.MGMT_NAME)]
        routes = []
        forward = rec.forwarding == ForwardingMode.GUEST.value
        if rec.control_plane:
            forward = True      # so its kernel sends ICMP errors for what the plane punts
            if rec.control_port:
                ifaces += self._control_ifaces(spec, rec.control_port["mac"])
                routes = [guestmod.GuestRoute(destination=r.destination, gateway=r.gateway,
                                              mac=rec.control_port["mac"])
                          for r in self.routes.get(rec.handle) or normalise_all(spec.routes)]
        elif not dom0:     # each NIC named in the guest as the request's interface (eth1, ...)
            for i in spec.interfaces:
                ifaces.append(guestmod.GuestIface(mac=rec.macs[i.client_id],
                                                  cidr=_cidr(i.ips[0]) if i.ips else None,
                                                  name=i.name))
            for r in self.routes.get(rec.handle) or normalise_all(spec.routes):
                routes.append(guestmod.GuestRoute(
                    destination=r.destination, gateway=r.gateway,
                    mac=rec.macs.get(r.interface) if r.interface else None))
        lines = guestmod.config_lines(rec.hostname or "node", ifaces, routes, forward)
        self._files(rec.handle).write_initrd(
            image.data / image.meta.get("initrd", "initrd.img"), lines,
            guestmod.user_keys(spec.users))

    def _provision_vm(self, comp: Component, spec: SliverSpec) -> ProvisionResult:
        handle = handle_for(spec.sliver_urn)
        guestmod.user_keys(spec.users)                  # refuse bad logins before making anything
        with self._lock:
            rec = self.records.get(handle)
            if rec is None:
                rec = self._new_vm_record(comp, spec, handle)
                self.records.put(rec)
                if self.routes.get(handle) is None:
                    self.routes.put(handle, self._check_routes(spec))
        self._write_boot(comp, spec, rec)
        state = self._vm_status(comp, rec)
        return ProvisionResult(state=state, macs=dict(rec.macs), logins=self._vm_logins(spec, rec),
                               resource_status=self._vm_note(comp, rec), handle=handle)

    def _vm_note(self, comp: Component, rec: DomainRecord) -> str:
        note = (f"{rec.domain_type} domain {rec.handle} on {comp.name} (image {rec.image}), "
                f"SSH at {self.settings['ssh_address']}:{rec.ssh_port}")
        if rec.control_plane:
            cpu = rec.control_port
            note += (f", control plane of a router forwarding in hardware: cpu0 ({cpu['mac']}) "
                     f"plugged into its CPU port {cpu['wire']} (bridge {cpu['bridge']})" if cpu
                     else ", control plane of a router forwarding in hardware: waiting for its "
                          "forwarding plane's CPU port")
        elif rec.forwarding:
            note += f", virtual router forwarding in {rec.forwarding}"
        if rec.failure:
            note += f"; last boot failed: {rec.failure}"
        return note

    def live_status(self, spec: SliverSpec) -> str | None:
        """A hybrid router's control-plane VM says whether its CPU port is plugged in yet
        (the note stored at provision may predate the plug); other slivers: None."""
        if spec.kind is not ResourceKind.NODE:
            return None
        rec = self.records.get(handle_for(spec.sliver_urn))
        comp = self._component_by_urn(spec.component_id)
        if rec is None or comp is None or not rec.control_plane:
            return None
        return self._vm_note(comp, rec)

    def _vm_logins(self, spec: SliverSpec, rec: DomainRecord) -> tuple[Login, ...]:
        return tuple(Login(hostname=self.settings["ssh_address"], port=rec.ssh_port or 22,
                           username=u.login) for u in spec.users)

    def logins(self, spec: SliverSpec) -> tuple[Login, ...] | None:
        if spec.kind is not ResourceKind.NODE:
            return None
        rec = self.records.get(handle_for(spec.sliver_urn))
        if rec is None or rec.ssh_port is None:
            return None
        return self._vm_logins(spec, rec)

    def check_users(self, users) -> None:
        """Keys only, one line each, no root (the guest's accounts are made from them)."""
        guestmod.user_keys(users)

    def _active(self, comp: Component, handle: str) -> libvirt.virDomain | None:
        dom = self._lookup(comp, handle)
        try:
            return dom if dom is not None and dom.isActive() else None
        except libvirt.libvirtError:
            return None

    def _boot(self, comp: Component, spec: SliverSpec, rec: DomainRecord) -> OperationalState:
        """Start the guest (if it is not already booting) and return at once: READY if its
        console already says it is up, else CONFIGURING. The AM's job then asks again (a
        readiness poll: `perform(START)` on a booting sliver, see `_boot_progress`) without
        holding a worker while the guest boots."""
        if rec.running and rec.booting_since is not None and \
                self._active(comp, rec.handle) is not None:
            return self._boot_progress(comp, rec)       # a poll: the boot is under way
        if rec.running and rec.booting_since is None and not rec.failure and \
                self._active(comp, rec.handle) is not None and \
                self._files(rec.handle).ready(rec.hostname or "node"):
            return OperationalState.READY               # up already (a repeated start)
        if rec.control_plane and not rec.control_port:
            return self._await_control_port(rec)
        rec.waiting_since = None
        for p in rec.dom0_ports:
            plumbing.ensure_dom0_port(plumbing.Dom0Port(**p), comp.extra["dom0_netns"])
        for b in rec.bridges:
            hostnet.bridge_add(b)
        if rec.control_port:
            self._join_control_port(rec)
        self._write_boot(comp, spec, rec)
        files = self._files(rec.handle)
        if self._active(comp, rec.handle) is not None:
            self._stop_domain(comp, rec.handle)     # left by a crash mid-boot: boot afresh
        files.console.unlink(missing_ok=True)
        try:
            self._conn(comp).createXML(rec.xml, 0)
        except libvirt.libvirtError as exc:
            code = exc.get_error_code()
            transient = code in (libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_RPC,
                                 libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_INTERNAL_ERROR)
            raise DriverError(f"libvirt could not start domain {rec.handle}: "
                              f"{exc.get_error_message()}", transient=transient) from None
        rec.running, rec.failure, rec.booting_since = True, None, time.time()
        self.records.put(rec)
        # the taps exist once the domain does: shape them and fill Dom0's table now
        for b in rec.bridges:
            lk = self.links.get(b)
            if lk is not None:
                plumbing.shape_bridge(b, lk.capacity_kbps,
                                      latency_ms=self.settings["tc_latency_ms"])
        if rec.dom0_ports:
            netns = comp.extra["dom0_netns"]
            if netns:
                hostnet.sysctl_set(netns, "net.ipv4.ip_forward", "1")
            self._sync_forwarding(comp, rec)
        return self._boot_progress(comp, rec)

    def _boot_progress(self, comp: Component, rec: DomainRecord) -> OperationalState:
        """One look at a booting guest: READY once its console says GENI-READY, CONFIGURING
        while it boots; DriverError (the domain stopped, the record says why) when it died,
        panicked or was not up within boot_timeout_s."""
        files = self._files(rec.handle)
        if files.ready(rec.hostname or "node"):
            rec.booting_since = None
            self.records.put(rec)
            return OperationalState.READY
        timeout = float(self.settings["boot_timeout_s"])
        why = None
        if self._active(comp, rec.handle) is None:
            why = "the guest stopped during boot"
        elif files.panicked():
            why = "the guest kernel panicked"
        elif time.time() - (rec.booting_since or time.time()) > timeout:
            why = f"the guest did not come up within {self.settings['boot_timeout_s']} s"
        if why is None:
            return OperationalState.CONFIGURING
        reason = f"{why}; last console lines: {files.last_lines()}"
        self._halt(comp, rec)
        rec.running, rec.failure, rec.booting_since = False, reason, None
        self.records.put(rec)
        raise DriverError(reason)

    def wait_ready(self, spec: SliverSpec, timeout: float | None = None) -> OperationalState:
        """Start the sliver's VM and poll until it is up (for benches and driver-level tests;
        the AM polls through its job queue instead)."""
        deadline = time.monotonic() + (timeout or float(self.settings["boot_timeout_s"]) + 30)
        state = self.perform(spec, Action.START.value)
        while state is OperationalState.CONFIGURING and time.monotonic() < deadline:
            time.sleep(0.1)
            state = self.perform(spec, Action.START.value)
        return state

    def _stop_domain(self, comp: Component, handle: str) -> None:
        dom = self._lookup(comp, handle)
        if dom is not None:
            _destroy_and_undefine(dom)

    def _halt(self, comp: Component, rec: DomainRecord) -> None:
        self._clear_forwarding(comp, rec)
        for p in rec.dom0_ports:
            plumbing.remove_dom0_port(plumbing.Dom0Port(**p), comp.extra["dom0_netns"])
        self._stop_domain(comp, rec.handle)

    def _perform_vm(self, comp: Component, spec: SliverSpec, action: str) -> OperationalState:
        handle = handle_for(spec.sliver_urn)
        rec = self.records.get(handle)
        if rec is None:
            raise DriverError(f"sliver {spec.sliver_urn} has no VM (not provisioned)")
        if action == Action.START.value:
            return self._boot(comp, spec, rec)
        elif action == Action.STOP.value:
            self._halt(comp, rec)
            rec.running, rec.booting_since = False, None
            self.records.put(rec)
        elif action == Action.RESTART.value:
            self._halt(comp, rec)
            rec.running, rec.booting_since = False, None
            self.records.put(rec)
            return self._boot(comp, spec, rec)
        elif action == Action.UPDATE_USERS.value:
            users = guestmod.user_keys(spec.users)
            self._write_boot(comp, spec, rec)          # the next boot has the same keys
            if rec.running and self._active(comp, handle) is not None:
                guestmod.push_users(self._files(handle).agent, users)
        elif action == SYNC_ROUTES:
            if rec.running:
                self._sync_forwarding(comp, rec)
        else:
            raise DriverError(f"action {action!r} is not supported by the Xen driver "
                              f"(supported: {', '.join(self.capabilities.actions)})")
        return self._vm_status(comp, self.records.get(handle))

    def _vm_status(self, comp: Component, rec: DomainRecord | None) -> OperationalState:
        if rec is None:
            return OperationalState.FAILED
        if not rec.running:
            return OperationalState.FAILED if rec.failure else OperationalState.NOTREADY
        if self._active(comp, rec.handle) is None:
            return OperationalState.FAILED             # killed behind the AM's back
        if self._files(rec.handle).ready(rec.hostname or "node"):
            return OperationalState.READY
        return OperationalState.CONFIGURING

    def vm_failure(self, spec: SliverSpec) -> str | None:
        """Why the sliver's VM is not up (None when it is, or was never started)."""
        comp = self._comp(spec)
        rec = self.records.get(handle_for(spec.sliver_urn))
        if rec is None:
            return "no VM (not provisioned)"
        if rec.failure:
            return rec.failure
        if rec.running and self._active(comp, rec.handle) is None:
            return ("the VM is gone (killed outside the AM); last console lines: "
                    f"{self._files(rec.handle).last_lines()}")
        return None

    def _delete_vm(self, comp: Component, handle: str) -> None:
        rec = self.records.get(handle)
        if rec is not None:
            self._halt(comp, rec)
            if rec.control_port:
                self._unplug_control_port(rec.control_port)
            for b in rec.bridges:
                if self.links.get(b) is None and not plumbing.bridge_ports(b):
                    plumbing.delete_bridge(b)
        else:
            self._stop_domain(comp, handle)
        self._files(handle).remove()
        self.records.drop(handle)
        self.routes.drop(handle)

    def _observed_vms(self, comp: Component, records: Mapping[str, DomainRecord]
                      ) -> list[ObservedSliver]:
        """Running domains (owner from their metadata) and stopped slivers' records. A record
        that should run but has no domain (killed behind the AM's back) is observed FAILED
        with the reason and the console's last lines: the reconciler fails its sliver so."""
        uri = comp.extra["uri"]
        try:
            doms = self._conn(comp).listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        except libvirt.libvirtError as exc:
            raise DriverError(f"libvirt at {uri} cannot list domains: "
                              f"{exc.get_error_message()}", transient=True) from None
        out, seen = [], set()
        for dom in doms:
            name = dom.name()
            if not name.startswith(DOMAIN_PREFIX):
                continue
            facts = read_xml(dom.XMLDesc())
            seen.add(name)
            rec = records.get(name)
            state = self._vm_status(comp, rec) if rec else OperationalState.READY
            out.append(ObservedSliver(handle=name, sliver_urn=facts.sliver_urn, state=state,
                                      detail=f"{rec.domain_type if rec else '?'} domain on "
                                             f"{comp.name}, {facts.vcpus} vCPU, "
                                             f"{facts.memory_kib // 1024} MiB"))
        for rec in records.values():
            if rec.host != comp.name or rec.handle in seen:
                continue
            if rec.running:
                out.append(ObservedSliver(
                    handle=rec.handle, sliver_urn=rec.sliver_urn, state=OperationalState.FAILED,
                    detail=f"the VM is gone from {comp.name} (killed outside the AM); last "
                           f"console lines: {self._files(rec.handle).last_lines()}"))
            else:
                out.append(ObservedSliver(handle=rec.handle, sliver_urn=rec.sliver_urn,
                                          state=self._vm_status(comp, rec),
                                          detail=f"stopped VM on {comp.name}"))
        return out

    # ---- a hybrid router's control plane on its forwarding plane's CPU port -----------------------
    def plug_control_port(self, spec: SliverSpec, wire: str) -> bool:
        """Plug a hybrid router's control-plane VM into its forwarding plane's CPU port (host
        interface `wire`, e.g. an emulated NetFPGA slot's `<prefix>h<slot>`): the VM gets a NIC
        `cpu0` with the CPU port's MAC (the plane addresses punted frames to it) and every
        address of the router, on a bridge with the wire, as a container takes the wire itself.
        The VM boots only once plugged (a geni_start waits for it); plugged later, the wire
        joins at once. False when the sliver is no control plane on a real VM."""
        comp = self._comp(spec)
        if not IFNAME_RE.match(wire):
            raise DriverError(f"control port {wire!r} is not an interface name")
        if self._is_test(comp):
            return False                       # no guest, nothing to plug
        handle = handle_for(spec.sliver_urn)
        with self._lock:
            rec = self.records.get(handle)
            if rec is None or not rec.control_plane:
                return False
            cpu = rec.control_port
            if cpu is None or cpu["wire"] != wire:
                li = hostnet.find_link(None, wire)
                if li is None or not li.mac:
                    raise DriverError(f"control port {wire} of {spec.client_id} is not on this "
                                      "host: is its card running?", transient=True)
                if cpu is not None:            # another port than before: give that one back
                    self._unplug_control_port(cpu)
                prefix = self.settings["ifname_prefix"]
                cpu = {"wire": wire, "mac": li.mac.lower(),
                       "bridge": plumbing.link_bridge(prefix, spec.slice_urn,
                                                      f"cpu:{spec.client_id}"),
                       "device": plumbing.tap_name(prefix, handle[len(DOMAIN_PREFIX):], "c")}
                rec.control_port = cpu
                rec.xml = with_vif(rec.xml, VifPlan(client_id=CPU_CLIENT, mac=cpu["mac"],
                                                    bridge=cpu["bridge"], device=cpu["device"]))
                self.records.put(rec)
            if hostnet.find_link(None, cpu["bridge"]) is not None:
                self._join_control_port(rec)   # booted already (a repeated plug)
        return True

    def _control_ifaces(self, spec: SliverSpec, mac: str) -> list[guestmod.GuestIface]:
        """cpu0 carrying every address of the router."""
        cidrs = [_cidr(ip) for i in spec.interfaces for ip in i.ips] or [None]
        return [guestmod.GuestIface(mac=mac, cidr=c, name=CPU_NAME if n == 0 else None)
                for n, c in enumerate(cidrs)]

    def _await_control_port(self, rec: DomainRecord) -> OperationalState:
        """A control plane's start before its forwarding plane plugged it in: CONFIGURING (the
        AM looks again) until boot_timeout_s, then a failure saying so."""
        now = time.time()
        if rec.waiting_since is None:
            rec.waiting_since = now
            self.records.put(rec)
        elif now - rec.waiting_since > float(self.settings["boot_timeout_s"]):
            rec.waiting_since = None
            rec.failure = (f"its forwarding plane's CPU port was not plugged in within "
                           f"{self.settings['boot_timeout_s']} s (is the forwarding sliver "
                           "provisioned, its card running?)")
            self.records.put(rec)
            raise DriverError(rec.failure)
        return OperationalState.CONFIGURING

    def _join_control_port(self, rec: DomainRecord) -> None:
        """The CPU port's wire on the control bridge, beside the VM's tap. The wire gives its
        MAC to cpu0 and takes another: a bridge keeps frames for a port's own MAC."""
        cpu = rec.control_port
        assert cpu is not None
        hostnet.bridge_add(cpu["bridge"])
        li = hostnet.find_link(None, cpu["wire"])
        if li is None:
            raise DriverError(f"control port {cpu['wire']} is not on this host: is its card "
                              "running?", transient=True)
        if (li.mac or "").lower() == cpu["mac"]:
            hostnet.link_set(None, cpu["wire"], mac=deterministic_mac(rec.handle, "geni-cpu-wire"))
        if li.master != cpu["bridge"]:
            hostnet.link_set(None, cpu["wire"], master=cpu["bridge"], up=True)

    @staticmethod
    def _unplug_control_port(cpu: Mapping[str, Any]) -> None:
        """Give the CPU port back as it was: out of the bridge (deleted), its own MAC."""
        plumbing.delete_bridge(cpu["bridge"])
        li = hostnet.find_link(None, cpu["wire"])
        if li is not None and (li.mac or "").lower() != cpu["mac"]:
            hostnet.link_set(None, cpu["wire"], mac=cpu["mac"], up=True)

    # ---- links between VMs on one host -----------------------------------------------------------
    def _provision_link(self, comp: Component, spec: SliverSpec) -> ProvisionResult:
        bridge = self._link_bridge(spec)
        kbps = spec.link.capacity_kbps if spec.link else None
        self.links.put(plumbing.LinkRecord(sliver_urn=spec.sliver_urn, bridge=bridge,
                                           capacity_kbps=kbps))
        wires = sorted(dict(spec.params.get("wires") or {}).values()) \
            if spec.link is not None and spec.link.mode == "wire" else []
        if not self._is_test(comp):
            hostnet.bridge_add(bridge)
            for wire in sorted(set(wires)):  # a card's or switch's port, as a cable
                if hostnet.find_link(None, wire) is None:
                    owner = spec.params.get("card") or spec.params.get("switch")
                    raise DriverError(f"wire {wire} of {owner} is not on this host (yet: "
                                      "is its card process running, is the switch's link "
                                      "made?)", transient=True)
                hostnet.link_set(None, wire, master=bridge, up=True)
            plumbing.shape_bridge(bridge, kbps, latency_ms=self.settings["tc_latency_ms"])
        shaped = f", {kbps} kbit/s into each end" if kbps else ""
        plugged = (f", {spec.params.get('card')} port {spec.params.get('port')} ({wires[0]}) "
                   "plugged in" if spec.params.get("card") else
                   f", on switch {spec.params.get('switch')} by {wires[0]}") if wires else ""
        return ProvisionResult(state=OperationalState.READY, handle=bridge,
                               resource_status=f"bridge {bridge} on {comp.name}{plugged}{shaped}")

    def _delete_link(self, bridge: str) -> None:
        if any(not self._is_test(c) for c in self._components):
            plumbing.delete_bridge(bridge)
        self.links.drop(bridge)

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
        connected = [(ipaddress.IPv4Interface(p["cidr"]).network, p["vif"])
                     for p in rec.dom0_ports if p.get("cidr")]

        def device(r: Route) -> str | None:
            if r.interface:
                return rec.vif_by_client.get(r.interface, default_dev)
            if r.gateway:      # no interface named: the one on the gateway's network
                gw = ipaddress.IPv4Address(r.gateway)
                return next((vif for net, vif in connected if gw in net), default_dev)
            return default_dev
        fib = {FibEntry(prefix=r.destination, gateway=r.gateway, device=device(r))
               for r in routes}
        for p in rec.dom0_ports:          # a real router's connected networks, in its own table
            if p.get("cidr"):
                net = ipaddress.IPv4Interface(p["cidr"]).network
                fib.add(FibEntry(prefix=str(net), gateway=None, device=p["vif"]))
        return fib

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


def _hardware_control_plane(spec: SliverSpec) -> bool:
    """Is `spec` the control plane of a hybrid router forwarding on a NetFPGA slot?"""
    return bool(spec.router and spec.params.get("forwarding_plane")
                and spec.forwarding is ForwardingMode.HARDWARE)


def _cidr(ip: tuple[str, str]) -> str:
    addr, mask = ip
    try:
        return str(ipaddress.IPv4Interface(f"{addr}/{mask or 24}"))
    except ValueError:
        raise DriverError(f"interface address {addr}/{mask} is not an IPv4 address") from None


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
    for key in ("uri", "bridge", "image_dir", "default_image"):
        if not isinstance(s[key], str) or not s[key]:
            raise InventoryError("must be a non-empty string", table=table, key=key)
    for key in ("state_dir", "dom0_netns"):
        if s[key] is not None and (not isinstance(s[key], str) or not s[key]):
            raise InventoryError("must be a non-empty string", table=table, key=key)
    if s["image_store"] is not None and (not isinstance(s["image_store"], str)
                                         or not s["image_store"]):
        raise InventoryError("must be the image store's folder", table=table, key="image_store")
    if s["domain_type"] not in ("auto", "kvm", "qemu"):
        raise InventoryError("must be auto, kvm or qemu", table=table, key="domain_type")
    if not isinstance(s["ssh_address"], str):
        raise InventoryError("must be an address", table=table, key="ssh_address")
    try:
        ipaddress.ip_address(s["ssh_address"])
    except ValueError:
        raise InventoryError("must be an IP address", table=table, key="ssh_address") from None
    ports = s["ssh_ports"]
    if (not isinstance(ports, (list, tuple)) or len(ports) != 2
            or any(isinstance(p, bool) or not isinstance(p, int) for p in ports)
            or not 1 <= ports[0] <= ports[1] <= 65535):
        raise InventoryError("must be [first, last] ports, 1-65535", table=table, key="ssh_ports")
    s["ssh_ports"] = (ports[0], ports[1])
    for key in ("boot_timeout_s", "tc_latency_ms"):
        v = s[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise InventoryError("must be a positive number", table=table, key=key)
    if not isinstance(s["ifname_prefix"], str) or not re.match(r"^[a-z][a-z0-9]{0,3}$",
                                                               s["ifname_prefix"]):
        raise InventoryError("must be 1-4 lower-case letters or digits", table=table,
                             key="ifname_prefix")
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
