"""TLS and local-file problems give messages that say what to fix (no tracebacks)."""
from __future__ import annotations

import json
import shutil

import pytest

from am.client import AMClient, ClientConfigError, ClientTLSError, ClientTransportError, load_credential

pytestmark = pytest.mark.slow


def test_am_certificate_not_signed_by_given_ca(am_env, gcf_fixtures):
    wrong_ca = gcf_fixtures / "ca-cert.pem"
    with AMClient(am_env.url, am_env.cert, am_env.key, ca=wrong_ca) as c:
        with pytest.raises(ClientTLSError) as err:
            c.get_version()
    assert f"the AM's certificate is not signed by a CA in --ca {wrong_ca}" in str(err.value)


def test_am_refuses_untrusted_client_certificate(am_env, gcf_fixtures):
    with AMClient(am_env.url, gcf_fixtures / "untrusted-alice-cert.pem",
                  gcf_fixtures / "untrusted-alice-key.pem", ca=am_env.ca) as c:
        with pytest.raises(ClientTLSError) as err:
            c.get_version()
    message = str(err.value)
    assert "refused your certificate" in message
    assert "signed by a trust root the AM knows" in message
    assert "untrusted-alice-cert.pem" in message


def test_key_does_not_match_certificate(am_env, gcf_fixtures):
    with pytest.raises(ClientConfigError, match="does not match certificate"):
        AMClient(am_env.url, am_env.cert, gcf_fixtures / "bob-key.pem", ca=am_env.ca)


def test_missing_files_and_bad_url(am_env, tmp_path):
    with pytest.raises(ClientConfigError, match=r"certificate file .*nope.pem does not exist \(--cert\)"):
        AMClient(am_env.url, tmp_path / "nope.pem", am_env.key)
    with pytest.raises(ClientConfigError, match=r"CA file .* does not exist \(--ca\)"):
        AMClient(am_env.url, am_env.cert, am_env.key, ca=tmp_path / "ca.pem")
    with pytest.raises(ClientConfigError, match="holds no PEM certificate"):
        AMClient(am_env.url, am_env.key, am_env.key)
    with pytest.raises(ClientConfigError, match="not an https://host:port/path URL"):
        AMClient("ftp://x/", am_env.cert, am_env.key)


def test_encrypted_key_needs_a_passphrase(am_env, tmp_path):
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(am_env.key.read_bytes(), None)
    encrypted = tmp_path / "enc-key.pem"
    encrypted.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"sesame")))
    with pytest.raises(ClientConfigError, match="is encrypted"):
        AMClient(am_env.url, am_env.cert, encrypted, ca=am_env.ca)
    with pytest.raises(ClientConfigError, match="wrong passphrase"):
        AMClient(am_env.url, am_env.cert, encrypted, ca=am_env.ca, key_password="nope")
    with AMClient(am_env.url, am_env.cert, encrypted, ca=am_env.ca, key_password="sesame") as c:
        assert c.get_version()["geni_api"] == 3


def test_nothing_listening(am_env):
    import socket

    with socket.socket() as s:   # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with AMClient(f"https://127.0.0.1:{port}/", am_env.cert, am_env.key, ca=am_env.ca) as c:
        with pytest.raises(ClientTransportError, match="connection refused"):
            c.get_version()


def test_credential_files(am_env, gcf_fixtures, tmp_path):
    xml = load_credential(am_env.user_cred)
    assert xml["geni_type"] == "geni_sfa" and xml["geni_version"] == "3"
    wrapped = load_credential(gcf_fixtures / "slice-cred-alice.json")
    assert wrapped["geni_value"] == json.loads((gcf_fixtures / "slice-cred-alice.json")
                                               .read_text())["geni_value"]
    abac = load_credential(gcf_fixtures / "speaks-for-tool-for-alice.xml")
    assert abac["geni_type"] == "geni_abac"
    unsigned = tmp_path / "unsigned.xml"
    unsigned.write_text("<signed-credential><credential><type>privilege</type></credential>"
                        "</signed-credential>")
    with pytest.raises(ClientConfigError, match="is not a signed GENI credential"):
        load_credential(unsigned)
    cert = tmp_path / "cert.xml"
    shutil.copy(am_env.cert, cert)
    with pytest.raises(ClientConfigError, match="is not XML"):
        load_credential(cert)
    with pytest.raises(ClientConfigError, match="does not exist"):
        load_credential(tmp_path / "missing.xml")
    with pytest.raises(ClientConfigError, match="lacks geni_type"):
        load_credential({"geni_value": xml["geni_value"]})
