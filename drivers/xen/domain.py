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
class BootPlan:
    """Direct kernel boot of a VM image, with the per-sliver files the driver keeps."""

    kernel: str
    initrd: str                    # the image's initramfs + this sliver's config archive
    console_log: str               # the guest's console, written to a file (readiness, failures)
    agent_socket: str              # host end of the virtio-serial agent port
    agent_port: str = "org.geni.agent.0"
    # no_timer_check: a slow (emulated, busy) host can fail the kernel's IO-APIC timer check
    cmdline: str = "console=ttyS0 quiet no_timer_check"
    ssh_address: str | None = None  # management NIC: SSH forwarded from ssh_address:ssh_port
    ssh_port: int | None = None
    mgmt_mac: str | None = None


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
    boot: BootPlan | None = None


#: libvirt domain types this module writes, and how each boots a direct kernel.
DOMAIN_TYPES = ("xen", "kvm", "qemu")
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"


def domain_type_for(uri: str, capabilities_xml: str | None, wanted: str = "auto") -> str:
    """The domain type for a host: `xen` on a Xen URI (libxl), else `kvm` when the host's
    capabilities offer it for x86_64 and `wanted` allows, else `qemu` (software emulation)."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0]
    if scheme in ("xen", "libxl", "test"):
        return "xen"
    if wanted in ("kvm", "qemu"):
        return wanted
    if capabilities_xml:
        caps = etree.fromstring(capabilities_xml.encode())
        for guest in caps.findall("guest"):
            arch = guest.find("arch")
            if arch is not None and arch.get("name") == "x86_64" and \
                    arch.find("domain[@type='kvm']") is not None:
                return "kvm"
    return "qemu"


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


def build_xml(plan: DomainPlan, domain_type: str = "xen") -> str:
    """The domain XML for `plan` on a `domain_type` hypervisor (see `domain_type_for`)."""
    if domain_type not in DOMAIN_TYPES:
        raise ValueError(f"unknown domain type {domain_type!r}")
    if plan.boot is not None:
        return _booting_xml(plan, domain_type)
    dom = _domain(plan, "xen")
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


def _domain(plan: DomainPlan, domain_type: str, nsmap: dict | None = None) -> etree._Element:
    """<domain> with its name, our metadata (owner), memory and vCPUs."""
    dom = etree.Element("domain", type=domain_type, nsmap=nsmap)
    etree.SubElement(dom, "name").text = plan.name
    meta = etree.SubElement(dom, "metadata")
    etree.SubElement(meta, f"{{{METADATA_NS}}}sliver", nsmap={"geniam": METADATA_NS},
                     urn=plan.sliver_urn, host=plan.host)
    etree.SubElement(dom, "memory", unit="KiB").text = str(plan.memory_mb * 1024)
    etree.SubElement(dom, "vcpu").text = str(plan.vcpus)
    return dom


def _booting_xml(plan: DomainPlan, domain_type: str) -> str:
    """A VM that boots the image's kernel and initramfs: Xen PV (or HVM), KVM or QEMU."""
    boot = plan.boot
    assert boot is not None
    qemu_like = domain_type in ("kvm", "qemu")
    dom = _domain(plan, domain_type, {"qemu": QEMU_NS} if qemu_like and boot.ssh_port else None)
    os_el = etree.SubElement(dom, "os")
    if qemu_like:
        etree.SubElement(os_el, "type", arch="x86_64", machine="pc").text = "hvm"
    else:
        etree.SubElement(os_el, "type").text = "hvm" if plan.hvm else "xen"
    etree.SubElement(os_el, "kernel").text = boot.kernel
    etree.SubElement(os_el, "initrd").text = boot.initrd
    cmdline = boot.cmdline if (qemu_like or plan.hvm) else boot.cmdline.replace("ttyS0", "hvc0")
    etree.SubElement(os_el, "cmdline").text = cmdline
    etree.SubElement(etree.SubElement(dom, "features"), "acpi")
    etree.SubElement(dom, "on_poweroff").text = "destroy"
    etree.SubElement(dom, "on_reboot").text = "restart"
    etree.SubElement(dom, "on_crash").text = "destroy"
    devices = etree.SubElement(dom, "devices")
    for vif in plan.vifs:
        _vif(devices, vif, qemu_like)
    if qemu_like or plan.hvm:
        serial = etree.SubElement(devices, "serial", type="file")
        etree.SubElement(serial, "source", path=boot.console_log, append="off")
        etree.SubElement(serial, "target", port="0")
    else:
        console = etree.SubElement(devices, "console", type="pty")
        etree.SubElement(console, "log", file=boot.console_log, append="off")
        etree.SubElement(console, "target", type="xen", port="0")
    channel = etree.SubElement(devices, "channel", type="unix")
    etree.SubElement(channel, "source", mode="bind", path=boot.agent_socket)
    etree.SubElement(channel, "target", type="virtio" if qemu_like else "xen",
                     name=boot.agent_port)
    if qemu_like:
        etree.SubElement(devices, "memballoon", model="none")
    if qemu_like and boot.ssh_port and boot.ssh_address and boot.mgmt_mac:
        # the management NIC: user-mode networking (no host address, restrict=on: the guest
        # reaches nothing through it) forwarding ssh_address:ssh_port to the guest's port 22
        cmd = etree.SubElement(dom, f"{{{QEMU_NS}}}commandline")
        for arg in ("-netdev", f"user,id=geni-mgmt,net=10.0.2.0/24,restrict=on,"
                               f"hostfwd=tcp:{boot.ssh_address}:{boot.ssh_port}-10.0.2.15:22",
                    "-device", f"virtio-net-pci,netdev=geni-mgmt,mac={boot.mgmt_mac},addr=0x1e,romfile="):
            etree.SubElement(cmd, f"{{{QEMU_NS}}}arg", value=arg)
    return etree.tostring(dom, encoding="unicode")


def _vif(devices: etree._Element, vif: VifPlan, qemu_like: bool) -> etree._Element:
    iface = etree.SubElement(devices, "interface", type="bridge")
    etree.SubElement(iface, "source", bridge=vif.bridge)
    etree.SubElement(iface, "mac", address=vif.mac)
    etree.SubElement(iface, "target", dev=vif.device)
    if qemu_like:
        etree.SubElement(iface, "model", type="virtio")
        etree.SubElement(iface, "rom", enabled="no")
    return iface


def with_vif(xml: str, vif: VifPlan) -> str:
    """The domain XML with `vif` as its NIC on host device `vif.device` (replacing the NIC
    there, if any; added after the others otherwise)."""
    root = etree.fromstring(xml.encode())
    devices = root.find("devices")
    assert devices is not None
    for old in devices.findall("interface"):
        target = old.find("target")
        if target is not None and target.get("dev") == vif.device:
            devices.remove(old)
    new = _vif(devices, vif, root.get("type") in ("kvm", "qemu"))
    others = devices.findall("interface")
    if len(others) > 1:                  # NICs together, in order, before the other devices
        devices.remove(new)
        others[-2].addnext(new)
    return etree.tostring(root, encoding="unicode")


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
