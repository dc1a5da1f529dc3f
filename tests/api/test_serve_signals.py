"""`AmServer.serve_until_signalled`: SIGTERM/SIGINT stop it, and its handler takes no lock.

A Python signal handler runs in the main thread between any two bytecodes. The old handler
called threading.Event.set, which takes the Event's lock: when the signal came while the main
thread held that lock (inside Event.wait) or a second signal came while the first handler held
it, serve hung for ever (seen with `timeout` forwarding a SIGTERM beside a kill). The handler is
called here under a profiler that records every call it makes."""
from __future__ import annotations

import signal
import urllib.request

from am.server import AmServer, ServerOptions
from tests.support import locks_taken


def _app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def test_a_signal_stops_serve_and_the_handler_takes_no_lock():
    before = signal.getsignal(signal.SIGTERM)
    server = AmServer(_app, ServerOptions(host="127.0.0.1", port=0, threads=2, tls=False))
    locking: list[str] = []
    answered: list[bytes] = []

    def on_ready() -> None:
        answered.append(urllib.request.urlopen(server.url, timeout=10).read())
        locking.extend(locks_taken(signal.getsignal(signal.SIGTERM), signal.SIGTERM, None))

    server.serve_until_signalled(on_ready=on_ready)    # returns: the signal stopped it
    assert answered == [b"ok"]
    assert locking == []
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back
