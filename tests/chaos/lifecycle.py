"""A client running whole sliver life cycles against the two API processes while faults happen.

Every call goes to one API process and, when no GENI answer comes back (connection refused or
reset, timeout), to the other; BUSY and database errors are retried after a pause. A call whose
answer was lost may or may not have taken effect, so the client then asks Status what is true
and carries on from there. `expect` is what the answers the client got say its slice holds
(sliver URN -> allocation state): the end check compares it with the database.
"""
from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from am.client import AMClient, ClientError
from am.client.errors import AMBusy, AMError
from tests.interop.stack import node, request

BUSY, DBERROR, ERROR, SEARCHFAILED = 14, 9, 2, 12
RETRY_CODES = {BUSY, DBERROR, ERROR}
CALL_BUDGET_S = 90.0      # one call may take this long across retries before the test fails
READY_BUDGET_S = 90.0


class Lost(Exception):
    """The call may or may not have happened: no answer came back."""


class ChaosClient:
    def __init__(self, index: int, urls: list[str], make: Callable[[str], AMClient],
                 slice_urn: str, stop: threading.Event, seed: int, slivers: int = 2):
        self.index, self.urls, self.make = index, urls, make
        self.slice_urn, self.stop = slice_urn, stop
        self.rng = random.Random(seed)
        self.rspec = request(*(node(f"c{index}n{i}") for i in range(slivers)))
        self.slivers = slivers
        self.counts: Counter = Counter()     # calls, failovers, busy, dberror, internal, ...
        self.expect: dict[str, str] = {}     # sliver URN -> allocation state, per the answers
        self.anomalies: list[str] = []
        self.cycles = 0
        self.ambiguous = False               # an answer of this life cycle was lost
        self.trace: deque[str] = deque(maxlen=40)   # the last calls and answers, for reports

    # ---- one call, with fail-over and retries ---------------------------------------------
    def call(self, fn: Callable[[AMClient], Any], what: str, *, lost: bool = False) -> Any:
        """`fn` on an API process. Lost when an earlier try got no answer, or BUSY or a database
        error (the commit may have happened before the database went away): the caller asks
        Status what is true. `lost=True`: this call repeats one whose outcome was unknown, and a
        request of that one may still be in flight (an API process waiting out a database
        restart), so any refusal is resolved by Status too."""
        deadline = time.monotonic() + CALL_BUDGET_S
        start = self.rng.randrange(len(self.urls))
        attempt = 0
        while True:
            url = self.urls[(start + attempt) % len(self.urls)]
            attempt += 1
            self.counts["calls"] += 1
            client = self.make(url)
            try:
                result = fn(client)
                self.trace.append(f"{time.strftime('%H:%M:%S')} {what} on {url}: ok"
                                  f"{' (after a lost try)' if lost else ''}")
                if lost:
                    raise Lost(what)     # answered now, but an earlier try may have acted
                return result
            except AMBusy:
                self.trace.append(f"{time.strftime('%H:%M:%S')} {what} on {url}: BUSY")
                self.counts["retries_busy"] += 1
                lost = True          # the database may have gone away during the commit
            except AMError as exc:
                self.trace.append(f"{time.strftime('%H:%M:%S')} {what} on {url}: {exc}")
                if exc.code not in RETRY_CODES:
                    if lost:
                        raise Lost(what) from exc
                    raise
                lost = True
                key = {DBERROR: "retries_dberror", ERROR: "retries_internal_error"}[exc.code]
                self.counts[key] += 1
                if exc.code == ERROR:
                    self.anomalies.append(f"{what}: ERROR answer: {exc}")
            except ClientError as exc:
                self.trace.append(f"{time.strftime('%H:%M:%S')} {what} on {url}: no answer "
                                  f"({exc})")
                self.counts["retries_failover"] += 1
                lost = True
            finally:
                client.close()
            if time.monotonic() > deadline:
                raise AssertionError(f"client {self.index}: {what} got no answer within "
                                     f"{CALL_BUDGET_S:.0f} s")
            time.sleep(min(2.0, 0.1 * attempt) + self.rng.uniform(0, 0.1))

    def status(self) -> dict[str, dict]:
        """Sliver URN -> its Status struct ({} when the slice holds nothing here)."""
        def fn(c: AMClient) -> dict[str, dict]:
            try:
                value = c.status(self.slice_urn)
            except AMError as exc:
                if exc.code == SEARCHFAILED:
                    return {}
                raise
            return {s["geni_sliver_urn"]: s for s in value["geni_slivers"]}
        while True:
            try:
                return self.call(fn, "Status")
            except Lost:
                continue          # Status changes nothing: ask again

    def _from_status(self) -> dict[str, dict]:
        live = self.status()
        self.expect = {u: s["geni_allocation_status"] for u, s in live.items()}
        self.trace.append(f"  Status says {self.expect}")
        return live

    # ---- the life cycle -------------------------------------------------------------------
    def run(self) -> None:
        while not self.stop.is_set():
            self.cycle()
            self.cycles += 1

    def cycle(self) -> None:
        """Allocate, Provision, wait for geni_ready, Status, Renew, Delete; stop may come
        between any two steps, leaving the slice in whatever state the last answer says."""
        self.ambiguous = False
        self.allocate()
        if self.stop.is_set():
            return
        self.provision()
        self.wait_ready()
        if self.stop.is_set():
            return
        self.renew()
        if self.stop.is_set() and self.rng.random() < 0.5:
            return
        self.delete()

    def _lost(self) -> None:
        self.counts["ambiguous"] += 1
        self.ambiguous = True

    def _again(self, what: str) -> None:
        """Another try of a step whose earlier tries were lost; a step that never takes hold
        is a finding, not a reason to loop for ever."""
        self.counts[f"again_{what}"] += 1
        if self.counts[f"again_{what}"] > 20 * (self.cycles + 1):
            raise AssertionError(f"client {self.index}: {what} never takes hold:\n"
                                 + "\n".join(self.trace))

    def allocate(self, again: bool = False) -> None:
        try:
            value = self.call(lambda c: c.allocate(self.slice_urn, self.rspec), "Allocate",
                              lost=again)
            self.expect.update({s["geni_sliver_urn"]: s["geni_allocation_status"]
                                for s in value["geni_slivers"]})
        except Lost:
            self._lost()
            if not self._from_status():
                self._again("Allocate")
                self.allocate(again=True)    # it did not happen: try again

    def provision(self, again: bool = False) -> None:
        try:
            value = self.call(lambda c: c.provision([self.slice_urn]), "Provision", lost=again)
            for s in value["geni_slivers"]:
                self.expect[s["geni_sliver_urn"]] = s["geni_allocation_status"]
        except Lost:
            self._lost()
            live = self._from_status()
            if any(s["geni_allocation_status"] == "geni_allocated" for s in live.values()):
                self._again("Provision")
                self.provision(again=True)   # idempotent: provision whatever is left

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_BUDGET_S
        while True:
            live = self.status()
            ops = {u: s["geni_operational_status"] for u, s in live.items()}
            if set(live) != set(self.expect):
                if self.ambiguous:       # a request whose answer was lost committed late
                    self.counts["late_commits"] += 1
                else:
                    self.anomalies.append(f"Status shows {sorted(live)}, expected "
                                          f"{sorted(self.expect)}")
                self.expect = {u: s["geni_allocation_status"] for u, s in live.items()}
            if ops and all(op == "geni_ready" for op in ops.values()):
                return
            if any(op == "geni_failed" for op in ops.values()):
                self.counts["failed_slivers"] += 1
                self.anomalies.append(f"geni_failed: {[(u, live[u].get('geni_error')) for u in ops]}")
                return
            if time.monotonic() > deadline:
                self.anomalies.append(f"not ready after {READY_BUDGET_S:.0f} s: {ops}")
                return
            time.sleep(0.2)

    def renew(self) -> None:
        until = datetime.now(timezone.utc) + timedelta(hours=2)
        try:
            self.call(lambda c: c.renew([self.slice_urn], until), "Renew")
        except Lost:
            self.counts["ambiguous"] += 1    # renewing twice is renewing once

    def delete(self, again: bool = False) -> None:
        try:
            self.call(lambda c: c.delete([self.slice_urn]), "Delete", lost=again)
            self.expect = {}
        except Lost:
            self._lost()
            if self._from_status():
                self._again("Delete")
                self.delete(again=True)
        except AMError as exc:
            if exc.code != SEARCHFAILED:
                raise
            self.expect = {}
        left = self.status()
        if left:
            self.anomalies.append(f"after Delete Status still shows {sorted(left)}")
            self.expect = {u: s["geni_allocation_status"] for u, s in left.items()}

    def final_delete(self) -> None:
        """After the faults: delete whatever the slice still holds."""
        self.delete()


def run_clients(clients: list[ChaosClient]) -> tuple[list[threading.Thread], list[BaseException]]:
    errors: list[BaseException] = []

    def body(c: ChaosClient) -> None:
        try:
            c.run()
        except BaseException as exc:   # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    return threads, errors


