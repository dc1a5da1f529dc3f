"""Certificate revocation lists: loading, signature checks, and the per-issuer serial index.

A CRL is honoured only when its signature verifies with the key of a CA in the trust store
(a trust root, or an intermediate authority placed among the trust roots); anything else is a
load-time `CRLError` naming the file, never silently ignored. Files are `*.crl` (PEM with one
or more `X509 CRL` blocks, or DER) and PEM trust-root files (`*.pem`, `*.crt`, `*.cer`) that
contain `X509 CRL` blocks.

The index maps each issuing CA to the newest CRL it published (by thisUpdate, then CRL
number) as a dict of serial -> entry, so a lookup is O(1) whatever the CRL size. A CRL past its
nextUpdate is still enforced (its entries stay revoked; accepting everyone because the list is
old would be worse) and logged as a warning: the operator must fetch a fresh one.

Delta CRLs, indirect CRLs and CRLs restricted to some reasons are refused at load time: their
entries would not mean "this issuer revoked this serial" and silently misreading them could let
a revoked certificate in.
"""
from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from typing import cast

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificateIssuerPublicKeyTypes,
)
from cryptography.x509.oid import CRLEntryExtensionOID, ExtensionOID

from credentials.errors import CREDENTIAL_SIGNER_UNTRUSTED, CertificateError, CredentialError

log = logging.getLogger("credentials.crl")

CRL_SUFFIX = ".crl"
PEM_SUFFIXES = (".pem", ".crt", ".cer")
PEM_CRL_MARKER = b"-----BEGIN X509 CRL-----"
_PEM_CRL_BLOCK = re.compile(rb"-----BEGIN X509 CRL-----\r?\n.*?-----END X509 CRL-----",
                            re.DOTALL)
#: CRL extensions this module understands (anything else marked critical is refused).
_KNOWN_CRL_EXTENSIONS = frozenset({
    ExtensionOID.CRL_NUMBER, ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    ExtensionOID.ISSUING_DISTRIBUTION_POINT, ExtensionOID.ISSUER_ALTERNATIVE_NAME,
    ExtensionOID.AUTHORITY_INFORMATION_ACCESS, ExtensionOID.FRESHEST_CRL})


class CRLError(CredentialError):
    """A CRL file that cannot be used (unparseable, unknown issuer, bad signature...)."""


class CertificateRevoked(CertificateError):
    """A certificate in the chain is listed by its issuer's CRL.

    Same kind and code as an untrusted chain (23, CREDENTIAL_SIGNER_UNTRUSTED): the issuer has
    withdrawn its signature, so nothing trusted vouches for the certificate any more.
    """

    geni_code = CREDENTIAL_SIGNER_UNTRUSTED


def _fmt(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_serial(serial: int) -> str:
    """How serials appear in messages: hex, as `openssl x509 -serial` and CRL dumps show them."""
    return f"0x{serial:X}"


def parse_serial(text: str) -> int:
    """A serial as an operator types it: decimal, `0x`-hex, or openssl's `1A:2B:...` hex."""
    value = text.strip()
    try:
        if ":" in value:
            number = int(value.replace(":", ""), 16)
        else:
            number = int(value, 0)
    except ValueError:
        raise CRLError(f"serial {text!r} is not a number (decimal, 0x-hex or 1A:2B hex)") \
            from None
    if number <= 0:
        raise CRLError(f"serial {text!r} must be positive")
    return number


@dataclass(frozen=True)
class RevokedEntry:
    serial: int
    revoked_at: datetime
    reason: str | None   # RFC 5280 name (`keyCompromise`, ...), None when the CRL gives none


@dataclass(frozen=True)
class IssuerCRL:
    """The CRL in force for one issuing CA."""

    issuer: x509.Certificate         # the trust-store CA whose key verified the CRL
    issuer_label: str                # its URN (or subject DN)
    source: Path
    this_update: datetime
    next_update: datetime | None
    number: int | None
    entries: Mapping[int, RevokedEntry]
    der: bytes

    def stale(self, now: datetime) -> bool:
        return self.next_update is not None and now > self.next_update


def _issuer_key(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


class RevocationIndex:
    """An immutable snapshot: issuing CA -> its CRL. Swapped whole on reload."""

    def __init__(self, crls: Iterable[IssuerCRL] = ()):
        chosen: dict[tuple[x509.Name, bytes], IssuerCRL] = {}
        for crl in crls:
            key = (crl.issuer.subject, _issuer_key(crl.issuer))
            current = chosen.get(key)
            if current is None or _newer(crl, current):
                chosen[key] = crl
        self._by_name: dict[x509.Name, list[tuple[bytes, IssuerCRL]]] = {}
        for (name, spki), crl in chosen.items():
            self._by_name.setdefault(name, []).append((spki, crl))
        self.crls: tuple[IssuerCRL, ...] = tuple(
            sorted(chosen.values(), key=lambda c: (str(c.source), c.issuer_label)))
        digest = hashlib.sha256()
        for der in sorted(c.der for c in self.crls):
            digest.update(hashlib.sha256(der).digest())
        self.digest: str = digest.hexdigest() if self.crls else ""

    def __bool__(self) -> bool:
        return bool(self.crls)

    @property
    def entry_count(self) -> int:
        return sum(len(c.entries) for c in self.crls)

    def crl_for(self, issuer: x509.Certificate) -> IssuerCRL | None:
        candidates = self._by_name.get(issuer.subject)
        if not candidates:
            return None
        if len(candidates) == 1 and candidates[0][1].issuer is issuer:
            return candidates[0][1]
        spki = _issuer_key(issuer)
        for key, crl in candidates:
            if key == spki:
                return crl
        return None

    def check(self, cert: x509.Certificate, issuer: x509.Certificate, label: str) -> None:
        """Raise `CertificateRevoked` if `issuer`'s CRL lists `cert` (`label`: its URN)."""
        if not self._by_name:
            return
        crl = self.crl_for(issuer)
        if crl is None:
            return
        entry = crl.entries.get(cert.serial_number)
        if entry is None:
            return
        reason = f", reason {entry.reason}" if entry.reason else ""
        raise CertificateRevoked(
            f"certificate {label} (subject {cert.subject.rfc4514_string()!r}, serial "
            f"{format_serial(entry.serial)}) was revoked by {crl.issuer_label} on "
            f"{_fmt(entry.revoked_at)}{reason}")


def _newer(a: IssuerCRL, b: IssuerCRL) -> bool:
    return (a.this_update, a.number or -1) > (b.this_update, b.number or -1)


# ---- parsing ---------------------------------------------------------------------------------

def parse_crls(data: bytes, source: str = "CRL") -> list[x509.CertificateRevocationList]:
    """Every CRL in `data`: PEM with one or more `X509 CRL` blocks, or one DER CRL."""
    if not isinstance(data, bytes):
        raise CRLError(f"{source}: a CRL must be bytes, not {type(data).__name__}")
    try:
        if PEM_CRL_MARKER in data:
            blocks = _PEM_CRL_BLOCK.findall(data)
            if not blocks:
                raise ValueError("unterminated X509 CRL block")
            return [x509.load_pem_x509_crl(block) for block in blocks]
        if not data.strip():
            raise ValueError("the file is empty")
        if b"-----BEGIN" in data:
            raise ValueError("PEM file without an X509 CRL block")
        return [x509.load_der_x509_crl(data)]
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CRLError(f"{source}: unparseable CRL: {exc}") from None


def _reason(entry: x509.RevokedCertificate) -> str | None:
    try:
        ext = entry.extensions.get_extension_for_oid(CRLEntryExtensionOID.CRL_REASON)
    except x509.ExtensionNotFound:
        return None
    except ValueError:
        return None
    reason = ext.value
    return reason.reason.value if isinstance(reason, x509.CRLReason) else None


def _check_extensions(crl: x509.CertificateRevocationList, source: str) -> int | None:
    """Refuse CRL forms whose entries do not simply mean "revoked by this issuer"."""
    number: int | None = None
    try:
        extensions = list(crl.extensions)
    except ValueError as exc:
        raise CRLError(f"{source}: CRL extensions unparseable: {exc}") from None
    for ext in extensions:
        value = ext.value
        if isinstance(value, x509.DeltaCRLIndicator):
            raise CRLError(f"{source}: delta CRLs are not supported (publish a full CRL)")
        if isinstance(value, x509.IssuingDistributionPoint):
            if value.indirect_crl or value.only_some_reasons:
                raise CRLError(f"{source}: indirect or reason-partitioned CRLs are not "
                               "supported (publish a full CRL)")
            if value.only_contains_ca_certs or value.only_contains_user_certs \
                    or value.only_contains_attribute_certs:
                raise CRLError(f"{source}: partitioned CRLs (onlyContains...) are not "
                               "supported (publish a full CRL)")
        elif isinstance(value, x509.CRLNumber):
            number = value.crl_number
        elif ext.critical and ext.oid not in _KNOWN_CRL_EXTENSIONS:
            raise CRLError(f"{source}: unsupported critical CRL extension {ext.oid.dotted_string}")
    return number


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (x509.ExtensionNotFound, ValueError):
        return False


def _may_sign_crls(cert: x509.Certificate) -> bool:
    """RFC 5280: a CA with a KeyUsage extension needs cRLSign (GENI CAs often have none)."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.KeyUsage).value.crl_sign)
    except x509.ExtensionNotFound:
        return True
    except ValueError:
        return False


def _label(cert: x509.Certificate) -> str:
    from credentials.certs import _urn_or_subject
    return _urn_or_subject(cert)


def verify_crl(crl: x509.CertificateRevocationList, cas: Sequence[x509.Certificate],
               source: str) -> IssuerCRL:
    """Check `crl` against the trust-store CAs and index its entries."""
    named = [c for c in cas if c.subject == crl.issuer]
    if not named:
        raise CRLError(
            f"{source}: CRL issuer {crl.issuer.rfc4514_string()!r} is not one of the trust "
            "roots, so its signature cannot be checked (add the issuing CA's certificate to "
            "the trust roots)")
    issuer = None
    for candidate in named:
        try:
            # a key type that cannot sign raises TypeError (below)
            if crl.is_signature_valid(cast(CertificateIssuerPublicKeyTypes,
                                           candidate.public_key())):
                issuer = candidate
                break
        except (TypeError, ValueError, UnsupportedAlgorithm):
            continue
    if issuer is None:
        raise CRLError(
            f"{source}: CRL signature does not verify with the key of trust root "
            f"{_label(named[0])} (signed by another key; refusing to use it)")
    label = _label(issuer)
    if not _is_ca(issuer):
        raise CRLError(f"{source}: CRL issuer {label} is not a CA (CA:FALSE)")
    if not _may_sign_crls(issuer):
        raise CRLError(f"{source}: CRL issuer {label} lacks the cRLSign key usage")
    number = _check_extensions(crl, source)
    entries: dict[int, RevokedEntry] = {}
    try:
        for revoked in crl:
            try:
                if revoked.extensions.get_extension_for_oid(
                        CRLEntryExtensionOID.CERTIFICATE_ISSUER):
                    raise CRLError(f"{source}: indirect CRL entries (certificateIssuer) are "
                                   "not supported")
            except x509.ExtensionNotFound:
                pass
            reason = _reason(revoked)
            if reason == x509.ReasonFlags.remove_from_crl.value:
                continue   # only meaningful in delta CRLs: "no longer on hold"
            entries[revoked.serial_number] = RevokedEntry(
                revoked.serial_number, revoked.revocation_date_utc, reason)
    except ValueError as exc:
        raise CRLError(f"{source}: CRL entries unparseable: {exc}") from None
    return IssuerCRL(issuer=issuer, issuer_label=label, source=Path(source),
                     this_update=crl.last_update_utc, next_update=crl.next_update_utc,
                     number=number, entries=entries,
                     der=crl.public_bytes(serialization.Encoding.DER))


# ---- files -----------------------------------------------------------------------------------

def crl_candidates(directory: Path) -> list[Path]:
    """Files that may hold CRLs: `*.crl`, and PEM files (checked for CRL blocks on load).
    Dotfiles are skipped (editor and partial-copy leftovers)."""
    return sorted(p for p in directory.iterdir()
                  if not p.name.startswith(".") and p.is_file()
                  and p.suffix.lower() in (CRL_SUFFIX, *PEM_SUFFIXES))


def load_crl_directory(directory: str | Path,
                       cas: Sequence[x509.Certificate]) -> RevocationIndex:
    """Load every CRL under `directory`, each verified against `cas` (or raise `CRLError`)."""
    path = Path(directory)
    if not path.is_dir():
        raise CRLError(f"CRL directory {path} does not exist")
    try:
        files = crl_candidates(path)
    except OSError as exc:
        raise CRLError(f"cannot list CRL directory {path}: {exc.strerror}") from None
    return load_crl_files(files, cas)


def load_crl_files(files: Iterable[str | Path],
                   cas: Sequence[x509.Certificate]) -> RevocationIndex:
    crls: list[IssuerCRL] = []
    for file in files:
        path = Path(file)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CRLError(f"cannot read CRL file {path}: {exc.strerror}") from None
        if path.suffix.lower() != CRL_SUFFIX and PEM_CRL_MARKER not in data:
            continue   # a PEM trust root without CRL blocks
        for crl in parse_crls(data, str(path)):
            crls.append(verify_crl(crl, cas, str(path)))
    return RevocationIndex(crls)


def warn_stale(index: RevocationIndex, now: datetime,
               already: set[tuple[str, bytes]] | None = None) -> None:
    """Log a warning for each CRL past its nextUpdate (once per CRL if `already` is kept)."""
    for crl in index.crls:
        if not crl.stale(now):
            continue
        key = (str(crl.source), hashlib.sha256(crl.der).digest())
        if already is not None:
            if key in already:
                continue
            already.add(key)
        assert crl.next_update is not None
        log.warning("CRL %s of %s is past its nextUpdate (%s): still enforcing its %d "
                    "entries; fetch a fresh CRL from the authority", crl.source,
                    crl.issuer_label, _fmt(crl.next_update), len(crl.entries))


class CRLWatch:
    """When to re-read a CRL directory: at most every `refresh_s` seconds (0 = never), and
    only if its files changed (name, inode, mtime, size: an atomic replace is always seen)."""

    def __init__(self, directory: str | Path, refresh_s: float,
                 clock: Callable[[], float] = time.monotonic):
        if refresh_s < 0 or refresh_s != refresh_s:
            raise CRLError(f"CRL refresh interval must be >= 0 seconds, not {refresh_s!r}")
        self.directory = Path(directory)
        self.refresh_s = float(refresh_s)
        self.clock = clock
        self.lock = threading.Lock()
        self.warned: set[tuple[str, bytes]] = set()
        self.signature = self.scan()
        self.next_check = clock() + self.refresh_s

    def due(self) -> bool:
        return self.refresh_s > 0 and self.clock() >= self.next_check

    def checked(self) -> None:
        self.next_check = self.clock() + self.refresh_s

    def scan(self) -> tuple[tuple[str, int, int, int], ...]:
        if not self.directory.is_dir():
            raise CRLError(f"CRL directory {self.directory} does not exist")
        try:
            files = crl_candidates(self.directory)
            stats = [(p.name, p.stat()) for p in files]
        except OSError as exc:
            raise CRLError(f"cannot list CRL directory {self.directory}: "
                           f"{exc.strerror or exc}") from None
        return tuple((name, st.st_ino, st.st_mtime_ns, st.st_size) for name, st in stats)


# ---- making CRLs (the development authority, tests) -----------------------------------------

def build_crl(issuer_cert: x509.Certificate, issuer_key: CertificateIssuerPrivateKeyTypes,
              entries: Iterable[RevokedEntry], *, this_update: datetime,
              next_update: datetime, number: int) -> x509.CertificateRevocationList:
    """A full CRL signed by `issuer_key` (SHA-256), with AKI and CRL number."""
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(issuer_cert.subject)
               .last_update(this_update)
               .next_update(next_update)
               .add_extension(x509.CRLNumber(number), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   issuer_cert.public_key()), critical=False))   # type: ignore[arg-type]
    for entry in entries:
        revoked = (x509.RevokedCertificateBuilder()
                   .serial_number(entry.serial)
                   .revocation_date(entry.revoked_at))
        if entry.reason:
            revoked = revoked.add_extension(
                x509.CRLReason(x509.ReasonFlags(entry.reason)), critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    return builder.sign(issuer_key, hashes.SHA256())


__all__ = ["CRLError", "CertificateRevoked", "IssuerCRL", "RevocationIndex", "RevokedEntry",
           "CRLWatch", "build_crl", "crl_candidates", "format_serial", "load_crl_directory",
           "load_crl_files", "parse_crls", "parse_serial", "verify_crl", "warn_stale"]
