"""Webhook delivery: one daemon thread watches for due completions, a small pool posts them.

Each provider module turns a completed fax into ``Delivery`` objects (its own payload and
headers); this module only schedules, posts, retries and logs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from dispatcher.sandbox.state import Store, to_datetime

__all__ = ["Delivery", "Notifier", "WebhookDispatcher", "compact_json", "sign"]

log = logging.getLogger(__name__)
Notifier = Callable[[str], list["Delivery"]]


def compact_json(data: Any) -> bytes:
    """The exact bytes a webhook body is sent (and signed) as."""
    return json.dumps(data, separators=(",", ":")).encode()


def sign(secret: str, body: bytes) -> str:
    """Optum's signature: lowercase hex HMAC-SHA256 of the raw body bytes."""
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

    def __init__(self, store: Store, notifiers: Mapping[str, Notifier], timeout: float) -> None:
        self.store = store
        self.notifiers = notifiers
        self.timeout = timeout
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

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
                try:
                    deliveries = self.notifiers[provider](fax_id)
                except Exception:  # a broken notifier must not stop the thread
                    log.exception("sandbox: building %s webhook for %s failed", provider, fax_id)
                    continue
                for delivery in deliveries:
                    assert self._pool is not None
                    self._pool.submit(self._deliver, delivery)
            due = self.store.next_due()
            wait = 0.5 if due is None else min(0.5, max(0.005, due - self.store.now()))
            self.store.wakeup.wait(wait)
            self.store.wakeup.clear()

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
            if status is not None and 200 <= status < 300:
                return
        if delivery.on_failure is not None:
            delivery.on_failure()
