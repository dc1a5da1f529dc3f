"""First run: development authority, AM certificate, client settings; second run reuses them."""
from __future__ import annotations

from am.bootstrap import banner, ensure_dev_authority, needs_dev_authority
from am.config import Settings


def test_first_and_second_run(tmp_path):
    settings = Settings(state_dir=str(tmp_path), port=5999)
    assert needs_dev_authority(settings)
    updated, files = ensure_dev_authority(settings)
    assert files.created and files.am_cert.is_file() and files.user_credential.is_file()
    assert updated.trust_roots == str(files.trust_roots) and updated.cert == str(files.am_cert)
    assert not needs_dev_authority(updated)
    first_cert = files.am_cert.read_bytes()
    again, files2 = ensure_dev_authority(settings)
    assert not files2.created and files2.am_cert.read_bytes() == first_cert
    text = banner(again, files2)
    for needle in ("https://127.0.0.1:5999/", str(files.user_cert), str(files.user_key),
                   str(files.user_credential), "[omni]", "Context()"):
        assert needle in text


def test_dev_user_is_authorized_by_the_dev_trust_roots(tmp_path):
    from am.auth import Authorizer
    settings, files = ensure_dev_authority(Settings(state_dir=str(tmp_path)))
    authorizer = Authorizer.from_settings(settings)
    principal = authorizer.authorize(
        "ListResources", files.user_cert.read_text(),
        [{"geni_type": "geni_sfa", "geni_version": "3",
          "geni_value": files.user_credential.read_text()}], target_urn=None)
    assert principal.urn.endswith("+user+alice")


def test_genilib_snippet_builds_a_context(tmp_path):
    from am.bootstrap import genilib_context
    settings, files = ensure_dev_authority(Settings(state_dir=str(tmp_path)))
    namespace: dict = {}
    exec(genilib_context(settings, files), namespace)   # noqa: S102 - our own generated text
    context = namespace["context"]
    assert context.cf.cert and context.ucred_api3["geni_type"] == "geni_sfa"
