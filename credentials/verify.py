"""Verifying credentials and authorizing AM API calls with them.

`CredentialVerifier.verify` answers "is this credential genuine?": hardened parse, structure
and wrapping checks (`document`), every level's signer chain to a trust root and signature
(`signature`), every embedded certificate chain, expiry at every level, and the delegation
rules between levels. `authorize` answers "may this caller do these operations on this
target?": it adds caller identity (TLS chain, or the user a tool speaks for), owner == caller,
target == the slice, and the privilege -> operation table.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from credentials import privileges as privs
from credentials.cache import VerificationCache
from credentials.certs import (Identity, TrustStore, _signed_by, identity_of, keyid,
                               load_pem_chain, spki_der)
from credentials.document import Document, Level, parse_document
from credentials.errors import (CREDENTIAL_EXPIRED, CREDENTIAL_INVALID,
                                CREDENTIAL_SIGNER_UNTRUSTED, FORBIDDEN, CertificateError,
                                CredentialError, CredentialExpired, CredentialInvalid,
                                CredentialMismatch, InsufficientPrivileges, SignerUntrusted,
                                SpeaksForError, URNError)
from credentials.model import VerifiedCredential
from credentials.signature import verify_signature
from credentials.urn import is_authority_for, parse_urn, urns_equal
from credentials.xmlsafe import DEFAULT_MAX_BYTES, to_bytes

SFA = "geni_sfa"
ABAC = "geni_abac"


@dataclass(frozen=True)
class Authorization:
    """The outcome of a successful `authorize`."""

    caller: Identity                      # effective caller (the user when a tool speaks for)
    tool: Identity | None                 # the TLS caller when speaking for someone, else None
    expires: datetime                     # earliest expiry of the accepted credentials (UTC)
    accepted: tuple[VerifiedCredential, ...]
    privileges: frozenset[str]


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(timezone.utc)
    if now.tzinfo is None:
        return now.replace(tzinfo=timezone.utc)
    return now.astimezone(timezone.utc)


def _fmt(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _same_principal(a: x509.Certificate, b: x509.Certificate) -> bool:
    """Same URN and same key: the same principal, even if the certificate was reissued."""
    return urns_equal(identity_of(a).urn, identity_of(b).urn) and spki_der(a) == spki_der(b)


class _CallerCache:
    """Verified caller chains (the TLS client certificate arrives with every call), keyed by
    (trust fingerprint, the PEM's SHA-256). An entry is served only inside the validity window
    of every certificate in the verified chain (leaf to root), so an expired or not-yet-valid
    caller is re-checked (and refused) like a new one. The fingerprint covers the CRLs in force,
    so after a CRL reload every caller is checked again and a revoked one is refused."""

    def __init__(self, max_entries: int = 1024):
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, bytes], tuple[Identity, datetime, datetime]] = \
            OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, bytes], now: datetime) -> Identity | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            identity, valid_from, valid_until = hit
            if not valid_from <= now <= valid_until:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return identity

    def put(self, key: tuple[str, bytes], identity: Identity) -> None:
        certs = list(identity.chain) or [identity.certificate]   # leaf ... root that signed it
        valid_from = max(c.not_valid_before_utc for c in certs)
        valid_until = min(c.not_valid_after_utc for c in certs)
        with self._lock:
            self._entries[key] = (identity, valid_from, valid_until)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


class CredentialVerifier:
    def __init__(self, trust: TrustStore, cache: VerificationCache | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES):
        self.trust = trust
        self.cache = cache
        self.max_bytes = max_bytes
        self._callers = _CallerCache()

    # ------------------------------------------------------------------ verify
    def verify(self, xml: str | bytes, now: datetime | None = None) -> VerifiedCredential:
        """Verify signatures, chains, delegation and expiry (not caller or target)."""
        now = _utc(now)
        data = to_bytes(xml)
        self.trust.refresh()   # before the cache: its key carries the CRLs in force
        key = None
        if self.cache is not None:
            key = VerificationCache.key(data, self.trust.fingerprint)
            hit = self.cache.get(key, now)
            if hit is not None:
                return hit
        doc = parse_document(data, self.max_bytes)
        try:
            result = _DocumentCheck(self.trust, doc, now).run()
        except CredentialError as exc:
            exc.claims = _claims(doc.top)   # type: ignore[attr-defined]
            raise
        if self.cache is not None and key is not None:
            self.cache.put(key, result)
        return result

    def verify_speaks_for(self, xml: str | bytes, tool: Identity, user_urn: str,
                          now: datetime | None = None) -> Identity:
        """Check an ABAC `user.speaks_for_user <- tool` credential; return the user."""
        try:
            vc = self.verify(xml, now)
        except CredentialError as exc:
            raise SpeaksForError(f"speaks-for credential invalid: {exc}",
                                 CREDENTIAL_INVALID) from None
        return check_speaks_for(vc, tool, user_urn)

    # --------------------------------------------------------------- authorize
    def caller_identity(self, caller_chain_pem: str | bytes,
                        now: datetime | None = None) -> Identity:
        now = _utc(now)
        self.trust.refresh()   # before the cache: its key carries the CRLs in force
        key = None
        if isinstance(caller_chain_pem, (str, bytes)):   # anything else: load_pem_chain says why
            raw = caller_chain_pem   # a cache key only: surrogates must not raise here
            if isinstance(raw, str):
                raw = raw.encode("utf-8", "surrogatepass")
            key = (self.trust.fingerprint, hashlib.sha256(raw).digest())
            cached = self._callers.get(key, now)
            if cached is not None:
                return cached
        try:
            identity = self.trust.verify_chain(load_pem_chain(caller_chain_pem), now)
            if key is not None:
                self._callers.put(key, identity)
            return identity
        except CertificateError as exc:
            raise type(exc)(f"caller certificate refused: {exc}", exc.geni_code) from None

    def authorize(self, caller_chain_pem: str | bytes,
                  credentials: Sequence[Mapping | str | bytes], *, target_urn: str | None,
                  operations: Sequence[str], speaking_for: str | None = None,
                  now: datetime | None = None) -> Authorization:
        now = _utc(now)
        caller = self.caller_identity(caller_chain_pem, now)
        sfa, abac = _split(credentials)
        tool: Identity | None = None
        if speaking_for is not None:
            tool, caller = caller, self._speaks_for(caller, abac, speaking_for, now)
        if target_urn is not None:
            parse_urn(target_urn)
        if not sfa:
            raise InsufficientPrivileges(
                f"no geni_sfa credential supplied; {caller.urn} needs one naming it as owner"
                + (f" for target {target_urn}" if target_urn else ""))
        accepted: list[VerifiedCredential] = []
        best: tuple[tuple[int, int], CredentialError] | None = None
        for index, xml in enumerate(sfa):
            label = f"credential {index + 1} of {len(sfa)}"
            try:
                vc = self.verify(xml, now)
                self._check_claims(vc, caller, target_urn, operations)
                accepted.append(vc)
            except CredentialError as exc:
                claims = getattr(exc, "claims", None)
                if isinstance(exc, CredentialMismatch):
                    claims = None
                score = _relevance(claims, caller.urn, target_urn, exc)
                exc.message = f"{label}: {exc.message}"
                exc.args = (exc.message,)
                if best is None or score >= best[0]:
                    best = (score, exc)
        if not accepted:
            assert best is not None
            raise best[1]
        return Authorization(
            caller=caller, tool=tool, expires=min(v.expires for v in accepted),
            accepted=tuple(accepted),
            privileges=frozenset(p for v in accepted for p in v.privileges))

    @staticmethod
    def _check_claims(vc: VerifiedCredential, caller: Identity, target_urn: str | None,
                      operations: Sequence[str]) -> None:
        if vc.type != "privilege":
            raise CredentialInvalid(f"a {vc.type} credential grants no privileges")
        if not urns_equal(vc.owner_urn, caller.urn):
            raise CredentialMismatch(
                f"credential owner {vc.owner_urn} is not the caller {caller.urn}")
        if target_urn is not None and not urns_equal(vc.target_urn, target_urn):
            raise CredentialMismatch(
                f"credential target {vc.target_urn} is not {target_urn}")
        missing = [op for op in operations if not privs.allowed(vc.privileges, op)]
        if missing:
            held = ", ".join(sorted(vc.privileges)) or "none"
            raise InsufficientPrivileges(
                f"credential privileges ({held}) do not allow {', '.join(missing)}")

    def _speaks_for(self, tool: Identity, abac: list[bytes], user_urn: str,
                    now: datetime) -> Identity:
        try:
            parse_urn(user_urn)
        except URNError as exc:
            raise SpeaksForError(f"geni_speaking_for: {exc}", FORBIDDEN) from None
        if not abac:
            raise SpeaksForError(
                f"geni_speaking_for={user_urn} but no geni_abac speaks-for credential was "
                f"supplied; refusing to act for that user as {tool.urn}")
        last: SpeaksForError | None = None
        for xml in abac:
            try:
                return self.verify_speaks_for(xml, tool, user_urn, now)
            except SpeaksForError as exc:
                last = exc
        assert last is not None
        raise SpeaksForError(f"geni_speaking_for={user_urn} refused: {last.message}",
                             last.geni_code)


def check_speaks_for(vc: VerifiedCredential, tool: Identity, user_urn: str) -> Identity:
    """Does verified ABAC credential `vc` say `user_urn` lets `tool` speak for them?"""
    stmt = vc.abac
    if vc.type != "abac" or stmt is None:
        raise SpeaksForError("not an ABAC credential (type must be abac)", CREDENTIAL_INVALID)
    user = vc.signer
    if not urns_equal(user.urn, user_urn):
        raise SpeaksForError(f"speaks-for credential is signed by {user.urn}, "
                             f"not by {user_urn}", FORBIDDEN)
    user_kid = keyid(user.certificate)
    if len(stmt.tails) != 1:
        raise SpeaksForError(f"speaks-for credential has {len(stmt.tails)} tails (need one)")
    tail, tail_role, linking = stmt.tails[0]
    if tail_role or linking:
        raise SpeaksForError("speaks-for tail must be a bare principal (no role)")
    if stmt.head.keyid != user_kid or stmt.head_role != f"speaks_for_{user_kid}":
        raise SpeaksForError(f"credential does not assert {user_urn}.speaks_for_{user_kid}")
    tool_kid = keyid(tool.certificate)
    if tail.keyid != tool_kid:
        raise SpeaksForError(
            f"speaks-for credential names tool key {tail.keyid}"
            f"{' (' + tail.mnemonic + ')' if tail.mnemonic else ''}, not the TLS caller "
            f"{tool.urn} (key {tool_kid})")
    return user


def _relevance(claims, caller_urn: str, target_urn: str | None,
               exc: CredentialError) -> tuple[int, int]:
    """Rank failures: a credential about this caller and target explains the refusal best."""
    if claims is None:
        if isinstance(exc, CredentialMismatch):
            return (0, 1)
        if isinstance(exc, InsufficientPrivileges):
            return (1, 1)
        return (0, 0)
    owner, target = claims
    target_ok = target_urn is None or urns_equal(target or "", target_urn)
    return (int(target_ok), int(urns_equal(owner or "", caller_urn)))


def _claims(level: Level) -> tuple[str, str] | None:
    try:
        return level.owner_urn, level.target_urn
    except CredentialError:
        return None


def _split(credentials: Iterable[Mapping | str | bytes]) -> tuple[list[bytes], list[bytes]]:
    """Sort AM API credential entries into geni_sfa and geni_abac XML; ignore other types."""
    sfa: list[bytes] = []
    abac: list[bytes] = []
    if isinstance(credentials, (str, bytes, Mapping)):
        credentials = [credentials]   # a single credential where a list was expected
    for entry in credentials or ():
        if isinstance(entry, Mapping):
            ctype = str(entry.get("geni_type", "")).lower()
            value = entry.get("geni_value")
            if ctype not in (SFA, ABAC) or not isinstance(value, (str, bytes)):
                continue
            (abac if ctype == ABAC else sfa).append(to_bytes(value))
        elif isinstance(entry, (str, bytes)):
            data = to_bytes(entry)
            (abac if b"<type>abac</type>" in data else sfa).append(data)
    return sfa, abac


class _DocumentCheck:
    """One verification run over a parsed document (chain results memoised per run)."""

    def __init__(self, trust: TrustStore, doc: Document, now: datetime):
        self.trust, self.doc, self.now = trust, doc, now
        self._chains: dict[tuple[bytes, ...], Identity] = {}
        self.valid_from: datetime | None = None
        self.valid_until: datetime | None = None

    def chain(self, certs: list[x509.Certificate]) -> Identity:
        key = tuple(_der(c) for c in certs)
        found = self._chains.get(key)
        if found is None:
            found = self.trust.verify_chain(certs, self.now)
            self._chains[key] = found
            for cert in found.chain:
                self._window(cert.not_valid_before_utc, cert.not_valid_after_utc)
        return found

    def _window(self, start: datetime, end: datetime) -> None:
        if self.valid_from is None or start > self.valid_from:
            self.valid_from = start
        if self.valid_until is None or end < self.valid_until:
            self.valid_until = end

    def run(self) -> VerifiedCredential:
        levels = self.doc.levels
        signers: dict[str, Identity] = {}
        for level in reversed(levels):          # issuer's level first
            signers[level.xml_id] = self._signer(level)
        for level in reversed(levels):
            self._level(level, signers[level.xml_id])
        return self._result(levels, signers)

    def _signer(self, level: Level) -> Identity:
        try:
            signer = self.chain(level.signer_certs)
        except CertificateError as exc:
            if exc.geni_code == CREDENTIAL_SIGNER_UNTRUSTED:
                raise SignerUntrusted(f"signer of credential {level.xml_id} is not trusted: "
                                      f"{exc}") from None
            if exc.geni_code == CREDENTIAL_EXPIRED:
                raise CredentialExpired(f"signer of credential {level.xml_id}: {exc}") from None
            raise CredentialInvalid(f"signer of credential {level.xml_id}: {exc}") from None
        assert level.signature is not None
        verify_signature(level.signature, signer.certificate, level.xml_id)
        return signer

    def _gid(self, level: Level, certs: list[x509.Certificate], what: str) -> Identity:
        try:
            return self.chain(certs)
        except CertificateError as exc:
            raise type(exc)(f"{what} certificate of credential {level.xml_id}: {exc}",
                            exc.geni_code) from None

    def _level(self, level: Level, signer: Identity) -> None:
        if self.now >= level.expires:
            raise CredentialExpired(f"credential {level.xml_id} expired at "
                                    f"{_fmt(level.expires)}")
        self._window(datetime.min.replace(tzinfo=timezone.utc), level.expires)
        if level.type == "abac":
            stmt = level.abac
            assert stmt is not None
            if stmt.version not in ("1.0", "1.1"):
                raise CredentialInvalid(f"unsupported ABAC version {stmt.version!r}")
            if stmt.head.keyid != keyid(signer.certificate):
                raise CredentialInvalid(
                    f"ABAC credential {level.xml_id}: head keyid {stmt.head.keyid} is not the "
                    f"signer's key ({signer.urn})")
            return
        self._gid(level, level.owner_certs, "owner")
        target = self._gid(level, level.target_certs, "target")
        parent = level.parent
        if parent is None:
            self._issuer(level, signer, target)
            return
        if level.type != parent.type:
            raise CredentialInvalid(f"credential {level.xml_id} changes the type of its parent")
        if not _same_principal(signer.certificate, parent.owner_certs[0]):
            raise CredentialInvalid(
                f"credential {level.xml_id} is signed by {signer.urn}, but only the parent's "
                f"owner {parent.owner_urn} may delegate it")
        if _der(level.target_certs[0]) != _der(parent.target_certs[0]):
            raise CredentialInvalid(
                f"delegated credential {level.xml_id} changes the target "
                f"({level.target_urn} vs parent {parent.target_urn})")
        if level.expires > parent.expires:
            raise CredentialInvalid(
                f"delegated credential {level.xml_id} expires {_fmt(level.expires)}, after "
                f"its parent {parent.xml_id} ({_fmt(parent.expires)})")
        why = privs.delegation_violation(level.privileges, parent.privileges)
        if why:
            raise CredentialInvalid(f"delegation {parent.xml_id} -> {level.xml_id}: {why}")

    def _issuer(self, level: Level, signer: Identity, target: Identity) -> None:
        """The issuing level's signer must own the target's namespace."""
        if _signed_by(target.certificate, signer.certificate):
            return
        try:
            signer_urn = parse_urn(signer.urn)
        except URNError:
            signer_urn = None
        if signer_urn is not None and is_authority_for(signer_urn, target.urn):
            return
        raise SignerUntrusted(f"credential {level.xml_id} is signed by {signer.urn}, which is "
                              f"not an authority for its target {target.urn}")

    def _result(self, levels: list[Level], signers: dict[str, Identity]) -> VerifiedCredential:
        out: VerifiedCredential | None = None
        for level in reversed(levels):
            owner = target = None
            if level.owner_certs:
                owner = self._chains.get(tuple(_der(c) for c in level.owner_certs))
            if level.target_certs:
                target = self._chains.get(tuple(_der(c) for c in level.target_certs))
            signer = signers[level.xml_id]
            parents = () if out is None else (out,) + out.parents
            out = VerifiedCredential(
                type=level.type, xml_id=level.xml_id, serial=level.serial, owner=owner,
                target=target, owner_urn=owner.urn if owner else "",
                target_urn=target.urn if target else "", expires=level.expires,
                privileges=dict(level.privileges), signer=signer,
                signer_chain=signer.chain_urns, parents=parents,
                valid_from=self.valid_from, valid_until=self.valid_until, abac=level.abac)
        assert out is not None
        return out
