"""Write the seed corpus: `python -m fuzz.seeds` (the files are committed; rerun after changing
this module). RSpec seeds cover every request construct the parser reads; API seeds are real
AM API v3/v2 calls as omni and geni-lib send them, with alice's fixture slice credential;
credential seeds are the gcf reference fixtures (copied in, see fuzz/keys/README)."""
from __future__ import annotations

import xmlrpc.client

from fuzz.harness import CORPUS_DIR

R3 = "http://www.geni.net/resources/rspec/3"
GA = "http://geni-am.org/resources/rspec/ext/geniam/1"
AM = "urn:publicid:IDN+geni-am:fuzz+authority+am"
HEAD = f'<rspec xmlns="{R3}" xmlns:geniam="{GA}" type="request">'
SLICE = "urn:publicid:IDN+geni:gpo:gcf+slice+fixture"
V3 = {"geni_rspec_version": {"type": "GENI", "version": "3"}}

RSPECS = {
    "two-nodes.xml": f'{HEAD}<node client_id="n1" exclusive="false"><sliver_type name="xen-vm"/>'
                     '</node><node client_id="n2" exclusive="false"><sliver_type name="xen-vm"/>'
                     '</node></rspec>',
    "links-services.xml": f"""<?xml version="1.0" encoding="UTF-8"?>{HEAD}
  <node client_id="node0" component_manager_id="{AM}" exclusive="false">
    <sliver_type name="default-vm"><disk_image name="urn:publicid:IDN+x+image+u22"/></sliver_type>
    <interface client_id="node0:if0"><ip address="10.10.1.1" netmask="255.255.255.0" type="ipv4"/>
    </interface>
    <services><install url="http://example.net/p.tar.gz" install_path="/local"/>
      <execute shell="sh" command="/local/setup.sh"/></services>
  </node>
  <node client_id="node1" component_manager_id="{AM}" component_id="urn:publicid:IDN+geni-am:fuzz+node+fake1" exclusive="true">
    <sliver_type name="raw-pc"/>
    <interface client_id="node1:if0"><ip address="10.10.1.2" netmask="255.255.255.0" type="ipv4"/></interface>
  </node>
  <link client_id="link0"><component_manager name="{AM}"/>
    <interface_ref client_id="node0:if0"/><interface_ref client_id="node1:if0"/>
    <property source_id="node0:if0" dest_id="node1:if0" capacity="100000" latency="10" packet_loss="0"/>
    <property source_id="node1:if0" dest_id="node0:if0" capacity="100000" latency="10" packet_loss="0.01"/>
    <link_type name="lan"/></link>
</rspec>""",
    "router-ext.xml": f"""{HEAD}<node client_id="r1"><sliver_type name="xen-vm"/>
  <interface client_id="r1:if0"/><interface client_id="r1:if1"/>
  <geniam:node isolation="hypervisor" router="true" forwarding="dom0" cpu="0.5" memory_mb="512">
    <geniam:route destination="10.2.0.0/24" gateway="10.1.0.1" interface="r1:if0"/>
    <geniam:route destination="0.0.0.0/0" interface="r1:if1"/></geniam:node></node>
  <node client_id="h"><geniam:node forwarding="hardware"/></node></rspec>""",
    "shared-vlan.xml": HEAD.replace("type=", 'xmlns:sv="http://www.geni.net/resources/rspec/'
                                    'ext/shared-vlan/1" type=') + """
  <node client_id="a"><interface client_id="a:0"/></node>
  <node client_id="b"><interface client_id="b:0"/></node>
  <link client_id="l"><interface_ref client_id="a:0"/><interface_ref client_id="b:0"/>
    <geniam:link vlan_tag="1234"/><sv:link_shared_vlan name="mesoscale-openflow"/></link></rspec>""",
    "multi-am.xml": f"""{HEAD}
  <node client_id="ours" component_manager_id="{AM}"><interface client_id="ours:0"/></node>
  <node client_id="theirs" component_manager_id="urn:publicid:IDN+other+authority+am">
    <sliver_type name="unknown"/><interface client_id="theirs:0"/></node>
  <link client_id="stitched"><component_manager name="{AM}"/>
    <component_manager name="urn:publicid:IDN+other+authority+am"/>
    <interface_ref client_id="ours:0"/><interface_ref client_id="theirs:0"/></link></rspec>""",
    "emulab-xen.xml": f"""<rspec xmlns="{R3}" type="request">
  <node client_id="vm"><sliver_type name="emulab-xen">
    <emulab:xen xmlns:emulab="http://www.protogeni.net/resources/rspec/ext/emulab/1"
      cores="2" ram="2048" disk="8"/></sliver_type></node></rspec>""",
    "openflow.xml": f"""<rspec xmlns="{R3}" type="request"
  xmlns:openflow="http://www.geni.net/resources/rspec/ext/openflow/3">
 <openflow:sliver email="a@b.c">
  <openflow:controller url="tcp:127.0.0.1:6653" type="primary"/>
  <openflow:group name="g"/>
  <openflow:match>
   <openflow:datapath component_id="urn:publicid:IDN+geni-am:fuzz+datapath+1"
     component_manager_id="{AM}" dpid="00:00:00:00:00:00:00:01">
    <openflow:port num="1" name="eth1"/><openflow:port num="2"/></openflow:datapath>
   <openflow:packet><openflow:dl_src value="02:00:00:00:00:01, 02:00:00:00:00:02"/>
    <openflow:dl_vlan value="100,200"/><openflow:nw_proto value="6,17"/>
    <openflow:nw_dst value="10.0.0.0/8"/><openflow:tp_dst value="443,8080"/></openflow:packet>
  </openflow:match></openflow:sliver></rspec>""",
    "unknown-ext.xml": HEAD.replace("type=", 'xmlns:x="urn:example:unknown" type=') + """
  <x:toplevel attr="1"><x:child/></x:toplevel>
  <node client_id="a" x:flavour="big"><x:hint level="3"/><interface client_id="a:0"/></node></rspec>""",
}


def _call(method: str, *params) -> bytes:
    return xmlrpc.client.dumps(params, method, allow_none=False).encode("utf-8")


def api_seeds(credential_xml: str) -> dict[str, bytes]:
    cred = [{"geni_type": "geni_sfa", "geni_version": "3", "geni_value": credential_xml}]
    rspec = RSPECS["two-nodes.xml"]
    sliver = "urn:publicid:IDN+geni-am:fuzz+sliver+1"
    v2cred = [credential_xml]
    return {
        "getversion.xml": _call("GetVersion", {}),
        "listresources.xml": _call("ListResources", cred, {**V3, "geni_available": True,
                                                           "geni_compressed": True}),
        "allocate.xml": _call("Allocate", SLICE, cred, rspec,
                              {"geni_end_time": "2030-01-01T00:00:00Z"}),
        "provision.xml": _call("Provision", [SLICE], cred,
                               {**V3, "geni_best_effort": True, "geni_users": [
                                   {"urn": "urn:publicid:IDN+geni:gpo:gcf+user+alice",
                                    "keys": ["ssh-rsa AAAAB3NzaC1yc2E= alice@example"]}]}),
        "status.xml": _call("Status", [SLICE], cred, {}),
        "describe.xml": _call("Describe", [sliver], cred, V3),
        "renew.xml": _call("Renew", [SLICE], cred, "2030-01-01T00:00:00Z",
                           {"geni_extend_alap": True}),
        "poa.xml": _call("PerformOperationalAction", [SLICE], cred, "geni_restart", {}),
        "delete.xml": _call("Delete", [SLICE], cred, {}),
        "v2-createsliver.xml": b"2" + _call("CreateSliver", SLICE, v2cred, rspec, [], {}),
        "v2-sliverstatus.xml": b"2" + _call("SliverStatus", SLICE, v2cred, {}),
        "v2-listresources.xml": b"2" + _call("ListResources", v2cred,
                                             {**V3, "geni_slice_urn": SLICE}),
        "structured-1.bin": b"\x00\x01\x03\x02\x08\x09\x0a\x07\x02",
        "structured-2.bin": b"\x00\x00\x05\x03\x08\x02\x02\x07\x06\x00\x01",
    }


def main() -> None:
    keys = CORPUS_DIR.parent / "keys"
    for name, text in RSPECS.items():
        (CORPUS_DIR / "rspec" / name).write_text(text + "\n", encoding="utf-8")
    for name, body in api_seeds((keys / "slice-cred-alice.xml").read_text()).items():
        (CORPUS_DIR / "api" / name).write_bytes(body)


if __name__ == "__main__":
    main()
