"""geni_compressed: round trip, and bad or hostile input."""
from __future__ import annotations

import base64
import zlib

import pytest

from rspec.compress import compress, decompress
from rspec.errors import BADARGS, TOOBIG, RSpecError
from tests.rspec.conftest import data


def test_round_trip_and_format():
    text = data("ad-digest.xml") + "\u00e9\u4e2d"
    packed = compress(text)
    assert zlib.decompress(base64.b64decode(packed)).decode() == text   # what clients do
    assert decompress(packed) == text
    assert decompress(packed.encode()) == text


def test_accepts_what_omni_sends():
    packed = base64.b64encode(zlib.compress(b"<rspec/>")).decode()
    assert decompress(packed) == "<rspec/>"


def test_zip_bomb_is_refused_without_inflating_it():
    bomb = base64.b64encode(zlib.compress(b"\0" * (64 * 1024 * 1024), 9)).decode()
    assert len(bomb) < 200_000
    with pytest.raises(RSpecError) as info:
        decompress(bomb, max_bytes=1024 * 1024)
    assert info.value.geni_code == TOOBIG


@pytest.mark.parametrize("bad,fragment", [
    ("not base64!!", "base64"),
    (base64.b64encode(b"plain text, not zlib").decode(), "zlib"),
    (base64.b64encode(zlib.compress(b"<rspec/>" * 100)[:-8]).decode(), "truncated"),
    (base64.b64encode(zlib.compress(b"\xff\xfe\xfa")).decode(), "UTF-8"),
])
def test_bad_input(bad, fragment):
    with pytest.raises(RSpecError) as info:
        decompress(bad)
    assert info.value.geni_code == BADARGS and fragment in str(info.value)
