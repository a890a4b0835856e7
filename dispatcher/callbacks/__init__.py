"""Outbound callbacks: the events of a fax, posted to the backend service that sent it.

When a job ends (succeeded, failed, cancelled), is held, or has an attempt fail, the same
transaction that moves it writes one outbox row per target (``outbox``): the job's own
``callback_url``, and each endpoint its tenant registered for that event type
(``endpoints``). The tick hands due rows to the ``callbacks`` queue; a worker posts
them on its own small pool, signed as Standard Webhooks says, and retries a failure with
backoff from the database for more than a day (``delivery``). Targets must be https and
public (``targets``).
"""

from __future__ import annotations

from dispatcher.callbacks.outbox import EVENT_TYPES

__all__ = ["EVENT_TYPES"]
