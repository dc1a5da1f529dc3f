"""XML-RPC on the wire: a guarded request parser and the response encoder.

Why not `SimpleXMLRPCDispatcher`: the AM must refuse oversized bodies before parsing, refuse
DTDs (entity expansion bombs), keep application errors out of Faults, and never emit `nil`.
The stdlib `Unmarshaller` does the type decoding; we drive expat ourselves so a DOCTYPE or
ENTITY declaration aborts the parse whatever the body's encoding.
"""
from __future__ import annotations

import xmlrpc.client
from dataclasses import dataclass
from typing import Any
from xml.parsers import expat

from am.api.memo import LARGE, IdentityMemo

# Fault codes (the de-facto xmlrpc-epi "specification for fault code interoperability").
FAULT_PARSE = -32700
FAULT_INVALID_REQUEST = -32600
FAULT_METHOD_NOT_FOUND = -32601
FAULT_INTERNAL = -32603


class MalformedRequest(Exception):
    """The body is not a well-formed, acceptable XML-RPC methodCall: answered with a Fault."""

    def __init__(self, fault_code: int, message: str):
        super().__init__(message)
        self.fault_code = fault_code
        self.message = message


@dataclass(frozen=True)
class MethodCall:
    method: str
    params: tuple[Any, ...]


class _NoDtd(Exception):
    pass


def _refuse_dtd(*_args: Any) -> None:
    raise _NoDtd()


def parse_method_call(body: bytes) -> MethodCall:
    """Decode one XML-RPC methodCall; raise MalformedRequest for anything else."""
    if not body:
        raise MalformedRequest(FAULT_INVALID_REQUEST, "empty request body")
    unmarshaller = xmlrpc.client.Unmarshaller(use_datetime=False, use_builtin_types=False)
    unmarshaller.xml(None, None)          # expat hands over str already: no re-decoding
    parser = expat.ParserCreate(None, None)
    parser.buffer_text = True
    parser.StartElementHandler = unmarshaller.start
    parser.EndElementHandler = unmarshaller.end
    parser.CharacterDataHandler = unmarshaller.data
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    parser.ExternalEntityRefHandler = _refuse_dtd
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(body, True)
        params = unmarshaller.close()
    except _NoDtd:
        raise MalformedRequest(FAULT_INVALID_REQUEST,
                               "DOCTYPE and ENTITY declarations are not accepted") from None
    except expat.ExpatError as exc:
        raise MalformedRequest(FAULT_PARSE, f"malformed XML: {exc}") from None
    except (xmlrpc.client.ResponseError, ValueError, TypeError, KeyError, IndexError,
            OverflowError) as exc:
        # Unmarshaller raises these for bad values (<int>x</int>), stray tags, unbalanced structs.
        raise MalformedRequest(FAULT_PARSE, f"malformed XML-RPC: {exc!s}") from None
    method = unmarshaller.getmethodname()
    if not method or not _is_method_call(body):
        raise MalformedRequest(FAULT_INVALID_REQUEST, "not an XML-RPC methodCall")
    return MethodCall(method=method, params=tuple(params))


def _is_method_call(body: bytes) -> bool:
    """The document element is methodCall (Unmarshaller also accepts methodResponse)."""
    head = body[:512].lstrip()
    if head.startswith(b"<?xml"):
        head = head[head.find(b"?>") + 2:].lstrip()
    return head.startswith(b"<methodCall")


def _large_text(value: str) -> str:
    """Character data for a large string: a CDATA section, which every XML parser reads back as
    the same characters as the escaped form, but which a client parses about twice as fast
    (no entity reference per '<' to reassemble) and is ~10% smaller. Falls back to escaping
    when the text itself contains the CDATA terminator."""
    if "]]>" in value:
        return xmlrpc.client.escape(value)
    return f"<![CDATA[{value}]]>"


_large_text_memo = IdentityMemo(_large_text)


class _Marshaller(xmlrpc.client.Marshaller):
    """The stdlib marshaller, except for large strings (the advertisement): written as CDATA,
    and prepared once per string object (the service hands out one advertisement object while
    it is valid) instead of once per response."""

    dispatch = dict(xmlrpc.client.Marshaller.dispatch)

    def dump_unicode(self, value: str, write, escape=xmlrpc.client.escape) -> None:
        write("<value><string>")
        write(_large_text_memo(value) if len(value) >= LARGE else escape(value))
        write("</string></value>\n")

    dispatch[str] = dump_unicode


def encode_response(value: Any) -> bytes:
    """A methodResponse; raises TypeError if `value` contains None (never sent to GENI clients).
    The same document as `xmlrpc.client.dumps((value,), methodresponse=True)`, strings of
    LARGE characters or more as CDATA sections."""
    body = _Marshaller("utf-8", allow_none=False).dumps((value,))
    return "".join(("<?xml version='1.0'?>\n<methodResponse>\n", body,
                    "</methodResponse>\n")).encode("utf-8")


def encode_fault(code: int, message: str) -> bytes:
    return xmlrpc.client.dumps(xmlrpc.client.Fault(code, message), methodresponse=True,
                               encoding="utf-8").encode("utf-8")
