"""An in-memory provider, for tests of the code that sends and follows faxes.

Like dramatiq's stub broker, it is shipped with the package so that tests of services
built on the dispatcher can use it too. ``TwinAdapter`` speaks one real provider's status
vocabulary (``name``: its codes are classified by that provider's catalogue), keeps every
fax it accepted, and can be told what goes wrong next: a refusal, an answer lost after the
fax was accepted, or a fax accepted only later (``land_late``), as a real provider finishes
a request whose client gave up.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from dispatcher.errors import ProviderError, ProviderRejected, ProviderTimeout, ValidationError
from dispatcher.providers.base import (
    Callback,
    ManualRetry,
    ProviderAdapter,
    ProviderStatus,
    SendRequest,
)

__all__ = ["TwinAdapter", "TwinFax"]


@dataclass
class TwinFax:
    """One fax the twin accepted: its status codes so far, newest last."""

    fax_id: str
    request: SendRequest
    codes: list[str]
    manual_retry: ManualRetry = ManualRetry.NONE

    def status(self) -> ProviderStatus:
        return ProviderStatus(self.fax_id, self.codes[-1], reference=self.request.reference)


@dataclass
class TwinAdapter(ProviderAdapter):
    """A provider in memory. ``accepted`` is the code a new fax starts with."""

    name: str = "interfax"
    accepted: str = "-2"
    has_manual_retry: bool = False
    faxes: dict[str, TwinFax] = field(default_factory=dict)
    #: called as each call arrives, before anything is done, with the call's name and its
    #: argument: ("send", request), ("lookup", reference), ("retry", fax_id)
    probe: Callable[[str, object], None] | None = None
    _next: list[Callable[[SendRequest], str]] = field(default_factory=list)
    _next_retry: list[Callable[[str], None]] = field(default_factory=list)
    _late: list[SendRequest] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- what a test sets up --------------------------------------------------------

    def refuse_next(self, error: ProviderError) -> None:
        """The next send fails with ``error`` and nothing is accepted."""
        self._next.append(lambda request: self._raise(error))

    def lose_next_answer(self) -> None:
        """The next send is accepted, but its answer is lost (a read timeout)."""

        def lose(request: SendRequest) -> str:
            self._accept(request)
            raise ProviderTimeout(self.name, "timeout", "the answer was lost")

        self._next.append(lose)

    def land_next_late(self) -> None:
        """The next send times out before it is accepted; ``land_late`` accepts it later."""

        def late(request: SendRequest) -> str:
            self._late.append(request)
            raise ProviderTimeout(self.name, "timeout", "no answer in time")

        self._next.append(late)

    def crash_next(self, *, accepted: bool) -> None:
        """The next send ends in an error that is not the provider's (the worker fails
        mid-send), after the fax was accepted or before."""

        def crash(request: SendRequest) -> str:
            if accepted:
                self._accept(request)
            raise RuntimeError("the worker stopped")

        self._next.append(crash)

    def fail_next_retry(self, error: ProviderError, *, made: bool) -> None:
        """The next manual retry fails with ``error``, after the provider made it or before."""

        def fail(fax_id: str) -> None:
            if made:
                self._retry(fax_id)
            raise error

        self._next_retry.append(fail)

    def land_late(self) -> list[str]:
        """Accept the sends that timed out before they were accepted; their fax ids."""
        with self._lock:
            late, self._late = self._late, []
        return [self._accept(request) for request in late]

    def finish(self, fax_id: str, code: str) -> None:
        """The fax reaches status ``code``."""
        self.faxes[fax_id].codes.append(code)

    def sends(self, job_id: str | None = None) -> list[SendRequest]:
        """Every send the twin accepted, optionally only one job's."""
        return [
            fax.request
            for fax in self.faxes.values()
            if job_id is None or fax.request.job_id == job_id
        ]

    # --- the adapter ----------------------------------------------------------------

    def send(self, request: SendRequest) -> str:
        self._probe("send", request)
        with self._lock:
            step = self._next.pop(0) if self._next else self._accept
        return step(request)

    def status(self, fax_id: str) -> ProviderStatus:
        fax = self.faxes.get(fax_id)
        if fax is None:
            raise ProviderRejected(self.name, "http_404", f"no fax {fax_id}", status_code=404)
        return fax.status()

    def statuses(self, fax_ids: Sequence[str]) -> dict[str, ProviderStatus]:
        return {fax_id: self.faxes[fax_id].status() for fax_id in fax_ids if fax_id in self.faxes}

    def cancel(self, fax_id: str) -> None:
        self.finish(fax_id, "cancelled")

    def find_by_reference(self, reference: str, since: datetime) -> ProviderStatus | None:
        self._probe("lookup", reference)
        found = [f for f in self.faxes.values() if f.request.reference == reference]
        return found[-1].status() if found else None

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> Callback:
        raise ValidationError("body", "the twin sends no webhooks")

    def retry(self, fax_id: str) -> None:
        self._probe("retry", fax_id)
        with self._lock:
            step = self._next_retry.pop(0) if self._next_retry else None
        if step is not None:
            step(fax_id)
            return
        self._retry(fax_id)

    def _retry(self, fax_id: str) -> None:
        fax = self.faxes[fax_id]
        if fax.manual_retry is not ManualRetry.NONE:
            raise ProviderRejected(self.name, "http_409", "retried already", status_code=409)
        fax.manual_retry = ManualRetry.RUNNING
        fax.codes.append(self.accepted)  # the fax starts over

    def manual_retry(self, fax_id: str) -> ManualRetry:
        state = self.faxes[fax_id].manual_retry
        self._probe("manual_retry", fax_id)  # after the reading: a race may follow it
        return state

    # --- inside ---------------------------------------------------------------------

    def _probe(self, call: str, argument: object) -> None:
        if self.probe is not None:
            self.probe(call, argument)

    def _accept(self, request: SendRequest) -> str:
        with self._lock:
            fax_id = f"{self.name}-{next(self._ids)}"
            self.faxes[fax_id] = TwinFax(fax_id, request, [self.accepted])
        return fax_id

    @staticmethod
    def _raise(error: ProviderError) -> str:
        raise error
