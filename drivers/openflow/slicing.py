"""How a slice's flowspace becomes OVS configuration (the FlowVisor role, done with bridges).

Every slice gets its own *slice bridge* on each datapath, joined to the physical bridge by one
patch-port pair per physical port in its flowspace. The slice bridge keeps the physical
datapath's dpid and numbers each patch port like the physical port it stands for, so the slice's
controller sees "its" switch: the datapath the RSpec named, with the ports it asked for and no
others. The physical bridge's flow table belongs to the AM (fail_mode=secure, no controller):

  priority 100  in_port=<port p>, <cell match>     -> output:<patch of the slice for p>
  priority 100  in_port=<patch for p>, <cell match> -> output:p     (the slice sends only its own)
  priority 0    anything else                       -> drop

Flowspaces of different slices are disjoint (admission), so the steering flows never compete;
a packet matching no slice's flowspace is dropped, and a controller can neither receive nor
inject traffic outside its flowspace.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from drivers.openflow.flowspace import Flowspace
from drivers.openflow.naming import Naming, cookie_match
from drivers.ovs import OF_PROTOCOLS

SLICE_PRIORITY = 100
DROP_PRIORITY = 0
CONTROLLER_RE = re.compile(r"^tcp:(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*):(?P<port>\d{1,5})$")
CONTROLLER_TYPES = ("primary", "backup", "monitor")


class ControllerError(ValueError):
    def __init__(self, message: str, code: str = "BADARGS"):
        super().__init__(message)
        self.code = code


def check_controller(url: str, kind: str) -> str:
    """The controller URL OVS will dial, or ControllerError naming what is wrong."""
    if kind not in CONTROLLER_TYPES:
        raise ControllerError(f"controller type {kind!r} is not one of "
                              f"{', '.join(CONTROLLER_TYPES)}")
    m = CONTROLLER_RE.match(url.strip())
    if not m:
        if url.startswith("ssl:"):
            raise ControllerError(f"controller {url!r}: ssl controllers are not supported here "
                                  "(use tcp:<host>:<port>)", "UNSUPPORTED")
        raise ControllerError(f"controller {url!r} is not tcp:<host>:<port>")
    if not 1 <= int(m.group("port")) <= 65535:
        raise ControllerError(f"controller {url!r}: port outside 1-65535")
    return url.strip()


@dataclass(frozen=True)
class SlicePlan:
    """Everything the slice needs on one physical bridge."""

    tag: str
    bridge: str                      # the slice bridge
    phys_bridge: str
    dpid: str                        # hex, 16 digits, no colons
    ports: Mapping[int, str]         # physical port number -> physical port name
    controllers: tuple[str, ...]
    external_ids: Mapping[str, str]

    def vsctl_args(self, naming: Naming, stale_ports: tuple[int, ...] = ()) -> list[str]:
        """One ovs-vsctl transaction creating (or converging) the slice bridge and patches."""
        br = self.bridge
        ids = [f"external_ids:{k}={_q(v)}" for k, v in self.external_ids.items()]
        args = ["--may-exist", "add-br", br, "--", "set", "bridge", br, "datapath_type=netdev",
                f"protocols={OF_PROTOCOLS}", "fail_mode=secure",
                f"other-config:datapath-id={self.dpid}", "other-config:disable-in-band=true", *ids]
        for num in sorted(self.ports):
            pp, sp = naming.phys_patch(self.tag, num), naming.slice_patch(self.tag, num)
            args += ["--", "--may-exist", "add-port", self.phys_bridge, pp,
                     "--", "set", "interface", pp, "type=patch", f"options:peer={sp}", *ids,
                     "--", "--may-exist", "add-port", br, sp,
                     "--", "set", "interface", sp, "type=patch", f"options:peer={pp}",
                     f"ofport_request={num}", *ids]
        for num in stale_ports:
            args += ["--", "--if-exists", "del-port", naming.phys_patch(self.tag, num),
                     "--", "--if-exists", "del-port", naming.slice_patch(self.tag, num)]
        refs = []
        for i, url in enumerate(self.controllers):
            args += ["--", f"--id=@c{i}", "create", "controller", f"target={_q(url)}",
                     "max_backoff=1000", "inactivity_probe=5000"]
            refs.append(f"@c{i}")
        args += ["--", "set", "bridge", br, f"controller=[{','.join(refs)}]"]
        return args


def steering_flows(fs: Flowspace, naming: Naming, tag: str, ports: Mapping[int, str],
                   patch_ofports: Mapping[int, int]) -> list[str]:
    """The slice's flows on the physical bridge (`ovs-ofctl add-flows` lines, with a leading
    delete of the slice's old flows so one process replaces them)."""
    cookie = naming.cookie(tag)
    lines = [f"delete {cookie_match(cookie)}"]
    every = sorted(ports)
    for cell in fs.cells:
        cell_ports = sorted(cell.ports) if cell.ports is not None else every
        for match in cell.ofmatches():
            m = f",{match}" if match else ""
            for p in cell_ports:
                head = f"add cookie=0x{cookie:016x},priority={SLICE_PRIORITY}"
                lines.append(f"{head},in_port={p}{m},actions=output:{patch_ofports[p]}")
                lines.append(f"{head},in_port={patch_ofports[p]}{m},actions=output:{p}")
    return lines


def base_flows(naming: Naming) -> list[str]:
    return [f"cookie=0x{naming.base_cookie:016x},priority={DROP_PRIORITY},actions=drop"]


def _q(value: str) -> str:
    """Quote a value for ovs-vsctl's database syntax."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
