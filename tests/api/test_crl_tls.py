"""Revoked client certificates through the real HTTPS XML-RPC server: the TLS handshake still
succeeds (the ssl context holds no CRLs), the application refuses the caller with a GENI error
naming the certificate, and a CRL written while the AM runs takes effect on the next call after
the refresh, even with warm caches."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from am.auth import Authorizer
from am.cli import main
from am.config import ConfigError, Settings, load_settings
from am.errors import GeniCode, GeniError
from credentials.authority import DevAuthority
from credentials.certs import load_pem_chain
from credentials.crl import format_serial
from tests.api.conftest import RSPEC_V, code_of, tls_server
from tests.api.doubles import FakeService
from tests.api.tlsclient import client_context, proxy

pytestmark = pytest.mark.slow

BOB = "urn:publicid:IDN+geni-am+user+bob"


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def dev(tmp_path_factory) -> DevAuthority:
    auth = DevAuthority.init(tmp_path_factory.mktemp("crl-api") / "auth")
    auth.user("alice")
    auth.user("bob")
    auth.server_cert()
    return auth


def settings_for(dev: DevAuthority, tmp_path: Path, **extra) -> Settings:
    return Settings(trust_roots=str(dev.dir / "trust-roots"), authority="geni-am:test",
                    state_dir=str(tmp_path / "state"), max_request_bytes=64 * 1024, **extra)


def ctx(dev: DevAuthority, who: str):
    return client_context(str(dev.dir / "ca-cert.pem"), str(dev.dir / f"{who}-cert.pem"),
                          str(dev.dir / f"{who}-key.pem"))


def user_cred(dev: DevAuthority, who: str) -> dict:
    return {"geni_type": "geni_sfa", "geni_version": "3",
            "geni_value": (dev.dir / f"{who}-cred.xml").read_text()}


def test_revoked_caller_gets_a_geni_error_after_the_refresh(dev, tmp_path, caplog):
    clock = FakeClock()
    settings = settings_for(dev, tmp_path, crl_refresh_s=60.0)
    authorizer = Authorizer.from_settings(settings, clock=clock)
    bob_serial = load_pem_chain((dev.dir / "bob-cert.pem").read_bytes())[0].serial_number
    with tls_server(settings, authorizer, FakeService(), dev.dir, dev.dir / "trust-roots") \
            as srv:
        bob = proxy(srv.url, ctx(dev, "bob"))
        alice = proxy(srv.url, ctx(dev, "alice"))
        options = {"geni_rspec_version": RSPEC_V}
        # warm every cache: identity, caller chain, credential
        assert code_of(bob.GetVersion()) == 0
        assert code_of(bob.ListResources([user_cred(dev, "bob")], options)) == 0
        assert code_of(bob.ListResources([user_cred(dev, "bob")], options)) == 0

        done = dev.revoke(dev.dir / "bob-cert.pem", reason="keyCompromise")
        assert code_of(bob.GetVersion()) == 0   # not re-read before the interval is over
        clock.now += 60
        with caplog.at_level(logging.INFO):
            for result in (bob.GetVersion(),
                           bob.ListResources([user_cred(dev, "bob")], options),
                           proxy(srv.url, ctx(dev, "bob"), keep_alive=False).GetVersion()):
                assert code_of(result) == GeniCode.CREDENTIAL_SIGNER_UNTRUSTED
                output = result["output"]
                assert output.startswith("client certificate refused: certificate " + BOB)
                assert f"serial {format_serial(bob_serial)}" in output
                assert f"on {done.entry.revoked_at:%Y-%m-%dT%H:%M:%SZ}" in output
                assert "reason keyCompromise" in output
            # alice, from the same CA, is unaffected on the same server
            assert code_of(alice.GetVersion()) == 0
            assert code_of(alice.ListResources([user_cred(dev, "alice")], options)) == 0
        assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
        assert any("CRLs reloaded" in r.getMessage() for r in caplog.records)


def test_crl_present_at_start_is_enforced_and_not_a_fault(dev, tmp_path):
    other = DevAuthority.init(tmp_path / "other-auth")   # its own CA, so dev's CRL stays clean
    other.user("carol")
    other.user("dave")
    other.server_cert()
    other.revoke(other.dir / "carol-cert.pem")
    settings = settings_for(other, tmp_path)
    authorizer = Authorizer.from_settings(settings)
    with tls_server(settings, authorizer, FakeService(), other.dir, other.dir / "trust-roots") \
            as srv:
        result = proxy(srv.url, ctx(other, "carol")).GetVersion()
        assert isinstance(result, dict)   # an AM API answer, not an xmlrpc Fault
        assert code_of(result) == GeniCode.CREDENTIAL_SIGNER_UNTRUSTED
        assert "+user+carol" in result["output"] and "was revoked by" in result["output"]
        assert code_of(proxy(srv.url, ctx(other, "dave")).GetVersion()) == 0


def test_unverifiable_crl_stops_the_am_with_the_file_named(dev, tmp_path, capsys):
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "ca-cert.pem").write_bytes((dev.dir / "ca-cert.pem").read_bytes())
    stranger = DevAuthority.init(tmp_path / "stranger", authority="stranger")
    stranger.revoke(serial=12)
    (trust / "stranger.crl").write_bytes((stranger.crl_path).read_bytes())
    settings = settings_for(dev, tmp_path).replace(trust_roots=str(trust))
    with pytest.raises(GeniError) as err:
        Authorizer.from_settings(settings)
    assert err.value.code == GeniCode.SERVERERROR
    assert "stranger.crl: CRL issuer" in err.value.message
    # the same through `geni-am serve`: exit status 2, one line, no traceback
    config = tmp_path / "am.toml"
    config.write_text(f'trust_roots = "{trust}"\ncert = "{dev.dir / "am-cert.pem"}"\n'
                      f'key = "{dev.dir / "am-key.pem"}"\nstate_dir = "{tmp_path / "state"}"\n'
                      'port = 0\n')
    assert main(["serve", "--config", str(config)]) == 2
    err_text = capsys.readouterr().err
    assert "stranger.crl" in err_text and "Traceback" not in err_text


def test_crl_settings(dev, tmp_path):
    defaults = Settings()
    assert defaults.crl_dir == "" and defaults.crl_refresh_s == 60.0
    loaded = load_settings(env={"GENI_AM_CRL_DIR": "/srv/crls", "GENI_AM_CRL_REFRESH_S": "0"})
    assert loaded.crl_dir == "/srv/crls" and loaded.crl_refresh_s == 0.0
    for value in ("-1", "nan", "soon"):
        with pytest.raises(ConfigError, match="'crl_refresh_s'"):
            load_settings(env={"GENI_AM_CRL_REFRESH_S": value})
    with pytest.raises(ConfigError, match="'crl_dir'"):
        load_settings(env={}, overrides={"crl_dir": 5})
    with pytest.raises(ConfigError, match="setting 'crl_dir': CRL directory .* does not exist"):
        Authorizer.from_settings(settings_for(dev, tmp_path, crl_dir=str(tmp_path / "none")))
    # a separate CRL directory replaces the trust-roots directory as the CRL source
    crls = tmp_path / "crls"
    crls.mkdir()
    authorizer = Authorizer.from_settings(settings_for(dev, tmp_path, crl_dir=str(crls)))
    assert not authorizer.trust.revocations


def test_refused_identity_is_audited(dev, tmp_path):
    """The Flask test client path (no TLS): the refusal is an ordinary error envelope."""
    from tests.api.conftest import make_client
    other = DevAuthority.init(tmp_path / "a2")
    other.user("erin")
    other.revoke(other.dir / "erin-cert.pem")
    settings = settings_for(other, tmp_path)
    client = make_client(settings, Authorizer.from_settings(settings), FakeService(),
                         (other.dir / "erin-cert.pem").read_text())
    result = client.call("GetVersion")
    assert code_of(result) == GeniCode.CREDENTIAL_SIGNER_UNTRUSTED
    assert "+user+erin" in result["output"]
    caller, _, method, _, code, message, _ = client.audit[-1]
    assert (caller, method, code) == ("unauthenticated", "v3.GetVersion", 23)
    assert "was revoked by" in message
