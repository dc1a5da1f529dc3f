"""Harness `credential`: any bytes as a signed credential (verified and used to authorize a
ListResources on the fixture slice), or, when they look like PEM, as a caller's certificate
chain. Trust root: the gcf fixture CA; the clock is fixed inside the fixtures' validity.
Allowed refusal: `CredentialError` (each subclass carries its GENI code)."""
from __future__ import annotations

from datetime import datetime, timezone

from fuzz.harness import CORPUS_DIR, Finding, TestOneInput

NOW = datetime(2028, 6, 1, tzinfo=timezone.utc)
SLICE = "urn:publicid:IDN+geni:gpo:gcf+slice+fixture"
KEYS = CORPUS_DIR.parent / "keys"   # the trust root and the caller (not seeds: never mutated)


def build() -> TestOneInput:
    from credentials.certs import TrustStore
    from credentials.errors import CredentialError
    from credentials.verify import CredentialVerifier

    trust = TrustStore.from_pem_files([KEYS / "ca-cert.pem"])
    alice = (KEYS / "alice-cert.pem").read_text()
    codes = {1, 3, 20, 21, 22, 23}

    def one(data: bytes) -> None:
        verifier = CredentialVerifier(trust)     # no cache: every input verified in full
        try:
            if data.lstrip()[:11] == b"-----BEGIN ":
                verifier.caller_identity(data, NOW)
            else:
                verifier.authorize(alice, [data], target_urn=SLICE,
                                   operations=("getsliceresources",), now=NOW)
        except CredentialError as exc:
            if exc.geni_code not in codes or not exc.message:
                raise Finding(f"credential refusal with geni_code {exc.geni_code!r} and "
                              f"message {exc.message!r}") from None
    return one
