"""Deterministic names for everything the driver makes on the host.

Every name starts with the AM's prefix (config `name_prefix`), so `observed()` finds what this
AM made (and nothing of anybody else's), and every name is a hash of the sliver URN (and the
interface), so a link sliver and its node slivers, provisioned in any order by separate
workers, agree on names without talking to each other. Interface names fit IFNAMSIZ (15).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from drivers.hostnet import IFNAMSIZ

PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,3}$")
HASH_LEN = 10

NODE_TAG = "n"       # netns / cgroup / root dir / handle of a node sliver: <p>-n<hash>
LINK_TAG = "l"       # handle of a link sliver: <p>-l<hash>
END_TAG = "e"        # container-side veth end (alias it keeps after the rename): <p>e<hash>
PORT_TAG = "p"       # bridge-side veth end of a bridged link: <p>p<hash>
BRIDGE_TAG = "b"     # a LAN link's bridge: <p>b<hash>
TUNNEL_TAG = "x"     # a cross-host link's VXLAN device, on its half's bridge: <p>x<hash>


def _h(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:HASH_LEN]


@dataclass(frozen=True)
class Naming:
    prefix: str

    def __post_init__(self) -> None:
        if not PREFIX_RE.match(self.prefix):
            raise ValueError(f"name prefix {self.prefix!r} must be 1-4 lower-case letters or "
                             "digits, starting with a letter (interface names are <= 15 chars)")

    # slivers
    def node(self, sliver_urn: str) -> str:
        """netns, cgroup and root-dir name (and handle) of a node sliver."""
        return f"{self.prefix}-{NODE_TAG}{_h(sliver_urn)}"

    def link(self, sliver_urn: str) -> str:
        return f"{self.prefix}-{LINK_TAG}{_h(sliver_urn)}"

    # interfaces
    def end(self, node_sliver_urn: str, interface_client_id: str) -> str:
        return self._if(END_TAG, _h(node_sliver_urn, interface_client_id))

    def port(self, link_sliver_urn: str, node_sliver_urn: str, interface_client_id: str) -> str:
        return self._if(PORT_TAG, _h(link_sliver_urn, node_sliver_urn, interface_client_id))

    def bridge(self, link_sliver_urn: str) -> str:
        return self._if(BRIDGE_TAG, _h(link_sliver_urn))

    def vxlan(self, link_sliver_urn: str) -> str:
        return self._if(TUNNEL_TAG, _h(link_sliver_urn))

    def _if(self, tag: str, digest: str) -> str:
        name = f"{self.prefix}{tag}{digest}"
        assert len(name) <= IFNAMSIZ   # the prefix is at most 4 characters
        return name

    # recognition
    def is_node(self, name: str) -> bool:
        return name.startswith(f"{self.prefix}-{NODE_TAG}")

    def is_link_handle(self, name: str) -> bool:
        return name.startswith(f"{self.prefix}-{LINK_TAG}")

    def is_ours_ifname(self, name: str) -> bool:
        """A root-namespace interface this AM made (veth end, bridge port, bridge or VXLAN
        device)."""
        return re.fullmatch(rf"{self.prefix}[{END_TAG}{PORT_TAG}{BRIDGE_TAG}{TUNNEL_TAG}][0-9a-f]{{{HASH_LEN}}}",
                            name) is not None


__all__ = ["Naming", "PREFIX_RE"]
