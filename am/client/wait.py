"""`wait`: poll Status until every sliver is ready or failed, backing off while the AM is busy.

Ready means operational state `geni_ready`; failed means `geni_failed` (its `geni_error` is the
reason). `geni_notready` is a resting state (the AM API's "needs an action"): with `start=True`
each such sliver is sent `geni_start` once and waited for; without it, a wait where only
not-ready slivers are left ends with advice to start them. Slivers that are only allocated never
get ready by waiting, so they too end the wait at once with advice to provision them.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from am.client.errors import AMBusy, ClientError

if TYPE_CHECKING:
    from am.client.core import AMClient, Backoff, Urns

READY = "geni_ready"
FAILED = "geni_failed"
NOTREADY = "geni_notready"


class NotProvisioned(ClientError):
    """Some slivers are only allocated: waiting cannot make them ready."""


class NeedsStart(ClientError):
    """Some slivers rest in geni_notready: only an action (geni_start) makes them ready."""


@dataclass(frozen=True)
class Progress:
    """One poll's view of the slivers."""

    slivers: tuple[dict[str, Any], ...]
    ready: int
    failed: int
    total: int

    @property
    def pending(self) -> int:
        return self.total - self.ready - self.failed

    @property
    def not_ready(self) -> int:
        return sum(1 for s in self.slivers if s.get("geni_operational_status") == NOTREADY)

    @property
    def settled(self) -> bool:
        return self.total > 0 and self.pending == 0

    def failures(self) -> list[dict[str, Any]]:
        return [s for s in self.slivers if s.get("geni_operational_status") == FAILED]

    def waiting(self) -> list[dict[str, Any]]:
        return [s for s in self.slivers
                if s.get("geni_operational_status") not in (READY, FAILED)]


@dataclass
class WaitResult:
    progress: Progress
    timed_out: bool = False
    polls: int = 0
    busy_answers: int = 0
    elapsed_s: float = 0.0
    history: list[Progress] = field(default_factory=list)

    @property
    def all_ready(self) -> bool:
        return self.progress.settled and self.progress.failed == 0 and not self.timed_out


def progress_of(status_value: dict[str, Any]) -> Progress:
    slivers = tuple(status_value.get("geni_slivers") or ())
    states = [s.get("geni_operational_status") for s in slivers]
    return Progress(slivers, states.count(READY), states.count(FAILED), len(slivers))


def wait_for_slivers(client: "AMClient", urns: "Urns", *, timeout: float = 600.0,
                     interval: float = 2.0, start: bool = False,
                     backoff: "Backoff | None" = None,
                     on_progress: Callable[[Progress], None] | None = None,
                     clock: Callable[[], float] = time.monotonic,
                     sleep: Callable[[float], None] = time.sleep) -> WaitResult:
    """Poll `Status(urns)` every `interval` s until settled or `timeout`; busy answers are
    retried after growing delays (`backoff`), other AM errors propagate (AMError). `start`:
    send `geni_start` to slivers resting in geni_notready (once each)."""
    from am.client.core import Backoff

    delays = iter((backoff or Backoff(initial=max(interval, 0.5))).delays())
    started = clock()
    result: WaitResult | None = None
    polls = busy = 0
    started_slivers: set[str] = set()
    while True:
        try:
            value = client.status(urns)
            polls += 1
        except AMBusy:
            busy += 1
            delay = next(delays)
            if clock() - started + delay > timeout:
                last = result.progress if result else Progress((), 0, 0, 0)
                return WaitResult(last, timed_out=True, polls=polls, busy_answers=busy,
                                  elapsed_s=clock() - started,
                                  history=result.history if result else [])
            sleep(delay)
            continue
        delays = iter((backoff or Backoff(initial=max(interval, 0.5))).delays())
        progress = progress_of(value)
        history = (result.history if result else []) + [progress]
        result = WaitResult(progress, polls=polls, busy_answers=busy,
                            elapsed_s=clock() - started, history=history)
        if on_progress:
            on_progress(progress)
        if progress.total == 0:
            raise ClientError("the AM reports no slivers for these URNs: nothing to wait for")
        unprovisioned = [s for s in progress.slivers
                         if s.get("geni_allocation_status") != "geni_provisioned"]
        if unprovisioned and len(unprovisioned) + progress.ready + progress.failed \
                == progress.total:
            names = ", ".join(s.get("geni_sliver_urn", "?") for s in unprovisioned)
            raise NotProvisioned(f"{len(unprovisioned)} sliver(s) are allocated but not "
                                 f"provisioned, so they will never get ready: provision them "
                                 f"first ({names})")
        if progress.settled:
            return result
        resting = [s.get("geni_sliver_urn", "") for s in progress.slivers
                   if s.get("geni_operational_status") == NOTREADY]
        fresh = [urn for urn in resting if urn not in started_slivers]
        if start and fresh:
            client.perform_operational_action(fresh, "geni_start")
            started_slivers.update(fresh)
        elif resting and len(resting) == progress.pending:
            if start:
                raise NeedsStart(f"{len(resting)} sliver(s) went back to geni_notready after "
                                 f"geni_start: {', '.join(resting)}")
            raise NeedsStart(f"{len(resting)} sliver(s) are geni_notready and need an action "
                             "to get ready: start them (poa geni_start, or wait --start)")
        if clock() - started + interval > timeout:
            result.timed_out = True
            return result
        sleep(interval)
