"""`geni_compressed`: zlib then base64, the one place the AM encodes and decodes it.

Decoding is bounded: a few kilobytes of zlib can inflate to gigabytes, so the output is
streamed and refused (TOOBIG) past `max_bytes`.
"""
from __future__ import annotations

import base64
import binascii
import zlib

from rspec.errors import BADARGS, TOOBIG, RSpecError
from rspec.xmlsafe import DEFAULT_MAX_BYTES

_CHUNK = 256 * 1024


def compress(text: str, *, level: int = 6) -> str:
    """RSpec text -> base64(zlib(utf-8)) as ASCII text."""
    return base64.b64encode(zlib.compress(text.encode("utf-8"), level)).decode("ascii")


def decompress(data: str | bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """base64(zlib(utf-8)) -> text; RSpecError BADARGS on bad input, TOOBIG past max_bytes."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise RSpecError.one(f"geni_compressed data is not valid base64: {exc}",
                             geni_code=BADARGS) from None
    inflater = zlib.decompressobj()
    out = bytearray()
    try:
        chunk = inflater.decompress(raw, _CHUNK)
        while True:
            out += chunk
            if len(out) > max_bytes:
                raise RSpecError.one(f"decompressed document exceeds the limit of {max_bytes} "
                                     "bytes", geni_code=TOOBIG)
            if not inflater.unconsumed_tail:
                break
            chunk = inflater.decompress(inflater.unconsumed_tail, _CHUNK)
        out += inflater.flush()
    except zlib.error as exc:
        raise RSpecError.one(f"geni_compressed data is not valid zlib: {exc}",
                             geni_code=BADARGS) from None
    if not inflater.eof:
        raise RSpecError.one("geni_compressed data is truncated", geni_code=BADARGS)
    if len(out) > max_bytes:
        raise RSpecError.one(f"decompressed document exceeds the limit of {max_bytes} bytes",
                             geni_code=TOOBIG)
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RSpecError.one(f"decompressed document is not UTF-8: {exc.reason} at byte "
                             f"{exc.start}", geni_code=BADARGS) from None
