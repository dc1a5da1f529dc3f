"""Property-based: on arbitrary input the parser raises only RSpecError."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rspec.compress import decompress
from rspec.errors import RSpecError
from rspec.request import parse_request
from rspec.validate import validate_document
from tests.rspec.conftest import AM, FOAM, SLIVER_TYPES, data

SEEDS = [data("request-digest.xml"), data("openflow-request-digest.xml"),
         data("ad-digest.xml"), data("manifest-digest.xml")]
FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def _parse(doc) -> None:
    try:
        parse_request(doc, am_urns=[AM, FOAM], known_sliver_types=SLIVER_TYPES,
                      max_bytes=64 * 1024)
    except RSpecError as exc:
        assert exc.problems and exc.geni_code in (1, 4, 6)
        str(exc)


@FAST
@given(st.text(max_size=2000))
def test_arbitrary_text(text):
    _parse(text)


@FAST
@given(st.binary(max_size=2000))
def test_arbitrary_bytes(blob):
    _parse(blob)


# Mutations of valid documents: splice, delete, duplicate or replace a slice with XML-ish
# fragments, so most inputs get past the XML parser and exercise the schema and the checks.
FRAGMENTS = st.sampled_from([
    "<", ">", "/>", '"', "&", "&amp;", "<!DOCTYPE x>", "<![CDATA[x]]>", "<!-- c -->",
    '<node client_id="n9"/>', '<interface client_id="node0:if0"/>',
    '<interface_ref client_id="nope"/>', 'capacity="-1"', 'packet_loss="2"', 'latency="x"',
    '<link client_id="link0"/>', "\x00", "\ud7ff", "é", 'exclusive="maybe"',
    '<openflow:port num="99999999999"/>', '<openflow:dl_vlan value="9999"/>',
    '<geniam:node xmlns:geniam="http://geni-am.org/resources/rspec/ext/geniam/1" cpu="0"/>',
    '<geniam:node xmlns:geniam="http://geni-am.org/resources/rspec/ext/geniam/1" router="true">'
    '<geniam:route destination="1.2.3.4/40"/></geniam:node>',
    'type="advertisement"', 'xmlns="urn:other"', "", " ",
])


@st.composite
def mutated(draw):
    doc = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(doc)))
        j = draw(st.integers(i, min(len(doc), i + 80)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
        if action == "insert":
            doc = doc[:i] + draw(FRAGMENTS) + doc[i:]
        elif action == "delete":
            doc = doc[:i] + doc[j:]
        elif action == "replace":
            doc = doc[:i] + draw(FRAGMENTS) + doc[j:]
        else:
            doc = doc[:j] + doc[i:j] + doc[j:]
    return doc


@FAST
@given(mutated(), st.booleans())
def test_mutated_valid_documents(doc, as_bytes):
    _parse(doc.encode("utf-8", "surrogatepass") if as_bytes else doc)
    problems = validate_document(doc.encode("utf-8", "surrogatepass") if as_bytes else doc)
    assert isinstance(problems, list)


@FAST
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_decompress_arbitrary(blob):
    try:
        decompress(blob, max_bytes=4096)
    except RSpecError:
        pass
