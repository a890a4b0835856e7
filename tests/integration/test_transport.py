"""The Redis transport (``dispatcher.transport``) on a real valkey: one client per channel
for kombu's short commands, following the pool across a reconnect, and messages still
going through."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from kombu.connection import Connection

from workers.app import app

TRANSPORT = "dispatcher.transport:Transport"


@pytest.fixture
def url(broker_url: str) -> str:
    return f"{broker_url.rsplit('/', 1)[0]}/6"


@pytest.fixture
def connection(url: str) -> Iterator[Connection]:
    with Connection(url, transport=TRANSPORT) as connection:
        yield connection


def test_a_channel_reuses_one_client_and_follows_a_new_pool(connection: Connection) -> None:
    channel = connection.channel()
    first = channel._create_client()
    assert channel._create_client() is first
    channel._disconnect_pools()  # what kombu does when the broker connection is lost
    second = channel._create_client()
    assert second is not first
    assert second.connection_pool is channel.pool
    assert second.ping()


def test_messages_are_published_received_and_acked(connection: Connection, url: str) -> None:
    queue = connection.SimpleQueue("transport-test")
    try:
        queue.clear()
        for number in range(3):
            queue.put({"n": number})
        received = [queue.get(timeout=5) for _ in range(3)]
        for message in received:
            message.ack()
        assert [message.payload["n"] for message in received] == [0, 1, 2]
        # Acked: nothing left to deliver, nothing left in kombu's unacked bookkeeping.
        with pytest.raises(queue.Empty):
            queue.get(timeout=0.2)
        assert redis.Redis.from_url(url).hlen("unacked") == 0
    finally:
        queue.close()


def test_the_celery_app_uses_it_for_redis_brokers(broker_url: str) -> None:
    assert app.connection_for_write(broker_url).transport_cls == TRANSPORT
