"""The request model written back as request RSpec elements.

Used when a manifest entry carries no original element (`element_xml is None`), and by tests
to round-trip the model. Inverse of `rspec.request` for everything the model holds.
"""
from __future__ import annotations

from lxml import etree

from rspec import namespaces as ns
from rspec.model import OpenFlowSliver, OFDatapath, Request, RequestLink, RequestNode
from rspec.xmltext import number

R = "{%s}" % ns.RSPEC3
OF = "{%s}" % ns.OPENFLOW3
GA = "{%s}" % ns.GENIAM
NSMAP = {None: ns.RSPEC3, "xsi": ns.XSI, "openflow": ns.OPENFLOW3, "geniam": ns.GENIAM,
         "sharedvlan": ns.SHARED_VLAN}


def _set(el: etree._Element, name: str, value: object) -> None:
    if value is not None:
        el.set(name, value if isinstance(value, str) else str(value))


def node_element(node: RequestNode) -> etree._Element:
    el = etree.Element(R + "node", nsmap=NSMAP)
    el.set("client_id", node.client_id)
    _set(el, "component_id", node.component_id)
    _set(el, "component_name", node.component_name)
    _set(el, "component_manager_id", node.component_manager_id)
    if node.exclusive is not None:
        el.set("exclusive", "true" if node.exclusive else "false")
    if node.sliver_type:
        st = etree.SubElement(el, R + "sliver_type", name=node.sliver_type)
        if node.disk_image:
            etree.SubElement(st, R + "disk_image", name=node.disk_image)
    if node.hardware_type:
        etree.SubElement(el, R + "hardware_type", name=node.hardware_type)
    for iface in node.interfaces:
        ie = etree.SubElement(el, R + "interface", client_id=iface.client_id)
        _set(ie, "component_id", iface.component_id)
        for ip in iface.ips:
            ipe = etree.SubElement(ie, R + "ip", address=ip.address)
            if ip.netmask:
                ipe.set("netmask", ip.netmask)
            ipe.set("type", ip.type)
    s = node.services
    if s.installs or s.executes or s.logins:
        se = etree.SubElement(el, R + "services")
        for login in s.logins:
            le = etree.SubElement(se, R + "login", authentication=login.authentication)
            _set(le, "hostname", login.hostname)
            _set(le, "port", login.port)
        for inst in s.installs:
            etree.SubElement(se, R + "install", url=inst.url, install_path=inst.install_path)
        for ex in s.executes:
            etree.SubElement(se, R + "execute", shell=ex.shell, command=ex.command)
    x = node.ext
    if x.isolation or x.router or x.forwarding or x.cpu is not None or x.memory_mb is not None \
            or x.routes:
        xe = etree.SubElement(el, GA + "node")
        if x.isolation:
            xe.set("isolation", x.isolation.value)
        if x.router:
            xe.set("router", "true")
        if x.forwarding:
            xe.set("forwarding", x.forwarding.value)
        if x.cpu is not None:
            xe.set("cpu", number(x.cpu))
        _set(xe, "memory_mb", x.memory_mb)
        for route in x.routes:
            re_ = etree.SubElement(xe, GA + "route", destination=route.destination)
            _set(re_, "gateway", route.gateway)
            _set(re_, "interface", route.interface)
    return el


def link_element(link: RequestLink) -> etree._Element:
    el = etree.Element(R + "link", nsmap=NSMAP)
    el.set("client_id", link.client_id)
    for cm in link.component_managers:
        etree.SubElement(el, R + "component_manager", name=cm)
    for ref in link.interface_refs:
        etree.SubElement(el, R + "interface_ref", client_id=ref)
    for p in link.properties:
        pe = etree.SubElement(el, R + "property", source_id=p.source_id, dest_id=p.dest_id)
        _set(pe, "capacity", p.capacity_kbps)
        if p.latency_ms is not None:
            pe.set("latency", number(p.latency_ms))
        if p.packet_loss is not None:
            pe.set("packet_loss", number(p.packet_loss))
    if link.link_type:
        etree.SubElement(el, R + "link_type", name=link.link_type)
    if link.vlan_tag is not None or link.switch:
        hint = etree.SubElement(el, GA + "link")
        if link.vlan_tag is not None:
            hint.set("vlan_tag", str(link.vlan_tag))
        if link.switch:
            hint.set("switch", link.switch)
    if link.shared_vlan:
        etree.SubElement(el, f"{{{ns.SHARED_VLAN}}}link_shared_vlan", name=link.shared_vlan)
    return el


def _datapath(parent: etree._Element, dp: OFDatapath) -> None:
    de = etree.SubElement(parent, OF + "datapath", component_id=dp.component_id)
    _set(de, "component_manager_id", dp.component_manager_id)
    _set(de, "dpid", dp.dpid)
    for port in dp.ports:
        pe = etree.SubElement(de, OF + "port", num=str(port.num))
        _set(pe, "name", port.name)


def openflow_element(sliver: OpenFlowSliver) -> etree._Element:
    el = etree.Element(OF + "sliver", nsmap={"openflow": ns.OPENFLOW3})
    _set(el, "description", sliver.description)
    _set(el, "email", sliver.email)
    for c in sliver.controllers:
        etree.SubElement(el, OF + "controller", url=c.url, type=c.type)
    for g in sliver.groups:
        ge = etree.SubElement(el, OF + "group", name=g.name)
        for dp in g.datapaths:
            _datapath(ge, dp)
    for m in sliver.matches:
        me = etree.SubElement(el, OF + "match")
        for name in m.use_groups:
            etree.SubElement(me, OF + "use-group", name=name)
        for dp in m.datapaths:
            _datapath(me, dp)
        pe = etree.SubElement(me, OF + "packet")
        for field_name in ("dl_src", "dl_dst", "dl_type", "dl_vlan", "nw_src", "nw_dst",
                           "nw_proto", "tp_src", "tp_dst"):
            values = getattr(m.packet, field_name)
            if values:
                etree.SubElement(pe, OF + field_name, value=",".join(str(v) for v in values))
    return el


def request_document(request: Request) -> str:
    """A whole request RSpec for the model (foreign parts appended verbatim)."""
    root = etree.Element(R + "rspec", nsmap=NSMAP, type="request")
    _set(root, "generated_by", request.generated_by)
    for node in request.nodes:
        root.append(node_element(node))
    for link in request.links:
        root.append(link_element(link))
    for sliver in request.openflow:
        root.append(openflow_element(sliver))
    for text in request.foreign_xml:
        root.append(etree.fromstring(text, etree.XMLParser(resolve_entities=False,
                                                           no_network=True)))
    etree.cleanup_namespaces(root, top_nsmap=NSMAP)
    return etree.tostring(root, encoding="unicode", pretty_print=True)
