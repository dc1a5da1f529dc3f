"""A fake substrate: N nodes and a switch that behave like real ones, with fault injection.

The model driver (docs/drivers.md) and the mocked-driver harness: `geni-am serve --fake N`
and the test suite run the whole AM over it. It honours the same substrate facts the real
drivers do (capacity, isolation class, the guest-forwarding router limit of a Xen host, VLAN
tags on the switch) so placement and admission are exercised for real, and it keeps what
exists in a file-backed store (`drivers.fake_state`) so a sliver provisioned by a worker
process is seen by the server process.

Fault injection (driver config): `latency_s` per operation, `failure_rate` and
`transient_failure_rate` (provision/perform raise DriverError, seeded by `seed`), and a crash
switch: `crash_on = "provision"` makes the process `os._exit(70)` inside that operation, at
`crash_point = "after"` (the substrate changed, the caller never hears) or `"before"`.
`arm_crash()` sets the same switch at run time through the state directory, so a test can
arm it for worker processes that are already running.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from drivers.base import (
    CPU_MILLI,
    MEMORY_MB,
    ACTION_RESULTS,
    Action,
    Admission,
    Capabilities,
    LINK_PROPERTIES,
    Component,
    ComponentPort,
    DiskImage,
    DriverError,
    ForwardingMode,
    IsolationClass,
    Login,
    ObservedSliver,
    OperationalState,
    PortRef,
    ProvisionResult,
    ResourceKind,
    SiteLink,
    SliverSpec,
    SliverTypeInfo,
    SubstrateDriver,
    Usage,
    exact_capacity,
    implied_isolation,
    milli,
    units,
)
from drivers.fake_state import FakeCounters, FakeStateStore, SliverRow
from drivers.inventory import (
    InventoryError,
    build_component,
    interface_urn,
    node_urn,
    parse_forwarding,
    parse_isolation,
    parse_vlan_range,
)

# Every sliver type name the real drivers use, plus common client aliases; all work here.
FAKE_NODE_SLIVER_TYPES: tuple[str, ...] = (
    "xen-vm", "vserver-container", "netfpga-vdp", "default-vm", "emulab-xen", "raw-pc")
FLOWSPACE_TYPE = "openflow-flowspace"
CRASH_EXIT_CODE = 70
OPERATIONS = ("admit", "provision", "perform", "status", "delete", "observed")
#: The state each action leaves a fake sliver in (geni_update_users keeps the state it finds).
ACTION_STATES = {a: st for a, st in ACTION_RESULTS.items() if a != Action.UPDATE_USERS.value}

CONFIG_DEFAULTS: dict[str, Any] = {
    "nodes": 0,
    "name_prefix": "fake",
    "latency_s": 0.0,
    "failure_rate": 0.0,
    "transient_failure_rate": 0.0,
    "crash_on": [],
    "crash_point": "after",
    "seed": None,
    "state_dir": None,
    "cpu": 8.0,
    "memory_mb": 16384.0,
    "guest_router_limit": 10,
    "isolation": "hardware",
    "sliver_types": list(FAKE_NODE_SLIVER_TYPES),
    "forwarding_modes": ["guest", "dom0"],
    "exclusive_ok": True,
    "default_cpu": 1.0,
    "default_memory_mb": 512.0,
    "switch": None,            # None: a fake switch whenever there are generated nodes
    "switch_name": "fake-switch",
    "link_kbps": 1_000_000,
    "vlan_range": [100, 4094],
    # a start/restart under way for this many looks (reported geni_configuring, as a booting
    # VM is) before it is ready: the AM's readiness polls (am.jobs.runner.PollLater)
    "boot_polls": 0,
    # the link properties its links honour: by default what this kernel can shape (capacity,
    # no netem); a test of a netem-capable site adds "latency" and "packet_loss"
    "link_properties": ["capacity"],
}


class FakeDriver(SubstrateDriver):
    kind: ClassVar[str] = "fake"
    capabilities: ClassVar[Capabilities] = Capabilities(
        isolation=IsolationClass.HARDWARE,
        sliver_types=FAKE_NODE_SLIVER_TYPES + (FLOWSPACE_TYPE,),
        forwarding_modes=(ForwardingMode.GUEST, ForwardingMode.DOM0),
        links=True,
        wires=True,       # records a wire taken into a sliver (a stitched link's host half)
    )

    def __init__(self, config: Mapping[str, Any], components: list[Mapping[str, Any]],
                 *, authority: str):
        super().__init__(config, components, authority=authority)
        self.settings = _validate_config(config)
        s = self.settings
        self.capabilities = dataclasses.replace(type(self).capabilities,
                                                link_properties=s["link_properties"])
        self._rng = random.Random(s["seed"])
        self._rng_lock = threading.Lock()
        self._boot_looks: dict[str, int] = {}
        if s["state_dir"]:
            self.state_dir = Path(s["state_dir"]).expanduser()
            self._owns_state_dir = False
        else:
            self.state_dir = Path(tempfile.mkdtemp(prefix="geni-am-fake-"))
            self._owns_state_dir = True
        self.store = FakeStateStore(self.state_dir)
        self._components, self._links = self._build_substrate(components)

    # ---- inventory ---------------------------------------------------------------------------
    def _build_substrate(self, tables: list[Mapping[str, Any]]
                         ) -> tuple[list[Component], list[SiteLink]]:
        s = self.settings
        capacity = {"cpu": s["cpu"], MEMORY_MB: s["memory_mb"],
                    "guest_routers": float(s["guest_router_limit"])}
        comps: list[Component] = []
        for table in tables:
            iso = table.get("isolation", s["isolation"][0])
            types = _types_for(iso, table.get("sliver_types", s["sliver_types"]))
            if iso is IsolationClass.FLOWSPACE:
                types = (FLOWSPACE_TYPE,)
            comps.append(build_component(
                {**table, "sliver_types": types}, authority=self.authority, driver=self.kind,
                default_isolation=iso, default_capacity=capacity if iso is not IsolationClass.FLOWSPACE else {},
                default_forwarding=s["forwarding_modes"], default_exclusive_ok=s["exclusive_ok"]))
        links: list[SiteLink] = []
        n = s["nodes"]
        switch = s["switch"] if s["switch"] is not None else n > 0
        sw_name = s["switch_name"]
        images = (DiskImage("fake-linux", os="Linux", version="1", default=True),)
        for i in range(1, n + 1):
            name = f"{s['name_prefix']}{i}"
            iso = s["isolation"][(i - 1) % len(s["isolation"])]
            ports = (ComponentPort(interface_urn(self.authority, name, "eth0"), "eth0", 0),
                     ComponentPort(interface_urn(self.authority, name, "eth1"), "eth1", 1))
            comps.append(Component(
                component_id=node_urn(self.authority, name), name=name, driver=self.kind,
                isolation=iso,
                sliver_types=tuple(SliverTypeInfo(t, images)
                                   for t in _types_for(iso, s["sliver_types"])),
                hardware_types=("pc", "fake-pc"), forwarding_modes=s["forwarding_modes"],
                capacity=exact_capacity(capacity), ports=ports, exclusive_ok=s["exclusive_ok"],
                extra={"fake": True}))
            if switch:
                links.append(SiteLink(
                    name=f"{name}-{sw_name}",
                    ends=(PortRef(node_urn(self.authority, name), "eth1",
                                  interface_urn(self.authority, name, "eth1")),
                          PortRef(node_urn(self.authority, sw_name), f"port{i}",
                                  interface_urn(self.authority, sw_name, f"port{i}"))),
                    capacity_kbps=s["link_kbps"]))
        if switch:
            comps.append(Component(
                component_id=node_urn(self.authority, sw_name), name=sw_name, driver=self.kind,
                isolation=IsolationClass.FLOWSPACE,
                sliver_types=(SliverTypeInfo(FLOWSPACE_TYPE),), hardware_types=("openflow-switch",),
                forwarding_modes=(ForwardingMode.OPENFLOW,),
                ports=tuple(ComponentPort(interface_urn(self.authority, sw_name, f"port{i}"),
                                          f"port{i}", i) for i in range(1, n + 1)),
                dpid="00:00:00:00:00:00:00:01",
                extra={"fake": True, "vlan_range": s["vlan_range"], "switch": True}))
        return comps, links

    def inventory(self) -> list[Component]:
        return list(self._components)

    def site_links(self) -> list[SiteLink]:
        return list(self._links)

    # ---- admission (pure) -----------------------------------------------------------------------
    def admit_component(self, comp: Component, spec: SliverSpec, usage: Usage) -> Admission:
        if spec.kind is ResourceKind.NODE:
            return self._admit_node(comp, spec, usage)
        if spec.kind is ResourceKind.LINK:
            return self._admit_link(comp, spec, usage)
        if comp.isolation is not IsolationClass.FLOWSPACE:
            return Admission.refuse(f"component {comp.component_id} is not an OpenFlow datapath",
                                    "UNSUPPORTED")
        return Admission.accept()

    def _admit_node(self, comp: Component, spec: SliverSpec, usage: Usage) -> Admission:
        cid = comp.component_id
        offered = {t.name.lower() for t in comp.sliver_types}
        if comp.isolation is IsolationClass.FLOWSPACE or not offered - {FLOWSPACE_TYPE}:
            return Admission.refuse(f"component {cid} is a switch and hosts no nodes", "UNSUPPORTED")
        stype = (spec.sliver_type or "").lower()
        if stype and stype not in offered:
            return Admission.refuse(f"component {cid} does not offer sliver type "
                                    f"{spec.sliver_type!r}", "UNSUPPORTED")
        needed = [c for c in (implied_isolation(stype), _isolation_param(spec)) if c is not None]
        for need in needed:
            if comp.isolation.strength < need.strength:
                return Admission.refuse(f"component {cid} isolates as {comp.isolation.value}, "
                                        f"weaker than the {need.value} isolation required",
                                        "UNSUPPORTED")
        if usage.exclusive_holder and usage.exclusive_holder != spec.slice_urn:
            return Admission.refuse(f"component {cid} is held exclusively by another slice",
                                    "INSUFFICIENT_NODES")
        demand: dict[str, int] = {
            CPU_MILLI: milli(spec.cpu if spec.cpu is not None else self.settings["default_cpu"]),
            MEMORY_MB: units(spec.memory_mb if spec.memory_mb is not None
                             else self.settings["default_memory_mb"]),
        }
        exclusive = spec.exclusive or stype == "raw-pc"
        if exclusive:
            if not comp.exclusive_ok:
                return Admission.refuse(f"component {cid} cannot be given exclusively",
                                        "UNSUPPORTED")
            if usage.slivers or any(v > 0 for v in usage.used.values()):
                return Admission.refuse(f"component {cid} is shared by {len(usage.slivers)} "
                                        "sliver(s); it cannot be given exclusively",
                                        "INSUFFICIENT_NODES")
            demand = {k: v for k, v in comp.capacity.items() if k in (CPU_MILLI, MEMORY_MB)}
        if spec.router:
            mode = spec.forwarding or ForwardingMode.GUEST
            if mode not in comp.forwarding_modes:
                return Admission.refuse(f"component {cid} does not offer {mode.value} forwarding "
                                        f"(offers {', '.join(m.value for m in comp.forwarding_modes) or 'none'})",
                                        "UNSUPPORTED")
            if mode is ForwardingMode.GUEST:
                demand["guest_routers"] = 1
                limit, used = comp.capacity.get("guest_routers"), usage.used.get("guest_routers", 0)
                if limit is not None and units(used) + 1 > units(limit):
                    return Admission.refuse(
                        f"component {cid} already forwards for {units(used)} guest-forwarding "
                        f"router(s), its limit is {units(limit)}; ask for dom0 forwarding",
                        "INSUFFICIENT_NODES")
        return Admission.accept(demand)   # the capacity check follows (SubstrateDriver.admit)

    def _admit_link(self, comp: Component, spec: SliverSpec, usage: Usage) -> Admission:
        link = spec.link
        if link is None:
            return Admission.refuse("link sliver without a link spec", "BADARGS")
        if link.mode == "stitch" and comp.isolation is IsolationClass.FLOWSPACE:
            # a stitched link's switch half: the switch port and the edge, on one tag
            if link.vlan_tag is None:
                return Admission.refuse("a stitched link needs a VLAN tag", "BADARGS")
            return Admission.accept(claims=(f"stitch:{spec.params.get('switch_port')}",))
        if link.mode in ("veth", "bridge", "stitch", "wire"):
            if comp.isolation is IsolationClass.FLOWSPACE:
                return Admission.refuse(f"{link.mode} links live on a host, not on {comp.component_id}",
                                        "UNSUPPORTED")
            return Admission.accept()
        if link.mode != "vlan":
            return Admission.refuse(f"fake links do not support mode {link.mode!r}", "UNSUPPORTED")
        if link.vlan_tag is None:
            return Admission.refuse("a vlan link needs a VLAN tag", "BADARGS")
        lo, hi = comp.extra.get("vlan_range", (1, 4094))
        if not lo <= link.vlan_tag <= hi:
            return Admission.refuse(f"VLAN {link.vlan_tag} is outside {comp.name}'s range "
                                    f"{lo}-{hi}", "VLAN_UNAVAILABLE")
        for other in usage.slivers:
            if other.link is not None and other.link.vlan_tag == link.vlan_tag:
                return Admission.refuse(f"VLAN {link.vlan_tag} on {comp.component_id} is in use",
                                        "VLAN_UNAVAILABLE")
        return Admission.accept(claims=(f"vlan:{link.vlan_tag}",))

    # ---- substrate operations --------------------------------------------------------------------
    def provision(self, spec: SliverSpec) -> ProvisionResult:
        self._enter("provision", fallible=True)
        comp = self._component_by_urn(spec.component_id)
        if comp is None:
            raise DriverError(f"no fake component {spec.component_id}")
        handle = handle_for(spec.sliver_urn)
        macs = {i.client_id: i.mac or _mac(handle, i.client_id) for i in spec.interfaces}
        row, _ = self.store.provision(SliverRow(
            handle=handle, sliver_urn=spec.sliver_urn, slice_urn=spec.slice_urn,
            client_id=spec.client_id, component_id=comp.component_id, kind=spec.kind.value,
            state=self.capabilities.first_state.value, macs=macs))
        self._maybe_crash("provision", "after")
        return ProvisionResult(state=OperationalState(row.state), macs=row.macs,
                               logins=self.logins(spec) or (),
                               resource_status=f"fake {spec.kind.value} on {comp.name}",
                               handle=handle)

    def check_update(self, old: SliverSpec, new: SliverSpec) -> None:
        """Anything but another kind, sliver type or isolation changes in place here (like a
        container's interfaces and limits)."""
        for what in ("kind", "sliver_type", "exclusive", "router"):
            if getattr(old, what) != getattr(new, what):
                raise DriverError(f"{what} of {old.client_id} cannot change in place "
                                  f"({getattr(old, what)} -> {getattr(new, what)})")

    def update(self, old: SliverSpec, new: SliverSpec) -> ProvisionResult:
        """Reconfigure in place: same handle and state, the new interfaces' MACs."""
        self._enter("perform", fallible=True)
        self.check_update(old, new)
        handle = handle_for(new.sliver_urn)
        macs = {i.client_id: i.mac or _mac(handle, i.client_id) for i in new.interfaces}
        state = self.store.reconfigure(handle, new.sliver_urn, macs)
        if state is None:
            raise DriverError(f"sliver {new.sliver_urn} does not exist on the fake substrate")
        comp = self._component_by_urn(new.component_id)
        return ProvisionResult(state=OperationalState(state), macs=macs,
                               logins=self.logins(new) or (),
                               resource_status=f"fake {new.kind.value} on "
                                               f"{comp.name if comp else '?'} (updated)",
                               handle=handle)

    def logins(self, spec: SliverSpec) -> tuple[Login, ...]:
        """One (fake) account per geni_users login on a node sliver."""
        comp = self._component_by_urn(spec.component_id)
        if comp is None or spec.kind is not ResourceKind.NODE:
            return ()
        return tuple(Login(hostname=f"{comp.name}.fake.invalid", port=22, username=u.login)
                     for u in spec.users)

    def perform(self, spec: SliverSpec, action: str) -> OperationalState:
        self._enter("perform", fallible=True)
        if action not in ACTION_RESULTS:
            raise DriverError(f"action {action!r} is not supported by the fake substrate")

        handle = handle_for(spec.sliver_urn)
        if self.settings["boot_polls"] and action in (Action.START.value, Action.RESTART.value):
            with self._rng_lock:
                looks = self._boot_looks[handle] = self._boot_looks.get(handle, 0) + 1
            if looks <= self.settings["boot_polls"]:
                if self.store.change_state(handle, spec.sliver_urn,
                                           lambda _c: OperationalState.CONFIGURING.value) is None:
                    raise DriverError(f"sliver {spec.sliver_urn} does not exist on the fake "
                                      "substrate")
                return OperationalState.CONFIGURING
            with self._rng_lock:
                self._boot_looks.pop(handle, None)

        def decide(current: str) -> str:
            return current if action == Action.UPDATE_USERS.value else ACTION_STATES[action].value

        new = self.store.change_state(handle_for(spec.sliver_urn), spec.sliver_urn, decide)
        if new is None:
            raise DriverError(f"sliver {spec.sliver_urn} does not exist on the fake substrate")
        self._maybe_crash("perform", "after")
        return OperationalState(new)

    def status(self, spec: SliverSpec) -> OperationalState:
        """The state on the substrate; a sliver that does not exist there is `geni_failed`."""
        self._enter("status")
        row = self.store.get(handle_for(spec.sliver_urn))
        return OperationalState(row.state) if row else OperationalState.FAILED

    def delete(self, spec: SliverSpec) -> None:
        self._enter("delete")
        self.store.remove(handle_for(spec.sliver_urn), spec.sliver_urn)
        self._maybe_crash("delete", "after")

    def observed(self) -> list[ObservedSliver]:
        self._enter("observed")
        return [ObservedSliver(handle=r.handle, sliver_urn=r.sliver_urn,
                               state=OperationalState(r.state),
                               detail=f"{r.kind} {r.client_id or '-'} on {r.component_id}")
                for r in self.store.all()]

    def release(self, handle: str) -> None:
        row = self.store.get(handle)
        self.store.remove(handle, row.sliver_urn if row else None)

    def close(self) -> None:
        self.store.close()
        if self._owns_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self._owns_state_dir = False

    # ---- test helpers ------------------------------------------------------------------------
    def counters(self, sliver_urn: str) -> FakeCounters:
        """How often the substrate really created/changed/deleted this sliver."""
        return self.store.counters(sliver_urn)

    def make_orphan(self, component_id: str, handle: str | None = None) -> str:
        """Leave something on the substrate that no sliver owns (as a crashed AM would)."""
        comp = self._component_by_urn(component_id)
        if comp is None:
            raise DriverError(f"no fake component {component_id}")
        handle = handle or f"orphan-{os.urandom(6).hex()}"
        self.store.provision(SliverRow(handle=handle, sliver_urn=None, slice_urn=None,
                                       client_id=None, component_id=comp.component_id,
                                       kind=ResourceKind.NODE.value,
                                       state=OperationalState.READY.value, macs={}))
        return handle

    def arm_crash(self, operation: str, point: str = "after") -> None:
        """Make every FakeDriver on this state_dir exit(70) inside `operation` from now on."""
        if operation not in OPERATIONS or point not in ("before", "after"):
            raise ValueError(f"cannot crash on {operation!r} at {point!r}")
        tmp = self.state_dir / "crash.json.tmp"
        tmp.write_text(json.dumps({"operation": operation, "point": point}))
        os.replace(tmp, self.state_dir / "crash.json")

    def disarm_crash(self) -> None:
        (self.state_dir / "crash.json").unlink(missing_ok=True)

    # ---- fault injection -------------------------------------------------------------------------
    def _enter(self, operation: str, *, fallible: bool = False) -> None:
        if self.settings["latency_s"]:
            time.sleep(self.settings["latency_s"])
        self._maybe_crash(operation, "before")
        if fallible:
            with self._rng_lock:
                draw = self._rng.random()
            hard = self.settings["failure_rate"]
            if draw < hard:
                raise DriverError(f"injected failure in fake {operation}")
            if draw < hard + self.settings["transient_failure_rate"]:
                raise DriverError(f"injected transient failure in fake {operation}", transient=True)

    def _maybe_crash(self, operation: str, point: str) -> None:
        s = self.settings
        if operation in s["crash_on"] and s["crash_point"] == point:
            os._exit(CRASH_EXIT_CODE)
        armed = self.state_dir / "crash.json"
        if armed.exists():
            try:
                want = json.loads(armed.read_text())
            except (OSError, ValueError):
                return
            if want.get("operation") == operation and want.get("point") == point:
                os._exit(CRASH_EXIT_CODE)


def handle_for(sliver_urn: str) -> str:
    """The fake's own name for a sliver: derived from the URN, so provision is idempotent."""
    return "fake-" + hashlib.sha256(sliver_urn.encode()).hexdigest()[:16]


def make_fake_site(n: int = 10, *, authority: str = "geni-am:fake", **config: Any):
    """A `Site` over one FakeDriver with `n` nodes (plus the fake switch) — for tests and tools.

    `config` takes any fake driver key (state_dir, isolation, cpu, failure_rate, seed, ...).
    """
    from drivers.registry import Site   # registry imports drivers lazily; avoid a cycle
    driver = FakeDriver({"nodes": n, **config}, [], authority=authority)
    return Site({"fake": driver}, authority=authority, name="fake")


# ---- helpers ---------------------------------------------------------------------------------

def _types_for(isolation: IsolationClass, names) -> tuple[str, ...]:
    """The sliver types a node of this isolation can honestly offer (implied class not stronger)."""
    out = []
    for name in names:
        implied = implied_isolation(name)
        if implied is IsolationClass.FLOWSPACE:
            continue
        if implied is None or implied.strength <= isolation.strength:
            out.append(name)
    return tuple(out)


def _isolation_param(spec: SliverSpec) -> IsolationClass | None:
    value = spec.params.get("isolation")
    if value is None:
        return None
    try:
        return IsolationClass(value)
    except ValueError:
        return None


def _mac(handle: str, client_id: str) -> str:
    digest = hashlib.sha256(f"{handle}/{client_id}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def _validate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Fake driver settings with defaults; errors name table [drivers.fake] and the key."""
    table = "drivers.fake"
    unknown = set(config) - set(CONFIG_DEFAULTS)
    if unknown:
        raise InventoryError(f"unknown key (allowed: {', '.join(sorted(CONFIG_DEFAULTS))})",
                             table=table, key=sorted(unknown)[0])
    s = {**CONFIG_DEFAULTS, **config}

    def number(key: str, lo: float, hi: float | None = None, integer: bool = False) -> None:
        v = s[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)) \
                or v < lo or (hi is not None and v > hi):
            rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise InventoryError(f"must be {'an integer' if integer else 'a number'} {rng}, not {v!r}",
                                 table=table, key=key)

    number("nodes", 0, integer=True)
    number("latency_s", 0)
    number("failure_rate", 0, 1)
    number("transient_failure_rate", 0, 1)
    number("cpu", 0)
    number("memory_mb", 0)
    number("guest_router_limit", 0, integer=True)
    number("default_cpu", 0)
    number("default_memory_mb", 0)
    number("link_kbps", 1, integer=True)
    number("boot_polls", 0, integer=True)
    if s["failure_rate"] + s["transient_failure_rate"] > 1:
        raise InventoryError("failure_rate + transient_failure_rate must not exceed 1",
                             table=table, key="transient_failure_rate")
    if s["seed"] is not None and (isinstance(s["seed"], bool) or not isinstance(s["seed"], int)):
        raise InventoryError(f"must be an integer, not {s['seed']!r}", table=table, key="seed")
    crash = s["crash_on"]
    crash = [crash] if isinstance(crash, str) else crash
    if not isinstance(crash, list) or any(c not in OPERATIONS for c in crash):
        raise InventoryError(f"must name operations among {', '.join(OPERATIONS)}, not {crash!r}",
                             table=table, key="crash_on")
    s["crash_on"] = tuple(crash)
    if s["crash_point"] not in ("before", "after"):
        raise InventoryError("must be \"before\" or \"after\"", table=table, key="crash_point")
    iso = s["isolation"]
    iso = [iso] if isinstance(iso, str) else iso
    if not isinstance(iso, list) or not iso:
        raise InventoryError("must be an isolation class or a list of them (cycled over the "
                             "nodes)", table=table, key="isolation")
    s["isolation"] = tuple(parse_isolation(v, table, "isolation") for v in iso)
    if not isinstance(s["sliver_types"], list) or not all(isinstance(t, str) for t in s["sliver_types"]):
        raise InventoryError("must be a list of sliver type names", table=table, key="sliver_types")
    if not isinstance(s["forwarding_modes"], (list, tuple)):
        raise InventoryError("must be a list of forwarding modes", table=table, key="forwarding_modes")
    s["forwarding_modes"] = tuple(parse_forwarding(m, table, "forwarding_modes")
                                  for m in s["forwarding_modes"])
    s["vlan_range"] = parse_vlan_range(list(s["vlan_range"]), table, "vlan_range")
    for key in ("name_prefix", "switch_name"):
        if not isinstance(s[key], str) or not s[key]:
            raise InventoryError("must be a non-empty string", table=table, key=key)
    if s["state_dir"] is not None and not isinstance(s["state_dir"], str):
        raise InventoryError("must be a path string", table=table, key="state_dir")
    props = s["link_properties"]
    if not isinstance(props, (list, tuple)) or any(p not in LINK_PROPERTIES for p in props):
        raise InventoryError(f"must be a list of link properties among "
                             f"{', '.join(LINK_PROPERTIES)}, not {props!r}", table=table,
                             key="link_properties")
    s["link_properties"] = tuple(dict.fromkeys(props))
    for key in ("switch", "exclusive_ok"):
        if s[key] is not None and not isinstance(s[key], bool):
            raise InventoryError("must be true or false", table=table, key=key)
    return s


__all__ = ["CRASH_EXIT_CODE", "FAKE_NODE_SLIVER_TYPES", "FakeCounters", "FakeDriver",
           "handle_for", "make_fake_site"]
