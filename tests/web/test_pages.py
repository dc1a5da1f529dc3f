"""Every dashboard page against a store populated through the real service (tests/web/populate)."""
from __future__ import annotations

import re

import pytest
from lxml import etree, html

from am.web.topology import SVG_NS, StateColour
from tests.support import slice_urn
from tests.web.populate import AUDIT_ENTRIES, FAIL_REASON, HOSTILE_ID

SVGQ = {"s": SVG_NS}


def page(client, bearer, path: str):
    r = client.get(path, headers=bearer)
    assert r.status_code == 200, (path, r.status_code, r.data[:500])
    assert r.mimetype == "text/html"
    return html.fromstring(r.data), r.get_data(as_text=True)


def texts(doc, xpath: str) -> list[str]:
    return [" ".join(e.text_content().split()) for e in doc.xpath(xpath)]


def test_overview_counts_and_utilization(client, bearer, populated):
    doc, _ = page(client, bearer, "/dashboard/")
    assert texts(doc, "//*[@id='live-slices']") == ["3"]            # demo, broken, hostile
    assert texts(doc, "//*[@id='live-slivers']") == ["7"]           # 5 + 1 + 1
    assert texts(doc, "//*[@id='failed-slivers']") == ["1"]
    assert texts(doc, "//*[@id='failed-jobs']") == ["1"]
    ops = {r.xpath("string(td[1])").strip(): r.xpath("string(td[2])").strip()
           for r in doc.xpath("//table[@id='opstates']/tbody/tr")}
    assert ops == {"geni_failed": "1", "geni_pending_allocation": "1", "geni_ready": "5"}
    # the bars agree with the capacity table the store keeps
    rows = populated.store.capacity_rows()
    used = sum(u for _, r, _, u in rows if r == "cpu_milli")
    cap = sum(c for _, r, c, _ in rows if r == "cpu_milli")
    assert used == 5000     # every live sliver node holds its default 1 CPU (in milli-cores)
    (meter,) = doc.xpath("//table[@id='driver-usage']//tr[@data-driver='fake']"
                         "[@data-resource='cpu_milli']//meter")
    assert float(meter.get("value")) == pytest.approx(100 * used / cap, abs=0.05)
    fake1 = doc.xpath("//table[@id='component-usage']//tr[@data-component='fake1']"
                      "[@data-resource='cpu_milli']//meter")
    assert len(fake1) == 1 and float(fake1[0].get("value")) > 0
    components = {r.get("data-component") for r in
                  doc.xpath("//table[@id='component-usage']//tr[@data-component]")}
    assert {"fake1", "fake2", "fake3", "fake4", "fake-switch"} <= components


def test_slices_list(client, bearer, populated):
    doc, body = page(client, bearer, "/dashboard/slices")
    links = {a.text_content(): a.get("href") for a in doc.xpath("//table[@id='slices']//a")}
    for name in ("demo", "broken", "hostile"):
        assert links[slice_urn(name)] == f"/dashboard/slices/{populated.slice_ids[name]}"
    broken = doc.xpath(f"//tr[@data-slice-id='{populated.slice_ids['broken']}']/td")
    assert broken[2].text_content().strip() == "1" and broken[3].text_content().strip() == "1"
    assert re.search(r"in (6d 23h|7d 0h)", body)          # provisioned: the 7-day lease


def test_slice_detail_slivers_and_topology(client, bearer, populated):
    doc, body = page(client, bearer, f"/dashboard/slices/{populated.slice_ids['demo']}")
    rows = {r.get("data-client-id"): r for r in doc.xpath("//table[@id='slivers']/tbody/tr")}
    assert set(rows) == {"vm1", "ct1", "fpga1", "p2p", "lan0"}
    for row in rows.values():
        assert row.xpath("string(td[@class='alloc'])") == "geni_provisioned"
        assert row.xpath("string(td[@class='op'])").strip() == "geni_ready"
        assert row.xpath("string(td[@class='error'])") == ""
    assert "xen-vm" in rows["vm1"].text_content()
    # the inline picture: one group per node and per link, coloured ready
    svg = _inline_svg(body)
    nodes = {g.get("data-client-id"): g for g in svg.iterfind(".//s:g[@class]", SVGQ)
             if g.get("class").startswith("node ")}
    assert set(nodes) == {"vm1", "ct1", "fpga1"}
    assert {n: g.get("data-kind") for n, g in nodes.items()} == \
        {"vm1": "vm", "ct1": "container", "fpga1": "netfpga"}
    assert all(g.find("*[@class='shape']").get("fill") == StateColour.READY.value
               for g in nodes.values())
    links = {g.get("data-client-id"): g for g in svg.iterfind(".//s:g[@class='link']", SVGQ)}
    assert set(links) == {"p2p", "lan0"}
    assert links["p2p"].xpath("string(s:text[@class='capacity'])", namespaces=SVGQ) == "100 Mb/s"
    assert len(links["lan0"].findall("s:path", SVGQ)) == 3
    assert links["lan0"].find("s:circle[@class='hub']", SVGQ) is not None


def _inline_svg(body: str) -> etree._Element:
    start, end = body.index("<svg"), body.index("</svg>") + len("</svg>")
    return etree.fromstring(body[start:end].encode())


def test_failed_sliver_shows_reason_and_red_node(client, bearer, populated):
    doc, body = page(client, bearer, f"/dashboard/slices/{populated.slice_ids['broken']}")
    (row,) = doc.xpath("//table[@id='slivers']/tbody/tr[@data-client-id='doomed']")
    assert row.xpath("string(td[@class='op'])").strip() == "geni_failed"
    assert row.xpath("string(td[@class='error'])") == FAIL_REASON
    (shape,) = _inline_svg(body).iterfind(".//s:g[@data-client-id='doomed']/*[@class='shape']",
                                          SVGQ)
    assert shape.get("fill") == StateColour.FAILED.value


def test_failures_page(client, bearer, populated):
    doc, _ = page(client, bearer, "/dashboard/failures")
    (sliver,) = doc.xpath("//table[@id='failed-slivers']/tbody/tr[@data-client-id]")
    assert sliver.get("data-client-id") == "doomed"
    assert sliver.xpath("string(td[@class='error'])") == FAIL_REASON
    assert slice_urn("broken") in sliver.text_content()
    (job,) = doc.xpath("//table[@id='failed-jobs']/tbody/tr[@data-job-id]")
    cells = [c.text_content().strip() for c in job.xpath("td")]
    assert cells[2] == "provision" and cells[5] == "doomed" and cells[6] == FAIL_REASON


def test_audit_log_is_paginated_newest_first(client, bearer):
    doc, body = page(client, bearer, "/dashboard/audit")
    ids = [int(r.get("data-entry-id")) for r in doc.xpath("//table[@id='audit']/tbody/tr")]
    assert ids == list(range(AUDIT_ENTRIES, AUDIT_ENTRIES - 50, -1))
    assert f"{AUDIT_ENTRIES} entries" in body and "page 1 of 3" in body
    assert "<b>not bold</b>" not in body and "&lt;b&gt;not bold&lt;/b&gt;" in body
    assert doc.xpath("//a[@rel='next']/@href") == ["/dashboard/audit?page=2"]
    assert doc.xpath("//a[@rel='prev']") == []
    doc3, _ = page(client, bearer, "/dashboard/audit?page=3")
    ids3 = [int(r.get("data-entry-id")) for r in doc3.xpath("//table[@id='audit']/tbody/tr")]
    assert ids3 == list(range(20, 0, -1))
    assert doc3.xpath("//a[@rel='prev']/@href") == ["/dashboard/audit?page=2"]
    doc9, body9 = page(client, bearer, "/dashboard/audit?page=9")
    assert "no entries on this page" in body9


@pytest.mark.parametrize("bad", ["0", "-1", "abc", "1.5", "9" * 12, ""])
def test_audit_bad_page_is_400(client, bearer, bad):
    r = client.get(f"/dashboard/audit?page={bad}", headers=bearer)
    assert r.status_code == 400
    assert "page must be a whole number" in r.get_data(as_text=True)


def test_hostile_client_id_is_escaped_everywhere(client, bearer, populated):
    sid = populated.slice_ids["hostile"]
    doc, body = page(client, bearer, f"/dashboard/slices/{sid}")
    assert "<script" not in body
    assert doc.xpath("//script") == []
    (row,) = doc.xpath("//table[@id='slivers']/tbody/tr")
    assert row.get("data-client-id") == HOSTILE_ID
    assert row.xpath("string(td[1])") == HOSTILE_ID
    svg = _inline_svg(body)
    (g,) = svg.iterfind(".//s:g[@data-kind]", SVGQ)
    assert g.get("data-client-id") == HOSTILE_ID
    assert svg.xpath("//*[local-name()='script']") == []
    # the standalone SVG too
    r = client.get(f"/dashboard/slices/{sid}/topology.svg", headers=bearer)
    assert r.status_code == 200 and r.mimetype == "image/svg+xml"
    assert "<script" not in r.get_data(as_text=True)
    standalone = etree.fromstring(r.data)
    assert standalone.find(".//s:g[@data-kind]", SVGQ).get("data-client-id") == HOSTILE_ID


def test_unknown_slice_is_404(client, bearer):
    assert client.get("/dashboard/slices/99999", headers=bearer).status_code == 404
    assert client.get("/dashboard/slices/99999/topology.svg", headers=bearer).status_code == 404
    assert client.get("/dashboard/slices/abc", headers=bearer).status_code == 404


def test_no_external_resources(client, bearer, populated):
    for path in ("/dashboard/", "/dashboard/slices", "/dashboard/failures", "/dashboard/audit",
                 f"/dashboard/slices/{populated.slice_ids['demo']}"):
        doc, _ = page(client, bearer, path)
        refs = doc.xpath("//@href | //@src | //@action")
        assert refs and all(r.startswith("/dashboard/") for r in refs), refs
        assert doc.xpath("//script | //*[@style] | //style") == []


def test_not_mounted_over_a_service_without_a_store(populated):
    from am.app import create_app
    from tests.api.doubles import FakeService
    app = create_app(populated.settings, FakeService(), populated.authorizer, call_log=False)
    assert app.test_client().get("/dashboard/").status_code in (404, 405)
