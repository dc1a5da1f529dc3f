"""v2 CreateSliver as a service operation: Allocate + Provision with start, undone on failure."""
from __future__ import annotations

import pytest

from am.errors import GeniCode, GeniError
from am.service.contract import Options
from am.service.create_sliver import create_sliver
from tests.service.harness import ALICE, node_xml, request
from tests.support import slice_urn


class _ProvisionRefused:
    """The real aggregate, except that Provision is refused (as a busy or failing AM may)."""

    def __init__(self, am):
        self.am = am

    def __getattr__(self, name):
        return getattr(self.am, name)

    def provision(self, principal, urns, options):
        raise GeniError(GeniCode.BUSY, "provision refused for the test")


def test_create_sliver_boots_what_it_allocates(h):
    manifest = create_sliver(h.am, ALICE, slice_urn(), request(node_xml("a")), (), Options())
    assert 'client_id="a"' in manifest
    (sliver,) = h.am.status(ALICE, [slice_urn()], Options()).slivers
    assert sliver.allocation_status == "geni_provisioned"


def test_a_failed_provision_leaves_nothing_behind(h):
    with pytest.raises(GeniError) as info:
        create_sliver(_ProvisionRefused(h.am), ALICE, slice_urn(), request(node_xml("a")), (),
                      Options())
    assert info.value.code == GeniCode.BUSY
    with pytest.raises(GeniError) as gone:
        h.am.status(ALICE, [slice_urn()], Options())
    assert gone.value.code == GeniCode.SEARCHFAILED
