"""Driver discovery (entry points) and the `Site`: every driver of this AM plus the wiring.

Drivers are found through the `geni_am.drivers` entry-point group, so a substrate can ship as
its own distribution. A `Site` is built once from the inventory file and handed to the service
and the placement engine; it caches the components of all drivers, indexed for fast lookups.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from functools import cached_property
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from drivers.base import (
    SLIVER_TYPE_ALIASES,
    Component,
    EdgePort,
    PortRef,
    SiteLink,
    SubstrateDriver,
)
from drivers.inventory import (
    HostDecl,
    InventoryError,
    InventoryFile,
    interface_urn,
    load_inventory,
    node_urn,
)

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "geni_am.drivers"
DEFAULT_FAKE_NODES = 10


def available_drivers() -> dict[str, type[SubstrateDriver]]:
    """Driver classes by kind, from the installed entry points.

    A driver whose module fails to import is left out (and logged) so that one broken optional
    substrate does not stop the AM; an inventory naming it then gets a precise error.
    """
    found: dict[str, type[SubstrateDriver]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as exc:   # noqa: BLE001 - any import failure disables only that driver
            log.warning("driver %s (%s) cannot be loaded: %s", ep.name, ep.value, exc)
            continue
        if not (isinstance(cls, type) and issubclass(cls, SubstrateDriver)):
            log.warning("entry point %s (%s) is not a SubstrateDriver", ep.name, ep.value)
            continue
        found[ep.name] = cls
    return found


class Site:
    """All drivers of this AM, their components and the physical links between them."""

    def __init__(self, drivers: Mapping[str, SubstrateDriver], *, authority: str,
                 name: str = "geni-am", links: Iterable[SiteLink] = (),
                 hosts: Mapping[str, HostDecl] | None = None,
                 host_map: Mapping[str, tuple[str, ...]] | None = None,
                 host: str | None = None,
                 edges: Iterable[EdgePort] = ()):
        self.drivers: dict[str, SubstrateDriver] = dict(drivers)
        self.authority = authority
        self.name = name
        self._declared_links = list(links)
        self.edges: list[EdgePort] = list(edges)     # ports wired to other aggregates
        #: the site's machines (`[hosts.<name>]`); empty: a single-host site (one machine)
        self.hosts: dict[str, HostDecl] = dict(hosts or {})
        #: every inventory component's URN (lower case) -> its host(s), also those of other
        #: hosts whose drivers this process did not load
        self.host_map: dict[str, tuple[str, ...]] = dict(host_map or {})
        #: the host this process drives (`geni-am worker --host`), None for the whole site
        self.host = host

    def edge(self, interface_id: str) -> EdgePort | None:
        """The edge port with this URN (a stitching hop's link id), if any."""
        key = interface_id.strip().lower()
        return next((e for e in self.edges if e.interface_id.lower() == key), None)

    # ---- hosts -------------------------------------------------------------------------------
    def hosts_of(self, component_id: str) -> tuple[str, ...]:
        """The host(s) a component is on; () when the site names no hosts for it."""
        found = self.host_map.get(component_id.lower())
        if found is not None:
            return found
        comp = self.component(component_id)
        return comp.hosts if comp is not None else ()

    def host_of(self, component_id: str) -> str | None:
        """The one host that owns a component's slivers (its jobs go to that host's queue);
        None for a component on no host or spanning several (site-wide work)."""
        hosts = self.hosts_of(component_id)
        return hosts[0] if len(hosts) == 1 else None

    def components_on(self, host: str) -> list[str]:
        """URNs (lower case) of the inventory components on `host`."""
        return sorted(urn for urn, hosts in self.host_map.items() if host in hosts)

    # ---- components --------------------------------------------------------------------------
    @cached_property
    def components(self) -> list[Component]:
        """Every driver's inventory, with each wired port's bandwidth as `kbps:<port>` capacity."""
        comps: list[Component] = []
        seen: dict[str, str] = {}
        for kind, driver in self.drivers.items():
            for comp in driver.inventory():
                key = comp.component_id.lower()
                if key in seen:
                    raise InventoryError(f"component {comp.component_id} is claimed by drivers "
                                         f"{seen[key]!r} and {kind!r}")
                seen[key] = kind
                comps.append(comp)
        port_caps: dict[str, dict[str, float]] = {}
        for link in self._all_links():
            if link.capacity_kbps is None:
                continue
            for end in link.ends:
                port_caps.setdefault(end.component_id.lower(), {})[f"kbps:{end.port}"] = \
                    float(link.capacity_kbps)
        if port_caps:
            comps = [dataclasses.replace(c, capacity={**c.capacity, **port_caps[c.component_id.lower()]})
                     if c.component_id.lower() in port_caps else c for c in comps]
        return comps

    @cached_property
    def _by_urn(self) -> dict[str, Component]:
        return {c.component_id.lower(): c for c in self.components}

    def component(self, component_id: str) -> Component | None:
        """The component with this URN (URNs compare case-insensitively), or None."""
        return self._by_urn.get(component_id.lower())

    def driver_for(self, component_id: str) -> SubstrateDriver:
        comp = self.component(component_id)
        if comp is None:
            raise LookupError(f"no component {component_id} at this AM")
        return self.drivers[comp.driver]

    def sliver_types(self) -> set[str]:
        """The sliver type names the site advertises."""
        return {st.name for c in self.components for st in c.sliver_types}

    def accepted_sliver_types(self) -> set[str]:
        """What a request may name: the advertised types plus the client aliases of those
        (`SLIVER_TYPE_ALIASES`, e.g. geni-lib's "raw" for "raw-pc")."""
        advertised = self.sliver_types()
        return advertised | {alias for alias, target in SLIVER_TYPE_ALIASES.items()
                             if target in advertised}

    @cached_property
    def by_sliver_type(self) -> dict[str, list[Component]]:
        """Components by lower-cased sliver type name, in inventory order (placement index)."""
        index: dict[str, list[Component]] = {}
        for comp in self.components:
            for st in comp.sliver_types:
                index.setdefault(st.name.lower(), []).append(comp)
        return index

    # ---- links -------------------------------------------------------------------------------
    @cached_property
    def links(self) -> list[SiteLink]:
        return self._all_links()

    def _all_links(self) -> list[SiteLink]:
        links = list(self._declared_links)
        for driver in self.drivers.values():
            links.extend(driver.site_links())
        return links

    @cached_property
    def links_by_component(self) -> dict[str, list[tuple[SiteLink, PortRef, PortRef]]]:
        """component URN (lower) -> [(link, this end, far end)]."""
        out: dict[str, list[tuple[SiteLink, PortRef, PortRef]]] = {}
        for link in self.links:
            a, b = link.ends
            out.setdefault(a.component_id.lower(), []).append((link, a, b))
            out.setdefault(b.component_id.lower(), []).append((link, b, a))
        return out

    def refresh(self) -> None:
        """Forget cached inventories (after a driver's substrate changed shape)."""
        for attr in ("components", "_by_urn", "by_sliver_type", "links", "links_by_component"):
            self.__dict__.pop(attr, None)

    def close(self) -> None:
        for driver in self.drivers.values():
            try:
                driver.close()
            except Exception as exc:   # noqa: BLE001 - closing the rest matters more
                log.warning("closing driver %s failed: %s", driver.kind, exc)


def load_site(inventory_path: str | None, *, authority: str, fake_nodes: int = 0,
              state_dir: str | None = None, host: str | None = None) -> Site:
    """The site from an inventory file, or with no file a built-in fake site.

    `fake_nodes` > 0 without a file serves that many fake nodes (DEFAULT_FAKE_NODES otherwise);
    with a file it adds a fake driver with that many nodes. `state_dir` is where the fake
    substrate keeps its state when the inventory does not say (share it between the server and
    its workers so they see one substrate).

    `host` (a `geni-am worker --host NAME`): only that host's part of the site is loaded: the
    drivers of the components on it, each configured with `[drivers.<kind>]` overridden by
    `[hosts.NAME.drivers.<kind>]`, and the links between its own components. The site still
    knows which host every other component is on (`Site.host_map`). A host the inventory does
    not name is an InventoryError.
    """
    registry = available_drivers()
    if inventory_path:
        inv = load_inventory(inventory_path, known_drivers=set(registry))
    else:
        inv = InventoryFile(path=None, site_name="geni-am-fake", authority=None,
                            drivers={"fake": {"nodes": fake_nodes or DEFAULT_FAKE_NODES}})
        fake_nodes = 0
    if inv.authority and inv.authority != authority:
        raise InventoryError(f"site authority {inv.authority!r} differs from the AM's authority "
                             f"{authority!r}", file=inv.path, table="site", key="authority")
    base_dir = Path(inventory_path).resolve().parent if inventory_path else None
    host_map = {node_urn(authority, t["name"]).lower(): tuple(t.get("hosts", ()))
                for tables in inv.components.values() for t in tables}
    if host is not None and host not in inv.hosts:
        raise InventoryError(f"host {host!r} is not named in the inventory (hosts: "
                             f"{', '.join(sorted(inv.hosts)) or 'none'})", file=inv.path,
                             table="hosts")
    drivers: dict[str, SubstrateDriver] = {}
    try:
        for kind in inv.driver_kinds() + (["fake"] if fake_nodes and "fake" not in inv.drivers
                                            and "fake" not in inv.components else []):
            cls = registry.get(kind)
            if cls is None:
                raise InventoryError(f"driver kind {kind!r} is not installed", file=inv.path,
                                     table=f"drivers.{kind}")
            tables = list(inv.components.get(kind, ()))
            config: dict[str, Any] = dict(inv.drivers.get(kind, {}))
            if host is not None:
                tables = [t for t in tables if host in t.get("hosts", ())]
                if not tables:
                    continue        # nothing of this kind on this host
                config.update(inv.hosts[host].drivers.get(kind, {}))
            if kind == "fake":
                if fake_nodes:
                    config["nodes"] = fake_nodes
                if "state_dir" in config and base_dir is not None:
                    config["state_dir"] = str(base_dir / str(config["state_dir"]))
                elif "state_dir" not in config and state_dir:
                    config["state_dir"] = str(Path(state_dir) / "fake-substrate")
            try:
                drivers[kind] = cls(config, tables, authority=authority)
            except InventoryError as exc:
                raise exc.in_file(inv.path) if inv.path else exc from None
        decls = inv.links
        if host is not None:   # a host's worker wires only what lies within the host
            decls = tuple(d for d in decls
                          if all(host in host_map.get(node_urn(authority, c).lower(), ())
                                 for c, _ in d.ends))
            inv = dataclasses.replace(inv, links=decls, edges=tuple(
                e for e in inv.edges
                if host in host_map.get(node_urn(authority, e.component).lower(), ())))
        site = Site(drivers, authority=authority, name=inv.site_name,
                    links=_resolve_links(inv, drivers, authority), hosts=inv.hosts,
                    host_map=host_map, host=host, edges=_resolve_edges(inv, authority))
        try:
            site.components   # validate now: duplicate URNs surface at start-up, not later
        except InventoryError as exc:
            raise exc.in_file(inv.path) if inv.path else exc from None
        _check_link_ports(inv, site)
        _check_edges(inv, site)
    except BaseException:
        for d in drivers.values():
            d.close()
        raise
    return site


def _resolve_links(inv: InventoryFile, drivers: Mapping[str, SubstrateDriver],
                   authority: str) -> list[SiteLink]:
    links = []
    for decl in inv.links:
        ends = tuple(PortRef(component_id=node_urn(authority, comp), port=port,
                             interface_id=interface_urn(authority, comp, port))
                     for comp, port in decl.ends)
        links.append(SiteLink(name=decl.name, ends=(ends[0], ends[1]),
                              capacity_kbps=decl.capacity_kbps))
    return links


def _resolve_edges(inv: InventoryFile, authority: str) -> list[EdgePort]:
    return [EdgePort(name=d.name, component_id=node_urn(authority, d.component), port=d.port,
                     interface_id=interface_urn(authority, d.component, d.port),
                     remote_aggregate=d.remote_aggregate, remote_port=d.remote_port,
                     vlan_range=d.vlan_range, capacity_kbps=d.capacity_kbps, mtu=d.mtu,
                     ovs_db=d.ovs_db, bridge=d.bridge, netns=d.netns) for d in inv.edges]


def _check_edges(inv: InventoryFile, site: Site) -> None:
    """Each edge names an existing component; one port carries one edge."""
    used: set[str] = set()
    for decl, edge in zip(inv.edges, site.edges):
        if site.component(edge.component_id) is None:
            raise InventoryError(f"no component named {decl.component!r}", file=inv.path,
                                 table=decl.table, key="component")
        if edge.interface_id.lower() in used:
            raise InventoryError(f"port {decl.component}:{decl.port} is already an edge",
                                 file=inv.path, table=decl.table, key="port")
        used.add(edge.interface_id.lower())


def _check_link_ports(inv: InventoryFile, site: Site) -> None:
    """Each declared link end must name an existing component and one of its ports."""
    used: dict[str, str] = {}
    for decl, link in zip(inv.links, site.links):
        for (comp_name, port), end in zip(decl.ends, link.ends):
            comp = site.component(end.component_id)
            if comp is None:
                raise InventoryError(f"no component named {comp_name!r}", file=inv.path,
                                     table=decl.table, key="ends")
            if comp.ports and port not in {p.name for p in comp.ports}:
                raise InventoryError(f"component {comp_name!r} has no port {port!r} (ports: "
                                     f"{', '.join(p.name for p in comp.ports)})", file=inv.path,
                                     table=decl.table, key="ends")
            where = f"{comp.name}:{port}".lower()
            if where in used:
                raise InventoryError(f"port {comp_name}:{port} is already wired by link "
                                     f"{used[where]!r}", file=inv.path, table=decl.table, key="ends")
            used[where] = decl.name


__all__ = ["DEFAULT_FAKE_NODES", "ENTRY_POINT_GROUP", "InventoryError", "Site", "SiteLink",
           "available_drivers", "load_site"]
