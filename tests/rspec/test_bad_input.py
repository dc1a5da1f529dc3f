"""Bad input: each case a precise RSpecError (code, line, element), never another exception."""
from __future__ import annotations

import pytest

from rspec.errors import BADARGS, BADVERSION, TOOBIG, RSpecError
from rspec.request import parse_request
from tests.rspec.conftest import AM, FOAM, OTHER_AM, SLIVER_TYPES, data

NS = 'xmlns="http://www.geni.net/resources/rspec/3"'


def refuse(xml, code=BADARGS, **kw) -> RSpecError:
    kw.setdefault("am_urns", [AM])
    with pytest.raises(RSpecError) as info:
        parse_request(xml, **kw)
    assert info.value.geni_code == code, str(info.value)
    return info.value


def messages(err: RSpecError) -> list[str]:
    return [p.message for p in err.problems]


def test_malformed_xml_names_the_line():
    err = refuse(f'<rspec {NS} type="request">\n<node client_id="a">\n</rspec>')
    assert err.problems[0].line == 3
    assert "malformed XML" in str(err) and "line 3" in str(err)


@pytest.mark.parametrize("xml", ["", "   ", "not xml at all", "<", "\x00\x01", "<?xml?>"])
def test_garbage(xml):
    refuse(xml)


def test_advertisement_sent_as_request_is_badversion():
    err = refuse(data("ad-digest.xml"), BADVERSION)
    assert err.problems[0].element == "rspec"
    assert "advertisement" in err.problems[0].message and err.problems[0].line == 2


def test_manifest_sent_as_request_is_badversion():
    refuse(data("manifest-digest.xml"), BADVERSION)


@pytest.mark.parametrize("root,fragment", [
    ('<rspec xmlns="http://www.protogeni.net/resources/rspec/2" type="request"/>', "ProtoGENI v2"),
    ('<rspec xmlns="http://www.geni.net/resources/rspec/0.2" type="request"/>', "not GENI RSpec v3"),
    ('<rspec type="request"/>', "no namespace"),
    (f'<rspec {NS} type="offer"/>', "unknown RSpec type"),
])
def test_wrong_namespace_version_or_type_is_badversion(root, fragment):
    err = refuse(root, BADVERSION)
    assert fragment in str(err)


def test_not_an_rspec_at_all():
    err = refuse(f'<html {NS}/>')
    assert "not an RSpec" in str(err)


def test_missing_type_attribute():
    assert "no type attribute" in str(refuse(f"<rspec {NS}/>"))


def test_schema_invalid_lists_every_problem_with_lines():
    xml = (f'<rspec {NS} type="request">\n'
           '<node exclusive="maybe"/>\n'
           '<link client_id="l"><interface_ref/></link>\n'
           '<node client_id="n"><bogus/></node>\n</rspec>')
    err = refuse(xml)
    got = [(p.line, p.element) for p in err.problems]
    assert (2, "node") in got and (3, "interface_ref") in got and (4, "bogus") in got
    text = str(err)
    assert "client_id" in text and "exclusive" in text and "maybe" in text


def test_our_extension_is_schema_checked():
    xml = (f'<rspec {NS} xmlns:geniam="http://geni-am.org/resources/rspec/ext/geniam/1" '
           'type="request">\n<node client_id="a">\n'
           '<geniam:node isolation="paravirt" cpu="-1" memory_mb="lots"/>\n</node></rspec>')
    err = refuse(xml)
    assert all(p.element == "geniam:node" and p.line == 3 for p in err.problems)
    text = str(err)
    assert "paravirt" in text and "cpu" in text and "memory_mb" in text


def test_openflow_extension_is_schema_checked():
    xml = data("openflow-request-digest.xml").replace('type="primary"', 'type="boss"')
    err = refuse(xml, am_urns=[FOAM])
    assert err.problems[0].element == "openflow:controller"


def test_dangling_interface_ref():
    xml = (f'<rspec {NS} type="request">\n<node client_id="a"><interface client_id="a:0"/>'
           '</node>\n<node client_id="b"><interface client_id="b:0"/></node>\n'
           '<link client_id="l">\n<interface_ref client_id="a:0"/>\n'
           '<interface_ref client_id="c:0"/>\n</link></rspec>')
    err = refuse(xml)
    (p,) = err.problems
    assert (p.line, p.element) == (6, "interface_ref") and "'c:0'" in p.message


def test_duplicate_client_ids_of_nodes_interfaces_and_links():
    xml = (f'<rspec {NS} type="request">\n'
           '<node client_id="a"><interface client_id="x"/></node>\n'
           '<node client_id="a"><interface client_id="x"/></node>\n'
           '<node client_id="b"><interface client_id="y"/></node>\n'
           '<link client_id="l"><interface_ref client_id="x"/><interface_ref client_id="y"/></link>\n'
           '<link client_id="l"><interface_ref client_id="x"/><interface_ref client_id="y"/></link>\n'
           '</rspec>')
    msgs = messages(refuse(xml))
    assert any("duplicate node client_id 'a'" in m for m in msgs)
    assert any("duplicate interface client_id 'x'" in m for m in msgs)
    assert any("duplicate link client_id 'l'" in m for m in msgs)


def test_link_needs_two_ends():
    xml = (f'<rspec {NS} type="request"><node client_id="a"><interface client_id="a:0"/></node>'
           '<link client_id="l"><interface_ref client_id="a:0"/></link></rspec>')
    assert "at least two ends" in str(refuse(xml))


@pytest.mark.parametrize("attrs,fragment", [
    ('capacity="-1"', "below 0"),
    ('capacity="fast"', "not a number"),
    ('capacity="1.5"', "not a whole number"),
    ('latency="-3"', "latency"),
    ('latency="NaN"', "finite"),
    ('packet_loss="5"', "fraction"),
    ('packet_loss="-0.1"', "fraction"),
])
def test_insane_link_properties(attrs, fragment):
    xml = (f'<rspec {NS} type="request"><node client_id="a"><interface client_id="a:0"/></node>'
           '<node client_id="b"><interface client_id="b:0"/></node>'
           '<link client_id="l"><interface_ref client_id="a:0"/><interface_ref client_id="b:0"/>'
           f'<property source_id="a:0" dest_id="b:0" {attrs}/></link></rspec>')
    err = refuse(xml)
    assert err.problems[0].element == "property" and fragment in str(err)


def test_property_naming_a_foreign_interface():
    xml = (f'<rspec {NS} type="request"><node client_id="a"><interface client_id="a:0"/></node>'
           '<node client_id="b"><interface client_id="b:0"/><interface client_id="b:1"/></node>'
           '<link client_id="l"><interface_ref client_id="a:0"/><interface_ref client_id="b:0"/>'
           '<property source_id="a:0" dest_id="b:1"/></link></rspec>')
    assert "dest_id 'b:1'" in str(refuse(xml))


def test_unknown_sliver_type_lists_the_known_ones():
    xml = f'<rspec {NS} type="request"><node client_id="a"><sliver_type name="quantum-vm"/></node></rspec>'
    err = refuse(xml, known_sliver_types=SLIVER_TYPES)
    assert "quantum-vm" in str(err) and "raw-pc" in str(err)
    # a node of another AM may use any sliver type
    other = xml.replace('client_id="a"', f'client_id="a" component_manager_id="{OTHER_AM}"')
    assert parse_request(other, am_urns=[AM], known_sliver_types=SLIVER_TYPES).nodes == ()


def test_two_sliver_types_on_one_node():
    xml = (f'<rspec {NS} type="request"><node client_id="a"><sliver_type name="raw-pc"/>'
           '<sliver_type name="default-vm"/></node></rspec>')
    assert "exactly one" in str(refuse(xml))


@pytest.mark.parametrize("ip,fragment", [
    ('address="10.0.0.300"', "not an IPv4 address"),
    ('address="10.0.0.1" netmask="255.0.255.0"', "netmask"),
])
def test_bad_interface_addresses(ip, fragment):
    xml = (f'<rspec {NS} type="request"><node client_id="a"><interface client_id="a:0">'
           f'<ip {ip} type="ipv4"/></interface></node></rspec>')
    assert fragment in str(refuse(xml))


@pytest.mark.parametrize("route,fragment", [
    ('destination="10.2.0.1/24" gateway="10.1.0.1"', "host bits"),
    ('destination="10.2.0.0/24" gateway="banana"', "not an IP address"),
    ('destination="10.2.0.0/24" interface="zz:0"', "not an interface of this node"),
    ('destination="10.2.0.0/24"', "needs a gateway or an interface"),
])
def test_bad_routes(route, fragment):
    xml = (f'<rspec {NS} xmlns:g="http://geni-am.org/resources/rspec/ext/geniam/1" type="request">'
           '<node client_id="r"><interface client_id="r:0"/><g:node router="true">'
           f'<g:route {route}/></g:node></node></rspec>')
    err = refuse(xml)
    assert err.problems[0].element == "geniam:route" and fragment in str(err)


def test_forwarding_on_a_non_router_is_refused():
    xml = (f'<rspec {NS} xmlns:g="http://geni-am.org/resources/rspec/ext/geniam/1" type="request">'
           '<node client_id="r"><g:node router="false" forwarding="dom0"/></node></rspec>')
    assert "not a router" in str(refuse(xml))


def test_openflow_dangling_group_and_foreign_datapath():
    xml = data("openflow-request-digest.xml").replace(
        '<openflow:use-group name="g1"/>', '<openflow:use-group name="g2"/>'
        f'<openflow:datapath component_id="urn:publicid:IDN+x+datapath+1" '
        f'component_manager_id="{OTHER_AM}"/>')
    msgs = messages(refuse(xml, am_urns=[FOAM]))
    assert any("use-group 'g2'" in m for m in msgs)
    assert any("not this AM" in m for m in msgs)


def test_openflow_vlan_out_of_range():
    xml = data("openflow-request-digest.xml").replace(
        '<openflow:dl_type value="0x800,0x806"/>', '<openflow:dl_vlan value="4096"/>')
    assert "dl_vlan '4096' is above 4095" in str(refuse(xml, am_urns=[FOAM]))


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request" generated_by="&lol9;"/>"""

XXE = """<?xml version="1.0"?>
<!DOCTYPE rspec [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request" generated_by="&xxe;"/>"""

EXTERNAL_DTD = """<?xml version="1.0"?>
<!DOCTYPE rspec SYSTEM "http://127.0.0.1:9/evil.dtd">
<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request"/>"""


@pytest.mark.parametrize("xml", [BILLION_LAUGHS, XXE, EXTERNAL_DTD])
def test_dtds_and_entities_are_refused(xml):
    err = refuse(xml)
    assert err.problems[0].line == 2 and "DTD" in str(err)
    assert "root:" not in str(err)   # nothing of /etc/passwd leaks


def test_utf16_document_with_dtd_is_refused_after_parse():
    err = refuse(XXE.replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16"?>')
                 .encode("utf-16"))
    assert "DTD" in str(err)


def test_over_the_size_limit_is_toobig():
    xml = data("request-digest.xml")
    err = refuse(xml, TOOBIG, max_bytes=1000)
    assert "over the limit of 1000 bytes" in str(err)
    refuse(xml.encode(), TOOBIG, max_bytes=1000)
    assert parse_request(xml, am_urns=[AM], max_bytes=len(xml.encode())).nodes


def test_deep_nesting_is_refused_not_crashing():
    xml = f'<rspec {NS} type="request">' + "<x:a xmlns:x='urn:x'>" * 3000 + "</x:a>" * 3000 + "</rspec>"
    refuse(xml)


def test_wrong_python_type():
    with pytest.raises(RSpecError):
        parse_request(12345, am_urns=[AM])  # type: ignore[arg-type]


def test_error_text_lists_every_problem_with_line():
    xml = (f'<rspec {NS} type="request">\n<node client_id="a"/>\n<node client_id="a"/>\n'
           '<link client_id="l"/>\n</rspec>')
    err = refuse(xml)
    text = str(err)
    assert "2 problems" in text
    assert "line 3, <node>: duplicate node client_id 'a'" in text
    assert "line 4, <link>: link 'l' has 0 distinct interface_ref(s)" in text
