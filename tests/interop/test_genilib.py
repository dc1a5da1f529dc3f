"""geni-lib 0.9.9.4 (`geni.rspec.pg` to build the request, `geni.minigcf.amapi3` to call)
drives Allocate, Provision, PerformOperationalAction and Delete against the real TLS server;
our client checks Status in between. geni-lib uses `requests` with `verify=root_bundle`, so
the AM's certificate is verified *with* host-name checking (the AM's certificate names
localhost and 127.0.0.1)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.interop.stack import GCF_SLICE, LiveAM, all_in, ensure_pkg_resources, poll_status

pytestmark = pytest.mark.slow

ensure_pkg_resources()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import geni.rspec.pg as pg                # noqa: E402
    from geni.minigcf import amapi3           # noqa: E402


@dataclass
class Cred:
    """What geni-lib's amapi3 functions read from a credential: `.path/.type/.version`."""

    path: str
    type: str = "geni_sfa"
    version: str = "3"


def genilib_request(n: int = 2) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # pg.XenVM is deprecated in favour of igext
        r = pg.Request()
        # pg.RawPC asks for sliver type "raw", the alias of the advertised "raw-pc"
        nodes = [pg.RawPC("raw0")] + [pg.XenVM(f"vm{i}") for i in range(1, n)]
        ifaces = []
        for i, n_ in enumerate(nodes):
            iface = n_.addInterface("if0")
            iface.addAddress(pg.IPv4Address(f"10.1.1.{i + 1}", "255.255.255.0"))
            ifaces.append(iface)
            r.addResource(n_)
        lan = pg.LAN("lan0")
        for iface in ifaces:
            lan.addInterface(iface)
        r.addResource(lan)
        return r.toXMLString(pretty_print=True, ucode=True)


@pytest.fixture
def alice(am: LiveAM):
    return (str(am.gcf / "alice-cert.pem"), str(am.gcf / "alice-key.pem"))


def test_genilib_request_drives_allocate_provision_delete(am: LiveAM, alice):
    cert, key = alice
    creds = [Cred(str(am.gcf / "slice-cred-alice.xml"))]
    root = str(am.ca)          # requests verifies the chain *and* the host name "localhost"
    version = amapi3.getversion(am.url, root, cert, key, options=({},))
    assert version["code"]["geni_code"] == 0 and version["value"]["geni_api"] == 3

    xml = genilib_request(2)
    assert 'sliver_type name="raw"' in xml and 'sliver_type name="emulab-xen"' in xml
    alloc = amapi3.allocate(am.url, root, cert, key, creds, GCF_SLICE, xml)
    assert alloc["code"]["geni_code"] == 0, alloc
    slivers = sorted(s["geni_sliver_urn"] for s in alloc["value"]["geni_slivers"])
    assert len(slivers) >= 2          # two nodes (and the LAN's sliver(s))
    for cid in ("raw0", "vm1", "lan0"):
        assert f'client_id="{cid}"' in alloc["value"]["geni_rspec"]

    prov = amapi3.provision(am.url, root, cert, key, creds, [GCF_SLICE],
                            options={"geni_rspec_version": {"type": "GENI", "version": "3"}})
    assert prov["code"]["geni_code"] == 0, prov
    assert sorted(s["geni_sliver_urn"] for s in prov["value"]["geni_slivers"]) == slivers

    ours = am.gcf_client("alice", ["slice-cred-alice.xml"])
    with ours:
        # settled: geni_notready, or geni_ready when the AM starts on provision (its default)
        nodes = poll_status(ours, GCF_SLICE, all_in("geni_notready", "geni_ready"))["geni_slivers"]
        resting = {s["geni_operational_status"] for s in nodes} == {"geni_notready"}
        action = "geni_start" if resting else "geni_restart"
        poa = amapi3.poa(am.url, root, cert, key, creds, [GCF_SLICE], action)
        assert poa["code"]["geni_code"] == 0, poa
        poll_status(ours, GCF_SLICE, all_in("geni_ready"))
        assert {s["geni_allocation_status"] for s in nodes} == {"geni_provisioned"}

        deleted = amapi3.delete(am.url, root, cert, key, creds, [GCF_SLICE])
        assert deleted["code"]["geni_code"] == 0, deleted
        assert sorted(s["geni_sliver_urn"] for s in deleted["value"]) == slivers
        gone = ours.call("Status", [GCF_SLICE], ours.credentials, {})
        assert gone["code"]["geni_code"] == 12          # nothing left in the slice


def test_genilib_host_name_verification_is_real(am: LiveAM, alice, tmp_path: Path):
    """The same call to 127.0.0.1 works (IP SAN), but a CA bundle that does not hold the AM's
    CA is refused by requests: root_bundle really verifies, it is not `False`."""
    import requests

    cert, key = alice
    ok = amapi3.getversion(f"https://127.0.0.1:{am.port}/", str(am.ca), cert, key,
                           options=({},))
    assert ok["code"]["geni_code"] == 0
    with pytest.raises(requests.exceptions.SSLError):
        amapi3.getversion(am.url, str(am.gcf / "ca-cert.pem"), cert, key, options=({},))


def test_genilib_bad_credential_is_a_geni_error_not_a_fault(am: LiveAM, alice):
    cert, key = alice
    creds = [Cred(str(am.gcf / "slice-cred-expired.xml"))]
    xml = genilib_request(1)
    result = amapi3.allocate(am.url, str(am.ca), cert, key, creds,
                             "urn:publicid:IDN+geni:gpo:gcf+slice+expired", xml)
    assert result["code"]["geni_code"] == 21 and "expired" in result["output"].lower()


def test_genilib_rawpc_is_accepted_as_raw_pc(am: LiveAM, alice):
    """geni-lib's RawPC says sliver type "raw"; the AM advertises "raw-pc" and takes "raw" as
    its alias (drivers.base.SLIVER_TYPE_ALIASES): the node is allocated, then deleted."""
    cert, key = alice
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = pg.Request()
        r.addResource(pg.RawPC("pc0"))
        xml = r.toXMLString(pretty_print=True, ucode=True)
    creds = [Cred(str(am.gcf / "slice-cred-alice.xml"))]
    result = amapi3.allocate(am.url, str(am.ca), cert, key, creds, GCF_SLICE, xml)
    assert result["code"]["geni_code"] == 0, result.get("output")
    assert [s["geni_allocation_status"] for s in result["value"]["geni_slivers"]] == \
        ["geni_allocated"]
    assert 'client_id="pc0"' in result["value"]["geni_rspec"]
    deleted = amapi3.delete(am.url, str(am.ca), cert, key, creds, [GCF_SLICE])
    assert deleted["code"]["geni_code"] == 0


def test_genilib_unknown_sliver_type_is_refused_clearly(am: LiveAM, alice):
    """A sliver type nobody advertises is BADARGS naming the type asked for and the types on
    offer, and allocates nothing."""
    cert, key = alice
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = pg.Request()
        r.addResource(pg.Node("pc0", "quantum-pc"))
        xml = r.toXMLString(pretty_print=True, ucode=True)
    creds = [Cred(str(am.gcf / "slice-cred-alice.xml"))]
    result = amapi3.allocate(am.url, str(am.ca), cert, key, creds, GCF_SLICE, xml)
    assert result["code"]["geni_code"] == 1
    assert "'quantum-pc'" in result["output"] and "raw-pc" in result["output"]
    with am.gcf_client("alice", ["slice-cred-alice.xml"]) as ours:
        assert ours.call("Status", [GCF_SLICE], ours.credentials, {})["code"]["geni_code"] == 12
