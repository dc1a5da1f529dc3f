"""Building the manifest RSpec: the request echoed, annotated with what the AM assigned.

Each entry carries the original request element (`element_xml`, kept by the parser) so the
client gets back exactly what it sent, extensions included; without it the element is rebuilt
from the request model. The builder adds sliver_id/component_id URNs, interface MACs and IPs,
login services (with the ssh-user extension listing accounts and keys), host names, link VLAN
tags and the allocation/operational state (`geniam:sliver_state`). Nodes and links of other
AMs (`foreign_xml`) are echoed unchanged (a foreign `<link>` without `vlantag` gets an empty
one, which manifest.xsd requires). The result validates against `manifest-bundle.xsd`.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from lxml import etree

from rspec import namespaces as ns
from rspec.model import IPv4, Login, OpenFlowSliver, RequestLink, RequestNode
from rspec.serialize import link_element, node_element, openflow_element
from rspec.stitching import ManifestPath, manifest_stitching
from rspec.xmltext import timestamp

R = "{%s}" % ns.RSPEC3
GA = "{%s}" % ns.GENIAM
USR = "{%s}" % ns.USER
NSMAP = {None: ns.RSPEC3, "xsi": ns.XSI, "ssh-user": ns.USER, "openflow": ns.OPENFLOW3,
         "geniam": ns.GENIAM}
SCHEMA_LOCATION = (f"{ns.RSPEC3} {ns.MANIFEST_XSD_URL} {ns.USER} {ns.USER_XSD_URL} "
                   f"{ns.GENIAM} {ns.GENIAM_XSD_URL}")


@dataclass(frozen=True)
class InterfaceFacts:
    """What the AM assigned to one interface (by its request client_id)."""

    client_id: str
    sliver_id: str | None = None
    component_id: str | None = None    # the physical port, when bound
    mac: str | None = None
    ips: tuple[IPv4, ...] = ()         # added when the request did not carry the address
    hostname: str | None = None


@dataclass(frozen=True)
class ManifestUser:
    """One login account (`ssh-user:services_user`, AM API v3 geni_users)."""

    login: str
    user_urn: str | None = None
    public_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class SliverState:
    allocation: str | None = None      # e.g. geni_allocated / geni_provisioned
    operational: str | None = None     # e.g. geni_notready / geni_ready / geni_failed
    error: str | None = None
    resource_status: str | None = None  # what the substrate said (e.g. "emulated NetFPGA ...")


@dataclass(frozen=True)
class ManifestNode:
    client_id: str
    sliver_id: str
    component_manager_id: str
    component_id: str | None = None
    request: RequestNode | None = None
    element_xml: str | None = None
    interfaces: tuple[InterfaceFacts, ...] = ()
    logins: tuple[Login, ...] = ()
    users: tuple[ManifestUser, ...] = ()
    hostname: str | None = None
    sliver_type: str | None = None     # the type chosen when the request left it open
    disk_image: str | None = None
    state: SliverState | None = None


@dataclass(frozen=True)
class ManifestLink:
    client_id: str
    sliver_id: str | None = None
    vlantag: int | str | None = None   # None: no tag (same-host link); written as ""
    component_manager_id: str | None = None   # added as <component_manager> when absent
    request: RequestLink | None = None
    element_xml: str | None = None
    interfaces: tuple[InterfaceFacts, ...] = ()   # overrides the node interface facts
    state: SliverState | None = None


@dataclass(frozen=True)
class ManifestOpenFlow:
    sliver_id: str
    request: OpenFlowSliver | None = None
    element_xml: str | None = None
    state: SliverState | None = None


def _parse_fragment(text: str, expected: str) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False)
    el = etree.fromstring(text.encode("utf-8"), parser)
    if el.tag != expected:
        raise ValueError(f"manifest entry element is {el.tag}, expected {expected}")
    return el


def _state_element(parent: etree._Element, state: SliverState | None,
                   sliver_id: str | None = None) -> None:
    if state is None and sliver_id is None:
        return
    se = etree.SubElement(parent, GA + "sliver_state")
    if sliver_id:
        se.set("sliver_id", sliver_id)
    if state is not None:
        for name in ("allocation", "operational", "error", "resource_status"):
            value = getattr(state, name)
            if value is not None:
                se.set(name, value)


def _children(el: etree._Element, tag: str) -> list[etree._Element]:
    return list(el.iterchildren(tag))


def _node(entry: ManifestNode, facts: dict[str, InterfaceFacts]) -> etree._Element:
    if entry.element_xml:
        el = _parse_fragment(entry.element_xml, R + "node")
    elif entry.request is not None:
        el = node_element(entry.request)
    else:
        el = etree.Element(R + "node", nsmap=NSMAP)
    el.set("client_id", entry.client_id)
    el.set("component_manager_id", entry.component_manager_id)
    if entry.component_id:
        el.set("component_id", entry.component_id)
    el.set("sliver_id", entry.sliver_id)
    if entry.sliver_type and not _children(el, R + "sliver_type"):
        st = etree.SubElement(el, R + "sliver_type", name=entry.sliver_type)
        if entry.disk_image:
            etree.SubElement(st, R + "disk_image", name=entry.disk_image)
    for iface in el.iterchildren(R + "interface"):
        fact = facts.get(iface.get("client_id", ""))
        if fact is None:
            continue
        if fact.sliver_id:
            iface.set("sliver_id", fact.sliver_id)
        if fact.component_id:
            iface.set("component_id", fact.component_id)
        if fact.mac:
            iface.set("mac_address", fact.mac)
        present = {ip.get("address") for ip in iface.iterchildren(R + "ip")}
        for ip in fact.ips:
            if ip.address not in present:
                ipe = etree.SubElement(iface, R + "ip", address=ip.address)
                if ip.netmask:
                    ipe.set("netmask", ip.netmask)
                ipe.set("type", ip.type)
        if fact.hostname:
            etree.SubElement(iface, R + "host", name=fact.hostname)
    if entry.logins or entry.users:
        services = next(el.iterchildren(R + "services"), None)
        if services is None:
            services = etree.SubElement(el, R + "services")
        for login in entry.logins:
            le = etree.SubElement(services, R + "login", authentication=login.authentication)
            if login.hostname:
                le.set("hostname", login.hostname)
            le.set("port", str(login.port if login.port is not None else 22))
            if login.username:
                le.set("username", login.username)
        for user in entry.users:
            ue = etree.SubElement(services, USR + "services_user", login=user.login)
            if user.user_urn:
                ue.set("user_urn", user.user_urn)
            for key in user.public_keys:
                etree.SubElement(ue, USR + "public_key").text = key
    if entry.hostname:
        etree.SubElement(el, R + "host", name=entry.hostname)
    _state_element(el, entry.state)
    return el


def _link(entry: ManifestLink, facts: dict[str, InterfaceFacts]) -> etree._Element:
    if entry.element_xml:
        el = _parse_fragment(entry.element_xml, R + "link")
    elif entry.request is not None:
        el = link_element(entry.request)
    else:
        el = etree.Element(R + "link", nsmap=NSMAP)
    el.set("client_id", entry.client_id)
    if entry.sliver_id:
        el.set("sliver_id", entry.sliver_id)
    el.set("vlantag", "" if entry.vlantag is None else str(entry.vlantag))
    if entry.component_manager_id and not _children(el, R + "component_manager"):
        el.insert(0, etree.Element(R + "component_manager", name=entry.component_manager_id))
    own = {f.client_id: f for f in entry.interfaces}
    for ref in el.iterchildren(R + "interface_ref"):
        cid = ref.get("client_id", "")
        fact = own.get(cid) or facts.get(cid)
        if fact is None:
            continue
        if fact.sliver_id:
            ref.set("sliver_id", fact.sliver_id)
        if fact.component_id:
            ref.set("component_id", fact.component_id)
    _state_element(el, entry.state)
    return el


def build_manifest(nodes: Iterable[ManifestNode], links: Iterable[ManifestLink], *,
                   openflow: Iterable[ManifestOpenFlow] = (), foreign_xml: Iterable[str] = (),
                   expires: datetime | None = None, generated: datetime | None = None,
                   stitching: Iterable[ManifestPath] = ()) -> str:
    """The manifest RSpec text. With no entries it is the empty manifest Describe returns.
    `stitching`: the stitched paths reserved here, written as a `<stitching>` element with
    the chosen tag on this AM's hops (`rspec.stitching.manifest_stitching`)."""
    nodes = list(nodes)
    facts = {f.client_id: f for n in nodes for f in n.interfaces}
    root = etree.Element(R + "rspec", nsmap=NSMAP)
    root.set(f"{{{ns.XSI}}}schemaLocation", SCHEMA_LOCATION)
    root.set("type", "manifest")
    root.set("generated_by", "geni-am")
    root.set("generated", timestamp(generated or datetime.now(timezone.utc)))
    if expires is not None:
        root.set("expires", timestamp(expires))
    for node in nodes:
        root.append(_node(node, facts))
    for link in links:
        root.append(_link(link, facts))
    for sliver in openflow:
        if sliver.element_xml:
            el = _parse_fragment(sliver.element_xml, f"{{{ns.OPENFLOW3}}}sliver")
        elif sliver.request is not None:
            el = openflow_element(sliver.request)
        else:
            raise ValueError(f"OpenFlow manifest entry {sliver.sliver_id} has no request")
        root.append(el)
        _state_element(root, sliver.state, sliver.sliver_id)
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    for text in foreign_xml:
        el = etree.fromstring(text.encode("utf-8"), parser)
        if el.tag == R + "link" and el.get("vlantag") is None:
            el.set("vlantag", "")   # the only change: manifest.xsd requires the attribute
        root.append(el)
    paths = manifest_stitching(stitching, updated=generated)
    if paths is not None:
        root.append(paths)
    etree.cleanup_namespaces(root, top_nsmap=NSMAP)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            + etree.tostring(root, encoding="unicode") + "\n")
