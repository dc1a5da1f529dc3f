"""Kombu's `filesystem://` transport, made safe and prompt for the embedded broker.

Kombu 5.7's channel has two races when several consumers (threads or processes) share a
folder, which the embedded worker does:
  * `_put` creates the message file and *then* writes it, so a consumer can claim the empty
    file and fail decoding it (seen here: JSONDecodeError under load);
  * `_get` claims by `shutil.move` into a processed folder that may sit on another file system
    (the temp directory), i.e. copy + unlink, which two consumers can both win.
This channel writes each message to a hidden temporary name and renames it into place, and
claims by `os.rename` within the broker directory (atomic: exactly one consumer wins), then
deletes the claimed file. Folder layout and message format are kombu's.

Celery's blocking consumer loop (used for transports without an event loop) drains with a
2 s timeout and runs one more drain after a shutdown is requested, so stopping an embedded
worker took up to 4 s; the transport caps each drain at `MAX_DRAIN_WAIT_S`.
"""
from __future__ import annotations

import os
import uuid
from queue import Empty
from time import monotonic

from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

MAX_DRAIN_WAIT_S = 0.2


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):   # noqa: D102 - kombu's signature
        name = f"{int(monotonic() * 1000):015d}_{uuid.uuid4().hex}.{queue}.msg"
        tmp = os.path.join(self.data_folder_out, f".tmp-{uuid.uuid4().hex}")
        with open(tmp, "wb") as f:
            f.write(str_to_bytes(dumps(payload)))
        os.replace(tmp, os.path.join(self.data_folder_out, name))

    def _get(self, queue):   # noqa: D102 - kombu's signature
        wanted = f"{queue}.msg"
        for filename in sorted(os.listdir(self.data_folder_in)):
            if filename.startswith(".") or filename.partition(".")[2] != wanted:
                continue
            claimed = os.path.join(self.processed_folder, f"{os.getpid()}-{filename}")
            try:
                os.rename(os.path.join(self.data_folder_in, filename), claimed)
            except FileNotFoundError:
                continue    # another consumer won this one
            try:
                with open(claimed, "rb") as f:
                    payload = f.read()
            finally:
                os.unlink(claimed)
            return loads(bytes_to_str(payload))
        raise Empty()


class Transport(filesystem.Transport):
    Channel = Channel

    def drain_events(self, connection, timeout=None):   # noqa: D102 - kombu's signature
        if timeout is not None and timeout > MAX_DRAIN_WAIT_S:
            timeout = MAX_DRAIN_WAIT_S
        return super().drain_events(connection, timeout=timeout)


TRANSPORT_PATH = f"{__name__}:Transport"
