"""Celery settings, read from ``Settings`` when the app first needs them.

Delivery settings, chosen on purpose:

* ``task_acks_late`` + ``task_reject_on_worker_lost`` + prefetch 1: a worker killed
  mid-task leaves its message to be delivered again; every task is idempotent (the
  database decides, every transition is conditional), so a second delivery is harmless.
* ``visibility_timeout`` = 15 minutes: Redis re-delivers a message that has not been
  acknowledged within it. It must exceed the longest task run (hard time limit 5 minutes)
  plus the longest countdown (``dispatcher.messaging.MAX_COUNTDOWN``, 60 s). Long waits
  never ride on the broker: they live in the database as ``next_attempt_at``.
* JSON only; messages carry job ids and provider names, never numbers, documents or
  credentials (Flower shows task arguments).
* Queues are consumed in the order ``QUEUES`` gives (kombu's ``priority`` order, not round
  robin): the beat's own tasks, then urgent dispatches, callback deliveries, polls, normal
  dispatches, and bulk dispatches last (``dispatcher.lanes``). Workers take every queue
  declared here unless ``-Q`` narrows them.
* Redis brokers use ``dispatcher.transport``: kombu's own transport, with one Redis client
  per channel instead of a new one for every publish and ack.
"""

from __future__ import annotations

from typing import Any

from kombu.entity import Queue

from config.settings import get_settings

__all__ = ["QUEUES", "TASK_TIME_LIMIT", "VISIBILITY_TIMEOUT", "CeleryConfig"]

VISIBILITY_TIMEOUT = 15 * 60
TASK_TIME_LIMIT = 5 * 60

#: Every queue, in the order workers take from them; with Redis, each is a list.
QUEUES = ("events", "dispatch-urgent", "callbacks", "poll", "dispatch", "dispatch-bulk")


class CeleryConfig:
    """Attributes Celery reads with ``config_from_object``; computed at first use, so
    importing the app starts nothing (not even the embedded broker)."""

    broker_connection_retry_on_startup = True
    broker_transport_options = {
        "visibility_timeout": VISIBILITY_TIMEOUT,
        "queue_order_strategy": "priority",
    }
    result_backend = None
    task_ignore_result = True
    task_serializer = "json"
    accept_content = ["json"]
    task_acks_late = True
    task_reject_on_worker_lost = True
    task_acks_on_failure = True
    task_acks_on_timeout = True
    worker_prefetch_multiplier = 1
    task_time_limit = TASK_TIME_LIMIT
    task_soft_time_limit = TASK_TIME_LIMIT - 30
    task_queues = [Queue(name) for name in QUEUES]
    task_default_queue = "events"
    # A dispatch names its lane's queue when it is published (dispatcher.lanes).
    task_routes = {
        "fax.dispatch": {"queue": "dispatch"},
        "fax.dispatch_many": {"queue": "dispatch"},
        "fax.reconcile": {"queue": "dispatch"},
        "fax.poll": {"queue": "poll"},
        "fax.deliver_callbacks": {"queue": "callbacks"},
        # Housekeeping that may take a while waits behind every fax.
        "fax.purge": {"queue": "dispatch-bulk"},
    }
    # Task events cost a broker round trip each; Flower switches them on in the workers
    # it watches (its default), so a worker without Flower does not pay for them.
    worker_send_task_events = False
    worker_hijack_root_logger = False
    timezone = "UTC"
    enable_utc = True

    @property
    def broker_url(self) -> str:
        from dispatcher.broker import broker_url

        return broker_url(get_settings())

    @property
    def broker_transport(self) -> str | None:
        """Redis brokers (the embedded one included) use ``dispatcher.transport``."""
        url = get_settings().broker_url or "redis://"
        return (
            "dispatcher.transport:Transport" if url.startswith(("redis://", "rediss://")) else None
        )

    @property
    def beat_schedule(self) -> dict[str, Any]:
        settings = get_settings()
        return {
            "fax.tick": {"task": "fax.tick", "schedule": settings.tick_interval},
            "fax.watchdog": {"task": "fax.watchdog", "schedule": settings.watchdog_interval},
            "fax.purge": {"task": "fax.purge", "schedule": settings.retention.interval},
        }
