"""Parsing a request RSpec into `rspec.model.Request`, with the checks no schema can express.

Pipeline: safe parse -> root (namespace, version, type) -> XSD (core + our extensions) ->
semantic checks and model building in one pass over the tree, collecting every problem.

Ownership in a multi-AM request: a node is ours when its `component_manager_id` names one of
`am_urns` or is absent; a link is ours when one of its `<component_manager>`s is ours, or when it
has none and all its ends are on our nodes; an `<openflow:sliver>` is ours when one of its
datapaths is ours (or it names none). Everything else, and every top-level extension we do not
understand, is kept serialized in `Request.foreign_xml` for the manifest to echo. Semantic checks
apply to our part only, except `client_id` uniqueness, which is document-wide.
"""
from __future__ import annotations

from collections.abc import Collection

from lxml import etree

from rspec import namespaces as ns
from rspec.errors import BADARGS, TOOBIG, Problem, RSpecError, at_start_tags
from rspec.model import (
    IPv4, Execute, ForwardingMode, Install, IsolationClass, LinkProperty, Login, NodeExtension,
    OFController, OFDatapath, OFGroup, OFMatch, OFPort, OpenFlowSliver, PacketMatch, Request,
    RequestInterface, RequestLink, RequestNode, Route, Services,
)
from rspec.schema import DocType, pretty_name
from rspec.document import load_document
from rspec.values import (
    check_cidr, check_ip, check_ipv4, check_netmask, parse_bool, parse_float, parse_int,
    split_list,
)
from rspec.stitching import STITCH_NAMESPACES, StitchPath, read_paths
from rspec.xmlsafe import DEFAULT_MAX_BYTES

R = "{%s}" % ns.RSPEC3
OF = "{%s}" % ns.OPENFLOW3
GA = "{%s}" % ns.GENIAM
_SHARED_VLAN_TAGS = {f"{{{ns.SHARED_VLAN}}}link_shared_vlan",
                     f"{{{ns.SHARED_VLAN_PG}}}link_shared_vlan"}
_EMULAB_XEN = f"{{{ns.EMULAB}}}xen"


def parse_request(xml: str | bytes, *, am_urns: Collection[str] | None,
                  known_sliver_types: Collection[str] | None = None,
                  max_bytes: int = DEFAULT_MAX_BYTES) -> Request:
    """Parse, validate and reduce a request to this AM's part; raise RSpecError on any problem.

    `am_urns`: the URNs naming this AM (e.g. its `+authority+am` and `+authority+cm` forms);
    None treats every node and link as ours (used by `validate_document`).
    `known_sliver_types`: the sliver type names the AM accepts (None = do not check).
    """
    try:
        tree, _ = load_document(xml, DocType.REQUEST, max_bytes=max_bytes)
    except RSpecError as exc:
        if exc.geni_code != TOOBIG and isinstance(xml, (str, bytes)):
            raise RSpecError(at_start_tags(exc.problems, xml), exc.geni_code) from None
        raise
    reader = _RequestReader(am_urns, known_sliver_types)
    request = reader.read(tree.getroot())
    if reader.problems:
        problems = at_start_tags(reader.problems, xml)
        raise RSpecError(sorted(problems, key=lambda p: p.line or 0), BADARGS)
    return request


def _text(el: etree._Element) -> str:
    return etree.tostring(el, encoding="unicode", with_tail=False)


def _elements(el: etree._Element):
    """Element children only (comments and processing instructions skipped)."""
    return (c for c in el if isinstance(c.tag, str))


class _RequestReader:
    def __init__(self, am_urns: Collection[str] | None,
                 known_sliver_types: Collection[str] | None):
        self.am_urns = None if am_urns is None else {u.strip().lower() for u in am_urns}
        self.known = None if known_sliver_types is None else set(known_sliver_types)
        self.problems: list[Problem] = []
        self.iface_owner: dict[str, etree._Element] = {}   # interface client_id -> node element
        self.paths: dict[str, StitchPath] = {}              # stitching path id -> path

    # -- helpers -----------------------------------------------------------------------------
    def problem(self, el: etree._Element | None, message: str) -> None:
        if el is None:
            self.problems.append(Problem(None, None, message))
        else:
            self.problems.append(Problem(el.sourceline, pretty_name(el.tag), message))

    def ours(self, urn: str | None) -> bool:
        return urn is None or self.am_urns is None or urn.strip().lower() in self.am_urns

    def node_is_ours(self, node: etree._Element) -> bool:
        return self.ours(node.get("component_manager_id"))

    # -- top level ---------------------------------------------------------------------------
    def read(self, root: etree._Element) -> Request:
        children = list(_elements(root))
        node_els = [c for c in children if c.tag == R + "node"]
        link_els = [c for c in children if c.tag == R + "link"]
        self.index_ids(node_els, link_els)
        for child in children:
            if etree.QName(child).namespace in STITCH_NAMESPACES and \
                    etree.QName(child).localname == "stitching":
                self.read_stitching(child)

        nodes: list[RequestNode] = []
        links: list[RequestLink] = []
        slivers: list[OpenFlowSliver] = []
        foreign: list[str] = []
        for child in children:
            if child.tag == R + "node":
                if self.node_is_ours(child):
                    nodes.append(self.read_node(child))
                else:
                    foreign.append(_text(child))
            elif child.tag == R + "link":
                if self.link_is_ours(child):
                    links.append(self.read_link(child))
                else:
                    foreign.append(_text(child))
            elif child.tag == OF + "sliver":
                sliver = self.read_openflow(child)
                if sliver is None:
                    foreign.append(_text(child))
                else:
                    slivers.append(sliver)
            elif etree.QName(child).namespace in STITCH_NAMESPACES:
                continue   # the manifest writes the paths this AM reserved (rspec.stitching)
            else:
                foreign.append(_text(child))   # unknown extensions: echo unchanged
        return Request(nodes=tuple(nodes), links=tuple(links), openflow=tuple(slivers),
                       foreign_xml=tuple(foreign), generated_by=root.get("generated_by"))

    def index_ids(self, node_els: list[etree._Element], link_els: list[etree._Element]) -> None:
        """client_ids are unique per kind across the whole document."""
        seen_nodes: dict[str, int | None] = {}
        for node in node_els:
            cid = node.get("client_id", "")
            if cid in seen_nodes:
                self.problem(node, f"duplicate node client_id {cid!r} "
                                   f"(first used on line {seen_nodes[cid]})")
            else:
                seen_nodes[cid] = node.sourceline
            for iface in node.iterchildren(R + "interface"):
                icid = iface.get("client_id", "")
                if icid in self.iface_owner:
                    first = self.iface_owner[icid]
                    self.problem(iface, f"duplicate interface client_id {icid!r} (first "
                                        f"declared on node {first.get('client_id')!r}, line "
                                        f"{first.sourceline})")
                else:
                    self.iface_owner[icid] = node
        seen_links: dict[str, int | None] = {}
        for link in link_els:
            cid = link.get("client_id", "")
            if cid in seen_links:
                self.problem(link, f"duplicate link client_id {cid!r} "
                                   f"(first used on line {seen_links[cid]})")
            else:
                seen_links[cid] = link.sourceline

    # -- nodes -------------------------------------------------------------------------------
    def read_node(self, el: etree._Element) -> RequestNode:
        cid = el.get("client_id", "")
        sliver_type = disk_image = hardware_type = None
        emulab_cpu: float | None = None
        emulab_mem: int | None = None
        interfaces: list[RequestInterface] = []
        services = Services()
        ext = NodeExtension()
        ext_seen = False
        sliver_types = list(el.iterchildren(R + "sliver_type"))
        if len(sliver_types) > 1:
            self.problem(sliver_types[1], f"node {cid!r} has {len(sliver_types)} sliver_type "
                                          "elements; a request node takes exactly one")
        hardware = list(el.iterchildren(R + "hardware_type"))
        if len(hardware) > 1:
            self.problem(hardware[1], f"node {cid!r} has {len(hardware)} hardware_type "
                                      "elements; a request node takes at most one")
        if hardware:
            hardware_type = hardware[0].get("name")
        if sliver_types:
            st = sliver_types[0]
            sliver_type = st.get("name", "").strip()
            if self.known is not None and sliver_type not in self.known:
                self.problem(st, f"node {cid!r}: unknown sliver type {sliver_type!r} (this AM "
                                 f"offers: {', '.join(sorted(self.known)) or 'none'})")
            images = list(st.iterchildren(R + "disk_image"))
            if len(images) > 1:
                self.problem(images[1], f"node {cid!r}: at most one disk_image per sliver_type")
            if images:
                disk_image = images[0].get("name")
            for xen in st.iterchildren(_EMULAB_XEN):   # geni-lib XenVM cores/ram
                emulab_cpu, emulab_mem = self.read_emulab_xen(xen)
        for child in _elements(el):
            if child.tag == R + "interface":
                interfaces.append(self.read_interface(child))
            elif child.tag == R + "services":
                services = self.read_services(child, services)
            elif child.tag == GA + "node":
                if ext_seen:
                    self.problem(child, f"node {cid!r} has more than one geniam:node element")
                ext_seen = True
                ext = self.read_extension(child, el)
        if emulab_cpu is not None and ext.cpu is None or emulab_mem is not None and ext.memory_mb is None:
            ext = NodeExtension(isolation=ext.isolation, router=ext.router,
                                forwarding=ext.forwarding,
                                cpu=ext.cpu if ext.cpu is not None else emulab_cpu,
                                memory_mb=ext.memory_mb if ext.memory_mb is not None else emulab_mem,
                                routes=ext.routes)
        return RequestNode(
            client_id=cid,
            component_id=el.get("component_id"),
            component_name=el.get("component_name"),
            component_manager_id=el.get("component_manager_id"),
            exclusive=parse_bool(el.get("exclusive")),
            sliver_type=sliver_type or None,
            disk_image=disk_image,
            hardware_type=hardware_type,
            interfaces=tuple(interfaces),
            services=services,
            ext=ext,
            source_line=el.sourceline,
            element_xml=_text(el),
        )

    def read_emulab_xen(self, el: etree._Element) -> tuple[float | None, int | None]:
        cpu = mem = None
        if el.get("cores") is not None:
            cpu, err = parse_float(el.get("cores", ""), "emulab:xen cores", low=0)
            if err:
                self.problem(el, err)
        if el.get("ram") is not None:
            mem, err = parse_int(el.get("ram", ""), "emulab:xen ram", low=1)
            if err:
                self.problem(el, err)
        return cpu, mem

    def read_interface(self, el: etree._Element) -> RequestInterface:
        ips: list[IPv4] = []
        for ip in el.iterchildren(R + "ip"):
            address = ip.get("address", "").strip()
            kind = (ip.get("type") or "ipv4").strip().lower()
            netmask = (ip.get("netmask") or "").strip()
            err = check_ipv4(address) if kind == "ipv4" else check_ip(address)
            if err:
                self.problem(ip, f"interface {el.get('client_id')!r}: {err}")
            if netmask and kind == "ipv4":
                err = check_netmask(netmask)
                if err:
                    self.problem(ip, f"interface {el.get('client_id')!r}: {err}")
            ips.append(IPv4(address=address, netmask=netmask, type=kind))
        return RequestInterface(client_id=el.get("client_id", ""),
                                component_id=el.get("component_id"), ips=tuple(ips))

    def read_services(self, el: etree._Element, prior: Services) -> Services:
        installs = list(prior.installs)
        executes = list(prior.executes)
        logins = list(prior.logins)
        for child in _elements(el):
            if child.tag == R + "install":
                installs.append(Install(url=child.get("url", ""),
                                        install_path=child.get("install_path", "")))
            elif child.tag == R + "execute":
                executes.append(Execute(shell=child.get("shell", ""),
                                        command=child.get("command", "")))
            elif child.tag == R + "login":
                port = None
                if child.get("port"):
                    port, err = parse_int(child.get("port", ""), "login port", low=1, high=65535)
                    if err:
                        self.problem(child, err)
                logins.append(Login(authentication=child.get("authentication", "ssh-keys"),
                                    hostname=child.get("hostname"), port=port,
                                    username=child.get("username")))
        return Services(installs=tuple(installs), executes=tuple(executes), logins=tuple(logins))

    def read_extension(self, el: etree._Element, node: etree._Element) -> NodeExtension:
        """geniam:node; attribute types were checked by geniam.xsd."""
        cid = node.get("client_id")
        cpu = float(el.get("cpu")) if el.get("cpu") is not None else None
        memory = int(el.get("memory_mb")) if el.get("memory_mb") is not None else None
        forwarding = ForwardingMode(el.get("forwarding").strip()) if el.get("forwarding") else None
        router = bool(parse_bool(el.get("router")))
        if forwarding is not None and el.get("router") is not None and not router:
            self.problem(el, f"node {cid!r}: forwarding mode {forwarding.value!r} given for a "
                             "node that is not a router (router=\"false\")")
        if forwarding is not None:
            router = True   # asking where to forward is asking for a router
        node_ifaces = {i.get("client_id") for i in node.iterchildren(R + "interface")}
        routes: list[Route] = []
        for route in el.iterchildren(GA + "route"):
            dest = route.get("destination", "").strip()
            gateway = (route.get("gateway") or "").strip() or None
            iface = (route.get("interface") or "").strip() or None
            err = check_cidr(dest)
            if err:
                self.problem(route, f"node {cid!r}: route destination {err}")
            if gateway is not None:
                err = check_ip(gateway)
                if err:
                    self.problem(route, f"node {cid!r}: route gateway {err}")
            if iface is not None and iface not in node_ifaces:
                self.problem(route, f"node {cid!r}: route interface {iface!r} is not an "
                                    "interface of this node")
            if gateway is None and iface is None:
                self.problem(route, f"node {cid!r}: route to {dest!r} needs a gateway or an "
                                    "interface")
            routes.append(Route(destination=dest, gateway=gateway, interface=iface))
        isolation = IsolationClass(el.get("isolation").strip()) if el.get("isolation") else None
        return NodeExtension(isolation=isolation, router=router, forwarding=forwarding,
                             cpu=cpu, memory_mb=memory, routes=tuple(routes))

    # -- stitching ---------------------------------------------------------------------------
    def read_stitching(self, el: etree._Element) -> None:
        paths, problems = read_paths(el)
        for line, message in problems:
            self.problems.append(Problem(line, "stitching:hop", message))
        for path in paths:
            if path.id in self.paths:
                self.problem(el, f"two stitching paths with id {path.id!r}")
            self.paths[path.id] = path

    # -- links -------------------------------------------------------------------------------
    def link_is_ours(self, el: etree._Element) -> bool:
        managers = [cm.get("name") for cm in el.iterchildren(R + "component_manager")]
        if managers:
            return any(self.ours(m) for m in managers)
        for ref in el.iterchildren(R + "interface_ref"):
            owner = self.iface_owner.get(ref.get("client_id", ""))
            if owner is not None and not self.node_is_ours(owner):
                return False
        return True

    def read_link(self, el: etree._Element) -> RequestLink:
        cid = el.get("client_id", "")
        refs: list[str] = []
        for ref in el.iterchildren(R + "interface_ref"):
            rid = ref.get("client_id", "")
            if rid not in self.iface_owner:
                self.problem(ref, f"link {cid!r}: interface_ref {rid!r} names no interface of "
                                  "any node in the request")
            if rid in refs:
                self.problem(ref, f"link {cid!r}: interface {rid!r} is referenced twice")
            else:
                refs.append(rid)
        shared = None
        for child in _elements(el):
            if child.tag in _SHARED_VLAN_TAGS:
                shared = (child.get("name") or "").strip() or None
                if shared is None:
                    self.problem(child, f"link {cid!r}: link_shared_vlan without a name")
        # a link joining a shared LAN may have one end here: the LAN is the other
        if len(refs) < (1 if shared else 2):
            self.problem(el, f"link {cid!r} has {len(refs)} distinct interface_ref(s); a link "
                             "needs at least two ends (one when it joins a shared LAN)")
        ends = set(refs) | {cid}   # ProtoGENI/geni-lib LANs use the link itself as dest_id
        properties: list[LinkProperty] = []
        for prop in el.iterchildren(R + "property"):
            properties.append(self.read_property(prop, cid, ends))
        link_types = list(el.iterchildren(R + "link_type"))
        if len(link_types) > 1:
            self.problem(link_types[1], f"link {cid!r}: at most one link_type")
        vlan_tag = switch = None
        for hint in el.iterchildren(GA + "link"):
            if hint.get("vlan_tag") is not None:
                vlan_tag = int(hint.get("vlan_tag"))   # range checked by geniam.xsd
            if hint.get("switch") is not None:
                switch = hint.get("switch", "").strip() or None
                if switch is None:
                    self.problem(hint, f"link {cid!r}: geniam:link switch is empty")
        return RequestLink(
            client_id=cid,
            interface_refs=tuple(refs),
            properties=tuple(properties),
            link_type=link_types[0].get("name") if link_types else None,
            component_managers=tuple(cm.get("name", "")
                                     for cm in el.iterchildren(R + "component_manager")),
            vlan_tag=vlan_tag,
            switch=switch,
            shared_vlan=shared,
            source_line=el.sourceline,
            element_xml=_text(el),
            stitching=self.paths.get(cid),
        )

    def read_property(self, el: etree._Element, link: str, ends: set[str]) -> LinkProperty:
        src, dst = el.get("source_id", ""), el.get("dest_id", "")
        for label, value in (("source_id", src), ("dest_id", dst)):
            if value not in ends:
                self.problem(el, f"link {link!r}: property {label} {value!r} is not one of "
                                 "the link's interface_refs")
        if src == dst:
            self.problem(el, f"link {link!r}: property source_id and dest_id are both {src!r}")
        capacity = latency = loss = None
        if el.get("capacity") is not None:
            capacity, err = parse_int(el.get("capacity", ""), "capacity (kbit/s)", low=0)
            if err:
                self.problem(el, f"link {link!r}: {err}")
        if el.get("latency") is not None:
            latency, err = parse_float(el.get("latency", ""), "latency (ms)", low=0)
            if err:
                self.problem(el, f"link {link!r}: {err}")
        if el.get("packet_loss") is not None:
            loss, err = parse_float(el.get("packet_loss", ""),
                                    "packet_loss (a fraction from 0 to 1)", low=0, high=1)
            if err:
                self.problem(el, f"link {link!r}: {err}")
        return LinkProperty(source_id=src, dest_id=dst, capacity_kbps=capacity,
                            latency_ms=latency, packet_loss=loss)

    # -- OpenFlow ----------------------------------------------------------------------------
    def read_openflow(self, el: etree._Element) -> OpenFlowSliver | None:
        """The sliver, or None when it belongs to another AM (then it is echoed unchanged)."""
        datapath_els = list(el.iter(OF + "datapath"))
        managers = [dp.get("component_manager_id") for dp in datapath_els]
        if datapath_els and not any(self.ours(m) for m in managers):
            return None
        for dp in datapath_els:
            if not self.ours(dp.get("component_manager_id")):
                self.problem(dp, f"datapath {dp.get('component_id')!r} belongs to "
                                 f"{dp.get('component_manager_id')!r}, not this AM; an OpenFlow "
                                 "sliver must stay within one aggregate")
        controllers = tuple(OFController(url=c.get("url", "").strip(),
                                         type=c.get("type", "primary").strip())
                            for c in el.iterchildren(OF + "controller"))
        groups: list[OFGroup] = []
        group_names: set[str] = set()
        for g in el.iterchildren(OF + "group"):
            name = g.get("name", "").strip()
            if name in group_names:
                self.problem(g, f"duplicate OpenFlow group name {name!r}")
            group_names.add(name)
            groups.append(OFGroup(name=name, datapaths=self.read_datapaths(g)))
        matches: list[OFMatch] = []
        for m in el.iterchildren(OF + "match"):
            uses = []
            for use in m.iterchildren(OF + "use-group"):
                name = use.get("name", "").strip()
                if name not in group_names:
                    self.problem(use, f"use-group {name!r} names no group of this sliver")
                uses.append(name)
            packet = next(m.iterchildren(OF + "packet"), None)
            matches.append(OFMatch(use_groups=tuple(uses), datapaths=self.read_datapaths(m),
                                   packet=self.read_packet(packet)))
        return OpenFlowSliver(controllers=controllers, groups=tuple(groups),
                              matches=tuple(matches), description=el.get("description"),
                              email=el.get("email"), source_line=el.sourceline,
                              element_xml=_text(el))

    def read_datapaths(self, parent: etree._Element) -> tuple[OFDatapath, ...]:
        return tuple(
            OFDatapath(component_id=dp.get("component_id", ""),
                       component_manager_id=dp.get("component_manager_id"),
                       dpid=dp.get("dpid"),
                       ports=tuple(OFPort(num=int(p.get("num")), name=p.get("name"))
                                   for p in dp.iterchildren(OF + "port")))
            for dp in parent.iterchildren(OF + "datapath"))

    def read_packet(self, el: etree._Element | None) -> PacketMatch:
        if el is None:
            return PacketMatch()
        fields: dict[str, tuple] = {}
        limits = {"dl_vlan": (0, 4095), "nw_proto": (0, 255), "tp_src": (0, 65535),
                  "tp_dst": (0, 65535)}
        for child in _elements(el):
            name = etree.QName(child).localname
            values = split_list(child.get("value", ""))
            if name in limits:
                low, high = limits[name]
                numbers = []
                for v in values:
                    n, err = parse_int(v, name, low=low, high=high)
                    if err:
                        self.problem(child, err)
                    else:
                        numbers.append(n)
                fields[name] = fields.get(name, ()) + tuple(numbers)
            elif name in ("nw_src", "nw_dst"):
                for v in values:
                    err = check_cidr(v) if "/" in v else check_ipv4(v)
                    if err:
                        self.problem(child, f"{name}: {err}")
                fields[name] = fields.get(name, ()) + values
            else:
                fields[name] = fields.get(name, ()) + values
        return PacketMatch(**{k: v for k, v in fields.items()
                              if k in PacketMatch.__dataclass_fields__})
