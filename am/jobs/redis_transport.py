"""Kombu's Redis transport, with a closed connection reported as a connection error.

When the broker goes away, Celery's consumer closes its kombu `Connection`, which sets the
transport's `client` to None. A message received before that still points at its old channel,
and acknowledging it late (acks_late: after the job ends) makes that channel build a new Redis
connection pool from `self.connection.client.hostname`. With the pool already discarded by the
channel's close, kombu 5.7 raises `AttributeError: 'NoneType' object has no attribute
'hostname'`, which Celery treats as an unrecoverable error: the worker process exits (seen here
after a `kill -9` of Redis: one worker in three died). Raised as a Redis `ConnectionError`
instead, the same failure is what it really is, a lost broker connection: Celery logs that the
acknowledgement could not be sent and carries on; the message was already restored to the queue
by the channel's close (or, with Redis restarted empty, is re-sent by the reconciler), and the
job body is idempotent.

Selected by `am.jobs.celery_app.make_celery` for `redis://` broker URLs (`rediss://` and
`redis+socket://` keep kombu's own transport).
"""
from __future__ import annotations

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

CLOSED = "the broker connection this channel belonged to is closed"


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous=False):   # noqa: D102 - kombu's signature
        if self.connection is None or self.connection.client is None:
            raise RedisConnectionError(CLOSED)
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel

    @property
    def supports_batch_publish(self):   # noqa: D102 - kombu's property
        if self.client is None:
            return False
        return super().supports_batch_publish


TRANSPORT_PATH = f"{__name__}:Transport"
