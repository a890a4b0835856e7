"""kombu's Redis transport, with one Redis client per channel for its short commands.

kombu builds a new ``redis.Redis`` for every publish, every ack and every QoS bookkeeping
call (``Channel.conn_or_acquire``). Building one fills a table of a few hundred response
callbacks, about 0.1 ms with redis-py 8, and a worker makes three per task. A
``redis.Redis`` over a connection pool is thread-safe (each command takes a pooled
connection), so the channel keeps one per pool and reuses it. Everything else, including
the asynchronous client the consumer polls with, is kombu's own.

Selected by ``broker_transport`` in ``config/celery.py`` for ``redis://`` and ``rediss://``
broker URLs.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis

__all__ = ["Channel", "Transport"]


class Channel(redis.Channel):
    _shared_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        create: Any = super()._create_client
        if asynchronous:
            return create(asynchronous=True)
        client = self._shared_client
        # A reconnect replaces the pool; the client must follow it.
        if client is None or client.connection_pool is not self.pool:
            client = self._shared_client = create()
        return client


class Transport(redis.Transport):
    Channel = Channel
