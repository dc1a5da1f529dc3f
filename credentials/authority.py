"""A development authority: a self-signed GENI CA in a directory, able to mint users, slices,
delegations, speaks-for credentials and the AM's own TLS certificate.

It lets the AM run and be tested without an outside clearinghouse. Everything lives in one
directory with obvious names (see docs/dev-authority.md); keys are written 0600. The CA's URN
is `urn:publicid:IDN+<authority>+authority+sa`, so it may certify `<authority>` and every
sub-authority such as `<authority>:localhost` (the AM's default).
"""
from __future__ import annotations

import ipaddress
import os
import uuid as uuidlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from typing import cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from credentials import sign
from credentials.certs import TrustStore, identity_of, load_pem_chain
from credentials.crl import CRLError, RevokedEntry, build_crl, parse_crls, verify_crl
from credentials.document import parse_time
from credentials.errors import CredentialError, CredentialInvalid
from credentials.privileges import STAR_EXPANSION
from credentials.urn import URN, make_urn, parse_urn
from credentials.verify import CredentialVerifier, check_speaks_for

CA_DAYS = 3650
USER_DAYS = 365
SLICE_DAYS = 30
USER_CRED_DAYS = 30
SPEAKS_FOR_DAYS = 30
CRL_DAYS = 30            # nextUpdate of the CRLs `revoke` writes (openssl's default_crl_days)
CRL_FILE = "ca.crl"      # under trust-roots/, where the AM's default CRL directory is
REASONS = tuple(r.value for r in x509.ReasonFlags
                if r not in (x509.ReasonFlags.remove_from_crl,))


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def new_key() -> RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def issue_certificate(*, subject_urn: URN | str, public_key, issuer_cert: x509.Certificate | None,
                      issuer_key: RSAPrivateKey, ca: bool, days: int,
                      email: str | None = None, dns_names: Sequence[str] = (),
                      ip_addresses: Sequence[str] = (), server: bool = False,
                      not_before: datetime | None = None) -> x509.Certificate:
    """A GENI certificate: SAN = URN URI + urn:uuid URI (+ email, DNS, IP); CN = the HRN."""
    urn = subject_urn if isinstance(subject_urn, URN) else parse_urn(subject_urn)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, urn.hrn[:64] or urn.name)])
    start = (not_before or _now()) - timedelta(minutes=5)
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(str(urn)),
                                    x509.UniformResourceIdentifier(f"urn:uuid:{uuidlib.uuid4()}")]
    if email:
        sans.append(x509.RFC822Name(email))
    sans += [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    builder = (x509.CertificateBuilder()
               .subject_name(name)
               .issuer_name(issuer_cert.subject if issuer_cert else name)
               .public_key(public_key)
               .serial_number(x509.random_serial_number())
               .not_valid_before(start)
               .not_valid_after(start + timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectAlternativeName(sans), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),
                              critical=False))
    # the dev authority's CA key is RSA (it signs): an issuer key type
    issuer_public = (cast(CertificateIssuerPublicKeyTypes, issuer_cert.public_key())
                     if issuer_cert else public_key)
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public), critical=False)
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if server:
            usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _key_pem(key: RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(certs: Sequence[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@dataclass(frozen=True)
class Revocation:
    """What `DevAuthority.revoke` did."""

    crl: Path
    entry: RevokedEntry
    label: str              # the revoked certificate's URN ("" when revoked by serial)
    already: bool           # the serial was already listed (the CRL was re-signed, dates fresh)
    total: int              # entries in the CRL now
    number: int             # its CRL number


@dataclass(frozen=True)
class UserFiles:
    cert: Path
    key: Path
    credential: Path


class DevAuthority:
    """A CA backed by a directory (see module docstring)."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        ca_cert, ca_key = self.dir / "ca-cert.pem", self.dir / "ca-key.pem"
        if not ca_cert.is_file() or not ca_key.is_file():
            raise CredentialInvalid(f"{self.dir} is not a development authority "
                                    "(run `geni-am authority init DIR` first)")
        self.ca_cert = load_pem_chain(ca_cert.read_bytes())[0]
        self.ca_key = self._load_key(ca_key)
        self.urn = parse_urn(identity_of(self.ca_cert).urn)
        self.authority = self.urn.authority

    # ------------------------------------------------------------------ files
    @staticmethod
    def _load_key(path: Path) -> RSAPrivateKey:
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise CredentialInvalid(f"cannot load private key {path}: {exc}") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise CredentialInvalid(f"{path} is not an RSA key")
        return key

    def _write(self, name: str, data: bytes, secret: bool = False) -> Path:
        path = self.dir / name
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
        return path

    def _chain(self, principal: str) -> list[x509.Certificate]:
        path = self.dir / f"{principal}-cert.pem"
        if not path.is_file():
            raise CredentialInvalid(f"no certificate for {principal!r} in {self.dir} "
                                    f"(run `geni-am authority user {principal}` first)")
        return load_pem_chain(path.read_bytes())

    def verifier(self) -> CredentialVerifier:
        return CredentialVerifier(TrustStore([self.ca_cert]))

    # ---------------------------------------------------------------- commands
    @classmethod
    def init(cls, directory: str | Path, authority: str = "geni-am") -> "DevAuthority":
        """Create DIR with a self-signed CA (`ca-cert.pem`, `ca-key.pem`, `trust-roots/`)."""
        path = Path(directory)
        if (path / "ca-key.pem").exists():
            raise CredentialInvalid(f"{path} already holds an authority (ca-key.pem exists)")
        urn = make_urn(authority, "authority", "sa")
        for d in (path, path / "trust-roots"):   # private keys inside: the owner's alone
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(d, 0o700)
        key = new_key()
        cert = issue_certificate(subject_urn=urn, public_key=key.public_key(), issuer_cert=None,
                                 issuer_key=key, ca=True, days=CA_DAYS)
        fd = os.open(path / "ca-key.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(_key_pem(key))
        (path / "ca-cert.pem").write_bytes(_cert_pem([cert]))
        (path / "trust-roots" / "ca-cert.pem").write_bytes(_cert_pem([cert]))
        return cls(path)

    # ------------------------------------------------------------------ revocation
    @property
    def crl_path(self) -> Path:
        return self.dir / "trust-roots" / CRL_FILE

    def revoked(self) -> tuple[dict[int, RevokedEntry], int]:
        """The entries of this authority's current CRL and its CRL number (empty, 0 if none).
        The file must verify with this CA's key: a foreign or corrupt CRL is never extended."""
        path = self.crl_path
        if not path.exists():
            return {}, 0
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CRLError(f"cannot read {path}: {exc.strerror}") from None
        crls = parse_crls(data, str(path))
        if len(crls) != 1:
            raise CRLError(f"{path}: holds {len(crls)} CRLs; the authority keeps exactly one")
        current = verify_crl(crls[0], [self.ca_cert], str(path))
        return dict(current.entries), current.number or 0

    def revoke(self, cert_path: str | Path | None = None, serial: int | None = None, *,
               reason: str | None = None, days: int = CRL_DAYS,
               der: bool = False) -> Revocation:
        """Add a certificate (the leaf of a PEM file this CA issued, or a bare serial) to this
        authority's CRL, and write the CRL, signed, to `trust-roots/ca.crl` (PEM, or DER)."""
        if (cert_path is None) == (serial is None):
            raise CRLError("revoke needs a certificate file or a serial (exactly one)")
        if reason is not None and reason not in REASONS:
            raise CRLError(f"unknown revocation reason {reason!r} (one of {', '.join(REASONS)})")
        if days < 1:
            raise CRLError(f"CRL lifetime must be at least 1 day, not {days}")
        label = ""
        if cert_path is not None:
            path = Path(cert_path)
            try:
                leaf = load_pem_chain(path.read_bytes())[0]
            except OSError as exc:
                raise CRLError(f"cannot read {path}: {exc.strerror}") from None
            except CredentialError as exc:
                raise CRLError(f"{path}: {exc}") from None
            if leaf.issuer != self.ca_cert.subject:
                raise CRLError(f"{path} was not issued by this authority ({self.urn}) but by "
                               f"{leaf.issuer.rfc4514_string()!r}")
            try:
                leaf.verify_directly_issued_by(self.ca_cert)
            except (InvalidSignature, ValueError, TypeError):
                raise CRLError(f"{path} was not signed by this authority's key ({self.urn})") \
                    from None
            serial = leaf.serial_number
            try:
                label = identity_of(leaf).urn
            except CredentialInvalid:
                label = leaf.subject.rfc4514_string()
        assert serial is not None
        if serial <= 0:
            raise CRLError(f"serial {serial} must be positive")
        if serial == self.ca_cert.serial_number:
            raise CRLError("the authority cannot revoke its own certificate with its own CRL "
                           "(remove it from the trust roots instead)")
        entries, number = self.revoked()
        already = serial in entries
        now = _now()
        if not already:
            entries[serial] = RevokedEntry(serial, now, reason)
        crl = build_crl(self.ca_cert, self.ca_key, sorted(entries.values(),
                                                           key=lambda e: e.serial),
                        this_update=now, next_update=now + timedelta(days=days),
                        number=number + 1)
        encoding = serialization.Encoding.DER if der else serialization.Encoding.PEM
        self.crl_path.parent.mkdir(exist_ok=True)
        written = self._write(str(self.crl_path.relative_to(self.dir)), crl.public_bytes(encoding))
        return Revocation(crl=written, entry=entries[serial], label=label, already=already,
                          total=len(entries), number=number + 1)

    @property
    def files(self) -> dict[str, Path]:
        return {"ca_cert": self.dir / "ca-cert.pem", "ca_key": self.dir / "ca-key.pem",
                "trust_root": self.dir / "trust-roots" / "ca-cert.pem"}

    def _principal(self, name: str, type_: str, email: str | None) -> tuple[Path, Path]:
        urn = make_urn(self.authority, type_, name)
        key = new_key()
        cert = issue_certificate(subject_urn=urn, public_key=key.public_key(),
                                 issuer_cert=self.ca_cert, issuer_key=self.ca_key, ca=False,
                                 days=USER_DAYS, email=email or f"{name}@{self.authority}.invalid")
        key_path = self._write(f"{name}-key.pem", _key_pem(key), secret=True)
        cert_path = self._write(f"{name}-cert.pem", _cert_pem([cert, self.ca_cert]))
        return cert_path, key_path

    def user(self, name: str, email: str | None = None, days: int = USER_CRED_DAYS) -> UserFiles:
        """A user certificate + key, and a user credential (refresh, resolve, info)."""
        if (self.dir / f"{name}-cert.pem").exists():
            raise CredentialInvalid(f"{name!r} already exists in {self.dir}")
        cert_path, key_path = self._principal(name, "user", email)
        chain = load_pem_chain(cert_path.read_bytes())
        xml = sign.create_credential(
            owner=chain, target=chain, expires=_now() + timedelta(days=days),
            privileges={p: False for p in STAR_EXPANSION["user"]},
            signer_key=self.ca_key, signer_chain=[self.ca_cert])
        cred_path = self._write(f"{name}-cred.xml", xml)
        return UserFiles(cert_path, key_path, cred_path)

    def tool(self, name: str) -> tuple[Path, Path]:
        """A `+tool+` certificate and key (a portal or other tool acting for users)."""
        if (self.dir / f"{name}-cert.pem").exists():
            raise CredentialInvalid(f"{name!r} already exists in {self.dir}")
        return self._principal(name, "tool", None)

    def slice(self, name: str, owner: str, days: int = SLICE_DAYS,
              algorithm: str = "rsa-sha256") -> Path:
        """A slice certificate and a slice credential for `owner` (all rights, delegatable)."""
        if days < 1:
            raise CredentialInvalid(f"slice lifetime must be at least 1 day, not {days}")
        owner_chain = self._chain(owner)
        urn = make_urn(self.authority, "slice", name)
        slice_key = new_key()   # a slice certificate needs a key; nobody uses it
        slice_cert = issue_certificate(subject_urn=urn, public_key=slice_key.public_key(),
                                       issuer_cert=self.ca_cert, issuer_key=self.ca_key,
                                       ca=False, days=days + 1,
                                       email=identity_of(owner_chain[0]).email)
        self._write(f"{name}-slice-cert.pem", _cert_pem([slice_cert, self.ca_cert]))
        xml = sign.create_credential(
            owner=owner_chain[:1], target=[slice_cert, self.ca_cert],
            expires=_now() + timedelta(days=days),
            privileges={p: True for p in STAR_EXPANSION["slice"]},
            signer_key=self.ca_key, signer_chain=[self.ca_cert], algorithm=algorithm)
        return self._write(f"{name}-slice-cred-{owner}.xml", xml)

    def delegate(self, cred_path: str | Path, to_user: str,
                 privileges: Sequence[str] | None = None, can_delegate: bool = False,
                 expires: datetime | None = None, algorithm: str = "rsa-sha256") -> Path:
        """Delegate a credential held by one of this directory's users to another.

        The signer is the credential's owner (its key must be in DIR); the result is verified
        before it is written, so an illegal delegation is refused, not written.
        """
        src = Path(cred_path)
        try:
            parent_xml = src.read_bytes()
        except OSError as exc:
            raise CredentialInvalid(f"cannot read {src}: {exc.strerror}") from None
        verifier = self.verifier()
        parent = verifier.verify(parent_xml)
        owner_name = parse_urn(parent.owner_urn).name
        key_path = self.dir / f"{owner_name}-key.pem"
        if not key_path.is_file():
            raise CredentialInvalid(f"owner {parent.owner_urn} has no key in {self.dir}; only "
                                    "the owner can delegate a credential")
        wanted = [p.lower() for p in privileges] if privileges else list(parent.privileges)
        new_expires = expires or parent.expires
        xml = sign.delegate_credential(
            parent_xml, new_owner=self._chain(to_user)[:1], signer_key=self._load_key(key_path),
            signer_chain=self._chain(owner_name),
            privileges={p: can_delegate for p in wanted}, expires=new_expires,
            algorithm=algorithm)
        verifier.verify(xml)
        return self._write(f"{src.stem}-delegated-to-{to_user}.xml", xml)

    def speaks_for(self, tool: str, user: str, days: int = SPEAKS_FOR_DAYS) -> Path:
        """`user` lets `tool` speak for them (ABAC, signed with the user's key)."""
        user_chain = self._chain(user)   # before minting the tool: a refusal writes nothing
        user_key = self._load_key(self.dir / f"{user}-key.pem")
        if not (self.dir / f"{tool}-cert.pem").exists():
            self.tool(tool)
        tool_chain = self._chain(tool)
        xml = sign.create_speaks_for(
            user_key=user_key, user_chain=user_chain,
            tool_cert=tool_chain[0], expires=_now() + timedelta(days=days))
        verifier = self.verifier()
        check_speaks_for(verifier.verify(xml), verifier.trust.verify_chain(tool_chain),
                         identity_of(user_chain[0]).urn)
        return self._write(f"speaks-for-{tool}-for-{user}.xml", xml)

    def server_cert(self, am_authority: str | None = None,
                    hostnames: Sequence[str] = ("localhost", "127.0.0.1"),
                    days: int = USER_DAYS) -> tuple[Path, Path]:
        """The AM's TLS certificate: URN `...+<am_authority>+authority+am`, DNS/IP SANs."""
        am_authority = am_authority or f"{self.authority}:localhost"
        urn = make_urn(am_authority, "authority", "am")
        if not urn.authority_path[:len(self.urn.authority_path)] == self.urn.authority_path:
            raise CredentialInvalid(f"{urn} is outside this authority's namespace "
                                    f"{self.authority}")
        dns, ips = [], []
        for host in hostnames:
            try:
                ipaddress.ip_address(host)
                ips.append(host)
            except ValueError:
                dns.append(host)
        key = new_key()
        cert = issue_certificate(subject_urn=urn, public_key=key.public_key(),
                                 issuer_cert=self.ca_cert, issuer_key=self.ca_key, ca=False,
                                 days=days, dns_names=dns, ip_addresses=ips, server=True)
        key_path = self._write("am-key.pem", _key_pem(key), secret=True)
        cert_path = self._write("am-cert.pem", _cert_pem([cert, self.ca_cert]))
        return cert_path, key_path


def parse_expires(text: str) -> datetime:
    """CLI helper: an xs:dateTime, or `+N` days/hours (`+7d`, `+12h`)."""
    text = text.strip()
    if text.startswith("+") and text[-1:] in ("d", "h") and text[1:-1].isdigit():
        amount = int(text[1:-1])
        return _now() + (timedelta(days=amount) if text[-1] == "d" else timedelta(hours=amount))
    return parse_time(text, "expires")


__all__ = ["DevAuthority", "Revocation", "UserFiles", "issue_certificate", "new_key",
           "parse_expires"]
