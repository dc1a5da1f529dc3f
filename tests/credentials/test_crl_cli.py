"""`geni-am authority revoke`, and CRLs exchanged with OpenSSL and the gcf fixtures.

The openssl CLI is used here only to make and check fixtures (the AM never runs it)."""
from __future__ import annotations

import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from am.cli import main
from credentials.certs import TrustStore, load_pem_chain
from credentials.crl import CertificateRevoked, RevokedEntry, build_crl, format_serial
from credentials.privileges import METHOD_OPERATIONS
from credentials.verify import CredentialVerifier
from tests.conftest import require_tool

pytestmark = pytest.mark.slow

S1 = "urn:publicid:IDN+geni-am+slice+s1"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def authdir(tmp_path) -> Path:
    d = tmp_path / "auth"
    assert main(["authority", "init", str(d)]) == 0
    for user in ("alice", "bob"):
        assert main(["authority", "user", user, "--dir", str(d)]) == 0
    assert main(["authority", "slice", "s1", "--owner", "bob", "--dir", str(d)]) == 0
    return d


def serial_of(path: Path) -> int:
    return load_pem_chain(path.read_bytes())[0].serial_number


def test_revoke_by_file_then_by_serial(authdir, capsys):
    bob = serial_of(authdir / "bob-cert.pem")
    code, out, err = run(capsys, "authority", "revoke", authdir / "bob-cert.pem", "--dir",
                         authdir, "--reason", "keyCompromise")
    assert code == 0, err
    crl_path = authdir / "trust-roots" / "ca.crl"
    assert (f"revoked: urn:publicid:IDN+geni-am+user+bob (serial {format_serial(bob)}) on "
            in out) and "reason keyCompromise" in out
    assert f"wrote {crl_path}" in out and "CRL number 1: 1 revoked certificate(s)" in out
    assert crl_path.read_bytes().startswith(b"-----BEGIN X509 CRL-----")

    # the AM's trust directory now refuses bob and still accepts alice
    trust = TrustStore.from_directory(authdir / "trust-roots")
    verifier = CredentialVerifier(trust)
    with pytest.raises(CertificateRevoked, match=r"\+user\+bob .*reason keyCompromise"):
        verifier.authorize((authdir / "bob-cert.pem").read_bytes(),
                           [(authdir / "s1-slice-cred-bob.xml").read_text()],
                           target_urn=S1, operations=METHOD_OPERATIONS["Allocate"])
    assert verifier.verify((authdir / "alice-cred.xml").read_bytes()).owner_urn.endswith("alice")

    # by serial (openssl's colon-hex spelling), in DER: the CRL keeps bob and grows
    code, out, err = run(capsys, "authority", "revoke", "--serial", "0A:0B", "--dir", authdir,
                         "--der")
    assert code == 0, err
    assert "revoked: serial 0xA0B on " in out and "CRL number 2: 2 revoked certificate(s)" in out
    crl = x509.load_der_x509_crl(crl_path.read_bytes())
    assert {r.serial_number for r in crl} == {bob, 0x0A0B}
    # again: already listed, the original date is kept and the CRL is re-signed
    code, out, _ = run(capsys, "authority", "revoke", "--serial", str(0x0A0B), "--dir", authdir)
    assert code == 0 and out.startswith("already revoked: serial 0xA0B")
    assert "CRL number 3: 2 revoked certificate(s)" in out
    with pytest.raises(CertificateRevoked):
        TrustStore.from_directory(authdir / "trust-roots").verify_chain(
            load_pem_chain((authdir / "bob-cert.pem").read_bytes()))


@pytest.mark.parametrize("argv, fragment", [
    (["--serial", "zz"], "serial 'zz' is not a number"),
    (["--serial", "5", "--reason", "bored"], "unknown revocation reason 'bored'"),
    (["--serial", "5", "--days", "0"], "CRL lifetime must be at least 1 day"),
    (["{gcf}/alice-cert.pem"], "was not issued by this authority"),
    (["{dir}/bob-key.pem"], "bob-key.pem: no PEM certificate found"),
    (["{dir}/nothing.pem"], "cannot read"),
    (["{dir}/ca-cert.pem"], "cannot revoke its own certificate"),
])
def test_revoke_refusals_write_nothing(authdir, capsys, gcf_fixtures, argv, fragment):
    argv = [a.format(gcf=gcf_fixtures, dir=authdir) for a in argv]
    code, _, err = run(capsys, "authority", "revoke", *argv, "--dir", authdir)
    assert code == 1 and fragment in err and "Traceback" not in err
    assert not (authdir / "trust-roots" / "ca.crl").exists()


def test_revoke_refuses_to_extend_a_foreign_crl(authdir, capsys, tmp_path):
    other = tmp_path / "other"
    assert main(["authority", "init", str(other), "--authority", "elsewhere"]) == 0
    assert main(["authority", "revoke", "--serial", "9", "--dir", str(other)]) == 0
    capsys.readouterr()
    foreign = (other / "trust-roots" / "ca.crl").read_bytes()
    (authdir / "trust-roots" / "ca.crl").write_bytes(foreign)
    code, _, err = run(capsys, "authority", "revoke", "--serial", "5", "--dir", authdir)
    assert code == 1 and "ca.crl: CRL issuer" in err
    assert (authdir / "trust-roots" / "ca.crl").read_bytes() == foreign


def test_credential_verify_cli_reports_revocation(authdir, capsys, tmp_path):
    assert main(["authority", "revoke", str(authdir / "bob-cert.pem"), "--dir",
                 str(authdir)]) == 0
    # CRLs kept apart from the roots: --crl-dir
    crls = tmp_path / "crls"
    crls.mkdir()
    shutil.move(authdir / "trust-roots" / "ca.crl", crls / "ca.crl")
    capsys.readouterr()
    args = ["credential", "verify", authdir / "s1-slice-cred-bob.xml", "--trust-roots",
            authdir / "trust-roots"]
    code, out, _ = run(capsys, *args)
    assert code == 0 and out.strip().endswith("OK")
    code, out, _ = run(capsys, *args, "--crl-dir", crls)
    assert code == 1
    assert "FAIL: owner certificate of credential ref0: certificate " \
           "urn:publicid:IDN+geni-am+user+bob" in out and "(geni_code 23)" in out


# ---- interoperability ------------------------------------------------------------------------

def _openssl_ca(workdir: Path, authdir: Path) -> Path:
    """A minimal `openssl ca` configuration over the development authority's CA files."""
    (workdir / "index.txt").write_text("")
    (workdir / "crlnumber").write_text("1000\n")
    config = workdir / "ca.cnf"
    config.write_text(f"""[ ca ]
default_ca = dev
[ dev ]
database = {workdir}/index.txt
crlnumber = {workdir}/crlnumber
new_certs_dir = {workdir}
certificate = {authdir}/ca-cert.pem
private_key = {authdir}/ca-key.pem
default_md = sha256
default_crl_days = 30
""")
    return config


def test_crl_from_openssl_ca_gencrl_is_enforced_pem_and_der(authdir, tmp_path):
    openssl = require_tool("openssl")
    workdir = tmp_path / "openssl"
    workdir.mkdir()
    config = _openssl_ca(workdir, authdir)
    bob_leaf = workdir / "bob-leaf.pem"
    bob_leaf.write_bytes(load_pem_chain((authdir / "bob-cert.pem").read_bytes())[0]
                         .public_bytes(serialization.Encoding.PEM))
    for argv in (["ca", "-config", config, "-batch", "-revoke", bob_leaf,
                  "-crl_reason", "superseded"],
                 ["ca", "-config", config, "-batch", "-gencrl", "-out", workdir / "ca.crl"],
                 ["crl", "-in", workdir / "ca.crl", "-outform", "DER",
                  "-out", workdir / "ca-der.crl"]):
        done = subprocess.run([openssl, *map(str, argv)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    trust_roots = authdir / "trust-roots"
    bob_chain = load_pem_chain((authdir / "bob-cert.pem").read_bytes())
    bob_serial = format_serial(bob_chain[0].serial_number)
    alice_chain = load_pem_chain((authdir / "alice-cert.pem").read_bytes())
    for name in ("ca.crl", "ca-der.crl"):
        for stale in trust_roots.glob("*.crl"):
            stale.unlink()
        shutil.copy(workdir / name, trust_roots / name)
        trust = TrustStore.from_directory(trust_roots)
        assert trust.revocations.crls[0].number == 0x1000
        with pytest.raises(CertificateRevoked,
                           match=rf"\+user\+bob .*serial {bob_serial}\) was revoked by .* "
                                 r"reason superseded"):
            trust.verify_chain(bob_chain)
        assert trust.verify_chain(alice_chain).urn.endswith("+user+alice")


def test_openssl_accepts_the_crls_revoke_writes(authdir, capsys, tmp_path):
    openssl = require_tool("openssl")
    assert main(["authority", "revoke", str(authdir / "bob-cert.pem"), "--dir",
                 str(authdir)]) == 0
    crl = authdir / "trust-roots" / "ca.crl"
    done = subprocess.run([openssl, "crl", "-in", str(crl), "-CAfile",
                           str(authdir / "ca-cert.pem"), "-noout"], capture_output=True, text=True)
    assert done.returncode == 0 and "verify OK" in done.stderr
    leaf = tmp_path / "bob-leaf.pem"
    leaf.write_bytes(load_pem_chain((authdir / "bob-cert.pem").read_bytes())[0]
                     .public_bytes(serialization.Encoding.PEM))
    done = subprocess.run([openssl, "verify", "-crl_check", "-CAfile",
                           str(authdir / "ca-cert.pem"), "-CRLfile", str(crl), str(leaf)],
                          capture_output=True, text=True)
    assert done.returncode != 0 and "certificate revoked" in (done.stdout + done.stderr)


def test_gcf_reuses_serial_3_so_its_crl_revokes_every_certificate(gcf, tmp_path):
    """gcf's gen-certs gives every certificate serial 3: a CRL (keyed on issuer + serial, as
    X.509 defines it) cannot tell its users apart. Documented in docs/credentials.md."""
    now = datetime.now(timezone.utc)
    crl = build_crl(gcf.chain("ca")[0], gcf.key("ca"), [RevokedEntry(3, now, None)],
                    this_update=now, next_update=now + timedelta(days=1), number=1)
    shutil.copy(gcf.path("ca-cert.pem"), tmp_path / "ca-cert.pem")
    (tmp_path / "gcf.crl").write_bytes(crl.public_bytes(serialization.Encoding.DER))
    trust = TrustStore.from_directory(tmp_path)
    for who in ("alice", "bob", "tool"):
        with pytest.raises(CertificateRevoked, match=rf"\+user\+{who} .*serial 0x3\)"):
            trust.verify_chain(gcf.chain(who))
