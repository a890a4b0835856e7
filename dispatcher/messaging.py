"""Publishing work to the workers. Messages carry job ids only, never fax content.

The Celery app is made here, configured from ``config/celery.py``: producers (the API,
the tick, the client in-process) publish through it by task name, and ``workers.app``
registers the tasks on the same app. The dispatcher never imports the workers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from celery import Celery
from kombu import pools

from config.celery import QUEUES, CeleryConfig
from config.settings import Settings, get_settings
from dispatcher.broker import broker_url, redis_client
from dispatcher.lanes import Priority

__all__ = [
    "BATCH",
    "MAX_COUNTDOWN",
    "app",
    "QUEUES",
    "publish_deliveries",
    "publish_dispatch",
    "publish_poll",
    "publish_reconcile",
    "queue_depths",
    "redelivery_guard",
]

#: Longest delay that may ride on a broker countdown. Anything longer waits in the
#: database (next_attempt_at): Redis re-delivers unacked messages after the visibility
#: timeout, so long countdowns would turn into duplicate deliveries.
MAX_COUNTDOWN = 60.0

#: Jobs per ``fax.dispatch_many`` message.
BATCH = 50

#: The one Celery app; starting it connects to nothing.
app = Celery("fax_dispatcher")
app.config_from_object(CeleryConfig())


def redelivery_guard(settings: Settings | None = None) -> timedelta:
    """How long a published job waits before the tick publishes it again, in case the
    message was lost: longer than a tick, so a queued message is not doubled."""
    settings = settings or get_settings()
    return timedelta(seconds=max(settings.scaled(60.0), 2 * settings.tick_interval))


@contextmanager
def _producer() -> Iterator[Any]:
    """A pooled producer for the broker the current settings name (one pool per URL)."""
    connection = app.connection_for_write(broker_url())
    with pools.producers[connection].acquire(block=True) as producer:
        yield producer


def _send(name: str, args: list[object], countdown: float | None = None) -> None:
    with _producer() as producer:
        app.send_task(name, args=args, countdown=countdown, producer=producer)


def publish_dispatch(
    attempts: Iterable[tuple[str, int]],
    countdown: float | None = None,
    priority: Priority = Priority.NORMAL,
) -> None:
    """Ask a worker to make attempt N of each job, on the queue of the jobs' lane. A
    message for a job that is no longer pending, or whose attempt N was already made, is a
    no-op when it arrives.

    Many attempts at once (a tick, a batch submit) go out as ``fax.dispatch_many``
    messages of ``BATCH`` each: the publisher pays one message per fifty jobs, and the
    worker claims and records each batch in one transaction.
    """
    if countdown is not None and countdown > MAX_COUNTDOWN:
        raise ValueError(f"countdown {countdown}s is over {MAX_COUNTDOWN}s: use next_attempt_at")
    items = [[job_id, number] for job_id, number in attempts]
    # One pipelined round trip per publish, not one per message.
    with _producer() as producer, producer.batch():
        if countdown is None and len(items) > 1:
            for start in range(0, len(items), BATCH):
                app.send_task(
                    "fax.dispatch_many",
                    args=[items[start : start + BATCH]],
                    queue=priority.queue,
                    producer=producer,
                )
            return
        for args in items:
            app.send_task(
                "fax.dispatch",
                args=args,
                countdown=countdown,
                queue=priority.queue,
                producer=producer,
            )


def publish_poll(provider: str, job_ids: Sequence[str]) -> None:
    _send("fax.poll", [provider, list(job_ids)])


def publish_reconcile(job_id: str) -> None:
    _send("fax.reconcile", [job_id])


def publish_deliveries(delivery_ids: Sequence[str]) -> None:
    """Ask a worker to deliver these callback events (``dispatcher.callbacks``)."""
    _send("fax.deliver_callbacks", [list(delivery_ids)])


def queue_depths() -> dict[str, int]:
    """Messages waiting in each queue (with Redis, each queue is a list named after it)."""
    pipe = redis_client().pipeline(transaction=False)
    for name in QUEUES:
        pipe.llen(name)
    return dict(zip(QUEUES, pipe.execute(), strict=True))
