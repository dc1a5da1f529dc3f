"""Update through the AM API v3 on real containers (vserver driver, jobs run inline):
a running 3-container slice gets a node and a link (the untouched containers keep their URNs
and processes, the changed one keeps running and gets its interface hot-plugged, the new link
pings), a refused Update leaves everything as it was, and an Update removing the node takes
it away at Provision."""
from __future__ import annotations

import subprocess

import pytest

from tests.api.conftest import RSPEC_V, SLICE, base_settings, code_of, fx, trust_dir  # noqa: F401 - fixtures
from tests.drivers.vserver.helpers import ours, snapshot
from tests.drivers.vserver.test_through_am import GA, start_am
from tests.support import wait_until

pytestmark = pytest.mark.root


def _node(cid: str, ifaces: list[tuple[str, str]]) -> str:
    ifs = "".join(f'<interface client_id="{cid}:{n}"><ip address="{ip}" netmask="255.255.255.0" '
                  f'type="ipv4"/></interface>' for n, ip in ifaces)
    return (f'<node client_id="{cid}" component_id="urn:publicid:IDN+geni-am:test+node+vs1" '
            f'exclusive="false"><sliver_type name="vserver-container"/>{ifs}'
            '<services><execute shell="sh" command="exec sleep 600"/></services>'
            '<ga:node cpu="0.2" memory_mb="64"/></node>')


def _link(cid: str, a: str, b: str, props: str = "") -> str:
    return (f'<link client_id="{cid}"><interface_ref client_id="{a}"/>'
            f'<interface_ref client_id="{b}"/>{props}</link>')


def _rspec(*parts: str) -> str:
    return (f'<rspec xmlns="http://www.geni.net/resources/rspec/3" xmlns:ga="{GA}" '
            f'type="request">{"".join(parts)}</rspec>')


N1 = _node("n1", [("if0", "10.203.1.1")])
N2 = _node("n2", [("if0", "10.203.1.2")])
L1 = _link("l1", "n1:if0", "n2:if0")
THREE = _rspec(N1, N2, _node("n3", []), L1)
GROWN = _rspec(N1, N2, _node("n3", [("if0", "10.203.2.3")]), _node("n4", [("if0", "10.203.2.4")]),
               L1, _link("l2", "n3:if0", "n4:if0"))


@pytest.fixture
def am(base_settings, tmp_path, gcf_fixtures):
    client, rt, prefix = start_am(base_settings, tmp_path, gcf_fixtures)
    yield client, rt, prefix
    rt.close()


def _by_client(rt, slivers: list[dict]) -> dict[str, dict]:
    """geni_slivers keyed by the client_id the AM recorded for each sliver URN."""
    from sqlalchemy import select

    from am.store import Sliver
    with rt.store.read() as session:
        names = dict(session.execute(select(Sliver.urn, Sliver.client_id)).all())
    return {names[s["geni_sliver_urn"]]: s for s in slivers}


def _wait_ready(client, rt, cred, timeout: float = 20.0) -> dict[str, dict]:
    def ready() -> dict[str, dict] | None:
        status = client.call("Status", [SLICE], cred, {})
        assert code_of(status) == 0, status
        slivers = _by_client(rt, status["value"]["geni_slivers"])
        if all(s["geni_operational_status"] == "geni_ready" for s in slivers.values()):
            return slivers
        return None
    return wait_until(ready, "every sliver ready", timeout, 0.1)


def _pids(driver, urn: str) -> set[int]:
    return driver.cgroups.pids(driver.node_handle(urn))


def _ping(driver, urn: str, ip: str) -> subprocess.CompletedProcess:
    return subprocess.run(driver.sliver_argv(urn, ["ping", "-c1", "-W2", ip]),
                          capture_output=True, text=True)


def test_update_a_running_slice(am, fx):
    client, rt, prefix = am
    driver = rt.site.drivers["vserver"]
    before_host = ours(snapshot(), prefix)
    cred = [fx.cred("slice-cred-alice")]
    assert code_of(client.call("Allocate", SLICE, cred, THREE, {})) == 0
    assert code_of(client.call("Provision", [SLICE], cred, {"geni_rspec_version": RSPEC_V})) == 0
    first = _wait_ready(client, rt, cred)
    urns = {c: s["geni_sliver_urn"] for c, s in first.items()}
    pids = {c: _pids(driver, urns[c]) for c in ("n1", "n2", "n3")}
    assert all(pids.values())
    assert _ping(driver, urns["n1"], "10.203.1.2").returncode == 0

    # refused: a latency this kernel cannot emulate; nothing changes
    slow = GROWN.replace('<interface_ref client_id="n4:if0"/>',
                         '<interface_ref client_id="n4:if0"/><property source_id="n3:if0" '
                         'dest_id="n4:if0" latency="20"/>')
    refused = client.call("Update", [SLICE], cred, slow, {})
    assert code_of(refused) == 13, refused                   # UNSUPPORTED
    assert "latency" in refused["output"]
    status = _by_client(rt, client.call("Status", [SLICE], cred, {})["value"]["geni_slivers"])
    assert {c: (s["geni_sliver_urn"], s["geni_operational_status"])
            for c, s in status.items()} == {c: (urns[c], "geni_ready") for c in urns}

    upd = client.call("Update", [SLICE], cred, GROWN, {})
    assert code_of(upd) == 0, upd
    got = _by_client(rt, upd["value"]["geni_slivers"])
    assert got["n3"]["geni_operational_status"] == "geni_updating"
    assert {got[c]["geni_operational_status"] for c in ("n1", "n2", "l1")} == {"geni_ready"}
    poa = client.call("PerformOperationalAction", [SLICE], cred, "geni_restart", {})
    assert code_of(poa) == 7, poa                             # REFUSED while updating
    assert code_of(client.call("Provision", [SLICE], cred, {"geni_rspec_version": RSPEC_V})) == 0
    after = _wait_ready(client, rt, cred)
    assert {c: after[c]["geni_sliver_urn"] for c in urns} == urns
    for c in ("n1", "n2", "n3"):                              # nothing restarted, n3 included
        assert _pids(driver, urns[c]) == pids[c], c
    assert _ping(driver, urns["n3"], "10.203.2.4").returncode == 0
    assert _ping(driver, urns["n1"], "10.203.1.2").returncode == 0

    # remove the new node (and its link): gone after Provision, n3 cannot reach it any more
    upd = client.call("Update", [SLICE], cred, THREE, {})
    assert code_of(upd) == 0, upd
    assert code_of(client.call("Provision", [SLICE], cred, {"geni_rspec_version": RSPEC_V})) == 0
    final = _wait_ready(client, rt, cred)
    assert set(final) == {"n1", "n2", "n3", "l1"}
    assert len(ours(snapshot(), prefix).netns) == 3
    assert _ping(driver, urns["n3"], "10.203.2.4").returncode != 0
    assert _pids(driver, urns["n1"]) == pids["n1"]

    assert code_of(client.call("Delete", [SLICE], cred, {})) == 0
    wait_until(lambda: ours(snapshot(), prefix) == before_host,
               "the host to hold nothing of ours", 5, detail=lambda: ours(snapshot(), prefix))


def test_advertisement_says_what_links_can_shape(am, fx):
    from rspec.validate import validate_document
    client, rt, prefix = am
    ad = client.call("ListResources", [fx.cred("slice-cred-alice")],
                     {"geni_rspec_version": RSPEC_V})
    assert code_of(ad) == 0, ad
    xml = ad["value"]
    assert 'link_shaping="capacity"' in xml          # latency and loss: refused, not offered
    validate_document(xml, "advertisement")
