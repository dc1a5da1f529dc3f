"""Deterministic names and cookies for everything the driver makes in OVS.

A sliver's *tag* is a hash of its URN; from it come the slice bridge (`<prefix><tag>`), the
patch ports joining it to the physical bridge (`<prefix><tag>p<port>` on the physical side,
`<prefix><tag>s<port>` on the slice side) and the cookie of its flows on the physical bridge
(high 32 bits: the AM's mark, derived from the prefix; low 32 bits: the tag). So `observed()`
can find every trace of a sliver, and of nobody else's, with no state of its own.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,3}$")
TAG_LEN = 8
COOKIE_MASK = "0xffffffffffffffff"


@dataclass(frozen=True)
class Naming:
    prefix: str

    def __post_init__(self) -> None:
        if not PREFIX_RE.match(self.prefix):
            raise ValueError(f"name prefix {self.prefix!r} must be 1-4 lower-case letters or "
                             "digits, starting with a letter")

    @property
    def mark(self) -> int:
        """High 32 bits of every cookie this AM (this prefix) puts on a physical bridge."""
        return int(hashlib.sha256(f"geni-am-openflow:{self.prefix}".encode()).hexdigest()[:8], 16)

    def tag(self, sliver_urn: str) -> str:
        return hashlib.sha256(sliver_urn.encode()).hexdigest()[:TAG_LEN]

    def bridge(self, tag: str) -> str:
        return f"{self.prefix}{tag}"

    def phys_patch(self, tag: str, port: int) -> str:
        return f"{self.prefix}{tag}p{port}"

    def slice_patch(self, tag: str, port: int) -> str:
        return f"{self.prefix}{tag}s{port}"

    def cookie(self, tag: str) -> int:
        return (self.mark << 32) | int(tag, 16)

    @property
    def base_cookie(self) -> int:
        """Cookie of the AM's own flows on a physical bridge (the default drop)."""
        return self.mark << 32

    @property
    def fib_mark(self) -> int:
        """High 32 bits of the flows of hybrid routers' forwarding planes (`openflow-fib`
        slivers): a mark of their own, so a FIB is never mistaken for a slice's steering."""
        return int(hashlib.sha256(f"geni-am-openflow-fib:{self.prefix}".encode())
                   .hexdigest()[:8], 16)

    def fib_cookie(self, tag: str) -> int:
        return (self.fib_mark << 32) | int(tag, 16)

    def fib_tag_of_cookie(self, cookie: int) -> str | None:
        """The router sliver tag of a forwarding-plane cookie, None if not one."""
        return _tag_under(self.fib_mark, cookie)

    @property
    def stitch_mark(self) -> int:
        """High 32 bits of the flows of stitched links' switch halves (a mark of their own)."""
        return _mark_of(f"geni-am-openflow-stitch:{self.prefix}")

    def stitch_cookie(self, tag: str) -> int:
        return (self.stitch_mark << 32) | int(tag, 16)

    def stitch_tag_of_cookie(self, cookie: int) -> str | None:
        """The stitched link sliver tag of a cookie, None if not one."""
        return _tag_under(self.stitch_mark, cookie)

    def is_our_cookie(self, cookie: int) -> bool:
        return self.tag_of_cookie(cookie) is not None or \
            self.fib_tag_of_cookie(cookie) is not None or \
            self.stitch_tag_of_cookie(cookie) is not None or \
            self.link_tag_of_cookie(cookie) is not None

    # ---- links carried through the switch (docs/openflow.md, "Links through the switch") ----
    def link_tag(self, slice_urn: str, link_client_id: str) -> str:
        """A link's tag: from its slice and client_id (known at Allocate, before its URN)."""
        return hashlib.sha256(f"{slice_urn}\0{link_client_id}".encode()).hexdigest()[:TAG_LEN]

    @property
    def link_mark(self) -> int:
        """High 32 bits of the flows of links through the switch (a mark of their own)."""
        return int(hashlib.sha256(f"geni-am-openflow-link:{self.prefix}".encode())
                   .hexdigest()[:8], 16)

    def link_cookie(self, tag: str) -> int:
        return (self.link_mark << 32) | int(tag, 16)

    def link_tag_of_cookie(self, cookie: int) -> str | None:
        if cookie >> 32 != self.link_mark or not cookie & 0xFFFFFFFF:
            return None
        return f"{cookie & 0xFFFFFFFF:0{TAG_LEN}x}"

    def link_port(self, tag: str, n: int) -> str:
        """The switch's end of attachment n of a link: a port of the physical bridge."""
        return f"{self.prefix}l{tag}{n}"

    def link_wire(self, tag: str, n: int) -> str:
        """The host's end of attachment n (a veth peer of the port): what a VM host joins to
        its link bridge, or a container takes as its interface."""
        return f"{self.prefix}w{tag}{n}"

    def tag_of_link_port(self, name: str) -> str | None:
        m = re.fullmatch(rf"{self.prefix}[lw]([0-9a-f]{{{TAG_LEN}}})\d+", name)
        return m.group(1) if m else None

    def tag_of_cookie(self, cookie: int) -> str | None:
        """The sliver tag a cookie carries, "" for the base cookie, None if not ours."""
        if cookie >> 32 != self.mark:
            return None
        low = cookie & 0xFFFFFFFF
        return "" if low == 0 else f"{low:0{TAG_LEN}x}"

    def tag_of_bridge(self, name: str) -> str | None:
        m = re.fullmatch(rf"{self.prefix}([0-9a-f]{{{TAG_LEN}}})", name)
        return m.group(1) if m else None

    def tag_of_port(self, name: str) -> str | None:
        """The tag of a patch port this driver made (either side), else None."""
        m = re.fullmatch(rf"{self.prefix}([0-9a-f]{{{TAG_LEN}}})[ps]\d+", name)
        return m.group(1) if m else None

    def is_ours(self, name: str) -> bool:
        return self.tag_of_bridge(name) is not None or self.tag_of_port(name) is not None or \
            self.tag_of_link_port(name) is not None


def _mark_of(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def _tag_under(mark: int, cookie: int) -> str | None:
    """The sliver tag in the low 32 bits of a cookie carrying `mark` high, None if not one."""
    if cookie >> 32 != mark or not cookie & 0xFFFFFFFF:
        return None
    return f"{cookie & 0xFFFFFFFF:0{TAG_LEN}x}"


def cookie_match(cookie: int) -> str:
    """An ovs-ofctl match selecting exactly the flows with this cookie."""
    return f"cookie=0x{cookie:016x}/{COOKIE_MASK}"
