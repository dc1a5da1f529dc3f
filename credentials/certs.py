"""GENI identity certificates and trust roots.

A GENI certificate names its subject in subjectAltName: `URI:urn:publicid:IDN+...` (the
identity), `URI:urn:uuid:...` and `email:...`. A chain is valid when every certificate is within
its validity period, each is signed (checked with the issuer's *key*, never by name) by the next
one up, every issuer is a CA with an `authority` URN whose namespace contains its subject's,
and the top is signed by (or is) one of the trust roots, and no certificate on the path is
listed by its issuer's CRL (`credentials.crl`). A federation has many roots, so a `TrustStore`
holds a set of them, typically a directory of PEM files, with the CRLs their CAs publish.
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from credentials.crl import (PEM_CRL_MARKER, CRLError, CRLWatch, RevocationIndex,
                             load_crl_directory, warn_stale)
from credentials.errors import (CREDENTIAL_EXPIRED, CREDENTIAL_INVALID,
                                CREDENTIAL_SIGNER_UNTRUSTED, CertificateError, URNError)
from credentials.urn import URN, is_authority_for, parse_urn

log = logging.getLogger("credentials.certs")

MAX_CHAIN_DEPTH = 8
PEM_SUFFIXES = (".pem", ".crt", ".cer")


@dataclass
class Identity:
    """Who a certificate names. `chain` is the validated path, leaf first, trust root last
    (for an unvalidated `identity_of`, just the leaf)."""

    urn: str
    uuid: str | None
    email: str | None
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]

    @property
    def parsed_urn(self) -> URN:
        return parse_urn(self.urn)

    @property
    def keyid(self) -> str:
        return keyid(self.certificate)

    @property
    def chain_urns(self) -> tuple[str, ...]:
        """URNs along the chain, leaf first (the subject DN when a cert has no URN)."""
        return tuple(_urn_or_subject(c) for c in self.chain)


def _urn_or_subject(cert: x509.Certificate) -> str:
    try:
        return identity_of(cert).urn
    except CertificateError:
        return cert.subject.rfc4514_string()


def load_pem_chain(data: str | bytes) -> list[x509.Certificate]:
    """All certificates in a PEM text, in order (leaf first by GENI convention)."""
    if isinstance(data, str):
        data = data.encode("ascii", "replace")
    if not isinstance(data, bytes):
        raise CertificateError(f"a PEM certificate must be text, not {type(data).__name__}")
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise CertificateError("no PEM certificate found")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except (ValueError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
        raise CertificateError(f"unparseable PEM certificate: {exc}") from None
    if not certs:
        raise CertificateError("no PEM certificate found")
    for cert in certs:
        _check_parseable(cert)
    return certs


def _check_parseable(cert: x509.Certificate) -> x509.Certificate:
    """cryptography parses names and extensions only when first read: read them now, so a
    malformed one is refused here as a CertificateError instead of surfacing as a ValueError
    from whichever check first looks (found by fuzzing, fuzz/credential_target.py)."""
    try:
        cert.subject, cert.issuer, cert.extensions   # noqa: B018 - parsed for their errors
    except ValueError as exc:
        raise CertificateError(f"unparseable certificate: {exc}") from None
    return cert


def load_der(data: bytes) -> x509.Certificate:
    try:
        cert = x509.load_der_x509_certificate(data)
    except (ValueError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
        raise CertificateError(f"unparseable DER certificate: {exc}") from None
    return _check_parseable(cert)


def identity_of(cert: x509.Certificate) -> Identity:
    """The URN, UUID and email a certificate's subjectAltName carries (not validated)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise CertificateError(
            f"certificate {cert.subject.rfc4514_string()!r} has no subjectAltName "
            "(a GENI certificate carries its URN there)") from None
    except ValueError as exc:
        raise CertificateError(f"certificate extensions unparseable: {exc}") from None
    urn = uuid = None
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        low = uri.lower()
        if low.startswith("urn:publicid:idn+") and urn is None:
            urn = uri
        elif low.startswith("urn:uuid:") and uuid is None:
            uuid = uri[len("urn:uuid:"):]
    emails = san.get_values_for_type(x509.RFC822Name)
    if urn is None:
        raise CertificateError(
            f"certificate {cert.subject.rfc4514_string()!r} has no GENI URN in subjectAltName")
    try:
        parse_urn(urn)
    except URNError as exc:
        raise CertificateError(f"certificate URN is invalid: {exc}") from None
    return Identity(urn=urn, uuid=uuid, email=emails[0] if emails else None,
                    certificate=cert, chain=(cert,))


def keyid(cert: x509.Certificate) -> str:
    """ABAC key id: lowercase hex SHA-1 of the subjectPublicKey BIT STRING (RFC 5280 method 1).

    Computed from the key, because GENI certificates often lack subjectKeyIdentifier.
    """
    return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest.hex()


def spki_der(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when `issuer`'s key verifies `cert`'s signature (names must match too)."""
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _label(cert: x509.Certificate) -> str:
    return _urn_or_subject(cert)


def check_validity(cert: x509.Certificate, now: datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise CertificateError(
            f"certificate {_label(cert)} is not valid before "
            f"{cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}", CREDENTIAL_INVALID)
    if now > cert.not_valid_after_utc:
        raise CertificateError(
            f"certificate {_label(cert)} expired at "
            f"{cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}", CREDENTIAL_EXPIRED)


def _check_issuer(issuer: x509.Certificate, subject: x509.Certificate, subject_urn: str,
                  now: datetime) -> None:
    """The rules every certifying certificate must meet for this subject."""
    label = _label(issuer)
    if not _is_ca(issuer):
        raise CertificateError(f"issuer {label} of {subject_urn} is not a CA (CA:FALSE)",
                               CREDENTIAL_SIGNER_UNTRUSTED)
    try:
        issuer_urn = identity_of(issuer).parsed_urn
    except CertificateError as exc:
        raise CertificateError(f"issuer of {subject_urn} has no usable URN: {exc}",
                               CREDENTIAL_SIGNER_UNTRUSTED) from None
    if not issuer_urn.is_authority:
        raise CertificateError(f"issuer {issuer_urn} of {subject_urn} is not an authority",
                               CREDENTIAL_SIGNER_UNTRUSTED)
    if not is_authority_for(issuer_urn, subject_urn):
        raise CertificateError(
            f"issuer {issuer_urn} may not certify {subject_urn}: outside its namespace",
            CREDENTIAL_SIGNER_UNTRUSTED)
    check_validity(issuer, now)


class TrustStore:
    """A set of trusted root certificates (each must carry an `authority` URN), and the CRLs
    their CAs published (`credentials.crl`): a certificate whose issuer's CRL lists its serial
    is refused anywhere in a chain, and so is a trust root revoked by another root's CRL."""

    def __init__(self, roots: Iterable[x509.Certificate],
                 revocations: RevocationIndex | None = None):
        self.roots: tuple[x509.Certificate, ...] = tuple(roots)
        if not self.roots:
            raise CertificateError("no trust roots given")
        self._by_subject: dict[x509.Name, list[x509.Certificate]] = {}
        self._der: set[bytes] = set()
        for root in self.roots:
            identity_of(root)   # a root without a GENI URN cannot be an authority
            self._by_subject.setdefault(root.subject, []).append(root)
            self._der.add(root.public_bytes(serialization.Encoding.DER))
        digest = hashlib.sha256()
        for der in sorted(self._der):
            digest.update(hashlib.sha256(der).digest())
        self._roots_fingerprint = digest.hexdigest()
        # roots certified by other roots (an intermediate placed among the roots): a CRL of the
        # parent can revoke them
        self._root_parents: dict[bytes, list[x509.Certificate]] = {}
        for root in self.roots:
            if root.issuer != root.subject:
                parents = [p for p in self._by_subject.get(root.issuer, ())
                           if p is not root and _signed_by(root, p)]
                if parents:
                    self._root_parents[root.public_bytes(serialization.Encoding.DER)] = parents
        self._watch: CRLWatch | None = None
        self._revocations = RevocationIndex()
        self._fingerprint = self._roots_fingerprint
        self.set_revocations(revocations or RevocationIndex())

    # ---- construction -----------------------------------------------------------------------
    @classmethod
    def from_pem_files(cls, paths: Iterable[str | Path]) -> "TrustStore":
        roots: list[x509.Certificate] = []
        for path in paths:
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                raise CertificateError(f"cannot read trust root {path}: {exc.strerror}") from None
            try:
                roots.extend(load_pem_chain(data))
            except CertificateError as exc:
                raise CertificateError(f"trust root {path}: {exc}") from None
        return cls(roots)

    @classmethod
    def from_directory(cls, path: str | Path, *, crl_dir: str | Path | None = None,
                       crl_refresh_s: float = 0.0,
                       clock: Callable[[], float] = time.monotonic) -> "TrustStore":
        """The PEM roots of `path`, with the CRLs of `crl_dir` (default: `path` itself).

        `crl_refresh_s` > 0: `refresh()` re-reads the CRLs when their files change, checking
        at most that often; 0: they are read once. A CRL that cannot be verified is a
        `CRLError` here."""
        directory = Path(path)
        if not directory.is_dir():
            raise CertificateError(f"trust-roots directory {directory} does not exist")
        files = []
        for file in sorted(p for p in directory.iterdir()
                           if p.is_file() and p.suffix.lower() in PEM_SUFFIXES):
            try:
                data = file.read_bytes()
            except OSError as exc:
                raise CertificateError(f"cannot read trust root {file}: {exc.strerror}") \
                    from None
            if PEM_CRL_MARKER in data and b"-----BEGIN CERTIFICATE-----" not in data:
                continue   # a PEM file of CRLs only: read by the CRL loader
            files.append(file)
        if not files:
            raise CertificateError(f"no PEM files (*.pem, *.crt, *.cer) in {directory}")
        store = cls.from_pem_files(files)
        store.watch_crls(directory if crl_dir is None else crl_dir, crl_refresh_s, clock)
        return store

    # ---- revocation -------------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        """Identifies what a verification depended on: the roots and the CRLs in force. Caches
        key on it, so a CRL change makes every cached verification miss."""
        return self._fingerprint

    @property
    def revocations(self) -> RevocationIndex:
        return self._revocations

    def set_revocations(self, index: RevocationIndex) -> None:
        """Put `index` in force (built for these roots, e.g. by `crl.load_crl_files`)."""
        fingerprint = self._roots_fingerprint
        if index:
            fingerprint = hashlib.sha256(
                f"{self._roots_fingerprint}:{index.digest}".encode()).hexdigest()
        # Index first, fingerprint second: whoever reads the new fingerprint and then verifies
        # is guaranteed the new CRLs, so a cache entry under a new key never used old CRLs.
        self._revocations = index
        self._fingerprint = fingerprint

    def watch_crls(self, directory: str | Path, refresh_s: float = 0.0,
                   clock: Callable[[], float] = time.monotonic) -> RevocationIndex:
        """Load the CRLs of `directory` now (errors raise) and re-read them from `refresh()`."""
        watch = CRLWatch(directory, refresh_s, clock)
        index = load_crl_directory(watch.directory, self.roots)
        self.set_revocations(index)
        self._watch = watch
        warn_stale(index, _utcnow(), watch.warned)
        return index

    def refresh(self) -> bool:
        """Re-read the watched CRLs if the interval has passed and their files changed; True
        when new CRLs were put in force. Cheap when not due (one clock read): call it before
        consulting any cache of verifications. A broken reload keeps the CRLs in force (never
        falls back to none) and logs an error naming the file."""
        watch = self._watch
        if watch is None or not watch.due():
            return False
        with watch.lock:
            if not watch.due():
                return False
            watch.checked()
            try:
                signature = watch.scan()
            except CRLError as exc:
                log.error("CRLs not re-read (the loaded ones stay in force): %s", exc)
                return False
            if signature == watch.signature:
                warn_stale(self._revocations, _utcnow(), watch.warned)
                return False
            watch.signature = signature
            return self._reload(watch)

    def reload_crls(self) -> bool:
        """Re-read the watched CRLs now, changed or not (an operator's explicit reload)."""
        watch = self._watch
        if watch is None:
            return False
        with watch.lock:
            watch.checked()
            try:
                watch.signature = watch.scan()
            except CRLError as exc:
                log.error("CRLs not re-read (the loaded ones stay in force): %s", exc)
                return False
            return self._reload(watch)

    def _reload(self, watch: CRLWatch) -> bool:
        try:
            index = load_crl_directory(watch.directory, self.roots)
        except CRLError as exc:
            log.error("CRLs not reloaded (the previously loaded ones stay in force): %s", exc)
            return False
        self.set_revocations(index)
        log.info("CRLs reloaded from %s: %d issuing CAs, %d revoked serials",
                 watch.directory, len(index.crls), index.entry_count)
        warn_stale(index, _utcnow(), watch.warned)
        return True

    def _check_root_revoked(self, root: x509.Certificate, revocations: RevocationIndex) -> None:
        """A root certified by other roots is refused if one of them (up the line) revoked it."""
        if not revocations or not self._root_parents:
            return
        todo, seen = [root], set()
        while todo:
            cert = todo.pop()
            der = cert.public_bytes(serialization.Encoding.DER)
            if der in seen:
                continue
            seen.add(der)
            for parent in self._root_parents.get(der, ()):
                revocations.check(cert, parent, _label(cert))
                todo.append(parent)

    # ---- chains -----------------------------------------------------------------------------
    def is_root(self, cert: x509.Certificate) -> bool:
        return cert.public_bytes(serialization.Encoding.DER) in self._der

    def _root_issuer(self, cert: x509.Certificate) -> x509.Certificate | None:
        for root in self._by_subject.get(cert.issuer, ()):
            if _signed_by(cert, root):
                return root
        return None

    def verify_chain(self, chain: Sequence[x509.Certificate],
                     now: datetime | None = None) -> Identity:
        """Validate `chain` (leaf first, then any issuers in any order) to a trust root, and
        refuse it if any certificate on the path is revoked by its issuer's CRL."""
        if not chain:
            raise CertificateError("empty certificate chain")
        self.refresh()
        revocations = self._revocations   # one snapshot for the whole chain
        now = now or _utcnow()
        leaf = chain[0]
        identity = identity_of(leaf)
        check_validity(leaf, now)
        path = [leaf]
        pool = list(chain[1:])
        current, current_urn = leaf, identity.urn
        for _ in range(MAX_CHAIN_DEPTH):
            if self.is_root(current):
                self._check_root_revoked(current, revocations)
                return Identity(identity.urn, identity.uuid, identity.email, leaf, tuple(path))
            root = self._root_issuer(current)
            if root is not None:
                _check_issuer(root, current, current_urn, now)
                revocations.check(current, root, current_urn)
                self._check_root_revoked(root, revocations)
                path.append(root)
                return Identity(identity.urn, identity.uuid, identity.email, leaf, tuple(path))
            issuer = next((c for c in pool if c is not current and _signed_by(current, c)), None)
            if issuer is None and _signed_by(current, current):
                raise CertificateError(
                    f"self-signed certificate {current_urn} is not one of the "
                    f"{len(self.roots)} trust roots"
                    + (" (a root has the same name but a different key)"
                       if current.subject in self._by_subject else ""),
                    CREDENTIAL_SIGNER_UNTRUSTED)
            if issuer is None or issuer in path:
                raise CertificateError(
                    f"certificate {current_urn} does not chain to a trusted root "
                    f"(issuer {current.issuer.rfc4514_string()!r}: no trusted key signed it)",
                    CREDENTIAL_SIGNER_UNTRUSTED)
            _check_issuer(issuer, current, current_urn, now)
            revocations.check(current, issuer, current_urn)
            pool.remove(issuer)
            path.append(issuer)
            current, current_urn = issuer, identity_of(issuer).urn
        raise CertificateError(f"certificate chain of {identity.urn} is longer than "
                               f"{MAX_CHAIN_DEPTH}", CREDENTIAL_SIGNER_UNTRUSTED)
