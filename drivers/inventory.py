"""The site inventory file (TOML): schema, parsing and validation.

One file names the site, configures each driver kind (`[drivers.<kind>]`), lists the components
(`[[components]]`, each owned by one driver) and the physical wiring between their ports
(`[[links]]`). Every error names the file, the table and the key, so an operator can fix it
without reading code. The format is documented with a full example in docs/inventory.md.

Nothing here instantiates drivers: `drivers.registry.load_site` does that with the parsed
`InventoryFile`; drivers turn their component tables into `Component`s with `build_component`.
"""
from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.base import (
    Component,
    exact_capacity,
    ComponentPort,
    DiskImage,
    ForwardingMode,
    IsolationClass,
    SliverTypeInfo,
)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

SITE_KEYS = frozenset({"name", "authority", "description"})
COMPONENT_KEYS = frozenset({
    "name", "driver", "isolation", "sliver_types", "hardware_types", "forwarding_modes",
    "capacity", "ports", "exclusive_ok", "dpid", "location", "vlan_range", "disk_images", "extra",
    "host",
})
#: keys of a `[hosts.<name>]` table (docs/inventory.md, "Hosts")
HOST_KEYS = frozenset({"address", "description", "drivers"})
LINK_KEYS = frozenset({"name", "ends", "capacity_kbps"})
EDGE_KEYS = frozenset({"name", "component", "port", "remote_aggregate", "remote_port",
                       "vlan_range", "capacity_kbps", "mtu", "ovs_db", "bridge", "netns"})
PORT_KEYS = frozenset({"name", "num", "capacity_kbps"})
LOCATION_KEYS = frozenset({"country", "latitude", "longitude"})
IMAGE_KEYS = frozenset({"name", "os", "version", "description", "default"})


class InventoryError(ValueError):
    """The inventory is wrong; the message names the file, the table and the key."""

    def __init__(self, message: str, *, file: str | None = None, table: str | None = None,
                 key: str | None = None):
        self.detail = message
        self.file = file
        self.table = table
        self.key = key
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.file:
            where.append(f"inventory {self.file}")
        if self.table:
            where.append(f"table [{self.table}]")
        if self.key:
            where.append(f"key {self.key!r}")
        return (", ".join(where) + ": " if where else "") + self.detail

    def in_file(self, file: str) -> "InventoryError":
        """The same error, now naming the file (drivers raise it without knowing the file)."""
        return InventoryError(self.detail, file=self.file or file, table=self.table, key=self.key)


def node_urn(authority: str, name: str) -> str:
    return f"urn:publicid:IDN+{authority}+node+{name}"


def interface_urn(authority: str, name: str, port: str) -> str:
    return f"urn:publicid:IDN+{authority}+interface+{name}:{port}"


@dataclass(frozen=True)
class LinkDecl:
    """A `[[links]]` entry before component names are resolved to URNs."""

    name: str
    ends: tuple[tuple[str, str], tuple[str, str]]     # (component name, port name) x 2
    capacity_kbps: int | None
    table: str                                        # e.g. "links[2]", for error messages


@dataclass(frozen=True)
class HostDecl:
    """A `[hosts.<name>]` entry: one machine of the site, run by its own `geni-am worker --host`.

    `address` is its address on the site's physical network (the underlay tunnels between
    hosts ride on); `drivers` holds per-driver-kind settings that override `[drivers.<kind>]`
    in that host's worker (its own state directory, bridge names, ...)."""

    name: str
    address: str | None = None
    description: str = ""
    drivers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class EdgeDecl:
    """An `[[edges]]` entry: a port wired to another aggregate (stitching), before its
    component name is resolved."""

    name: str
    component: str
    port: str
    remote_aggregate: str
    remote_port: str
    vlan_range: tuple[int, int]
    capacity_kbps: int | None
    mtu: int
    ovs_db: str | None
    bridge: str | None
    netns: str | None
    table: str


@dataclass(frozen=True)
class InventoryFile:
    path: str | None
    site_name: str
    authority: str | None
    drivers: Mapping[str, Mapping[str, Any]]                       # kind -> [drivers.<kind>]
    components: Mapping[str, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)  # kind -> tables
    links: tuple[LinkDecl, ...] = ()
    edges: tuple[EdgeDecl, ...] = ()
    hosts: Mapping[str, HostDecl] = field(default_factory=dict)                # name -> host

    def driver_kinds(self) -> list[str]:
        """Every driver kind the file uses, in first-mention order."""
        kinds = list(self.drivers)
        kinds += [k for k in self.components if k not in self.drivers]
        return kinds


# ---- parsing ---------------------------------------------------------------------------------

def load_inventory(path: str | Path, *, known_drivers: set[str] | None = None) -> InventoryFile:
    """Read and validate an inventory file; `known_drivers` limits the driver kinds allowed."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError("file does not exist", file=str(p)) from None
    except OSError as exc:
        raise InventoryError(f"cannot read: {exc.strerror}", file=str(p)) from None
    try:
        return parse_inventory(text, path=str(p), known_drivers=known_drivers)
    except InventoryError as exc:
        raise exc.in_file(str(p)) from None


def parse_inventory(text: str, *, path: str | None = None,
                    known_drivers: set[str] | None = None) -> InventoryFile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InventoryError(f"not valid TOML: {exc}", file=path) from None
    unknown = set(data) - {"site", "drivers", "components", "links", "edges", "hosts"}
    if unknown:
        key = sorted(unknown)[0]
        raise InventoryError("unknown top-level table or key (expected site, hosts, drivers, "
                             "components, links, edges)", file=path, key=key)

    site = _table(data.get("site", {}), "site", None)
    _no_unknown(site, SITE_KEYS, "site")
    site_name = _opt_str(site, "name", "site") or "geni-am"
    authority = _opt_str(site, "authority", "site")

    drivers_tbl = _table(data.get("drivers", {}), "drivers", None)
    drivers: dict[str, Mapping[str, Any]] = {}
    for kind, cfg in drivers_tbl.items():
        table = f"drivers.{kind}"
        if known_drivers is not None and kind not in known_drivers:
            raise InventoryError(f"unknown driver kind {kind!r} (installed: "
                                 f"{', '.join(sorted(known_drivers)) or 'none'})", table=table)
        drivers[kind] = dict(_table(cfg, table, None))

    hosts = _hosts(_table(data.get("hosts", {}), "hosts", None), known_drivers)

    comps_raw = data.get("components", [])
    if not isinstance(comps_raw, list):
        raise InventoryError("must be an array of tables ([[components]])", key="components")
    by_kind: dict[str, list[Mapping[str, Any]]] = {}
    names: dict[str, str] = {}
    for i, raw in enumerate(comps_raw):
        table = f"components[{i}]"
        comp = _validate_component(_table(raw, table, None), table, known_drivers)
        for host in comp.get("hosts", ()):
            if host not in hosts:
                raise InventoryError(f"host {host!r} is not named in [hosts] (named: "
                                     f"{', '.join(sorted(hosts)) or 'none'})", table=table,
                                     key="host")
        lower = comp["name"].lower()
        if lower in names:
            raise InventoryError(f"duplicate component name {comp['name']!r} (also {names[lower]})",
                                 table=table, key="name")
        names[lower] = table
        by_kind.setdefault(comp["driver"], []).append(comp)

    links_raw = data.get("links", [])
    if not isinstance(links_raw, list):
        raise InventoryError("must be an array of tables ([[links]])", key="links")
    links = tuple(_validate_link(_table(raw, f"links[{i}]", None), f"links[{i}]", i)
                  for i, raw in enumerate(links_raw))
    seen: dict[str, str] = {}
    for link in links:
        if link.name in seen:
            raise InventoryError(f"duplicate link name {link.name!r} (also {seen[link.name]})",
                                 table=link.table, key="name")
        seen[link.name] = link.table
    edges_raw = data.get("edges", [])
    if not isinstance(edges_raw, list):
        raise InventoryError("must be an array of tables ([[edges]])", key="edges")
    edges = tuple(_validate_edge(_table(raw, f"edges[{i}]", None), f"edges[{i}]")
                  for i, raw in enumerate(edges_raw))
    for i, edge in enumerate(edges):
        if edge.name.lower() in {e.name.lower() for e in edges[:i]}:
            raise InventoryError(f"duplicate edge name {edge.name!r}", table=edge.table,
                                 key="name")
    return InventoryFile(path=path, site_name=site_name, authority=authority, drivers=drivers,
                         components={k: tuple(v) for k, v in by_kind.items()}, links=links,
                         edges=edges, hosts=hosts)


def _hosts(raw: Mapping[str, Any], known_drivers: set[str] | None) -> dict[str, HostDecl]:
    """The `[hosts.<name>]` tables: each a machine of the site with its own worker."""
    hosts: dict[str, HostDecl] = {}
    lower: dict[str, str] = {}
    for name, value in raw.items():
        table = f"hosts.{name}"
        if not NAME_RE.match(name):
            raise InventoryError(f"{name!r} is not a valid host name (letters, digits, '_', "
                                 "'.', '-')", table=table)
        if name.lower() in lower:
            raise InventoryError(f"duplicate host name {name!r} (also {lower[name.lower()]})",
                                 table=table)
        lower[name.lower()] = name
        host = _table(value, table, None)
        _no_unknown(host, HOST_KEYS, table)
        address = _opt_str(host, "address", table)
        if address is not None:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise InventoryError(f"{address!r} is not an IP address", table=table,
                                     key="address") from None
        drivers: dict[str, Mapping[str, Any]] = {}
        for kind, cfg in _table(host.get("drivers", {}), table, "drivers").items():
            if known_drivers is not None and kind not in known_drivers:
                raise InventoryError(f"unknown driver kind {kind!r} (installed: "
                                     f"{', '.join(sorted(known_drivers)) or 'none'})",
                                     table=table, key=f"drivers.{kind}")
            drivers[kind] = dict(_table(cfg, table, f"drivers.{kind}"))
        hosts[name] = HostDecl(name=name, address=address,
                               description=_opt_str(host, "description", table) or "",
                               drivers=drivers)
    return hosts


def _validate_edge(raw: Mapping[str, Any], table: str) -> EdgeDecl:
    _no_unknown(raw, EDGE_KEYS, table)
    strings = {k: _req_str(raw, k, table)
               for k in ("component", "port", "remote_aggregate", "remote_port")}
    for key in ("remote_aggregate", "remote_port"):
        if not strings[key].lower().startswith("urn:publicid:idn+"):
            raise InventoryError(f"{strings[key]!r} is not a URN (urn:publicid:IDN+...)",
                                 table=table, key=key)
    if "vlan_range" not in raw:
        raise InventoryError("missing (the VLAN tags the circuit carries, [first, last])",
                             table=table, key="vlan_range")
    vlans = parse_vlan_range(raw["vlan_range"], table, "vlan_range")
    cap = raw.get("capacity_kbps")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap <= 0):
        raise InventoryError(f"must be a positive integer (kbit/s), not {cap!r}", table=table,
                             key="capacity_kbps")
    mtu = raw.get("mtu", 1500)
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not 576 <= mtu <= 9216:
        raise InventoryError(f"must be a whole number from 576 to 9216, not {mtu!r}",
                             table=table, key="mtu")
    optional = {k: _opt_str(raw, k, table) for k in ("ovs_db", "bridge", "netns")}
    if (optional["ovs_db"] is None) != (optional["bridge"] is None):
        raise InventoryError("give both ovs_db and bridge (the edge's Open vSwitch), or neither",
                             table=table, key="bridge" if optional["bridge"] is None else "ovs_db")
    name = raw.get("name") or f"{strings['component']}:{strings['port']}"
    if not isinstance(name, str):
        raise InventoryError("must be a string", table=table, key="name")
    return EdgeDecl(name=name, vlan_range=vlans, capacity_kbps=cap, mtu=mtu, table=table,
                    **strings, **optional)


def _validate_component(raw: Mapping[str, Any], table: str,
                        known_drivers: set[str] | None) -> dict[str, Any]:
    _no_unknown(raw, COMPONENT_KEYS, table)
    name = _req_str(raw, "name", table)
    if not NAME_RE.match(name):
        raise InventoryError(f"{name!r} is not a valid component name (letters, digits, '_', "
                             "'.', '-')", table=table, key="name")
    driver = _req_str(raw, "driver", table)
    if known_drivers is not None and driver not in known_drivers:
        raise InventoryError(f"unknown driver kind {driver!r} (installed: "
                             f"{', '.join(sorted(known_drivers)) or 'none'})", table=table, key="driver")
    out: dict[str, Any] = {"name": name, "driver": driver, "_table": table}
    if "isolation" in raw:
        out["isolation"] = parse_isolation(raw["isolation"], table, "isolation")
    for key in ("sliver_types", "hardware_types"):
        if key in raw:
            out[key] = _str_list(raw[key], table, key)
    if "forwarding_modes" in raw:
        out["forwarding_modes"] = tuple(parse_forwarding(v, table, "forwarding_modes")
                                        for v in _str_list(raw["forwarding_modes"], table,
                                                           "forwarding_modes"))
    if "capacity" in raw:
        cap = _table(raw["capacity"], table, "capacity")
        caps: dict[str, float] = {}
        for res, amount in cap.items():
            if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount < 0:
                raise InventoryError(f"capacity {res!r} must be a number >= 0, not {amount!r}",
                                     table=table, key=f"capacity.{res}")
            caps[res] = float(amount)
        out["capacity"] = caps
    if "ports" in raw:
        out["ports"] = _ports(raw["ports"], table)
    if "exclusive_ok" in raw:
        out["exclusive_ok"] = _bool(raw["exclusive_ok"], table, "exclusive_ok")
    if "dpid" in raw:
        dpid = _req_str(raw, "dpid", table)
        if not re.fullmatch(r"([0-9A-Fa-f]{2}:){7}[0-9A-Fa-f]{2}", dpid):
            raise InventoryError(f"{dpid!r} is not a datapath id like 00:00:00:00:00:00:00:01",
                                 table=table, key="dpid")
        out["dpid"] = dpid.lower()
    if "location" in raw:
        loc = _table(raw["location"], table, "location")
        _no_unknown(loc, LOCATION_KEYS, f"{table}.location")
        country = loc.get("country", "")
        if not isinstance(country, str):
            raise InventoryError("must be a string", table=table, key="location.country")
        coords = []
        for k in ("latitude", "longitude"):
            v = loc.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise InventoryError("must be a number", table=table, key=f"location.{k}")
            coords.append(None if v is None else float(v))
        out["location"] = (country, coords[0], coords[1])
    if "vlan_range" in raw:
        out["vlan_range"] = parse_vlan_range(raw["vlan_range"], table, "vlan_range")
    if "disk_images" in raw:
        out["disk_images"] = _images(raw["disk_images"], table)
    if "extra" in raw:
        out["extra"] = dict(_table(raw["extra"], table, "extra"))
    if "host" in raw:   # one host, or several for a switch spanning them (a physical fabric)
        value = raw["host"]
        names = [value] if isinstance(value, str) else value
        if (not isinstance(names, list) or not names
                or not all(isinstance(n, str) and n for n in names)
                or len({n.lower() for n in names}) != len(names)):
            raise InventoryError(f"must be a host name or a list of distinct host names, not "
                                 f"{value!r}", table=table, key="host")
        out["hosts"] = tuple(names)
    return out


def _validate_link(raw: Mapping[str, Any], table: str, index: int) -> LinkDecl:
    _no_unknown(raw, LINK_KEYS, table)
    ends_raw = raw.get("ends")
    if (not isinstance(ends_raw, list) or len(ends_raw) != 2
            or not all(isinstance(e, str) for e in ends_raw)):
        raise InventoryError('must be two "component:port" strings', table=table, key="ends")
    ends = []
    for e in ends_raw:
        comp, sep, port = e.partition(":")
        if not sep or not comp or not port:
            raise InventoryError(f'{e!r} is not "component:port"', table=table, key="ends")
        ends.append((comp, port))
    if ends[0][0].lower() == ends[1][0].lower():
        raise InventoryError("a link must join two different components", table=table, key="ends")
    cap = raw.get("capacity_kbps")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap <= 0):
        raise InventoryError(f"must be a positive integer (kbit/s), not {cap!r}", table=table,
                             key="capacity_kbps")
    name = raw.get("name") or f"{ends[0][0]}:{ends[0][1]}-{ends[1][0]}:{ends[1][1]}"
    if not isinstance(name, str):
        raise InventoryError("must be a string", table=table, key="name")
    return LinkDecl(name=name, ends=(ends[0], ends[1]), capacity_kbps=cap, table=table)


# ---- building components (used by drivers) ----------------------------------------------------

def build_component(table: Mapping[str, Any], *, authority: str, driver: str,
                    default_isolation: IsolationClass,
                    default_sliver_types: tuple[str, ...] = (),
                    default_capacity: Mapping[str, float] | None = None,
                    default_forwarding: tuple[ForwardingMode, ...] = (),
                    default_exclusive_ok: bool = False) -> Component:
    """A `Component` from a validated component table, the driver supplying its defaults."""
    name = table["name"]
    extra = dict(table.get("extra", {}))
    if "vlan_range" in table:
        extra["vlan_range"] = tuple(table["vlan_range"])
    images = tuple(table.get("disk_images", ()))
    types = tuple(table.get("sliver_types", default_sliver_types))
    ports = tuple(ComponentPort(component_id=interface_urn(authority, name, p["name"]),
                                name=p["name"], num=p.get("num"),
                                capacity_kbps=p.get("capacity_kbps"))
                  for p in table.get("ports", ()))
    return Component(
        component_id=node_urn(authority, name),
        name=name,
        driver=driver,
        isolation=table.get("isolation", default_isolation),
        sliver_types=tuple(SliverTypeInfo(t, images) for t in types),
        hardware_types=tuple(table.get("hardware_types", ())),
        forwarding_modes=tuple(table.get("forwarding_modes", default_forwarding)),
        capacity=exact_capacity({**(default_capacity or {}), **table.get("capacity", {})}),
        ports=ports,
        exclusive_ok=table.get("exclusive_ok", default_exclusive_ok),
        dpid=table.get("dpid"),
        location=table.get("location"),
        extra=extra,
        hosts=tuple(table.get("hosts", ())),
    )


def parse_isolation(value: Any, table: str, key: str) -> IsolationClass:
    try:
        return IsolationClass(str(value).lower())
    except ValueError:
        choices = ", ".join(c.value for c in IsolationClass)
        raise InventoryError(f"{value!r} is not an isolation class ({choices})", table=table,
                             key=key) from None


def parse_forwarding(value: Any, table: str, key: str) -> ForwardingMode:
    try:
        return ForwardingMode(str(value).lower())
    except ValueError:
        choices = ", ".join(m.value for m in ForwardingMode)
        raise InventoryError(f"{value!r} is not a forwarding mode ({choices})", table=table,
                             key=key) from None


def parse_vlan_range(value: Any, table: str, key: str) -> tuple[int, int]:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            or not 1 <= value[0] <= value[1] <= 4094):
        raise InventoryError(f"must be [first, last] VLAN tags within 1..4094, not {value!r}",
                             table=table, key=key)
    return (value[0], value[1])


# ---- small validators -----------------------------------------------------------------------

def _table(value: Any, table: str, key: str | None) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise InventoryError("must be a table", table=table, key=key)
    return value


def _no_unknown(raw: Mapping[str, Any], allowed: frozenset[str], table: str) -> None:
    for key in raw:
        if key not in allowed:
            raise InventoryError(f"unknown key (allowed: {', '.join(sorted(allowed))})",
                                 table=table, key=key)


def _req_str(raw: Mapping[str, Any], key: str, table: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise InventoryError("is required and must be a non-empty string" if value is None
                             else f"must be a non-empty string, not {value!r}", table=table, key=key)
    return value


def _opt_str(raw: Mapping[str, Any], key: str, table: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise InventoryError(f"must be a string, not {value!r}", table=table, key=key)
    return value


def _bool(value: Any, table: str, key: str) -> bool:
    if not isinstance(value, bool):
        raise InventoryError(f"must be true or false, not {value!r}", table=table, key=key)
    return value


def _str_list(value: Any, table: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InventoryError(f"must be a list of strings, not {value!r}", table=table, key=key)
    return tuple(value)


def _ports(value: Any, table: str) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list):
        raise InventoryError("must be a list of port names or port tables", table=table, key="ports")
    ports: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, p in enumerate(value):
        key = f"ports[{i}]"
        if isinstance(p, str):
            p = {"name": p}
        if not isinstance(p, dict):
            raise InventoryError("must be a port name or {name=..., num=..., capacity_kbps=...}",
                                 table=table, key=key)
        _no_unknown(p, PORT_KEYS, f"{table}.{key}")
        name = p.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InventoryError(f"port name {name!r} is not valid", table=table, key=f"{key}.name")
        if name in seen:
            raise InventoryError(f"duplicate port {name!r}", table=table, key=f"{key}.name")
        seen.add(name)
        for k in ("num", "capacity_kbps"):
            v = p.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise InventoryError(f"must be an integer >= 0, not {v!r}", table=table,
                                     key=f"{key}.{k}")
        ports.append({"name": name, "num": p.get("num"), "capacity_kbps": p.get("capacity_kbps")})
    return tuple(ports)


def _images(value: Any, table: str) -> tuple[DiskImage, ...]:
    if not isinstance(value, list):
        raise InventoryError("must be a list of image names or tables", table=table,
                             key="disk_images")
    images = []
    for i, img in enumerate(value):
        key = f"disk_images[{i}]"
        if isinstance(img, str):
            img = {"name": img}
        if not isinstance(img, dict) or not isinstance(img.get("name"), str):
            raise InventoryError("must be an image name or {name=..., os=..., version=...}",
                                 table=table, key=key)
        _no_unknown(img, IMAGE_KEYS, f"{table}.{key}")
        images.append(DiskImage(name=img["name"], os=str(img.get("os", "Linux")),
                                version=str(img.get("version", "")),
                                description=str(img.get("description", "")),
                                default=bool(img.get("default", False))))
    return tuple(images)


__all__ = [
    "HostDecl", "InventoryError", "InventoryFile", "LinkDecl", "build_component", "interface_urn",
    "load_inventory", "node_urn", "parse_forwarding", "parse_inventory", "parse_isolation",
    "parse_vlan_range",
]
