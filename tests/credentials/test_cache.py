from datetime import datetime, timezone

import pytest

from credentials.cache import VerificationCache
from credentials.certs import TrustStore
from credentials.errors import CredentialExpired
from credentials.verify import CredentialVerifier
from tests.credentials.conftest import SLICE


def test_hit_on_second_use(gcf, trust):
    cache = VerificationCache(max_entries=8)
    verifier = CredentialVerifier(trust, cache=cache)
    data = gcf.bytes("slice-cred-delegated-to-bob.xml")
    first = verifier.verify(data)
    assert (cache.hits, cache.misses) == (0, 1)
    second = verifier.verify(data.decode())           # same bytes as text
    assert second is first and (cache.hits, cache.misses) == (1, 1)
    verifier.authorize(gcf.bytes("bob-cert.pem"), [data.decode()], target_urn=SLICE,
                       operations=("createsliver",))
    assert cache.hits == 2


def test_expired_entry_is_never_served(gcf, trust):
    cache = VerificationCache()
    verifier = CredentialVerifier(trust, cache=cache)
    data = gcf.bytes("slice-cred-delegated-to-bob-nodelegate.xml")   # expires 2031-06-01
    verifier.verify(data)
    just_before = datetime(2031, 5, 31, 23, 59, tzinfo=timezone.utc)
    assert verifier.verify(data, now=just_before) is not None and cache.hits == 1
    with pytest.raises(CredentialExpired, match="ref1 expired at 2031-06-01T00:00:00Z"):
        verifier.verify(data, now=datetime(2031, 6, 1, tzinfo=timezone.utc))
    assert cache.hits == 1 and len(cache) == 0


def test_entry_not_served_before_certificates_are_valid(gcf, trust):
    cache = VerificationCache()
    verifier = CredentialVerifier(trust, cache=cache)
    data = gcf.bytes("slice-cred-alice.xml")
    verifier.verify(data)
    with pytest.raises(Exception, match="not valid before"):
        verifier.verify(data, now=datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert cache.hits == 0


def test_keyed_by_trust_roots_and_bytes(gcf, trust, tmp_path):
    cache = VerificationCache()
    data = gcf.bytes("slice-cred-alice.xml")
    CredentialVerifier(trust, cache=cache).verify(data)
    other = TrustStore.from_pem_files([gcf.path("ca-cert.pem"), gcf.path("untrusted-ca-cert.pem")])
    CredentialVerifier(other, cache=cache).verify(data)
    assert cache.hits == 0 and len(cache) == 2
    with pytest.raises(Exception, match="does not verify"):
        CredentialVerifier(trust, cache=cache).verify(data.replace(b"control", b"cOntrol"))


def test_failures_are_not_cached_and_lru_bound(gcf, trust):
    cache = VerificationCache(max_entries=1)
    verifier = CredentialVerifier(trust, cache=cache)
    with pytest.raises(CredentialExpired):
        verifier.verify(gcf.bytes("slice-cred-expired.xml"))
    assert len(cache) == 0
    verifier.verify(gcf.bytes("slice-cred-alice.xml"))
    verifier.verify(gcf.bytes("alice-user-cred.xml"))
    assert len(cache) == 1
    with pytest.raises(ValueError):
        VerificationCache(max_entries=0)


def test_caller_chain_is_cached_but_never_past_its_validity(gcf_fixtures):
    """The TLS caller chain is verified once, then served from the cache, but only while every
    certificate of the chain is valid: an expired caller is refused like a new one."""
    from datetime import datetime, timezone

    import pytest

    from credentials.certs import TrustStore
    from credentials.errors import CertificateError
    from credentials.verify import CredentialVerifier

    trust = TrustStore.from_pem_files([gcf_fixtures / "ca-cert.pem"])
    calls = []
    verify_chain = trust.verify_chain
    trust.verify_chain = lambda chain, now=None: calls.append(now) or verify_chain(chain, now)
    verifier = CredentialVerifier(trust)
    pem = (gcf_fixtures / "alice-cert.pem").read_text()
    first = verifier.caller_identity(pem)
    assert verifier.caller_identity(pem) is first and len(calls) == 1
    with pytest.raises(CertificateError, match="expired"):
        verifier.caller_identity(pem, datetime(2032, 1, 1, tzinfo=timezone.utc))
    assert len(calls) == 2
    with pytest.raises(CertificateError):
        verifier.caller_identity((gcf_fixtures / "untrusted-alice-cert.pem").read_text())
