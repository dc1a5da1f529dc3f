"""Response encoding: the same XML-RPC values as the stdlib encoder, large strings as CDATA."""
from __future__ import annotations

import xmlrpc.client

import pytest
from lxml import etree

from am.api import wire
from am.api.memo import LARGE

AD = ('<?xml version="1.0" encoding="UTF-8"?>\n<rspec type="advertisement">\n'
      + '  <node component_id="urn:publicid:IDN+x+node+n" a="&amp;&lt;"> é ✓ </node>\r\n' * 800
      + "</rspec>\n")


@pytest.mark.parametrize("text", [
    AD,
    AD.replace("</rspec>", "<x>]]></x></rspec>"),     # the CDATA terminator inside: escaped
    "small <b>&amp;</b> string",
])
def test_values_decode_exactly_as_the_stdlib_encoding_does(text):
    value = {"code": {"geni_code": 0, "am_type": "geni-am"}, "value": text, "geni_api": 3,
             "list": [1, 2.5, True, text]}
    ours = wire.encode_response(value)
    stdlib = xmlrpc.client.dumps((value,), methodresponse=True, allow_none=False,
                                 encoding="utf-8").encode("utf-8")
    assert xmlrpc.client.loads(ours) == xmlrpc.client.loads(stdlib)
    # a strict, non-expat parser reads the same characters too
    strings = etree.fromstring(ours).xpath("//string/text()")
    assert strings == etree.fromstring(stdlib).xpath("//string/text()")
    if len(text) >= LARGE and "]]>" not in text:
        assert b"<![CDATA[" in ours and len(ours) < len(stdlib)
    else:
        assert ours == stdlib
    assert wire.encode_response(value) == ours   # memoised form, same bytes


def test_none_is_still_refused():
    with pytest.raises(TypeError):
        wire.encode_response({"value": None})
