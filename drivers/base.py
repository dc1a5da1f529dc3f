"""The contract every substrate driver implements.

Drivers know nothing of XML-RPC, credentials or the database: the AM hands them plain
dataclasses (a `SliverSpec`) and gets plain results back. The shape follows nova's
`virt/driver.py`: one small abstract class, capability flags, and a first-class fake
(`drivers.fake.FakeDriver`) used across the test suite and by the mocked-driver harness.

Life of a sliver as a driver sees it:
  admit()      pure: may this spec go on this component, given what is already reserved there?
               Called at Allocate, inside no transaction, touching no substrate.
  provision()  idempotent: make the sliver exist (calling it twice is harmless).
  perform()    geni_start / geni_stop / geni_restart / geni_update_users (+ driver extras).
  status()     what the substrate says now.
  delete()     idempotent: nothing the driver created for this sliver survives it.
  observed()   everything the driver finds on the substrate, for the reconciler.
"""
from __future__ import annotations

import enum
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from drivers.routesync import RouteError, normalise_all
from rspec.model import (
    Execute,
    ForwardingMode,
    Install,
    IsolationClass,
    OpenFlowSliver,
    Route,
)


class OperationalState(str, enum.Enum):
    """GENI AM API v3 operational states (am-api-v3 digest section 7)."""

    PENDING_ALLOCATION = "geni_pending_allocation"
    NOTREADY = "geni_notready"
    CONFIGURING = "geni_configuring"
    STOPPING = "geni_stopping"
    READY = "geni_ready"
    READY_BUSY = "geni_ready_busy"
    FAILED = "geni_failed"
    UPDATING_USERS = "geni_updating_users"
    #: an extension state (AM API v4 Update): the sliver runs as before while a changed spec
    #: waits for Provision to commit it; drivers never report it, the AM alone sets it
    UPDATING = "geni_updating"


class Action(str, enum.Enum):
    START = "geni_start"
    STOP = "geni_stop"
    RESTART = "geni_restart"
    UPDATE_USERS = "geni_update_users"


#: Where each standard action leaves a healthy sliver (AM API v3 section 7). The fake driver
#: reports these; `am.states` names them as the actions' success targets.
ACTION_RESULTS: Mapping[str, OperationalState] = {
    Action.START.value: OperationalState.READY,
    Action.RESTART.value: OperationalState.READY,
    Action.STOP.value: OperationalState.NOTREADY,
    Action.UPDATE_USERS.value: OperationalState.READY,
}


class ResourceKind(str, enum.Enum):
    NODE = "node"
    LINK = "link"
    FLOWSPACE = "flowspace"    # an OpenFlow sliver (a slice's flowspace and controller)


@dataclass(frozen=True)
class DiskImage:
    name: str                  # URN or short name
    os: str = "Linux"
    version: str = ""
    description: str = ""
    default: bool = False


@dataclass(frozen=True)
class SliverTypeInfo:
    name: str                  # e.g. "vserver-container", "xen-vm", "netfpga-vdp", "openflow-flowspace"
    disk_images: tuple[DiskImage, ...] = ()


@dataclass(frozen=True)
class ComponentPort:
    """A physical interface of a component (host NIC, switch port, NetFPGA port)."""

    component_id: str          # interface URN
    name: str                  # e.g. "eth0", "port1"
    num: int | None = None     # OpenFlow port number where relevant
    capacity_kbps: int | None = None


@dataclass(frozen=True)
class PortRef:
    """One end of a physical wire: a port of a component."""

    component_id: str          # node URN of the component
    port: str                  # port name on it, e.g. "eth1", "port3"
    interface_id: str          # interface URN: urn:publicid:IDN+<auth>+interface+<name>:<port>


@dataclass(frozen=True)
class EdgePort:
    """A port wired to another aggregate (GENI stitching): the inter-site circuit leaves here.

    Stitched links reach it on a VLAN of `vlan_range`; its data plane is an Open vSwitch bridge
    (`ovs_db`, `bridge`, the port `port` on it; vswitchd in namespace `netns` when not the root
    one): a node's interface joins the bridge and its packets leave the port tagged (OVS
    push/pop VLAN, no kernel 802.1Q needed). docs/stitching.md.
    """

    name: str
    component_id: str          # node URN of the host or switch the port is on
    port: str                  # its name on the bridge
    interface_id: str          # this port's URN (the stitching hop's link id)
    remote_aggregate: str      # the peer aggregate's URN
    remote_port: str           # the peer's port URN at the other end of the circuit
    vlan_range: tuple[int, int]
    capacity_kbps: int | None = None
    mtu: int = 1500
    ovs_db: str | None = None
    bridge: str | None = None
    netns: str | None = None

    def data_plane(self) -> dict[str, str | None]:
        """What a driver needs to plug a node's interface into this edge."""
        return {"edge": self.name, "edge_port": self.port, "ovs_db": self.ovs_db,
                "bridge": self.bridge, "netns": self.netns}


@dataclass(frozen=True)
class SiteLink:
    """Physical wiring between two component ports (host eth1 <-> switch port 3).

    The placement engine routes cross-host links over these and admits bandwidth against
    `capacity_kbps`; the site exposes each wired port's capacity as the component resource
    `kbps:<port>` so the store can reserve it like any other capacity.
    """

    name: str
    ends: tuple[PortRef, PortRef]
    capacity_kbps: int | None = None


# The isolation a sliver type implies (docs/background.md: containers isolate much worse than
# hypervisors). Client aliases (emulab-xen, default-vm) mean a Xen-like VM.
SLIVER_TYPE_ISOLATION: Mapping[str, IsolationClass] = {
    "xen-vm": IsolationClass.HYPERVISOR,
    "emulab-xen": IsolationClass.HYPERVISOR,
    "default-vm": IsolationClass.HYPERVISOR,
    "vserver-container": IsolationClass.CONTAINER,
    "netfpga-vdp": IsolationClass.HARDWARE,
    "raw-pc": IsolationClass.HARDWARE,
    "raw": IsolationClass.HARDWARE,
    "openflow-flowspace": IsolationClass.FLOWSPACE,
}


# Sliver type names clients send for what we advertise under another name: geni-lib's XenVM
# asks for "emulab-xen", its RawPC for "raw"; ProtoGENI clients use "default-vm".
SLIVER_TYPE_ALIASES: Mapping[str, str] = {
    "emulab-xen": "xen-vm",
    "default-vm": "xen-vm",
    "raw": "raw-pc",
}


def implied_isolation(sliver_type: str | None) -> IsolationClass | None:
    """The isolation class a sliver type implies, or None when the type implies none."""
    if not sliver_type:
        return None
    return SLIVER_TYPE_ISOLATION.get(sliver_type.lower())


@dataclass(frozen=True)
class Component:
    """One advertisable piece of substrate: a host, a switch datapath, a NetFPGA card."""

    component_id: str                        # node URN: urn:publicid:IDN+<am auth>+node+<name>
    name: str
    driver: str                              # driver kind that owns it
    isolation: IsolationClass
    sliver_types: tuple[SliverTypeInfo, ...] = ()
    hardware_types: tuple[str, ...] = ()
    forwarding_modes: tuple[ForwardingMode, ...] = ()
    capacity: Mapping[str, float] = field(default_factory=dict)   # e.g. {"cpu": 8, "memory_mb": 16384}
    ports: tuple[ComponentPort, ...] = ()
    exclusive_ok: bool = False               # may be handed out exclusively
    dpid: str | None = None                  # OpenFlow datapath id, "00:00:..:01"
    location: tuple[str, float | None, float | None] | None = None  # (country, lat, lon)
    extra: Mapping[str, Any] = field(default_factory=dict)
    hosts: tuple[str, ...] = ()              # the site's host(s) it is on (inventory `host`);
                                             # () = the site's only machine; a switch may span several


@dataclass(frozen=True)
class Capabilities:
    isolation: IsolationClass
    sliver_types: tuple[str, ...]
    actions: tuple[str, ...] = (Action.START.value, Action.STOP.value, Action.RESTART.value,
                                Action.UPDATE_USERS.value)
    forwarding_modes: tuple[ForwardingMode, ...] = ()
    links: bool = False                      # can realise links between its own slivers
    wires: bool = False                      # can take a wire: another component's port that
                                             # is a plain host interface (Component.extra
                                             # "wires": port name -> interface, e.g. an
                                             # emulated NetFPGA card's), into its slivers
    bridge_ports: bool = False               # its nodes' interfaces on a link are ports of a
                                             # host bridge (`shared_bridge`) that another
                                             # driver's nodes on this machine may join (VM taps)
    joins_bridges: bool = False              # can realise a link (mode "join") by plugging its
                                             # own nodes' ends into another component's host
                                             # bridge, named in params["bridge"]
    tunnels: bool = False                    # can realise its half of a link to a node on
                                             # another host (mode "tunnel": a VXLAN device on
                                             # its host's bridge, params vni/local/remote)
    cpu_ports: bool = False                  # its forwarding-plane slivers have a CPU port
                                             # (`control_port(spec)`: the host interface where
                                             # the plane punts packets for software)
    control_ports: bool = False              # can plug a hybrid router's control-plane sliver
                                             # into its forwarding plane's CPU port
                                             # (`plug_control_port(spec, wire)`)
    links_through_switch: bool = False       # carries links through its switches (mode
                                             # "switch"; `switch_wires(slice, link, n)`: the
                                             # host ends the end hosts' wire slivers take)
    first_state: OperationalState = OperationalState.NOTREADY
    routes: bool = False                     # check_routes / set_routes: route changes of routers
    images: bool = False                     # create_image: snapshots of a sliver's filesystem
    #: the RSpec link properties its links honour (LINK_PROPERTIES); a link asking for any
    #: other is refused with UNSUPPORTED at admission, never ignored. Empty: shapes nothing.
    link_properties: tuple[str, ...] = ()


#: RSpec link `<property>` attributes a link sliver may ask for, as the advertisement names
#: them (`geniam:component link_shaping`): capacity in kbit/s, latency in ms, loss a fraction.
LINK_CAPACITY = "capacity"
LINK_LATENCY = "latency"
LINK_LOSS = "packet_loss"
LINK_PROPERTIES: tuple[str, ...] = (LINK_CAPACITY, LINK_LATENCY, LINK_LOSS)


@dataclass(frozen=True)
class UserKeys:
    urn: str
    keys: tuple[str, ...] = ()

    @property
    def login(self) -> str:
        """Account name: the URN's name part (GENI user names are <= 8 word characters)."""
        return self.urn.rsplit("+", 1)[-1]

    def login_problem(self) -> str | None:
        """Why `login` cannot be an account name on a node (None: it can). Checked by the API
        for every geni_users entry, so no driver ever sees a login such as `../x`."""
        if not LOGIN_RE.match(self.login):
            return (f"user {self.urn}: login {self.login!r} is not a valid account name "
                    "(a letter or _ first, then up to 31 letters, digits, _ . -)")
        return None


#: A login (account) name: what useradd and sshd accept, and safe as a directory name.
LOGIN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")


@dataclass(frozen=True)
class InterfaceSpec:
    client_id: str
    name: str                                # name on the sliver, e.g. "eth1"
    ips: tuple[tuple[str, str], ...] = ()    # (address, netmask)
    mac: str | None = None                   # assigned by the AM at allocate
    link_client_id: str | None = None
    vlan_tag: int | None = None
    port: str | None = None                  # ComponentPort.component_id when bound to hardware


@dataclass(frozen=True)
class LinkEnd:
    sliver_urn: str
    node_client_id: str
    interface_client_id: str
    component_id: str


@dataclass(frozen=True)
class LinkSpec:
    ends: tuple[LinkEnd, ...]
    capacity_kbps: int | None = None
    latency_ms: float | None = None
    packet_loss: float | None = None
    vlan_tag: int | None = None
    mode: str = "veth"                       # veth | bridge | wire | join | vlan | flowspace
                                             # | stitch | cable


@dataclass(frozen=True)
class SliverSpec:
    """Everything a driver needs to build one sliver; the AM's record of it lives elsewhere."""

    sliver_urn: str
    slice_urn: str
    client_id: str
    kind: ResourceKind
    component_id: str
    sliver_type: str | None = None
    disk_image: str | None = None
    cpu: float | None = None
    memory_mb: int | None = None
    exclusive: bool = False
    router: bool = False
    forwarding: ForwardingMode | None = None
    interfaces: tuple[InterfaceSpec, ...] = ()
    routes: tuple[Route, ...] = ()
    installs: tuple[Install, ...] = ()
    executes: tuple[Execute, ...] = ()
    users: tuple[UserKeys, ...] = ()
    link: LinkSpec | None = None
    openflow: OpenFlowSliver | None = None
    params: Mapping[str, Any] = field(default_factory=dict)   # driver-specific extras


@dataclass(frozen=True)
class Usage:
    """What is already reserved on one component (all live slivers but the one being admitted)."""

    component_id: str
    used: Mapping[str, float] = field(default_factory=dict)   # resource -> amount reserved
    slivers: tuple[SliverSpec, ...] = ()                       # live specs, for overlap checks
    exclusive_holder: str | None = None                        # slice URN holding it exclusively


class Refusal(str, enum.Enum):
    """Why `admit` refuses: the GENI error code (by name) the AM answers with. An enum, so a
    misspelt code fails where it is written instead of turning into ERROR at the API."""

    BADARGS = "BADARGS"                      # the request itself is wrong
    UNSUPPORTED = "UNSUPPORTED"              # this component cannot do that at all
    TOOBIG = "TOOBIG"                        # more than the component has in all
    INSUFFICIENT_NODES = "INSUFFICIENT_NODES"    # not enough left now
    INSUFFICIENT_BANDWIDTH = "INSUFFICIENT_BANDWIDTH"
    VLAN_UNAVAILABLE = "VLAN_UNAVAILABLE"
    UNAVAILABLE = "UNAVAILABLE"              # held by another slice (a port, a flowspace cell)
    REFUSED = "REFUSED"
    BUSY = "BUSY"
    OUTOFRANGE = "OUTOFRANGE"
    EXPIRED = "EXPIRED"
    ALREADYEXISTS = "ALREADYEXISTS"
    SEARCHFAILED = "SEARCHFAILED"
    ERROR = "ERROR"


#: Resource names in `Component.capacity`, `Admission.demand` and `Usage.used`. Every amount is
#: a whole number in the unit the name says, so sums are exact (19 x 100 milli-cores plus 100
#: fit in 2000; 19 x 0.1 cores plus 0.1 did not fit in 2.0 in floating point).
CPU_MILLI = "cpu_milli"                      # thousandths of a core (or of a vCPU)
MEMORY_MB = "memory_mb"                      # MiB
#: Link bandwidth of a wired port is `kbps:<port>` (kbit/s).
KBPS_PREFIX = "kbps:"


def milli(cores: float) -> int:
    """Cores (as requested, e.g. 0.1) in whole milli-cores."""
    return round(float(cores) * 1000)


def exact_capacity(capacity: Mapping[str, float]) -> dict[str, int]:
    """Capacity as configured (cpu in cores, e.g. `cpu = 2`) in whole units: `cpu` becomes
    `cpu_milli`; every other amount is already whole (MiB, kbit/s, slots, table entries)."""
    out: dict[str, int] = {}
    for resource, amount in capacity.items():
        if resource == "cpu":
            out[CPU_MILLI] = milli(amount)
        else:
            out[resource] = units(amount)
    return out


def units(amount: float) -> int:
    """An amount (possibly read back from a database float) as the whole number it stands for."""
    return round(float(amount))


@dataclass(frozen=True)
class Admission:
    """The answer of `admit`: either a demand to reserve, or a refusal with its reason.

    `demand` maps resource names (those in `Component.capacity`) to amounts. The store reserves
    them in one transaction guarded by constraints; `claims` are unique tokens (VLAN tags,
    NetFPGA slots, flowspace cells) that no two live slivers may hold on one component.
    `reason_code` is a GENI error code name for a refusal (e.g. "INSUFFICIENT_NODES", "TOOBIG",
    "VLAN_UNAVAILABLE", "INSUFFICIENT_BANDWIDTH", "BADARGS", "UNSUPPORTED").
    """

    ok: bool
    demand: Mapping[str, float] = field(default_factory=dict)
    claims: tuple[str, ...] = ()
    reason: str | None = None
    reason_code: str | None = None

    @classmethod
    def accept(cls, demand: Mapping[str, float] | None = None, claims: tuple[str, ...] = ()) -> "Admission":
        return cls(ok=True, demand=dict(demand or {}), claims=claims)

    @classmethod
    def refuse(cls, reason: str, code: Refusal | str = Refusal.INSUFFICIENT_NODES) -> "Admission":
        return cls(ok=False, reason=reason, reason_code=Refusal(code).value)


@dataclass(frozen=True)
class Login:
    hostname: str
    port: int
    username: str


@dataclass(frozen=True)
class ProvisionResult:
    state: OperationalState
    macs: Mapping[str, str] = field(default_factory=dict)      # interface client_id -> MAC
    logins: tuple[Login, ...] = ()
    resource_status: str = ""
    handle: str | None = None                                  # driver's own name for it


@dataclass(frozen=True)
class ObservedSliver:
    """Something that exists on the substrate; `sliver_urn` is None when it belongs to nobody."""

    handle: str
    sliver_urn: str | None
    state: OperationalState | None = None
    detail: str = ""


class DriverError(Exception):
    """A driver operation failed. `transient` errors are retried with back-off by the jobs."""

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.transient = transient


def check_capacity(comp: Component, admission: Admission, usage: Usage, *,
                   cpu_unit: str = "cpu") -> Admission:
    """`admission` as it is if its demand fits `comp` beside `usage`, else the refusal: TOOBIG
    when the component has less in all, INSUFFICIENT_NODES when not enough is left now. Whole
    units only (see CPU_MILLI), so the answer never depends on rounding."""
    for resource, amount in sorted(admission.demand.items()):
        cap = comp.capacity.get(resource)
        if cap is None:
            continue
        need, total = units(amount), units(cap)
        left = total - units(usage.used.get(resource, 0))
        shown, unit = _shown(resource, cpu_unit)
        if need > total:
            return Admission.refuse(f"component {comp.component_id} has {shown(total)} {unit} in "
                                    f"all; {shown(need)} requested", Refusal.TOOBIG)
        if need > left:
            return Admission.refuse(f"component {comp.component_id} has {shown(left)} of "
                                    f"{shown(total)} {unit} free; {shown(need)} requested",
                                    Refusal.INSUFFICIENT_NODES)
    return admission


def unshapeable(spec: SliverSpec, comp: Component, shaping: Sequence[str]) -> str | None:
    """Why the link sliver `spec` cannot go on `comp`, which shapes only `shaping`: the first
    property it asks for (a non-zero value) that `comp` cannot honour, named with the link and
    the component; None when it asks for nothing more than `comp` shapes."""
    link = spec.link
    if link is None:
        return None
    asked = ((LINK_CAPACITY, link.capacity_kbps, "{:g} kbit/s capacity"),
             (LINK_LATENCY, link.latency_ms, "{:g} ms latency"),
             (LINK_LOSS, link.packet_loss, "{:g} packet loss"))
    for prop, value, shown in asked:
        if value and prop not in shaping:
            can = ", ".join(shaping) if shaping else "no link property"
            return (f"link {spec.client_id} asks for {shown.format(value)}; component "
                    f"{comp.component_id} ({comp.name}) cannot shape {prop} (it shapes: {can})")
    return None


def _shown(resource: str, cpu_unit: str):
    """How a refusal shows amounts of `resource`: (format, unit); milli-cores as cores."""
    if resource == CPU_MILLI:
        return (lambda v: f"{v / 1000:g}"), cpu_unit
    if resource == MEMORY_MB:
        return str, "MiB of memory"
    return str, resource


class SubstrateDriver(ABC):
    """Base class of every substrate driver.

    A driver is built from its section of the site inventory (TOML): `config` holds the
    driver-level settings and `components` the component tables that name this driver.
    """

    kind: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def __init__(self, config: Mapping[str, Any], components: list[Mapping[str, Any]],
                 *, authority: str):
        self.config = dict(config)
        self.component_configs = list(components)
        self.authority = authority   # the AM's URN authority, for minting component URNs

    @abstractmethod
    def inventory(self) -> list[Component]:
        """What exists, for advertisements and placement."""

    def _component_by_urn(self, component_id: str) -> Component | None:
        """This driver's component with that URN (URNs compare case-insensitively), or None.

        Indexes `inventory()` once, on first use; drivers' inventories do not change after.
        """
        index = self.__dict__.get("_component_index")
        if index is None:
            index = {c.component_id.lower(): c for c in self.inventory()}
            self._component_index = index
        return index.get(component_id.lower())

    #: How refusals name CPU amounts of this driver's components ("cores", "vCPUs").
    cpu_unit: ClassVar[str] = "cpu"
    #: Why its links shape no more than they do, added to a refusal of a link property
    #: (e.g. "this kernel has no netem qdisc").
    shaping_note: ClassVar[str] = ""

    def admit(self, spec: SliverSpec, usage: Usage) -> Admission:
        """Pure admission, the same steps for every driver: find the component (BADARGS if it
        is not this driver's), check a router's routes are routes (BADARGS), ask the driver's
        own part (`admit_component`), then check its demand against the component's capacity
        and what `usage` already holds, in exact whole units (TOOBIG, INSUFFICIENT_NODES)."""
        comp = self._component_by_urn(spec.component_id)
        if comp is None:
            return Admission.refuse(f"{spec.component_id} is not a component of the {self.kind} "
                                    "driver", Refusal.BADARGS)
        if spec.router and spec.routes:
            try:
                normalise_all(spec.routes)
            except RouteError as exc:
                return Admission.refuse(f"node {spec.client_id}: {exc}", Refusal.BADARGS)
        if spec.kind is ResourceKind.LINK and spec.link is not None:
            problem = unshapeable(spec, comp, self.link_shaping(comp))
            if problem:
                note = f": {self.shaping_note}" if self.shaping_note else ""
                return Admission.refuse(problem + note, Refusal.UNSUPPORTED)
        admission = self.admit_component(comp, spec, usage)
        if not admission.ok:
            return admission
        return check_capacity(comp, admission, usage, cpu_unit=self.cpu_unit)

    def link_shaping(self, comp: Component) -> tuple[str, ...]:
        """The link properties links on `comp` honour (advertised as `link_shaping`, checked
        by `admit`): the declared `Capabilities.link_properties`, unless a driver knows better
        per component (a host without netem, say)."""
        return tuple(self.capabilities.link_properties)

    def admit_component(self, comp: Component, spec: SliverSpec, usage: Usage) -> Admission:
        """The driver's own admission of `spec` on its component `comp` (found already): what
        it would reserve, or why not. Pure. The capacity check of the demand comes after."""
        raise NotImplementedError(f"{type(self).__name__} implements neither admit nor "
                                  "admit_component")

    def available(self, comp: Component, usage: Usage | None) -> bool:
        """May the advertisement say `available now="true"` for `comp`? Default: nobody holds
        it exclusively and every resource it has (link bandwidth aside) has some left.
        Drivers whose components fill up in other ways (slots, tables) override this."""
        if usage is not None and usage.exclusive_holder is not None:
            return False
        used = usage.used if usage is not None else {}
        own = {r: c for r, c in comp.capacity.items() if not r.startswith(KBPS_PREFIX)}
        return bool(own) and all(units(c) - units(used.get(r, 0)) > 0 for r, c in own.items())

    @abstractmethod
    def provision(self, spec: SliverSpec) -> ProvisionResult:
        """Create or converge the sliver; idempotent."""

    @abstractmethod
    def perform(self, spec: SliverSpec, action: str) -> OperationalState:
        """Run an operational action; raise DriverError if it fails."""

    @abstractmethod
    def status(self, spec: SliverSpec) -> OperationalState:
        """The operational state the substrate reports now."""

    @abstractmethod
    def delete(self, spec: SliverSpec) -> None:
        """Remove everything made for the sliver; idempotent; no error if already gone."""

    @abstractmethod
    def observed(self) -> list[ObservedSliver]:
        """Everything this driver finds on its substrate, owned or not. Called while jobs
        run: something a job is making now must not be reported as owned by no sliver
        (`sliver_urn` None), as the reconciler releases those."""

    def check_update(self, old: SliverSpec, new: SliverSpec) -> None:
        """Pure: raise DriverError when a running sliver `old` cannot become `new` in place
        (the AM refuses the Update with UNSUPPORTED and the reason, and changes nothing).
        Default: nothing changes in place; a driver that can reconfigure overrides this."""
        raise DriverError(f"{self.kind} slivers cannot be reconfigured in place")

    def update(self, old: SliverSpec, new: SliverSpec) -> ProvisionResult:
        """Reconfigure the running sliver `old` into `new` (Provision after an Update);
        idempotent, like `provision`. Only called after `check_update` accepted the pair."""
        raise DriverError(f"{self.kind} slivers cannot be reconfigured in place")

    def check_users(self, users: Sequence[UserKeys]) -> None:
        """Pure: raise DriverError when this driver cannot give these geni_users accounts on
        its nodes (the API refuses the Provision or geni_update_users with BADARGS before
        anything is written). Default: every user the API accepted is fine."""

    def logins(self, spec: SliverSpec) -> tuple[Login, ...] | None:
        """The logins a node sliver offers now, read after geni_update_users (which may add or
        drop accounts), or None: whatever provision reported still holds (the default)."""
        return None

    def live_status(self, spec: SliverSpec) -> str | None:
        """What the substrate says about a provisioned sliver now, for geni_resource_status
        (counters, health), or None: the text stored at provision holds (the default). Must be
        cheap and must not change anything: Status calls it."""
        return None

    def shared_bridge(self, slice_urn: str, link_client_id: str) -> str | None:
        """The host bridge this driver's node interfaces on link `link_client_id` of the slice
        are ports of, for a driver with `capabilities.joins_bridges` to plug its own nodes'
        ends into (a link between, e.g., a VM and a container on one machine). Pure and
        deterministic; None (the default): this driver's interfaces are no bridge ports."""
        return None

    def site_links(self) -> list[SiteLink]:
        """Wiring the driver knows by itself (e.g. the fake switch); the inventory adds the rest."""
        return []

    def release(self, handle: str) -> None:
        """Remove an orphan the reconciler found through `observed` (default: nothing to do)."""

    def close(self) -> None:
        """Release connections and helper processes."""
