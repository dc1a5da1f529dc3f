"""`AMClient`: every AM API v3 call, returning the parsed `value` (or raising `AMError`).

    client = AMClient("https://am.example.net:5001/", "alice-cert.pem", "alice-key.pem",
                      ca="ca-cert.pem", credentials=["alice-cred.xml", "myslice-cred.xml"])
    ad = client.list_resources(available=True)
    client.allocate(slice_urn, request_xml)

Compressed answers (`geni_compressed`) come back decompressed. A busy AM (BUSY 14,
SERVERBUSY -32001, HTTP 503/504) raises `AMBusy`, or is retried `busy_retries` times with
exponential back-off.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from am.client.credentials import CredentialSource, load_credentials
from am.client.errors import AMBusy, AMError, ClientTransportError
from am.client.transport import Connection, TLSFiles, client_context

RSPEC_GENI_3 = ("GENI", "3")
Urns = str | Sequence[str]


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off: initial, initial*factor, ... capped at `maximum` seconds."""

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 10.0

    def delays(self) -> Iterable[float]:
        delay = self.initial
        while True:
            yield delay
            delay = min(self.maximum, delay * self.factor)


def rfc3339(when: datetime | str) -> str:
    """A datetime (naive = UTC) or a string already in RFC 3339, as the AM API wants it."""
    if isinstance(when, str):
        return when
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _urn_list(urns: Urns) -> list[str]:
    return [urns] if isinstance(urns, str) else list(urns)


def decompress(value: Any) -> Any:
    """A `geni_compressed` rspec (base64 zlib) -> its text; plain XML passes through."""
    if isinstance(value, str) and value and not value.lstrip().startswith("<"):
        from rspec.compress import decompress as rspec_decompress
        from rspec.errors import RSpecError
        try:
            return rspec_decompress(value)
        except RSpecError as exc:
            raise ClientTransportError(f"the AM's compressed rspec cannot be decoded: {exc}") \
                from None
    return value


class AMClient:
    """A client for one AM (AM API v3) with one user's certificate, key and credentials."""

    def __init__(self, url: str, cert: str, key: str, *, ca: str | None = None,
                 credentials: Iterable[CredentialSource] = (), timeout: float = 60.0,
                 speaking_for: str | None = None, key_password: str | None = None,
                 busy_retries: int = 0, backoff: Backoff = Backoff(),
                 sleep: Callable[[float], None] = time.sleep):
        self.url = url
        self.files = TLSFiles(cert=str(cert), key=str(key), ca=str(ca) if ca else None)
        context = client_context(self.files, key_password=key_password)
        self.connection = Connection(url, context, timeout=timeout, files=self.files)
        self.credentials = load_credentials(credentials)
        self.speaking_for = speaking_for
        self.busy_retries = busy_retries
        self.backoff = backoff
        self.sleep = sleep
        self.last_result: dict[str, Any] | None = None

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> "AMClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the envelope ------------------------------------------------------------------
    def call(self, method: str, *params: Any) -> dict[str, Any]:
        """One raw call: the full `{code, value, output}` struct, busy retried per policy."""
        delays = iter(self.backoff.delays())
        attempt = 0
        while True:
            try:
                result = self.connection.call(method, params)
                if not isinstance(result, dict) or not isinstance(result.get("code"), dict):
                    raise ClientTransportError(f"{method}: the answer is not a GENI return "
                                               "structure {code, value, output}")
                code = int(result["code"].get("geni_code", -1))
                if code in (14, -32001):
                    raise AMBusy(code, str(result.get("output", "")), result.get("value"),
                                 method=method)
                self.last_result = result
                return result
            except AMBusy:
                attempt += 1
                if attempt > self.busy_retries:
                    raise
                self.sleep(next(delays))

    def _value(self, method: str, *params: Any) -> Any:
        result = self.call(method, *params)
        code = int(result["code"].get("geni_code", -1))
        if code != 0:
            raise AMError(code, str(result.get("output", "")), result.get("value"), method=method)
        return result.get("value")

    def _options(self, **options: Any) -> dict[str, Any]:
        opts = {k: v for k, v in options.items() if v is not None}
        if self.speaking_for:
            opts["geni_speaking_for"] = self.speaking_for
        return opts

    @staticmethod
    def _rspec_version(version: tuple[str, str]) -> dict[str, str]:
        return {"type": version[0], "version": version[1]}

    # ---- AM API v3 -----------------------------------------------------------------------
    def get_version(self) -> dict[str, Any]:
        return self._value("GetVersion", self._options())

    def list_resources(self, *, available: bool = False, compressed: bool = False,
                       rspec_version: tuple[str, str] = RSPEC_GENI_3) -> str:
        """The advertisement RSpec (decompressed)."""
        options = self._options(geni_rspec_version=self._rspec_version(rspec_version),
                                geni_available=available, geni_compressed=compressed)
        return decompress(self._value("ListResources", self.credentials, options))

    def describe(self, urns: Urns, *, compressed: bool = False,
                 rspec_version: tuple[str, str] = RSPEC_GENI_3) -> dict[str, Any]:
        options = self._options(geni_rspec_version=self._rspec_version(rspec_version),
                                geni_compressed=compressed)
        value = self._value("Describe", _urn_list(urns), self.credentials, options)
        if isinstance(value, dict) and "geni_rspec" in value:
            value["geni_rspec"] = decompress(value["geni_rspec"])
        return value

    def allocate(self, slice_urn: str, rspec: str, *,
                 end_time: datetime | str | None = None,
                 start_time: datetime | str | None = None,
                 auto_provision: bool = False) -> dict[str, Any]:
        """`start_time`: an advance reservation (gcf's geni_start_time), provisioned by the
        AM at its start with `auto_provision`."""
        options = self._options(geni_end_time=rfc3339(end_time) if end_time else None,
                                geni_start_time=rfc3339(start_time) if start_time else None,
                                geniam_auto_provision=auto_provision or None)
        return self._value("Allocate", slice_urn, self.credentials, rspec, options)

    def update(self, urns: Urns, rspec: str, *, best_effort: bool = False) -> dict[str, Any]:
        """Update: the slice (or the named slivers) changed to `rspec`; Provision commits
        what changed in provisioned slivers."""
        options = self._options(geni_best_effort=best_effort or None)
        value = self._value("Update", _urn_list(urns), self.credentials, rspec, options)
        if isinstance(value, dict) and "geni_rspec" in value:
            value["geni_rspec"] = decompress(value["geni_rspec"])
        return value

    def calendar(self, *, start: datetime | str | None = None, hours: int = 24) -> dict[str, Any]:
        """Free capacity per component and resource per hour (this AM's geniam_Calendar)."""
        options = self._options(geni_start_time=rfc3339(start) if start else None,
                                geniam_hours=hours)
        return self._value("geniam_Calendar", self.credentials, options)

    def find_slot(self, rspec: str, duration_s: float, *, start: datetime | str | None = None,
                  hours: int = 720) -> dict[str, Any]:
        """The earliest window in which the request fits ({} if none within `hours`)."""
        options = self._options(geniam_duration_s=float(duration_s), geniam_hours=hours,
                                geni_start_time=rfc3339(start) if start else None)
        return self._value("geniam_FindSlot", self.credentials, rspec, options)

    def renew(self, urns: Urns, expiration_time: datetime | str, *, best_effort: bool = False,
              extend_alap: bool = False) -> list[dict[str, Any]]:
        options = self._options(geni_best_effort=best_effort or None,
                                geni_extend_alap=extend_alap or None)
        return self._value("Renew", _urn_list(urns), self.credentials,
                           rfc3339(expiration_time), options)

    def provision(self, urns: Urns, *, users: Sequence[dict[str, Any]] | None = None,
                  end_time: datetime | str | None = None, best_effort: bool = False,
                  rspec_version: tuple[str, str] = RSPEC_GENI_3) -> dict[str, Any]:
        """`users`: `[{"urn": user URN, "keys": [ssh public key, ...]}]`."""
        options = self._options(geni_rspec_version=self._rspec_version(rspec_version),
                                geni_users=list(users) if users else None,
                                geni_end_time=rfc3339(end_time) if end_time else None,
                                geni_best_effort=best_effort or None)
        value = self._value("Provision", _urn_list(urns), self.credentials, options)
        if isinstance(value, dict) and "geni_rspec" in value:
            value["geni_rspec"] = decompress(value["geni_rspec"])
        return value

    def status(self, urns: Urns) -> dict[str, Any]:
        return self._value("Status", _urn_list(urns), self.credentials, self._options())

    def perform_operational_action(self, urns: Urns, action: str, *,
                                   best_effort: bool = False,
                                   users: Sequence[dict[str, Any]] | None = None
                                   ) -> list[dict[str, Any]]:
        options = self._options(geni_best_effort=best_effort or None,
                                geni_users=list(users) if users else None)
        return self._value("PerformOperationalAction", _urn_list(urns), self.credentials,
                           action, options)

    def delete(self, urns: Urns, *, best_effort: bool = False) -> list[dict[str, Any]]:
        options = self._options(geni_best_effort=best_effort or None)
        return self._value("Delete", _urn_list(urns), self.credentials, options)

    def shutdown(self, slice_urn: str) -> bool:
        return bool(self._value("Shutdown", slice_urn, self.credentials, self._options()))

    # ---- waiting ---------------------------------------------------------------------------
    def wait(self, urns: Urns, **kw: Any):
        """Poll Status until every sliver is ready or failed (see `am.client.wait`)."""
        from am.client.wait import wait_for_slivers
        return wait_for_slivers(self, urns, **kw)
