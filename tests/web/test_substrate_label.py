"""The dashboard says what a sliver really is: fake, emulated, simulated or real."""
from __future__ import annotations

from drivers.base import Component, IsolationClass
from am.web.queries import substrate_label


def comp(hardware_types=(), **extra) -> Component:
    return Component(component_id="urn:publicid:IDN+x+node+c", name="c", driver="d",
                     isolation=IsolationClass.HARDWARE, hardware_types=tuple(hardware_types),
                     extra=extra)


def test_labels():
    assert substrate_label(comp(), "fake") == "fake"
    assert substrate_label(comp(("netfpga-card", "netfpga-card-emulated")), "netfpga") == "emulated"
    assert substrate_label(comp(uri="test:///default"), "xen") == "simulated"
    assert substrate_label(comp(uri="qemu:///system"), "xen") == "real"
    assert substrate_label(comp(("pc",)), "vserver") == "real"
    assert substrate_label(None, "vserver") == "real"


def test_slice_page_labels_fake_slivers(client, bearer, populated):
    """The populated site is the fake harness: every sliver row says "fake"."""
    from lxml import html

    r = client.get(f"/dashboard/slices/{populated.slice_ids['demo']}", headers=bearer)
    assert r.status_code == 200
    doc = html.fromstring(r.get_data(as_text=True))
    rows = doc.xpath("//table[@id='slivers']/tbody/tr")
    assert rows and all(row.xpath("string(.//strong[@class='substrate'])") == "fake"
                        for row in rows)
