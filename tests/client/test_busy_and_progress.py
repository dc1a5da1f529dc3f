"""Back-off on a busy AM (geni_code 14 / -32001 / HTTP 503), wait's bookkeeping, the bar."""
from __future__ import annotations

import http.server
import threading

import pytest

from am.client import AMBusy, Backoff, NeedsStart, Progress, wait_for_slivers
from am.client.progress import ProgressBar, render
from am.client.transport import Connection

pytestmark = pytest.mark.slow


def sliver(urn: str, op: str, alloc: str = "geni_provisioned", error: str = "") -> dict:
    return {"geni_sliver_urn": urn, "geni_allocation_status": alloc,
            "geni_operational_status": op, "geni_error": error}


class ScriptedClient:
    """Answers Status from a script: AMBusy instances are raised, dicts returned."""

    def __init__(self, script):
        self.script = list(script)
        self.actions: list[tuple[list, str]] = []

    def status(self, urns):
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return {"geni_urn": "urn:s", "geni_slivers": item}

    def perform_operational_action(self, urns, action):
        self.actions.append((list(urns), action))
        return []


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def test_wait_backs_off_while_busy_then_starts_and_settles():
    busy = AMBusy(-32001, "HTTP 503")
    client = ScriptedClient([
        busy, busy, busy,
        [sliver("a", "geni_pending_allocation"), sliver("b", "geni_notready")],
        [sliver("a", "geni_notready"), sliver("b", "geni_configuring")],
        AMBusy(14, "slice busy"),
        [sliver("a", "geni_configuring"), sliver("b", "geni_ready")],
        [sliver("a", "geni_failed", error="disk on fire"), sliver("b", "geni_ready")],
    ])
    clock = FakeClock()
    seen: list[Progress] = []
    result = wait_for_slivers(client, "urn:s", interval=1.0, start=True,
                              backoff=Backoff(initial=0.5, factor=2, maximum=1.5),
                              on_progress=seen.append, clock=clock, sleep=clock.sleep)
    assert clock.sleeps[:3] == [0.5, 1.0, 1.5]           # growing, capped
    assert clock.sleeps[5] == 0.5                         # back-off restarts after an answer
    assert result.busy_answers == 4 and result.polls == 4 and not result.timed_out
    assert client.actions == [(["b"], "geni_start"), (["a"], "geni_start")]   # once each
    assert [p.ready for p in seen] == [0, 0, 1, 1]
    assert result.progress.failed == 1 and not result.all_ready
    assert result.progress.failures()[0]["geni_error"] == "disk on fire"


def test_wait_times_out_and_needs_start():
    clock = FakeClock()
    client = ScriptedClient([[sliver("a", "geni_configuring")]] * 10)
    result = wait_for_slivers(client, "urn:s", interval=1.0, timeout=3.5, clock=clock,
                              sleep=clock.sleep)
    assert result.timed_out and result.polls == 4          # at t = 0, 1, 2, 3
    client = ScriptedClient([[sliver("a", "geni_notready"), sliver("b", "geni_ready")]])
    with pytest.raises(NeedsStart, match="1 sliver"):
        wait_for_slivers(client, "urn:s", clock=clock, sleep=clock.sleep)


def test_progress_bar_rendering(capsys):
    p = Progress((sliver("a", "geni_ready"), sliver("b", "geni_failed"),
                  sliver("c", "geni_notready"), sliver("d", "geni_configuring")), 1, 1, 4)
    assert render(p, width=8) == "[##!!....] 1/4 ready, 1 failed, 1 not ready, 1 on the way"
    import io
    stream = io.StringIO()
    bar = ProgressBar(stream, width=4)
    bar(p)
    bar(p)                                   # unchanged: not repeated on a non-terminal
    assert stream.getvalue().count("\n") == 1


class Busy503(http.server.BaseHTTPRequestHandler):
    hits = 0

    def do_POST(self):
        type(self).hits += 1
        self.rfile.read(int(self.headers["Content-Length"]))
        if type(self).hits <= 2:
            self.send_response(503, "Service Unavailable")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = (b"<?xml version='1.0'?><methodResponse><params><param><value><struct>"
                b"<member><name>code</name><value><struct><member><name>geni_code</name>"
                b"<value><int>0</int></value></member></struct></value></member>"
                b"<member><name>value</name><value><boolean>1</boolean></value></member>"
                b"</struct></value></param></params></methodResponse>")
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_http_503_is_busy_and_retried(am_env):
    from am.client import AMClient

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Busy503)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        conn = Connection(url, None, timeout=5)
        with pytest.raises(AMBusy, match="HTTP 503"):
            conn.call("Shutdown", ("urn:s", [], {}))
        sleeps: list[float] = []
        client = AMClient(url, am_env.cert, am_env.key, busy_retries=3,
                          backoff=Backoff(initial=0.25), sleep=sleeps.append)
        assert client.shutdown("urn:publicid:IDN+geni-am+slice+x") is True
        assert sleeps == [0.25] and Busy503.hits == 3
        Busy503.hits = 0
        client.busy_retries = 1
        with pytest.raises(AMBusy):
            client.shutdown("urn:publicid:IDN+geni-am+slice+x")
    finally:
        server.shutdown()
