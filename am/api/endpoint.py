"""The Flask side of XML-RPC: one POST endpoint per API version.

Order per request: size limit (HTTP 413, body unread) -> caller certificate (HTTP 403, body
unread) -> XML-RPC parse (Fault for malformed input, unknown method -> Fault -32601) ->
the method (always a GENI return structure).
"""
from __future__ import annotations

import logging

from flask import Blueprint, Response, request

from am.api import wire
from am.api.dispatch import Call, MethodTable
from am.auth import CallerSource, IdentityRefused

log = logging.getLogger("am.api")
XML = "text/xml; charset=utf-8"


def _read_body(limit: int) -> bytes | None:
    """The request body, or None when it is (or would be) larger than `limit`."""
    length = request.content_length
    if length is not None and length > limit:
        return None
    stream = request.environ.get("wsgi.input")
    if stream is None:
        return b""
    if length is not None:
        return stream.read(length) if length else b""
    data = stream.read(limit + 1)   # no Content-Length (chunked): read at most limit + 1
    return None if len(data) > limit else data


def xmlrpc_response(table: MethodTable, caller_source: CallerSource, max_bytes: int) -> Response:
    body = _read_body(max_bytes)
    if body is None:
        return Response(f"request body larger than {max_bytes} bytes\n", status=413,
                        mimetype="text/plain")
    try:
        caller_pem = caller_source.caller_pem(request.environ)
    except IdentityRefused as exc:
        return Response(f"{exc}\n", status=403, mimetype="text/plain")
    try:
        parsed = wire.parse_method_call(body)
    except wire.MalformedRequest as exc:
        return Response(wire.encode_fault(exc.fault_code, exc.message), mimetype=XML)
    if parsed.method not in table:
        return Response(wire.encode_fault(wire.FAULT_METHOD_NOT_FOUND,
                                          f"method {parsed.method!r} is not part of AM API "
                                          f"{table.name}"), mimetype=XML)
    call = Call(method=parsed.method, caller_pem=caller_pem,
                remote_addr=str(request.remote_addr or ""))
    result = table.call(call, parsed.params)
    try:
        payload = wire.encode_response(result)
    except (TypeError, OverflowError):   # a None or an int beyond XML-RPC range slipped in
        log.exception("cannot encode the %s answer", parsed.method)
        payload = wire.encode_response({
            "code": {"geni_code": 2, "am_type": "geni-am"}, "value": "",
            "output": f"internal error encoding the {parsed.method} answer (logged at the AM)"})
    return Response(payload, mimetype=XML)


def blueprint(v3: MethodTable, v2: MethodTable, caller_source: CallerSource,
              max_bytes: int) -> Blueprint:
    bp = Blueprint("geni_api", __name__)

    def v3_view() -> Response:
        return xmlrpc_response(v3, caller_source, max_bytes)

    def v2_view() -> Response:
        return xmlrpc_response(v2, caller_source, max_bytes)

    for rule in ("/", "/am/3", "/am/3/", "/am/3.0"):
        bp.add_url_rule(rule, "v3" + rule.replace(".", "_"), v3_view, methods=["POST"])
    for rule in ("/am/2", "/am/2/", "/am/2.0"):
        bp.add_url_rule(rule, "v2" + rule.replace(".", "_"), v2_view, methods=["POST"])
    return bp
