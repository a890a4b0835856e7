"""An adapter wrapper that reports the result of every provider call to hooks, and how
long the provider took to answer to timers.

The circuit breaker and the metrics attach here, so no call site has to remember them.
A failing hook or timer is logged and never breaks the call it observes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from dispatcher.errors import ProviderError
from dispatcher.providers.base import (
    Callback,
    ManualRetry,
    ProviderAdapter,
    ProviderStatus,
    SendRequest,
)

__all__ = ["CallHook", "CallTimer", "ObservedAdapter"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: hook(provider, call name, the error or None)
CallHook = Callable[[str, str, ProviderError | None], None]
#: timer(provider, call name, seconds from the call to the provider's answer)
CallTimer = Callable[[str, str, float], None]


class ObservedAdapter(ProviderAdapter):
    """Delegates to ``inner``, tells every hook how each call ended and every timer how
    long a call the provider answered took (a transport failure is no answer: the
    breaker and the attempts count those)."""

    def __init__(
        self,
        inner: ProviderAdapter,
        hooks: Sequence[CallHook],
        timers: Sequence[CallTimer] = (),
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.has_manual_retry = inner.has_manual_retry
        self.hooks = tuple(hooks)
        self.timers = tuple(timers)

    def __repr__(self) -> str:
        return f"ObservedAdapter({self.inner!r})"

    def _notify(self, call: str, error: ProviderError | None) -> None:
        for hook in self.hooks:
            try:
                hook(self.name, call, error)
            except Exception:
                log.exception("provider call hook %r failed", hook)

    def _time(self, call: str, started: float) -> None:
        seconds = time.monotonic() - started
        for timer in self.timers:
            try:
                timer(self.name, call, seconds)
            except Exception:
                log.exception("provider call timer %r failed", timer)

    def _observe(self, call: str, fn: Callable[..., T], *args: Any) -> T:
        started = time.monotonic()
        try:
            result = fn(*args)
        except ProviderError as exc:
            if exc.status_code is not None:  # the provider answered, with a refusal
                self._time(call, started)
            self._notify(call, exc)
            raise
        self._time(call, started)
        self._notify(call, None)
        return result

    def send(self, request: SendRequest) -> str:
        return self._observe("send", self.inner.send, request)

    def status(self, fax_id: str) -> ProviderStatus:
        return self._observe("status", self.inner.status, fax_id)

    def statuses(self, fax_ids: Sequence[str]) -> dict[str, ProviderStatus]:
        return self._observe("statuses", self.inner.statuses, fax_ids)

    def cancel(self, fax_id: str) -> None:
        self._observe("cancel", self.inner.cancel, fax_id)

    def find_by_reference(self, reference: str, since: datetime) -> ProviderStatus | None:
        return self._observe("find_by_reference", self.inner.find_by_reference, reference, since)

    def retry(self, fax_id: str) -> None:
        self._observe("retry", self.inner.retry, fax_id)

    def manual_retry(self, fax_id: str) -> ManualRetry:
        return self._observe("manual_retry", self.inner.manual_retry, fax_id)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> Callback:
        return self.inner.parse_webhook(headers, body)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        """Provider-specific calls (Optum hold, revive) are observed too."""
        attribute = getattr(self.inner, name)
        if not callable(attribute):
            return attribute
        return lambda *args: self._observe(name, attribute, *args)
