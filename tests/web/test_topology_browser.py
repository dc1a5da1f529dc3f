"""The Graphviz-laid-out topology as headless Chromium renders it on the slice pages.

A store of its own (the shared `populated` one is read by tests that count its slices): the
dashboard slices plus a 20-node chain of containers with addresses and capacities around a
router, and a slice with only an OpenFlow sliver. In the browser the slice page's SVG must
render with a size, every node shape be visible, no two drawn labels or shapes overlap (their
boxes measured with getBoundingClientRect, i.e. with the fonts Chromium really uses), the chain
lie along one line in chain order, and the OpenFlow slice show its datapath. Screenshots are
saved in the test's tmp dir (GENI_AM_TOPOLOGY_SCREENSHOT=dir keeps copies).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from am.service.contract import Options
from tests.support import slice_urn
from tests.web.populate import AM, OWNER, TOKEN, populate
from tests.web.test_browser import browser, console_errors, served  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow
CHAIN = 20
RSPEC = ('xmlns="http://www.geni.net/resources/rspec/3" '
         'xmlns:ga="http://geni-am.org/resources/rspec/ext/geniam/1" '
         'xmlns:openflow="http://www.geni.net/resources/rspec/ext/openflow/3"')


def _chain_request() -> str:
    nodes, links = [], []
    for i in range(CHAIN):
        ifaces = "".join(
            f'<interface client_id="c{i}:{side}"><ip address="10.50.{i + k}.{2 - k}" '
            f'netmask="255.255.255.0" type="ipv4"/></interface>'
            for side, k in (("a", 0), ("b", 1)) if (side, i) not in (("a", 0), ("b", CHAIN - 1)))
        router = '<ga:node router="true"/>' if i == CHAIN // 2 else ""
        nodes.append(f'<node client_id="c{i}" component_manager_id="{AM}" exclusive="false">'
                     f'<sliver_type name="vserver-container"/>{ifaces}{router}</node>')
    for i in range(CHAIN - 1):
        links.append(f'<link client_id="wire{i}"><interface_ref client_id="c{i}:b"/>'
                     f'<interface_ref client_id="c{i + 1}:a"/>'
                     f'<property source_id="c{i}:b" dest_id="c{i + 1}:a" '
                     f'capacity="{(i + 1) * 1000}"/></link>')
    return f'<rspec {RSPEC} type="request">{"".join(nodes + links)}</rspec>'


OPENFLOW_REQUEST = (
    f'<rspec {RSPEC} type="request"><openflow:sliver description="of" email="a@b.c">'
    '<openflow:controller url="tcp:127.0.0.1:6633" type="primary"/>'
    '<openflow:group name="g"><openflow:datapath '
    'component_id="urn:publicid:IDN+geni-am:test+node+fake-switch" '
    f'component_manager_id="{AM}"/></openflow:group>'
    '<openflow:match><openflow:use-group name="g"/>'
    '<openflow:packet><openflow:dl_type value="0x800"/></openflow:packet></openflow:match>'
    '</openflow:sliver></rspec>')


@pytest.fixture(scope="module")
def populated(tmp_path_factory, gcf_fixtures: Path):
    """The dashboard's store plus the chain and OpenFlow slices, provisioned and started."""
    p = populate(tmp_path_factory.mktemp("topology-browser"), gcf_fixtures)
    from am.jobs.runner import run_job
    opts = Options()
    for name, request in (("chain", _chain_request()), ("flows", OPENFLOW_REQUEST)):
        urn = slice_urn(name)
        p.service.allocate(OWNER, urn, request, opts)
        p.service.provision(OWNER, [urn], opts)
    queue = p.service.queue
    while queue.submitted:
        run_job(p.store, p.site, queue.submitted.pop(0), worker_id="topology-browser")
    with p.store.read() as session:
        from sqlalchemy import select

        from am.store import Slice
        p.slice_ids.update({s.urn.rsplit("+", 1)[-1]: s.id
                            for s in session.scalars(select(Slice))})
    yield p
    p.close()


# Boxes of every drawn label, node shape and hub, in page pixels as Chromium laid them out.
BOXES_JS = """
const svg = document.querySelector('#topology svg');
const out = [];
for (const el of svg.querySelectorAll(
        'g.nodes text, g.links text, .shape, circle.hub')) {
  const r = el.getBoundingClientRect();
  const g = el.closest('g[data-client-id]');
  out.push({what: el.tagName + ' ' + (el.getAttribute('class') || '') + ' ' +
                  (el.textContent || '') + ' of ' + (g ? g.dataset.clientId : ''),
            x0: r.left, y0: r.top, x1: r.right, y1: r.bottom,
            bbox: el.getBBox().width * el.getBBox().height});
}
return out;
"""


def overlaps(boxes: list[dict], slack: float = 0.5) -> list[tuple[str, str]]:
    return [(a["what"], b["what"]) for i, a in enumerate(boxes) for b in boxes[i + 1:]
            if a["x0"] + slack < b["x1"] and b["x0"] + slack < a["x1"]
            and a["y0"] + slack < b["y1"] and b["y0"] + slack < a["y1"]]


def _login(browser, base: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait
    browser.get(f"{base}/login")
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "login-button").click()
    WebDriverWait(browser, 10).until(lambda d: d.current_url == f"{base}/")


def _shot(browser, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / f"{name}.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 5_000
    keep = os.environ.get("GENI_AM_TOPOLOGY_SCREENSHOT")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
    return shot


def test_topologies_render_without_overlaps_in_chromium(served, browser, populated, tmp_path):
    from selenium.webdriver.common.by import By

    base = f"{served}/dashboard"
    _login(browser, base)

    # the chain: along one line, in order, addresses and capacities drawn, nothing overlapping
    browser.get(f"{base}/slices/{populated.slice_ids['chain']}")
    svg = browser.find_element(By.CSS_SELECTOR, "#topology svg")
    assert svg.size["width"] > 1000 and svg.size["height"] > 100
    nodes = sorted(browser.find_elements(By.CSS_SELECTOR, "#topology svg g.node"),
                   key=lambda n: int(n.get_attribute("data-client-id")[1:]))
    assert [n.get_attribute("data-client-id") for n in nodes] == [f"c{i}" for i in range(CHAIN)]
    centres = []
    for n in nodes:
        shape = n.find_element(By.CSS_SELECTOR, ".shape")
        r = browser.execute_script("return arguments[0].getBoundingClientRect();", shape)
        assert r["width"] > 10 and r["height"] > 10
        centres.append((r["x"] + r["width"] / 2, r["y"] + r["height"] / 2))
    assert max(y for _, y in centres) - min(y for _, y in centres) < 1.0
    xs = [x for x, _ in centres]
    assert all(b > a + 30 for a, b in zip(xs, xs[1:]))
    roles = {n.get_attribute("data-client-id"): n.get_attribute("data-role") for n in nodes}
    assert roles.pop(f"c{CHAIN // 2}") == "router" and set(roles.values()) == {"host"}
    texts = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#topology svg text")]
    assert "10.50.1.1/24" in texts and "10.50.1.2/24" in texts
    assert "1 Mb/s" in texts and "19 Mb/s" in texts
    boxes = browser.execute_script(BOXES_JS)
    assert len(boxes) >= CHAIN * 3 and all(b["bbox"] > 0 for b in boxes)
    assert overlaps(boxes) == []
    _shot(browser, tmp_path, "slice-chain")
    assert console_errors(browser) == []

    # the dashboard's demo slice: a LAN with its hub, a point-to-point link, three kinds
    browser.get(f"{base}/slices/{populated.slice_ids['demo']}")
    boxes = browser.execute_script(BOXES_JS)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#topology svg circle.hub")) == 1
    assert overlaps(boxes) == []
    _shot(browser, tmp_path, "slice-demo")

    # a slice with only an OpenFlow sliver: its datapath, not "no slivers"
    browser.get(f"{base}/slices/{populated.slice_ids['flows']}")
    (node,) = browser.find_elements(By.CSS_SELECTOR, "#topology svg g.node")
    assert node.get_attribute("data-role") == "switch"
    assert node.get_attribute("data-client-id") == "openflow:fake-switch"
    assert node.find_element(By.CSS_SELECTOR, ".shape").size["width"] > 10
    assert "no slivers" not in browser.find_element(By.ID, "topology").text
    assert overlaps(browser.execute_script(BOXES_JS)) == []
    _shot(browser, tmp_path, "slice-openflow")
    assert console_errors(browser) == []
