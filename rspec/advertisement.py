"""Building the advertisement RSpec (ListResources).

Input is duck-typed: anything shaped like `drivers.base.Component` (see `ComponentLike`), so
this library never imports `drivers`. Ordinary components become core `<node>`s carrying a
`geniam:component` element (isolation class, forwarding modes, capacity and free figures);
OpenFlow datapaths (driver "openflow" or a dpid) become top-level `<openflow:datapath>`s with
their ports, as FOAM advertises them. The opstate extension describes the operational state
machine. The text is assembled directly, with escaping, because a 10,000-node advertisement
must build in well under half a second.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from rspec import namespaces as ns
from rspec.xmltext import attr, enum_value, number, text, timestamp


class DiskImageLike(Protocol):
    name: str
    os: str
    version: str
    description: str
    default: bool


class SliverTypeLike(Protocol):
    name: str
    disk_images: Sequence[DiskImageLike]


class PortLike(Protocol):
    component_id: str
    name: str
    num: int | None
    capacity_kbps: int | None


class ComponentLike(Protocol):
    """The shape of `drivers.base.Component` that the builder reads."""

    component_id: str
    name: str
    driver: str
    isolation: Any                     # IsolationClass or its string value
    sliver_types: Sequence[SliverTypeLike]
    hardware_types: Sequence[str]
    forwarding_modes: Sequence[Any]    # ForwardingMode or string values
    capacity: Mapping[str, float]
    ports: Sequence[PortLike]
    exclusive_ok: bool
    dpid: str | None
    location: tuple[str, float | None, float | None] | None
    extra: Mapping[str, Any]


@dataclass(frozen=True)
class AdLink:
    """A physical link between advertised interfaces (component_ids of ports)."""

    component_id: str
    name: str
    interface_refs: tuple[str, ...]
    link_type: str | None = "lan"
    capacity_kbps: int | None = None
    component_managers: tuple[str, ...] = ()   # default: this AM


@dataclass(frozen=True)
class OpAction:
    name: str
    next: str
    description: str = ""


@dataclass(frozen=True)
class OpState:
    name: str
    description: str = ""
    actions: tuple[OpAction, ...] = ()


@dataclass(frozen=True)
class OpstateSpec:
    """One `opstate:rspec_opstate` element: a state machine for some sliver types."""

    start: str
    states: tuple[OpState, ...]
    sliver_types: tuple[str, ...] = ()


def default_opstate(sliver_types: Iterable[str] = (), start: str = "geni_notready") -> OpstateSpec:
    """The GENI state machine every driver implements (AM API v3 operational states)."""
    return OpstateSpec(
        start=start,
        sliver_types=tuple(sliver_types),
        states=(
            OpState("geni_notready", "Provisioned but not running; start it to use it.", (
                OpAction("geni_start", "geni_configuring", "Boot the sliver"),)),
            OpState("geni_configuring", "Booting and configuring; becomes ready or failed."),
            OpState("geni_ready", "Running and usable.", (
                OpAction("geni_restart", "geni_configuring", "Reboot the sliver"),
                OpAction("geni_stop", "geni_stopping", "Shut the sliver down"),
                OpAction("geni_update_users", "geni_updating_users",
                         "Install the given users' SSH keys"))),
            OpState("geni_updating_users", "Installing user accounts; becomes ready."),
            OpState("geni_stopping", "Shutting down; becomes not ready."),
            OpState("geni_failed", "Failed; restart it or delete it.", (
                OpAction("geni_restart", "geni_configuring", "Try to boot the sliver again"),)),
        ),
    )


_HEADER = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    f'<rspec xmlns="{ns.RSPEC3}" xmlns:xsi="{ns.XSI}" xmlns:opstate="{ns.OPSTATE}" '
    f'xmlns:openflow="{ns.OPENFLOW3}" xmlns:geniam="{ns.GENIAM}" '
    f'xsi:schemaLocation="{ns.RSPEC3} {ns.AD_XSD_URL} {ns.OPSTATE} {ns.OPSTATE_XSD_URL} '
    f'{ns.OPENFLOW3} {ns.OPENFLOW_AD_XSD_URL} {ns.GENIAM} {ns.GENIAM_XSD_URL}" '
    'type="advertisement" generated_by="geni-am"'
)


def is_openflow(component: ComponentLike) -> bool:
    return component.driver == "openflow" or bool(getattr(component, "dpid", None))


def build_advertisement(
    components: Iterable[ComponentLike], *, am_urn: str,
    available: Mapping[str, bool] | None = None, available_only: bool = False,
    links: Iterable[AdLink] = (),
    opstate: OpstateSpec | Iterable[OpstateSpec] | None = None,
    generated: datetime | None = None, expires: datetime | None = None,
    free: Mapping[str, Mapping[str, float]] | None = None,
    shaping: Mapping[str, Sequence[str]] | None = None,
    stitching: str | None = None,
    hosts: Mapping[str, tuple[str, str, str]] | None = None,
) -> str:
    """The advertisement RSpec text (valid against `ad-bundle.xsd`).

    `available`: component_id -> available now (missing = available). `available_only`: omit
    unavailable components (the `geni_available` option). `free`: component_id -> resource ->
    amount left unreserved, advertised next to the capacity. `shaping`: component_id -> the
    link properties (capacity latency packet_loss) links on it honour, advertised as
    `geniam:component link_shaping` (missing: the component carries no links of its own).
    `stitching`: the top-level `<stitching>` element text (`rspec.stitching.stitching_ad`)
    when the AM has edge ports.
    `hosts`: component_id -> (host, host state, why unavailable or ""), on a site of many hosts.
    """
    available = available or {}
    free = free or {}
    shaping = shaping or {}
    hosts = hosts or {}
    mgr = attr(am_urn)
    out: list[str] = [_HEADER, f' generated="{timestamp(generated or datetime.now(timezone.utc))}"']
    if expires is not None:
        out.append(f' expires="{timestamp(expires)}"')
    out.append(">\n")
    if opstate is not None:
        specs = [opstate] if isinstance(opstate, OpstateSpec) else list(opstate)
        for spec in specs:
            _opstate(out, spec, mgr)
    for comp in components:
        now = available.get(comp.component_id, True)
        if available_only and not now:
            continue
        if is_openflow(comp):
            _datapath(out, comp, mgr, free.get(comp.component_id, {}),
                      shaping.get(comp.component_id))
        else:
            _node(out, comp, mgr, now, free.get(comp.component_id, {}),
                  shaping.get(comp.component_id), hosts.get(comp.component_id))
    for link in links:
        _link(out, link, mgr)
    if stitching:
        out.append(stitching)
    out.append("</rspec>\n")
    return "".join(out)


def _opstate(out: list[str], spec: OpstateSpec, mgr: str) -> None:
    out.append(f'  <opstate:rspec_opstate aggregate_manager_id="{mgr}" start="{attr(spec.start)}">\n')
    for name in spec.sliver_types:
        out.append(f'    <opstate:sliver_type name="{attr(name)}"/>\n')
    for state in spec.states:
        out.append(f'    <opstate:state name="{attr(state.name)}">\n')
        for action in state.actions:
            out.append(f'      <opstate:action name="{attr(action.name)}" next="{attr(action.next)}"')
            if action.description:
                out.append(f'><opstate:description>{text(action.description)}'
                           '</opstate:description></opstate:action>\n')
            else:
                out.append('/>\n')
        if state.description:
            out.append(f'      <opstate:description>{text(state.description)}</opstate:description>\n')
        out.append('    </opstate:state>\n')
    out.append('  </opstate:rspec_opstate>\n')


def _node(out: list[str], comp: ComponentLike, mgr: str, now: bool,
          free: Mapping[str, float], shaping: Sequence[str] | None,
          host: tuple[str, str, str] | None = None) -> None:
    exclusive = "true" if comp.exclusive_ok else "false"
    out.append(f'  <node component_id="{attr(comp.component_id)}" component_manager_id="{mgr}" '
               f'component_name="{attr(comp.name)}" exclusive="{exclusive}">\n')
    for hw in comp.hardware_types:
        out.append(f'    <hardware_type name="{attr(hw)}"/>\n')
    for st in comp.sliver_types:
        if not st.disk_images:
            out.append(f'    <sliver_type name="{attr(st.name)}"/>\n')
            continue
        out.append(f'    <sliver_type name="{attr(st.name)}">\n')
        for img in st.disk_images:
            out.append(f'      <disk_image name="{attr(img.name)}"')
            if img.os:
                out.append(f' os="{attr(img.os)}"')
            if img.version:
                out.append(f' version="{attr(img.version)}"')
            if img.description:
                out.append(f' description="{attr(img.description)}"')
            out.append(' default="true"/>\n' if img.default else '/>\n')
        out.append('    </sliver_type>\n')
    if comp.location:
        out.append('    ' + _location("location", comp.location) + '\n')
    for port in comp.ports:
        out.append(f'    <interface component_id="{attr(port.component_id)}" '
                   f'component_name="{attr(port.name)}" role="experimental"')
        extras = _port_extras(port)
        out.append(f'>{extras}</interface>\n' if extras else '/>\n')
    out.append(f'    <available now="{"true" if now else "false"}"/>\n')
    _component_ext(out, comp, free, shaping, host)
    out.append('  </node>\n')


def _port_extras(port: PortLike) -> str:
    parts = []
    if port.num is not None:
        parts.append(f' num="{int(port.num)}"')
    if port.capacity_kbps is not None:
        parts.append(f' capacity_kbps="{int(port.capacity_kbps)}"')
    return f'<geniam:port{"".join(parts)}/>' if parts else ""


def _location(tag: str, location: tuple[str, float | None, float | None]) -> str:
    country, lat, lon = location
    s = f'<{tag} country="{attr(country)}"'
    if lat is not None:
        s += f' latitude="{number(lat)}"'
    if lon is not None:
        s += f' longitude="{number(lon)}"'
    return s + '/>'


def _component_ext(out: list[str], comp: ComponentLike, free: Mapping[str, float],
                   shaping: Sequence[str] | None,
                   host: tuple[str, str, str] | None = None) -> None:
    s = [f'    <geniam:component driver="{attr(comp.driver)}" '
         f'isolation="{attr(enum_value(comp.isolation))}"']
    if host is not None:
        s.append(f' host="{attr(host[0])}" host_state="{attr(host[1])}"')
        if host[2]:
            s.append(f' unavailable_reason="{attr(host[2])}"')
    if comp.forwarding_modes:
        modes = " ".join(enum_value(m) for m in comp.forwarding_modes)
        s.append(f' forwarding_modes="{attr(modes)}"')
    if shaping is not None:     # what its links can honour (the rest is refused, not ignored)
        s.append(f' link_shaping="{attr(" ".join(shaping))}"')
    capacity = comp.capacity or {}
    others = []
    for key, total in capacity.items():
        left = free.get(key)
        if key == "cpu_milli":      # accounted in milli-cores, shown in cores
            s.append(f' cpu="{number(max(total, 0) / 1000)}"')
            if left is not None:
                s.append(f' free_cpu="{number(max(left, 0) / 1000)}"')
        elif key == "memory_mb":
            s.append(f' {key}="{number(max(total, 0))}"')
            if left is not None:
                s.append(f' free_{key}="{number(max(left, 0))}"')
        else:
            extra = f' free="{number(max(left, 0))}"' if left is not None else ""
            others.append(f'      <geniam:capacity resource="{attr(key)}" '
                          f'total="{number(max(total, 0))}"{extra}/>\n')
    if others:
        out.append("".join(s) + ">\n" + "".join(others) + "    </geniam:component>\n")
    else:
        out.append("".join(s) + "/>\n")


def _datapath(out: list[str], comp: ComponentLike, mgr: str, free: Mapping[str, float],
              shaping: Sequence[str] | None) -> None:
    dpid = comp.dpid or ""
    out.append(f'  <openflow:datapath component_id="{attr(comp.component_id)}" '
               f'component_manager_id="{mgr}" dpid="{attr(dpid)}">\n')
    if comp.location:
        out.append('    ' + _location("openflow:location", comp.location) + '\n')
    for port in comp.ports:
        if port.num is None:   # an OpenFlow port is addressed by number; none, no flowspace
            continue
        name = f' name="{attr(port.name)}"' if port.name else ""
        out.append(f'    <openflow:port num="{int(port.num)}"{name}/>\n')
    _component_ext(out, comp, free, shaping)
    out.append('  </openflow:datapath>\n')


def _link(out: list[str], link: AdLink, mgr: str) -> None:
    out.append(f'  <link component_id="{attr(link.component_id)}" '
               f'component_name="{attr(link.name)}">\n')
    managers = link.component_managers or ()
    if not managers:
        out.append(f'    <component_manager name="{mgr}"/>\n')
    for m in managers:
        out.append(f'    <component_manager name="{attr(m)}"/>\n')
    for ref in link.interface_refs:
        out.append(f'    <interface_ref component_id="{attr(ref)}"/>\n')
    if link.capacity_kbps is not None and len(link.interface_refs) == 2:
        a, b = (attr(r) for r in link.interface_refs)
        cap = int(link.capacity_kbps)
        out.append(f'    <property source_id="{a}" dest_id="{b}" capacity="{cap}"/>\n')
        out.append(f'    <property source_id="{b}" dest_id="{a}" capacity="{cap}"/>\n')
    if link.link_type:
        out.append(f'    <link_type name="{attr(link.link_type)}"/>\n')
    out.append('  </link>\n')
