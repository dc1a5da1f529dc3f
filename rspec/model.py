"""Typed model of a GENI RSpec v3 request.

Plain frozen dataclasses: the parser (`rspec.request`) produces them, the placement engine and the
drivers consume them. Nothing here knows XML, so the model can be built by hand in tests.

Units are fixed here once: link capacity in kbit/s, latency in ms, packet loss as a 0..1
fraction (the ProtoGENI reading; see docs/rspec.md), memory in MiB, CPU as a share of cores.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

from rspec.stitching import StitchPath


class IsolationClass(str, enum.Enum):
    """How strongly a component isolates one sliver from its neighbours (docs/background.md, the isolation table)."""

    HYPERVISOR = "hypervisor"  # Xen: full virtual hardware per VM
    CONTAINER = "container"    # VServer/LXC: one shared kernel, weaker isolation
    HARDWARE = "hardware"      # NetFPGA slot / dedicated hardware
    FLOWSPACE = "flowspace"    # OpenFlow: traffic separated by flow tables

    @property
    def strength(self) -> int:
        """Order used for "at least this strong" placement checks."""
        return {"container": 1, "flowspace": 1, "hypervisor": 2, "hardware": 3}[self.value]


class ForwardingMode(str, enum.Enum):
    """Where a virtual router's packets are forwarded (routing always stays in the sliver)."""

    GUEST = "guest"        # forwarded inside the VM/container itself
    DOM0 = "dom0"          # routes pushed into the Xen host's Dom0 forwarding table
    OPENFLOW = "openflow"  # routes pushed as flows into an OpenFlow switch
    HARDWARE = "hardware"  # routes pushed into a NetFPGA virtual data plane slot


@dataclass(frozen=True)
class IPv4:
    address: str
    netmask: str = ""
    type: str = "ipv4"


@dataclass(frozen=True)
class RequestInterface:
    client_id: str
    component_id: str | None = None
    ips: tuple[IPv4, ...] = ()


@dataclass(frozen=True)
class Install:
    url: str
    install_path: str


@dataclass(frozen=True)
class Execute:
    shell: str
    command: str


@dataclass(frozen=True)
class Login:
    authentication: str = "ssh-keys"
    hostname: str | None = None
    port: int | None = None
    username: str | None = None


@dataclass(frozen=True)
class Services:
    installs: tuple[Install, ...] = ()
    executes: tuple[Execute, ...] = ()
    logins: tuple[Login, ...] = ()


@dataclass(frozen=True)
class Route:
    """A static route (our extension): destination prefix via next hop, optionally out of an
    interface (client_id)."""

    destination: str        # CIDR, e.g. "10.2.0.0/24" or "0.0.0.0/0"
    gateway: str | None = None
    interface: str | None = None


@dataclass(frozen=True)
class NodeExtension:
    """What our extension namespace (`rspec.namespaces.GENIAM`) adds to a request node."""

    isolation: IsolationClass | None = None    # minimum isolation the node requires
    router: bool = False                       # the node is a virtual router (forwards packets)
    forwarding: ForwardingMode | None = None   # where a router forwards; None = AM chooses
    cpu: float | None = None                   # CPU share, in cores (0.5 = half a core)
    memory_mb: int | None = None
    routes: tuple[Route, ...] = ()


@dataclass(frozen=True)
class RequestNode:
    client_id: str
    component_id: str | None = None            # bound when given, unbound otherwise
    component_name: str | None = None
    component_manager_id: str | None = None
    exclusive: bool | None = None
    sliver_type: str | None = None
    disk_image: str | None = None
    hardware_type: str | None = None
    interfaces: tuple[RequestInterface, ...] = ()
    services: Services = field(default_factory=Services)
    ext: NodeExtension = field(default_factory=NodeExtension)
    source_line: int | None = None             # for error messages
    # The original request <node> serialized (echoed, annotated, in the manifest). Not part of
    # equality: two nodes with the same model are the same request whatever their formatting.
    element_xml: str | None = field(default=None, compare=False, repr=False)

    def interface(self, client_id: str) -> RequestInterface | None:
        return next((i for i in self.interfaces if i.client_id == client_id), None)


@dataclass(frozen=True)
class LinkProperty:
    source_id: str
    dest_id: str
    capacity_kbps: int | None = None
    latency_ms: float | None = None
    packet_loss: float | None = None           # fraction 0..1


@dataclass(frozen=True)
class RequestLink:
    client_id: str
    interface_refs: tuple[str, ...] = ()       # interface client_ids
    properties: tuple[LinkProperty, ...] = ()
    link_type: str | None = None               # e.g. "lan", "vlan", "gre-tunnel"; None = plain L2
    component_managers: tuple[str, ...] = ()
    vlan_tag: int | None = None                # requested tag hint, if any
    switch: str | None = None                  # geniam:link switch=: carry it through this switch
    shared_vlan: str | None = None             # sharedvlan:link_shared_vlan name
    source_line: int | None = None
    element_xml: str | None = field(default=None, compare=False, repr=False)  # original <link>
    stitching: StitchPath | None = None        # the <stitching><path> of a stitched link

    @property
    def stitched(self) -> bool:
        """A link between aggregates: one with a stitching path."""
        return self.stitching is not None

    @property
    def capacity_kbps(self) -> int | None:
        """The largest capacity asked for in any direction (what must be reserved)."""
        caps = [p.capacity_kbps for p in self.properties if p.capacity_kbps is not None]
        return max(caps) if caps else None


@dataclass(frozen=True)
class PacketMatch:
    """One OpenFlow v3 `<openflow:packet>`: each field a tuple of the comma-separated values."""

    dl_src: tuple[str, ...] = ()
    dl_dst: tuple[str, ...] = ()
    dl_type: tuple[str, ...] = ()
    dl_vlan: tuple[int, ...] = ()
    nw_src: tuple[str, ...] = ()
    nw_dst: tuple[str, ...] = ()
    nw_proto: tuple[int, ...] = ()
    tp_src: tuple[int, ...] = ()
    tp_dst: tuple[int, ...] = ()


@dataclass(frozen=True)
class OFPort:
    num: int
    name: str | None = None


@dataclass(frozen=True)
class OFDatapath:
    component_id: str
    component_manager_id: str | None = None
    dpid: str | None = None
    ports: tuple[OFPort, ...] = ()


@dataclass(frozen=True)
class OFController:
    url: str                                   # e.g. "tcp:127.0.0.1:6653"
    type: str = "primary"                      # primary | backup | monitor


@dataclass(frozen=True)
class OFGroup:
    name: str
    datapaths: tuple[OFDatapath, ...] = ()


@dataclass(frozen=True)
class OFMatch:
    use_groups: tuple[str, ...] = ()
    datapaths: tuple[OFDatapath, ...] = ()
    packet: PacketMatch = field(default_factory=PacketMatch)


@dataclass(frozen=True)
class OpenFlowSliver:
    controllers: tuple[OFController, ...] = ()
    groups: tuple[OFGroup, ...] = ()
    matches: tuple[OFMatch, ...] = ()
    description: str | None = None
    email: str | None = None
    source_line: int | None = None
    element_xml: str | None = field(default=None, compare=False, repr=False)  # original sliver


@dataclass(frozen=True)
class Request:
    """A parsed, validated request, already reduced to this AM's part.

    `foreign_xml` keeps, serialized and unchanged, the nodes and links that belong to other AMs
    and the top-level extension elements we do not understand: the manifest echoes them.
    """

    nodes: tuple[RequestNode, ...] = ()
    links: tuple[RequestLink, ...] = ()
    openflow: tuple[OpenFlowSliver, ...] = ()
    foreign_xml: tuple[str, ...] = ()
    generated_by: str | None = None

    def node(self, client_id: str) -> RequestNode | None:
        return next((n for n in self.nodes if n.client_id == client_id), None)

    def node_of_interface(self, interface_client_id: str) -> RequestNode | None:
        return next((n for n in self.nodes if n.interface(interface_client_id) is not None), None)
