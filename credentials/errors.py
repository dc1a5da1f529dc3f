"""Error types of the credentials library.

Every error carries the GENI error code the AM API should return, so the API layer can map it
without knowing this library (`am.errors.GeniError.from_library`). Messages name the reason
precisely: operators read them to answer "why was I refused?".
"""
from __future__ import annotations

BADARGS = 1
FORBIDDEN = 3
CREDENTIAL_INVALID = 20
CREDENTIAL_EXPIRED = 21
CREDENTIAL_MISMATCH = 22
CREDENTIAL_SIGNER_UNTRUSTED = 23


class CredentialError(Exception):
    """Base class: a refusal with a GENI code and a human-readable reason."""

    geni_code: int = CREDENTIAL_INVALID

    def __init__(self, message: str, geni_code: int | None = None):
        super().__init__(message)
        self.message = message
        if geni_code is not None:
            self.geni_code = geni_code

    def __str__(self) -> str:
        return self.message


class URNError(CredentialError):
    """A malformed or unexpected GENI URN."""

    geni_code = BADARGS


class CertificateError(CredentialError):
    """A certificate that cannot be parsed or does not validate.

    geni_code is 23 when the certificate does not chain to a trusted root or its issuer is not
    allowed to certify it, 20 for anything else (unparseable, expired, missing URN).
    """

    geni_code = CREDENTIAL_INVALID


class CredentialInvalid(CredentialError):
    geni_code = CREDENTIAL_INVALID


class CredentialExpired(CredentialError):
    geni_code = CREDENTIAL_EXPIRED


class CredentialMismatch(CredentialError):
    """Owner is not the caller, or target is not the object the call is about."""

    geni_code = CREDENTIAL_MISMATCH


class SignerUntrusted(CredentialError):
    geni_code = CREDENTIAL_SIGNER_UNTRUSTED


class InsufficientPrivileges(CredentialError):
    geni_code = FORBIDDEN


class SpeaksForError(CredentialError):
    """geni_speaking_for was asked for but no valid speaks-for credential supports it."""

    geni_code = FORBIDDEN
