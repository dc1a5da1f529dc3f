import pytest

from credentials.errors import URNError
from credentials.urn import URN, is_authority_for, make_urn, parse_urn, urns_equal


def test_parse_parts_and_roundtrip():
    urn = parse_urn("urn:publicid:IDN+geni:gpo:gcf+slice+fixture")
    assert (urn.authority, urn.type, urn.name) == ("geni:gpo:gcf", "slice", "fixture")
    assert str(urn) == "urn:publicid:IDN+geni:gpo:gcf+slice+fixture"
    assert urn.hrn == "geni.gpo.gcf.fixture"


def test_name_may_contain_plus_and_dots_escape_in_hrn():
    urn = parse_urn("urn:publicid:IDN+ch.geni.net:proj+node+pc1+eth0")
    assert urn.name == "pc1+eth0"
    assert parse_urn("urn:publicid:IDN+ch.geni.net:proj+slice+s1").hrn == r"ch\.geni\.net.proj.s1"
    assert parse_urn("urn:publicid:IDN+geni:gpo:gcf+authority+sa").hrn == "geni.gpo.gcf"


@pytest.mark.parametrize("kind,name", [
    ("user", "alice"), ("slice", "s-1"), ("sliver", "a.b_c-1"), ("authority", "sa"),
    ("authority", "am"), ("authority", "ca"), ("authority", "ma"), ("node", "pc1"),
    ("interface", "pc1:eth0"), ("link", "lan0"),
])
def test_known_types_build_and_parse(kind, name):
    urn = make_urn("geni-am:localhost", kind, name)
    assert parse_urn(str(urn), expect_type=kind) == urn


@pytest.mark.parametrize("text,why", [
    ("urn:publicid:IDN+a+slice", "expected"),
    ("urn:foo:IDN+a+slice+s", "must start"),
    ("urn:publicid:IDN+a+slice+has space", "whitespace"),
    ("urn:publicid:IDN+a+slice+a/b", "'/'"),
    ("urn:publicid:IDN+a+slice+-lead", "slice names"),
    ("urn:publicid:IDN+a+slice+" + "x" * 20, "slice names"),
    ("urn:publicid:IDN+a+widget+w", "unknown type"),
    ("urn:publicid:IDN++slice+s", "expected"),
])
def test_invalid_urns_are_refused_with_reason(text, why):
    with pytest.raises(URNError) as err:
        parse_urn(text)
    assert why in str(err.value)
    assert err.value.geni_code == 1


def test_expect_type_mismatch():
    with pytest.raises(URNError, match="expected a slice URN"):
        parse_urn("urn:publicid:IDN+a+user+bob", expect_type="slice")


def test_make_urn_applies_spec_name_rules():
    with pytest.raises(URNError):
        make_urn("a", "user", "waytoolongname")
    with pytest.raises(URNError):
        make_urn("a", "user", "1bad")


def test_case_insensitive_compare_keeps_display_case():
    a = parse_urn("urn:publicid:IDN+GENI:GPO:gcf+user+Alice")
    b = parse_urn("urn:publicid:IDN+geni:gpo:gcf+user+alice")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert str(a).endswith("+Alice")
    assert urns_equal(str(a), str(b))
    assert not urns_equal(str(a), "urn:publicid:IDN+geni:gpo:gcf+user+bob")
    assert not urns_equal(str(a), "garbage")
    assert URN("a", "user", "x") != URN("a", "slice", "x")


def test_namespace_authority():
    sa = "urn:publicid:IDN+geni:gpo+authority+sa"
    assert is_authority_for(sa, "urn:publicid:IDN+geni:gpo:gcf+user+x")
    assert is_authority_for(sa, "urn:publicid:IDN+geni:gpo+slice+s")
    assert is_authority_for(sa, "urn:publicid:IDN+GENI:gpo:gcf:am1+authority+am")
    assert not is_authority_for(sa, "urn:publicid:IDN+geni+user+x")
    assert not is_authority_for(sa, "urn:publicid:IDN+geni:gpofake+user+x")
    assert not is_authority_for(sa, "urn:publicid:IDN+other:gpo+user+x")
    # only authorities certify
    assert not is_authority_for("urn:publicid:IDN+geni:gpo+user+x",
                                "urn:publicid:IDN+geni:gpo+user+y")
