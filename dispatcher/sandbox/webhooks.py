"""Webhook delivery: one daemon thread watches for due completions, a small pool posts them.

Each provider module turns a completed fax into ``Delivery`` objects (its own payload and
headers); this module only schedules, posts, retries and logs, and applies the webhook faults
(``webhook_duplicate_rate``, ``webhook_delay_ms``: see ``faults``). A delayed delivery waits in
the watching thread's own queue, not in a pool thread, so delays do not slow the others.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from dispatcher.sandbox.faults import Faults
from dispatcher.sandbox.state import Store, to_datetime

__all__ = ["Delivery", "Notifier", "WebhookDispatcher", "compact_json", "sign"]

log = logging.getLogger(__name__)
Notifier = Callable[[str], list["Delivery"]]


def compact_json(data: Any) -> bytes:
    """The exact bytes a webhook body is sent (and signed) as."""
    return json.dumps(data, separators=(",", ":")).encode()


def sign(secret: str, body: bytes) -> str:
    """A signed provider's event signature: lowercase hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event to post; ``retry_delays`` are real seconds between attempts."""

    provider: str
    fax_id: str
    url: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    retry_delays: tuple[float, ...] = ()
    on_failure: Callable[[], None] | None = None


class WebhookDispatcher:
    """Pops due completions from the store and delivers what the provider notifiers return."""

    def __init__(
        self, store: Store, notifiers: Mapping[str, Notifier], timeout: float, faults: Faults
    ) -> None:
        self.store = store
        self.notifiers = notifiers
        self.timeout = timeout
        self.faults = faults
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        # (monotonic time to post, order, delivery); only the watching thread touches it
        self._delayed: list[tuple[float, int, Delivery]] = []
        self._order = itertools.count()

    def start(self) -> None:
        self._stopped.clear()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sandbox-webhook")
        self._thread = threading.Thread(target=self._run, name="sandbox-due", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self.store.wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self._stopped.is_set():
            for provider, fax_id in self.store.pop_due():
                for delivery in self._build(provider, fax_id):
                    self._enqueue(delivery)
                    if self.faults.duplicate_webhook(provider):
                        self._enqueue(replace(delivery, on_failure=None))
            self._post_ready()
            self.store.wakeup.wait(self._wait())
            self.store.wakeup.clear()

    def _build(self, provider: str, fax_id: str) -> list[Delivery]:
        try:
            return self.notifiers[provider](fax_id)
        except Exception:  # a broken notifier must not stop the thread
            log.exception("sandbox: building %s webhook for %s failed", provider, fax_id)
            return []
        finally:
            self.store.touch()  # notifiers mark what they notified

    def _enqueue(self, delivery: Delivery) -> None:
        """Queue a delivery for now, or for after its injected delay."""
        at = time.monotonic() + self.faults.webhook_delay(delivery.provider)
        heapq.heappush(self._delayed, (at, next(self._order), delivery))

    def _post_ready(self) -> None:
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, delivery = heapq.heappop(self._delayed)
            assert self._pool is not None
            self._pool.submit(self._deliver, delivery)

    def _wait(self) -> float:
        """Seconds until the next due completion or delayed delivery (0.5 at most)."""
        waits = [0.5]
        due = self.store.next_due()
        if due is not None:
            waits.append(due - self.store.now())
        if self._delayed:
            waits.append(self._delayed[0][0] - time.monotonic())
        return max(0.005, min(waits))

    def _deliver(self, delivery: Delivery) -> None:
        headers = {"Content-Type": "application/json", **delivery.headers}
        for attempt, delay in enumerate((0.0, *delivery.retry_delays), start=1):
            if delay and self._stopped.wait(delay):
                return
            status: int | None = None
            error: str | None = None
            try:
                response = httpx.post(
                    delivery.url, content=delivery.body, headers=headers, timeout=self.timeout
                )
                status = response.status_code
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            with self.store.lock:
                self.store.deliveries.append(
                    {
                        "provider": delivery.provider,
                        "fax_id": delivery.fax_id,
                        "url": delivery.url,
                        "attempt": attempt,
                        "status": status,
                        "error": error,
                        "at": to_datetime(self.store.now()).isoformat(),
                        "body": delivery.body.decode(errors="replace"),
                    }
                )
            self.store.touch()
            if status is not None and 200 <= status < 300:
                return
        if delivery.on_failure is not None:
            delivery.on_failure()
            self.store.touch()
