"""ListResources tells experimenters each component's isolation class and forwarding modes."""
from __future__ import annotations

from lxml import etree

from tests.api.conftest import RSPEC_V
from tests.hybrid.conftest import CARD1, GA, XEN1


def test_isolation_and_forwarding_modes_are_advertised(am):
    ad = am.ok("ListResources", am.cred, {"geni_rspec_version": RSPEC_V})
    root = etree.fromstring(ad.encode())
    ext = {n.get("component_id"): n.find(f"{{{GA}}}component")
           for n in root.iter("{http://www.geni.net/resources/rspec/3}node")}
    assert ext[XEN1].get("isolation") == "hypervisor"
    assert ext[XEN1].get("forwarding_modes").split() == ["dom0", "guest"]
    assert ext[CARD1].get("isolation") == "hardware"
    assert ext[CARD1].get("forwarding_modes") == "hardware"
    limits = {c.get("resource"): c.get("total") for c in ext[XEN1].iter(f"{{{GA}}}capacity")}
    assert limits["guest_routers"] == "10"
    slots = {c.get("resource"): c.get("total") for c in ext[CARD1].iter(f"{{{GA}}}capacity")}
    assert slots["vdp_slots"] == "4"
