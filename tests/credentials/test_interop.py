"""Interop with the `xmlsec1` command, both ways."""
from __future__ import annotations

import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import xmlsec
from lxml import etree

from credentials import sign
from credentials.errors import SignerUntrusted
from credentials.xmlsafe import XML_ID
from tests.conftest import require_tool

EXPIRES = datetime.now(timezone.utc) + timedelta(days=7)


def xmlsec1_verify(path: Path, node_id: str, root: Path, strict: bool = True):
    cmd = [require_tool("xmlsec1"), "--verify", "--node-id", node_id, "--trusted-pem", str(root)]
    if strict:
        cmd += ["--enabled-key-data", "x509"]
    return subprocess.run(cmd + [str(path)], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("algorithm", ["rsa-sha256", "rsa-sha1"])
def test_credentials_made_here_verify_with_xmlsec1(gcf, tmp_path, algorithm, verifier):
    slice_cred = sign.create_credential(
        owner=gcf.chain("alice")[:1], target=gcf.chain("alice"), expires=EXPIRES,
        privileges={"control": True, "info": True}, signer_key=gcf.key("ca"),
        signer_chain=gcf.chain("ca"), algorithm=algorithm)
    delegated = sign.delegate_credential(
        slice_cred, new_owner=gcf.chain("bob")[:1], signer_key=gcf.key("alice"),
        signer_chain=gcf.chain("alice"), privileges={"info": False}, expires=EXPIRES,
        algorithm=algorithm)
    path = tmp_path / "cred.xml"
    path.write_bytes(delegated)
    for node_id in ("Sig_ref0", "Sig_ref1"):
        result = xmlsec1_verify(path, node_id, gcf.path("ca-cert.pem"))
        assert result.returncode == 0, result.stderr
        assert "OK" in result.stdout + result.stderr
    # and the trusted-root check is real: another root refuses them
    bad = xmlsec1_verify(path, "Sig_ref1", gcf.path("untrusted-ca-cert.pem"))
    assert bad.returncode != 0
    assert verifier.verify(delegated).owner_urn.endswith("+user+bob")


def test_speaks_for_made_here_verifies_with_xmlsec1(gcf, tmp_path):
    xml = sign.create_speaks_for(user_key=gcf.key("alice"), user_chain=gcf.chain("alice"),
                                 tool_cert=gcf.chain("tool")[0], expires=EXPIRES)
    path = tmp_path / "sf.xml"
    path.write_bytes(xml)
    assert xmlsec1_verify(path, "Sig_ref0", gcf.path("ca-cert.pem")).returncode == 0


def _template(gcf) -> bytes:
    """An unsigned GENI-layout credential with a gcf-style Signature template."""
    root = sign._new_root()
    root.append(sign._privilege_level("ref0", gcf.chain("alice")[:1], gcf.chain("alice"),
                                      EXPIRES, {"refresh": False, "info": False}, "8"))
    sigs = etree.SubElement(root, "signatures")
    sig = xmlsec.template.create(root, xmlsec.Transform.C14N, xmlsec.Transform.RSA_SHA1)
    sig.set(XML_ID, "Sig_ref0")
    sigs.append(sig)
    ref = xmlsec.template.add_reference(sig, xmlsec.Transform.SHA1, uri="#ref0")
    xmlsec.template.add_transform(ref, xmlsec.Transform.ENVELOPED)
    key_info = xmlsec.template.ensure_key_info(sig)
    xmlsec.template.add_x509_data(key_info)
    xmlsec.template.add_key_value(key_info)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def test_xmlsec1_signed_credentials_verify_here(gcf, tmp_path, verifier):
    template = tmp_path / "template.xml"
    template.write_bytes(_template(gcf))
    out = tmp_path / "signed.xml"
    key_and_cert = f"{gcf.path('ca-key.pem')},{gcf.path('ca-cert.pem')}"
    result = subprocess.run([require_tool("xmlsec1"), "--sign", "--node-id", "Sig_ref0",
                             "--privkey-pem", key_and_cert, "--output", str(out), str(template)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    signed = out.read_bytes()
    assert b"<KeyValue>" in signed or b"KeyValue" in signed
    vc = verifier.verify(signed)
    assert vc.owner_urn.endswith("+user+alice") and vc.privileges == {"refresh": False,
                                                                       "info": False}
    # altering it after xmlsec1 signed it is detected here
    tampered = signed.replace(b"<name>info</name>", b"<name>control</name>")
    with pytest.raises(Exception, match="does not verify"):
        verifier.verify(tampered)


def test_xmlsec1_accepts_untrusted_unless_strict_but_we_refuse(gcf, verifier):
    path = gcf.path("untrusted-slice-cred-alice.xml")
    lax = xmlsec1_verify(path, "Sig_ref0", gcf.path("ca-cert.pem"), strict=False)
    assert lax.returncode == 0                # the KeyValue fallback
    strict = xmlsec1_verify(path, "Sig_ref0", gcf.path("ca-cert.pem"), strict=True)
    assert strict.returncode != 0
    with pytest.raises(SignerUntrusted):
        verifier.verify(path.read_bytes())
