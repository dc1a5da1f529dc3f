"""Pure admission for container slivers: may this spec go on this node, given its usage?

Refusals carry GENI error code names: TOOBIG (more than the node has at all),
INSUFFICIENT_NODES (not enough left now), UNSUPPORTED (the node cannot do it: stronger
isolation, another forwarding mode, latency or loss emulation), BADARGS (the request is wrong).
"""
from __future__ import annotations

import ipaddress
import re

from drivers.base import (
    CPU_MILLI,
    MEMORY_MB,
    Admission,
    Component,
    ForwardingMode,
    IsolationClass,
    ResourceKind,
    SliverSpec,
    Usage,
    implied_isolation,
    milli,
    units,
)
from drivers.hostnet import IFNAMSIZ, NO_NETEM
from drivers.routesync import RouteError, normalise_all
from drivers.vserver.config import VServerSettings
from drivers.vserver.services import execute_problem, install_url_problem

#: Forwarding a container router's control plane may have in a sliver of its own (a hybrid
#: router): the AM places the forwarding plane and syncs the routes into it.
REMOTE_MODES = (ForwardingMode.HARDWARE, ForwardingMode.OPENFLOW)
IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def admit_sliver(comp: Component, spec: SliverSpec, usage: Usage,
                 settings: VServerSettings) -> Admission:
    if spec.kind is ResourceKind.NODE:
        return _admit_node(comp, spec, usage, settings)
    if spec.kind is ResourceKind.LINK:
        return _admit_link(comp, spec)
    return Admission.refuse(f"vserver node {comp.name} holds containers and links, not "
                            f"{spec.kind.value} slivers", "UNSUPPORTED")


def _admit_node(comp: Component, spec: SliverSpec, usage: Usage,
                settings: VServerSettings) -> Admission:
    cid = comp.component_id
    stype = (spec.sliver_type or "").lower()
    offered = {t.name.lower() for t in comp.sliver_types}
    if stype and stype not in offered:
        return Admission.refuse(f"component {cid} offers only {', '.join(sorted(offered))}, "
                                f"not {spec.sliver_type!r}", "UNSUPPORTED")
    wanted = [implied_isolation(stype)]
    iso_param = spec.params.get("isolation")
    if iso_param is not None:
        try:
            wanted.append(IsolationClass(iso_param))
        except ValueError:
            return Admission.refuse(f"unknown isolation class {iso_param!r}", "BADARGS")
    for need in filter(None, wanted):
        if need.strength > IsolationClass.CONTAINER.strength:
            return Admission.refuse(f"component {cid} runs containers on one shared kernel; it "
                                    f"cannot give the {need.value} isolation required",
                                    "UNSUPPORTED")
    if spec.disk_image:
        images = {i.name.lower() for t in comp.sliver_types for i in t.disk_images}
        short = spec.disk_image.rsplit("+", 1)[-1].lower()
        if spec.disk_image.lower() not in images and short not in images:
            return Admission.refuse(f"component {cid} runs Linux containers on the host kernel; "
                                    f"disk image {spec.disk_image!r} is not offered (offered: "
                                    f"{', '.join(sorted(images))})", "UNSUPPORTED")
    remote = spec.router and spec.forwarding in REMOTE_MODES and \
        bool(spec.params.get("forwarding_plane"))
    if spec.router and not remote and spec.forwarding not in (None, ForwardingMode.GUEST):
        return Admission.refuse(f"component {cid} forwards in the container only (guest), not "
                                f"{spec.forwarding.value}", "UNSUPPORTED")
    if remote:   # a hybrid router's control plane: its routes must be ones a plane can hold
        try:
            normalise_all(spec.routes)
        except RouteError as exc:
            return Admission.refuse(f"node {spec.client_id}: {exc}", "BADARGS")
    if usage.exclusive_holder and usage.exclusive_holder != spec.slice_urn:
        return Admission.refuse(f"component {cid} is held exclusively by another slice",
                                "INSUFFICIENT_NODES")
    for problem in _node_request_problems(spec, settings):
        return Admission.refuse(problem, "BADARGS")
    cpu = spec.cpu if spec.cpu is not None else settings.default_cpu
    mem = units(spec.memory_mb if spec.memory_mb is not None else settings.default_memory_mb)
    if (cpu is not None and cpu <= 0) or mem < 4:
        return Admission.refuse("a container needs cpu > 0 and memory_mb >= 4", "BADARGS")
    # no cores asked (and no default reservation): a fair share, which reserves nothing
    demand = {MEMORY_MB: mem} if cpu is None else {CPU_MILLI: milli(cpu), MEMORY_MB: mem}
    if spec.exclusive:
        if not comp.exclusive_ok:
            return Admission.refuse(f"component {cid} is shared by design (containers); it "
                                    "cannot be given exclusively", "UNSUPPORTED")
        if usage.slivers or any(v > 0 for v in usage.used.values()):
            return Admission.refuse(f"component {cid} already hosts {len(usage.slivers)} "
                                    "sliver(s); it cannot be given exclusively",
                                    "INSUFFICIENT_NODES")
        demand = {k: v for k, v in comp.capacity.items() if k in (CPU_MILLI, MEMORY_MB)}
    return Admission.accept(demand)   # the capacity check follows (SubstrateDriver.admit)


def _node_request_problems(spec: SliverSpec, settings: VServerSettings):
    names: set[str] = set()
    for iface in spec.interfaces:
        name = iface.name
        if name:
            if len(name) > IFNAMSIZ or not IFNAME_RE.match(name) or name == "lo":
                yield f"interface name {name!r} is not a valid Linux interface name"
            if name in names:
                yield f"interface name {name!r} is used twice"
            names.add(name)
        for address, mask in iface.ips:
            try:
                ipaddress.IPv4Interface(f"{address}/{mask or '24'}")
            except ValueError:
                yield f"interface {iface.client_id}: {address}/{mask} is not an IPv4 address"
        if iface.mac:
            if not re.fullmatch(r"([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}", iface.mac) \
                    or int(iface.mac[:2], 16) & 1:
                yield f"interface {iface.client_id}: {iface.mac!r} is not a unicast MAC address"
    for route in spec.routes:
        try:
            ipaddress.IPv4Network(route.destination, strict=False)
            if route.gateway:
                ipaddress.IPv4Address(route.gateway)
        except ValueError:
            yield f"route {route.destination} via {route.gateway} is not IPv4"
        if route.interface and route.interface not in {i.client_id for i in spec.interfaces}:
            yield f"route {route.destination} names unknown interface {route.interface!r}"
    for inst in spec.installs:
        problem = install_url_problem(inst.url, settings.install_dir,
                                      settings.install_allow_networks)
        if problem:
            yield problem
    for ex in spec.executes:
        problem = execute_problem(ex)
        if problem:
            yield problem


def _admit_link(comp: Component, spec: SliverSpec) -> Admission:
    link = spec.link
    if link is None:
        return Admission.refuse("link sliver without a link spec", "BADARGS")
    # latency and loss: refused before this by SubstrateDriver.admit (link_properties), with
    # NO_NETEM as the reason
    if link.mode == "stitch":
        return _admit_stitch(comp, spec)
    if link.mode not in ("veth", "bridge", "wire", "join", "tunnel"):
        return Admission.refuse(f"vserver node {comp.name} links its containers with veth pairs "
                                f"or bridges, takes wires, joins another host's bridge or "
                                f"tunnels to another host, not {link.mode!r}", "UNSUPPORTED")
    # one end: joining a shared LAN, or the host half of a stitched link through a switch
    if len(link.ends) < (1 if spec.params.get("shared_lan") or spec.params.get("stitched")
                         else 2):
        return Admission.refuse(f"link {spec.client_id} needs at least two ends (one when it "
                                "joins a shared LAN or is stitched)", "BADARGS")
    foreign = [e.component_id for e in link.ends
               if e.component_id.lower() != comp.component_id.lower()]
    if link.mode == "wire":
        wires = spec.params.get("wires")
        here = {e.interface_client_id for e in link.ends
                if e.component_id.lower() == comp.component_id.lower()}
        # its other end is elsewhere: on another component, or (stitched) at another aggregate
        elsewhere = foreign or spec.params.get("stitched")
        if not isinstance(wires, dict) or not wires or set(wires) != here or not elsewhere or \
                not all(isinstance(v, str) and IFNAME_RE.match(v) for v in wires.values()):
            return Admission.refuse(f"link {spec.client_id}: a wire link has ends here, each "
                                    "naming the wire (host interface) it takes, and an end "
                                    "elsewhere", "BADARGS")
    elif link.mode == "tunnel":
        tunnel = spec.params.get("tunnel")
        mine = len(link.ends) - len(foreign)
        remotes = (tunnel.get("remotes") or [tunnel.get("remote")]) \
            if isinstance(tunnel, dict) else [None]
        if not isinstance(tunnel, dict) or not tunnel.get("local") or \
                not all(remotes) or not foreign or not mine:
            return Admission.refuse(f"link {spec.client_id}: a tunnel half has ends here and "
                                    "on other hosts, and names every host's address",
                                    "BADARGS")
    elif link.mode == "join":
        bridge = spec.params.get("bridge")
        mine = len(link.ends) - len(foreign)
        if not isinstance(bridge, str) or len(bridge) > 15 or not IFNAME_RE.match(bridge) \
                or not foreign or not mine:
            return Admission.refuse(f"link {spec.client_id}: a join link has ends here and on "
                                    "another component, and names that component's bridge",
                                    "BADARGS")
    elif foreign:
        return Admission.refuse(f"link {spec.client_id} has ends on {', '.join(foreign)}; a "
                                f"veth/bridge link stays on {comp.name}", "UNSUPPORTED")
    if link.capacity_kbps is not None and link.capacity_kbps <= 0:
        return Admission.refuse("link capacity must be a positive number of kbit/s", "BADARGS")
    return Admission.accept()


def _admit_stitch(comp: Component, spec: SliverSpec) -> Admission:
    """A stitched link's local part: one container's interface joined to an edge port's OVS
    bridge on the link's VLAN (docs/stitching.md)."""
    link = spec.link
    assert link is not None
    if len(link.ends) != 1 or link.ends[0].component_id.lower() != comp.component_id.lower():
        return Admission.refuse(f"stitched link {spec.client_id}: its one local end must be a "
                                f"container on {comp.name}", "UNSUPPORTED")
    if link.vlan_tag is None or not 1 <= link.vlan_tag <= 4094:
        return Admission.refuse(f"stitched link {spec.client_id} has no VLAN tag", "BADARGS")
    if not spec.params.get("ovs_db") or not spec.params.get("bridge"):
        return Admission.refuse(f"edge port {spec.params.get('edge')} of {comp.name} has no "
                                "Open vSwitch bridge in the inventory (ovs_db, bridge), so a "
                                "container cannot reach it", "UNSUPPORTED")
    if link.capacity_kbps is not None and link.capacity_kbps <= 0:
        return Admission.refuse("link capacity must be a positive number of kbit/s", "BADARGS")
    return Admission.accept()


__all__ = ["NO_NETEM", "REMOTE_MODES", "admit_sliver"]
