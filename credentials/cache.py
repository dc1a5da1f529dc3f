"""A bounded cache of successful verifications.

Keyed by (SHA-256 of the credential's exact bytes, trust fingerprint), so changing the trust
roots, the CRLs in force (the fingerprint covers them: `TrustStore.fingerprint`) or a single
byte of the credential misses. An entry is only served while `now` is
inside its validity window (latest notBefore .. earliest expiry of every level and embedded
certificate); a stale entry is dropped, never returned. Failures are not cached. Thread-safe:
the AM verifies from many request threads.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from datetime import datetime

from credentials.model import VerifiedCredential


class VerificationCache:
    def __init__(self, max_entries: int = 4096):
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], VerifiedCredential] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(data: bytes, trust_fingerprint: str) -> tuple[str, str]:
        return hashlib.sha256(data).hexdigest(), trust_fingerprint

    def get(self, key: tuple[str, str], now: datetime) -> VerifiedCredential | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and _usable(entry, now):
                self._entries.move_to_end(key)
                self.hits += 1
                return entry
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return None

    def put(self, key: tuple[str, str], value: VerifiedCredential) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def _usable(entry: VerifiedCredential, now: datetime) -> bool:
    if entry.valid_until is None or now >= entry.valid_until:
        return False
    return entry.valid_from is None or now >= entry.valid_from
