"""Harness `rspec`: any bytes as a request RSpec, through `parse_request` (as Allocate reads it)
and `validate_document` (as `geni-am rspec validate` does). Allowed refusal: `RSpecError`, with
at least one located problem; validate_document must return its problems, never raise."""
from __future__ import annotations

from fuzz.harness import Finding, TestOneInput

AM_URNS = ("urn:publicid:IDN+geni-am:fuzz+authority+am",
           "urn:publicid:IDN+geni-am:fuzz+authority+cm")
SLIVER_TYPES = frozenset({"xen-vm", "default-vm", "emulab-xen", "vserver", "container",
                          "raw-pc", "netfpga-vdp"})
MAX_BYTES = 256 * 1024


def build() -> TestOneInput:
    from rspec.errors import Problem, RSpecError
    from rspec.request import parse_request
    from rspec.validate import validate_document

    def one(data: bytes) -> None:
        try:
            parse_request(data, am_urns=AM_URNS, known_sliver_types=SLIVER_TYPES,
                          max_bytes=MAX_BYTES)
        except RSpecError as exc:
            if not exc.problems or not all(p.message for p in exc.problems):
                raise Finding(f"RSpecError without a reason: {exc.problems!r}") from None
        problems = validate_document(data, max_bytes=MAX_BYTES)
        if not all(isinstance(p, Problem) and p.message for p in problems):
            raise Finding(f"validate_document returned {problems!r}")
    return one
