"""A shared LAN through the AM API v3 on real containers (vserver driver, jobs inline): one
slice shares its LAN (geni_sharelan), a second slice joins it with link_shared_vlan and its
container pings the owner's; a wrong token and an unknown LAN are refused with their codes and
leave nothing; after geni_unsharelan the joiner is detached and the ping fails."""
from __future__ import annotations

import subprocess

import pytest

from credentials.authority import DevAuthority
from tests.api.conftest import RSPEC_V, base_settings, code_of, trust_dir  # noqa: F401 - fixtures
from tests.drivers.vserver.helpers import ours, snapshot
from tests.drivers.vserver.test_through_am import GA, start_am
from tests.support import slice_urn, wait_until

pytestmark = pytest.mark.root
AUTH = "geni-am"
SV = "http://www.geni.net/resources/rspec/ext/shared-vlan/1"


def _node(cid: str, ip: str) -> str:
    return (f'<node client_id="{cid}" component_id="urn:publicid:IDN+geni-am:test+node+vs1" '
            f'exclusive="false"><sliver_type name="vserver-container"/>'
            f'<interface client_id="{cid}:if0"><ip address="{ip}" netmask="255.255.255.0" '
            'type="ipv4"/></interface>'
            '<services><execute shell="sh" command="exec sleep 600"/></services>'
            '<ga:node cpu="0.1" memory_mb="64"/></node>')


def _rspec(*parts: str) -> str:
    return (f'<rspec xmlns="http://www.geni.net/resources/rspec/3" xmlns:ga="{GA}" '
            f'xmlns:sv="{SV}" type="request">{"".join(parts)}</rspec>')


OWNER = _rspec(_node("o1", "10.204.1.1"), _node("o2", "10.204.1.2"),
               '<link client_id="lan0"><interface_ref client_id="o1:if0"/>'
               '<interface_ref client_id="o2:if0"/><link_type name="lan"/></link>')


def _joiner(token: str) -> str:
    return _rspec(_node("j1", "10.204.1.3"),
                  f'<link client_id="join"><interface_ref client_id="j1:if0"/>'
                  f'<sv:link_shared_vlan name="{token}"/></link>')


@pytest.fixture
def am(base_settings, tmp_path, gcf_fixtures):
    authority = DevAuthority.init(tmp_path / "authority", authority=AUTH)
    authority.user("alice")
    creds = {}
    for name in ("own", "join"):
        path = authority.slice(name, "alice")
        creds[name] = [{"geni_type": "geni_sfa", "geni_version": "3",
                        "geni_value": path.read_text()}]
    settings = base_settings.replace(trust_roots=str(authority.dir / "trust-roots"))
    client, rt, prefix = start_am(settings, tmp_path, gcf_fixtures)
    client.cert = (authority.dir / "alice-cert.pem").read_text()
    yield client, rt, prefix, creds
    rt.close()


def _ready(client, name: str, creds) -> bool:
    status = client.call("Status", [slice_urn(name, AUTH)], creds[name], {})
    assert code_of(status) == 0, status
    return all(s["geni_operational_status"] == "geni_ready"
               for s in status["value"]["geni_slivers"])


def _urn_of(rt, client_id: str, slice_name: str) -> str:
    from sqlalchemy import select

    from am.store import Slice, Sliver
    with rt.store.read() as session:
        return session.scalar(select(Sliver.urn).join(Slice).where(
            Slice.urn == slice_urn(slice_name, AUTH), Sliver.client_id == client_id,
            Sliver.allocation_state != "geni_unallocated"))


def _ping(driver, urn: str, ip: str) -> bool:
    return subprocess.run(driver.sliver_argv(urn, ["ping", "-c1", "-W1", ip]),
                          capture_output=True).returncode == 0


def test_second_slice_joins_a_shared_lan_until_unshared(am):
    client, rt, prefix, creds = am
    driver = rt.site.drivers["vserver"]
    before = ours(snapshot(), prefix)
    own, join = slice_urn("own", AUTH), slice_urn("join", AUTH)
    assert code_of(client.call("Allocate", own, creds["own"], OWNER, {})) == 0
    assert code_of(client.call("Provision", [own], creds["own"],
                               {"geni_rspec_version": RSPEC_V})) == 0
    wait_until(lambda: _ready(client, "own", creds), "the owner's containers ready", 60)

    def share(**opts):
        return client.call("PerformOperationalAction", [own], creds["own"], "geni_sharelan",
                           opts)

    # bad input first: an unknown LAN, a join naming a token nobody shares; nothing changes
    bad = share(geni_sharelan_lanname="lan9", geni_sharelan_token="mesh")
    assert code_of(bad) == 12 and "lan9" in bad["output"], bad         # SEARCHFAILED
    refused = client.call("Allocate", join, creds["join"], _joiner("mesh"), {})
    assert code_of(refused) == 12 and "mesh" in refused["output"], refused
    assert code_of(client.call("Status", [join], creds["join"], {})) == 12
    ok = share(geni_sharelan_lanname="lan0", geni_sharelan_token="mesh")
    assert code_of(ok) == 0, ok

    # the second slice joins and reaches the owner's containers over the owner's bridge
    assert code_of(client.call("Allocate", join, creds["join"], _joiner("mesh"), {})) == 0
    assert code_of(client.call("Provision", [join], creds["join"],
                               {"geni_rspec_version": RSPEC_V})) == 0
    wait_until(lambda: _ready(client, "join", creds), "the joiner ready", 60)
    j1 = _urn_of(rt, "j1", "join")
    assert wait_until(lambda: _ping(driver, j1, "10.204.1.1"), "j1 pings o1", 20)

    # unshare: the joiner's link is detached (its delete job ran inline); no ping any more
    off = client.call("PerformOperationalAction", [own], creds["own"], "geni_unsharelan",
                      {"geni_sharelan_lanname": "lan0"})
    assert code_of(off) == 0, off
    assert _urn_of(rt, "join", "join") is None
    assert not _ping(driver, j1, "10.204.1.1")
    o1 = _urn_of(rt, "o1", "own")
    assert _ping(driver, o1, "10.204.1.2")                 # the owner's LAN works on

    for name in ("join", "own"):
        assert code_of(client.call("Delete", [slice_urn(name, AUTH)], creds[name], {})) == 0
    assert ours(snapshot(), prefix) == before
