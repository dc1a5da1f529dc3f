"""Libvirt domain XML for a Xen VM sliver, built from its spec, and read back from libvirt.

The XML is built with lxml (never string formatting) so sliver-supplied names cannot inject
elements. Our metadata element carries the sliver URN and the host name inside the domain
itself, so `observed()` can tell whose a domain is from libvirt alone, as in production where
libvirtd outlives the AM.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from lxml import etree

METADATA_NS = "urn:geni-am:xen:1"
DOMAIN_PREFIX = "geniam-"


@dataclass(frozen=True)
class VifPlan:
    """One guest interface: its MAC, the host bridge it joins and its Dom0-side device name."""

    client_id: str
    mac: str
    bridge: str
    device: str            # Dom0 end of the guest NIC (the vif), <= 15 chars


@dataclass(frozen=True)
class DomainPlan:
    name: str
    sliver_urn: str
    host: str
    vcpus: int
    memory_mb: int
    disk_path: str
    vifs: tuple[VifPlan, ...]
    hvm: bool = False


def handle_for(sliver_urn: str) -> str:
    """The domain name for a sliver: stable (so provision is idempotent) and short."""
    return DOMAIN_PREFIX + hashlib.sha256(sliver_urn.encode()).hexdigest()[:12]


def vif_name(handle: str, index: int) -> str:
    """Dom0 device name of the guest's `index`-th NIC, unique per sliver, IFNAMSIZ-safe."""
    return f"vr{handle[len(DOMAIN_PREFIX):][:8]}.{index}"


def deterministic_mac(handle: str, client_id: str) -> str:
    """A locally administered unicast MAC derived from the sliver and interface, so a retried
    provision hands out the same address the manifest already shows. 00:16:3e is Xen's OUI;
    we use the locally administered range instead so we never collide with real Xen tools."""
    digest = hashlib.sha256(f"{handle}/{client_id}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, 0x16, 0x3e, *digest[:3]))


def build_xml(plan: DomainPlan) -> str:
    dom = etree.Element("domain", type="xen")
    etree.SubElement(dom, "name").text = plan.name
    meta = etree.SubElement(dom, "metadata")
    etree.SubElement(meta, f"{{{METADATA_NS}}}sliver", nsmap={"geniam": METADATA_NS},
                     urn=plan.sliver_urn, host=plan.host)
    etree.SubElement(dom, "memory", unit="KiB").text = str(plan.memory_mb * 1024)
    etree.SubElement(dom, "vcpu").text = str(plan.vcpus)
    os_el = etree.SubElement(dom, "os")
    etree.SubElement(os_el, "type").text = "hvm" if plan.hvm else "xen"
    etree.SubElement(dom, "on_poweroff").text = "destroy"
    etree.SubElement(dom, "on_reboot").text = "restart"
    etree.SubElement(dom, "on_crash").text = "destroy"
    devices = etree.SubElement(dom, "devices")
    disk = etree.SubElement(devices, "disk", type="file", device="disk")
    etree.SubElement(disk, "source", file=plan.disk_path)
    etree.SubElement(disk, "target", dev="xvda", bus="xen")
    for vif in plan.vifs:
        iface = etree.SubElement(devices, "interface", type="bridge")
        etree.SubElement(iface, "source", bridge=vif.bridge)
        etree.SubElement(iface, "mac", address=vif.mac)
        etree.SubElement(iface, "target", dev=vif.device)
    return etree.tostring(dom, encoding="unicode")


@dataclass(frozen=True)
class DomainFacts:
    """What a defined domain's XML says (for tests and for `observed`)."""

    name: str
    sliver_urn: str | None
    host: str | None
    vcpus: int
    memory_kib: int
    disks: tuple[str, ...]
    macs: tuple[str, ...]
    bridges: tuple[str, ...]


def read_xml(xml: str) -> DomainFacts:
    root = etree.fromstring(xml.encode())
    meta = root.find(f"metadata/{{{METADATA_NS}}}sliver")
    return DomainFacts(
        name=root.findtext("name") or "",
        sliver_urn=meta.get("urn") if meta is not None else None,
        host=meta.get("host") if meta is not None else None,
        vcpus=int(root.findtext("vcpu") or 0),
        memory_kib=int(root.findtext("memory") or 0),
        disks=tuple(s.get("file", "") for s in root.findall("devices/disk/source")),
        macs=tuple(m.get("address", "") for m in root.findall("devices/interface/mac")),
        bridges=tuple(b.get("bridge", "") for b in root.findall("devices/interface/source")),
    )
