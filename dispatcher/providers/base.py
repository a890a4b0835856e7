"""The one interface every provider adapter implements, and the values it passes around."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

__all__ = [
    "Document",
    "ProviderAdapter",
    "ProviderStatus",
    "SendRequest",
    "default_timeout",
]


def default_timeout() -> httpx.Timeout:
    """Explicit timeouts: a slow provider must never hold a worker for long."""
    return httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=5.0)


@dataclass(frozen=True, slots=True)
class Document:
    """A document to fax: bytes plus what the sender knows about them."""

    name: str
    mime_type: str
    content: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class SendRequest:
    """One attempt to send one fax.

    ``reference`` is unique per attempt and travels with the fax (InterFAX ``reference``,
    FAX.PLUS comment, Optum metadata) so a send whose answer was lost can be found again.
    """

    job_id: str
    reference: str
    to: str
    documents: Sequence[Document]
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    """One status reading of one fax, in the provider's own vocabulary (``code``)."""

    fax_id: str
    code: str
    pages_sent: int | None = None
    cost: float | None = None
    duration: float | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    reference: str | None = None
    failed_reason: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


class ProviderAdapter(ABC):
    """A provider's HTTP API behind one shape.

    Adapters raise only ``dispatcher.errors.ProviderError`` subclasses; no ``httpx``
    exception escapes ``dispatcher.providers``.
    """

    name: str

    @abstractmethod
    def send(self, request: SendRequest) -> str:
        """Send a fax; return the provider's fax id."""

    @abstractmethod
    def status(self, fax_id: str) -> ProviderStatus:
        """Read one fax's current status."""

    def statuses(self, fax_ids: Sequence[str]) -> dict[str, ProviderStatus]:
        """Read many statuses; adapters with a batch read override this."""
        return {fax_id: self.status(fax_id) for fax_id in fax_ids}

    @abstractmethod
    def cancel(self, fax_id: str) -> None:
        """Ask the provider to stop a fax that has not finished."""

    @abstractmethod
    def find_by_reference(self, reference: str) -> ProviderStatus | None:
        """The fax sent with this reference, if the provider has one."""

    @abstractmethod
    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> Iterable[ProviderStatus]:
        """Statuses carried by a provider callback; raises ``ValidationError`` if it is not one."""

    def close(self) -> None:
        """Release pooled connections."""
