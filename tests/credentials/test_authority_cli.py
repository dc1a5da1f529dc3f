"""The development authority end to end through `geni-am` (am.cli.main)."""
from __future__ import annotations

import stat
import subprocess

import pytest

from am.cli import main
from credentials.authority import DevAuthority
from credentials.certs import TrustStore, identity_of, load_pem_chain
from credentials.errors import CredentialInvalid
from credentials.privileges import METHOD_OPERATIONS
from credentials.verify import CredentialVerifier
from tests.conftest import require_tool

pytestmark = pytest.mark.slow

S1 = "urn:publicid:IDN+geni-am+slice+s1"


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def authdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli") / "auth"
    assert main(["authority", "init", str(d)]) == 0
    for user in ("alice", "bob"):
        assert main(["authority", "user", user, "--dir", str(d)]) == 0
    assert main(["authority", "slice", "s1", "--owner", "alice", "--dir", str(d)]) == 0
    return d


def test_init_writes_ca_and_trust_roots(tmp_path, capsys):
    code, out, _ = run(capsys, "authority", "init", str(tmp_path / "a"), "--authority", "lab:dev")
    assert code == 0
    for name in ("ca-cert.pem", "ca-key.pem", "trust-roots/ca-cert.pem"):
        assert f"wrote {tmp_path / 'a' / name}" in out
    ca = load_pem_chain((tmp_path / "a" / "ca-cert.pem").read_bytes())[0]
    assert identity_of(ca).urn == "urn:publicid:IDN+lab:dev+authority+sa"
    assert ca.issuer == ca.subject
    assert stat.S_IMODE((tmp_path / "a" / "ca-key.pem").stat().st_mode) == 0o600
    code, _, err = run(capsys, "authority", "init", str(tmp_path / "a"))
    assert code == 1 and "already holds an authority" in err and "Traceback" not in err


def test_user_and_slice_files(authdir, capsys):
    trust = TrustStore.from_directory(authdir / "trust-roots")
    alice = trust.verify_chain(load_pem_chain((authdir / "alice-cert.pem").read_bytes()))
    assert alice.urn == "urn:publicid:IDN+geni-am+user+alice"
    assert alice.uuid and alice.email
    verifier = CredentialVerifier(trust)
    user_cred = verifier.verify((authdir / "alice-cred.xml").read_bytes())
    assert set(user_cred.privileges) == {"refresh", "resolve", "info"}
    auth = verifier.authorize((authdir / "alice-cert.pem").read_bytes(),
                              [(authdir / "s1-slice-cred-alice.xml").read_text()],
                              target_urn=S1, operations=METHOD_OPERATIONS["Allocate"])
    assert auth.caller.urn == alice.urn
    assert (authdir / "s1-slice-cert.pem").is_file()


def test_delegate_and_verify_cli(authdir, capsys):
    code, out, _ = run(capsys, "authority", "delegate", str(authdir / "s1-slice-cred-alice.xml"),
                       "--to", "bob", "--dir", str(authdir), "--privileges", "info,control")
    assert code == 0
    path = authdir / "s1-slice-cred-alice-delegated-to-bob.xml"
    assert f"wrote {path}" in out
    code, out, err = run(capsys, "credential", "verify", str(path), "--trust-roots",
                         str(authdir / "trust-roots"), "--caller", str(authdir / "bob-cert.pem"),
                         "--target", S1, "--privilege", "Allocate", "--privilege", "control")
    assert code == 0, out + err
    assert "owner: urn:publicid:IDN+geni-am+user+bob" in out
    assert "privileges: info, control" in out
    assert "signer chain: urn:publicid:IDN+geni-am+user+alice <- urn:publicid:IDN+geni-am+authority+sa" in out
    assert out.strip().endswith("OK")
    # why was alice refused? owner is bob
    code, out, _ = run(capsys, "credential", "verify", str(path), "--trust-roots",
                       str(authdir / "trust-roots"), "--caller", str(authdir / "alice-cert.pem"))
    assert code == 1 and "FAIL: owner urn:publicid:IDN+geni-am+user+bob is not the caller" in out
    code, out, _ = run(capsys, "credential", "verify", str(path), "--trust-roots",
                       str(authdir / "trust-roots"), "--privilege", "Shutdown")
    assert code == 1 and "FAIL: privileges do not allow 'Shutdown' (geni_code 3)" in out
    code, out, _ = run(capsys, "credential", "verify", str(path), "--trust-roots",
                       str(authdir / "trust-roots"), "--target", "urn:publicid:IDN+geni-am+slice+s2")
    assert code == 1 and "(geni_code 22)" in out
    # bob may not re-delegate (not delegatable), and may not widen
    code, _, err = run(capsys, "authority", "delegate", str(path), "--to", "alice",
                       "--dir", str(authdir))
    assert code == 1 and "not delegatable" in err
    code, _, err = run(capsys, "authority", "delegate", str(authdir / "s1-slice-cred-alice.xml"),
                       "--to", "bob", "--dir", str(authdir), "--privileges", "ma")
    assert code == 1 and "widening" in err


def test_delegated_dev_credential_verifies_with_xmlsec1(authdir):
    path = authdir / "s1-slice-cred-alice-delegated-to-bob.xml"
    if not path.exists():
        DevAuthority(authdir).delegate(authdir / "s1-slice-cred-alice.xml", "bob")
    for node in ("Sig_ref0", "Sig_ref1"):
        result = subprocess.run([require_tool("xmlsec1"), "--verify", "--node-id", node,
                                 "--trusted-pem", str(authdir / "ca-cert.pem"),
                                 "--enabled-key-data", "x509", str(path)],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr


def test_speaks_for_cli(authdir, capsys):
    code, out, _ = run(capsys, "authority", "speaks-for", "--tool", "portal", "--user", "alice",
                       "--dir", str(authdir))
    assert code == 0
    sf = authdir / "speaks-for-portal-for-alice.xml"
    assert f"wrote {sf}" in out and f"wrote {authdir / 'portal-cert.pem'}" in out
    tool_pem = (authdir / "portal-cert.pem").read_bytes()
    assert identity_of(load_pem_chain(tool_pem)[0]).urn == "urn:publicid:IDN+geni-am+tool+portal"
    verifier = CredentialVerifier(TrustStore.from_directory(authdir / "trust-roots"))
    creds = [{"geni_type": "geni_abac", "geni_version": "1", "geni_value": sf.read_text()},
             {"geni_type": "geni_sfa", "geni_version": "3",
              "geni_value": (authdir / "s1-slice-cred-alice.xml").read_text()}]
    auth = verifier.authorize(tool_pem, creds, target_urn=S1, operations=("createsliver",),
                              speaking_for="urn:publicid:IDN+geni-am+user+alice")
    assert auth.caller.urn.endswith("+user+alice") and auth.tool.urn.endswith("+tool+portal")
    code, out, _ = run(capsys, "credential", "verify", str(sf), "--trust-roots",
                       str(authdir / "trust-roots"), "--caller", str(authdir / "portal-cert.pem"),
                       "--speaking-for", "urn:publicid:IDN+geni-am+user+alice")
    assert code == 0 and "speaks-for:" in out and out.strip().endswith("OK")
    code, out, _ = run(capsys, "credential", "verify", str(sf), "--trust-roots",
                       str(authdir / "trust-roots"), "--caller", str(authdir / "bob-cert.pem"),
                       "--speaking-for", "urn:publicid:IDN+geni-am+user+alice")
    assert code == 1 and "FAIL" in out


def test_server_cert(authdir, capsys):
    code, out, _ = run(capsys, "authority", "server-cert", "--dir", str(authdir))
    assert code == 0 and "am-cert.pem" in out and "am-key.pem" in out
    from cryptography import x509
    chain = load_pem_chain((authdir / "am-cert.pem").read_bytes())
    ident = TrustStore.from_directory(authdir / "trust-roots").verify_chain(chain)
    assert ident.urn == "urn:publicid:IDN+geni-am:localhost+authority+am"
    san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    with pytest.raises(CredentialInvalid, match="outside this authority"):
        DevAuthority(authdir).server_cert("elsewhere", ["localhost"])


def test_verify_cli_on_fixtures(gcf, tmp_path, capsys):
    roots = tmp_path / "roots"
    roots.mkdir()
    (roots / "ca.pem").write_bytes(gcf.bytes("ca-cert.pem"))
    code, out, _ = run(capsys, "credential", "verify", str(gcf.path("slice-cred-expired.json")),
                       "--trust-roots", str(roots))
    assert code == 1
    assert "FAIL: credential ref0 expired at 2026-11-26T07:05:38Z (geni_code 21)" in out
    code, out, _ = run(capsys, "credential", "verify",
                       str(gcf.path("untrusted-slice-cred-alice.xml")), "--trust-roots", str(roots))
    assert code == 1 and "(geni_code 23)" in out
    code, out, _ = run(capsys, "credential", "verify",
                       str(gcf.path("slice-cred-delegated-to-bob.xml")), "--trust-roots",
                       str(roots), "--caller", str(gcf.path("bob-cert.pem")), "--target",
                       "urn:publicid:IDN+geni:gpo:gcf+slice+fixture", "--privilege", "createsliver")
    assert code == 0 and "level ref1: signed by urn:publicid:IDN+geni:gpo:gcf+user+alice" in out


@pytest.mark.parametrize("argv,needle", [
    (["credential", "verify", "/nonexistent.xml", "--trust-roots", "/tmp"], "nonexistent"),
    (["authority", "user", "x", "--dir", "/nonexistent-dir"], "not a development authority"),
    (["authority", "slice", "bad_name!", "--owner", "alice", "--dir", "{authdir}"],
     "invalid slice name"),
    (["authority", "slice", "s9", "--owner", "nobody", "--dir", "{authdir}"], "no certificate"),
    (["authority", "delegate", "/nonexistent.xml", "--to", "bob", "--dir", "{authdir}"],
     "cannot read"),
])
def test_cli_bad_input_is_one_line(authdir, capsys, argv, needle):
    argv = [a.replace("{authdir}", str(authdir)) for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 1
    assert needle in out + err and "Traceback" not in out + err


def test_malformed_file_verify(tmp_path, gcf, capsys):
    roots = tmp_path / "roots"
    roots.mkdir()
    (roots / "ca.pem").write_bytes(gcf.bytes("ca-cert.pem"))
    bad = tmp_path / "bad.xml"
    bad.write_text('<!DOCTYPE x [<!ENTITY a "b">]><signed-credential/>')
    code, out, err = run(capsys, "credential", "verify", str(bad), "--trust-roots", str(roots))
    assert code == 1 and "FAIL: credential XML contains a DOCTYPE" in out
    code, out, err = run(capsys, "credential", "verify", str(gcf.path("slice-cred-alice.xml")),
                         "--trust-roots", str(tmp_path / "missing"))
    assert code == 1 and "trust-roots directory" in err and "Traceback" not in err


def test_cli_refusals_write_nothing(authdir, capsys):
    before = sorted(p.name for p in authdir.iterdir())
    code, _, err = run(capsys, "authority", "speaks-for", "--tool", "tool9", "--user", "nobody",
                       "--dir", str(authdir))
    assert code == 1 and "no certificate for 'nobody'" in err
    code, _, err = run(capsys, "authority", "slice", "s9", "--owner", "alice", "--days", "0",
                       "--dir", str(authdir))
    assert code == 1 and "at least 1 day" in err
    assert sorted(p.name for p in authdir.iterdir()) == before


def test_verify_json_with_lone_surrogate(authdir, tmp_path, capsys):
    bad = tmp_path / "sur.json"
    bad.write_text('{"geni_type": "geni_sfa", "geni_value": "\\ud800"}')
    code, _, err = run(capsys, "credential", "verify", str(bad), "--trust-roots",
                       str(authdir / "trust-roots"))
    assert code == 1 and "not valid Unicode" in err and "Traceback" not in err
