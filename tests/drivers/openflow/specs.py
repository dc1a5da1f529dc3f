"""Building OpenFlow sliver specs for the tests."""
from __future__ import annotations

from functools import partial

from drivers.base import ResourceKind, SliverSpec
from rspec.model import OFController, OFDatapath, OFGroup, OFMatch, OFPort, OpenFlowSliver, PacketMatch
from tests import support

AUTHORITY = "geni-am:oftest"
SW = f"urn:publicid:IDN+{AUTHORITY}+node+sw1"


slice_urn = partial(support.slice_urn, authority=AUTHORITY)


def sliver(controller: str, ports: tuple[int, ...] = (), *, dpid: str | None = None,
           component_id: str = SW, **packet) -> OpenFlowSliver:
    """One group with the datapath (and ports), one match using it with `packet` fields."""
    dp = OFDatapath(component_id=component_id, dpid=dpid,
                    ports=tuple(OFPort(num=p) for p in ports))
    return OpenFlowSliver(controllers=(OFController(url=controller),),
                          groups=(OFGroup(name="g", datapaths=(dp,)),),
                          matches=(OFMatch(use_groups=("g",), packet=PacketMatch(**packet)),))


def spec(name: str, of: OpenFlowSliver, *, component_id: str = SW) -> SliverSpec:
    return SliverSpec(sliver_urn=f"urn:publicid:IDN+{AUTHORITY}+sliver+{name}",
                      slice_urn=slice_urn(name), client_id="openflow0:sw1",
                      kind=ResourceKind.FLOWSPACE, component_id=component_id,
                      sliver_type="openflow-flowspace", openflow=of)
