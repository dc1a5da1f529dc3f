"""Results of verification: what a credential proved, once its signatures and chains held."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from datetime import datetime

from credentials.certs import Identity

if TYPE_CHECKING:
    from credentials.document import AbacStatement


@dataclass(frozen=True)
class VerifiedCredential:
    """A credential whose every level verified.

    `signer_chain` lists, for the top level, the signer certificate's validated path as URNs,
    **leaf first, trust root last**. `parents` are the verified delegation levels below this
    one, nearest parent first (so `parents[-1]` is the credential the authority issued).
    `valid_from`/`valid_until` bound the instants at which this result may be reused: the
    latest notBefore and the earliest of every level's `expires` and every embedded
    certificate's notAfter.
    """

    type: str
    xml_id: str
    serial: str
    owner: Identity | None
    target: Identity | None
    owner_urn: str
    target_urn: str
    expires: datetime
    privileges: dict[str, bool]
    signer: Identity
    signer_chain: tuple[str, ...]
    parents: tuple["VerifiedCredential", ...] = ()
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    abac: AbacStatement | None = field(default=None, compare=False)

    @property
    def levels(self) -> tuple["VerifiedCredential", ...]:
        """This level and its parents, top (most delegated) first."""
        return (self,) + self.parents

    @property
    def delegated(self) -> bool:
        return bool(self.parents)
